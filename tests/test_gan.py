"Tests for dlbook.gan: losses and transposed convolution against PyTorch (values and gradients), finite differences, the training step, bad inputs."
import math
import pytest
import torch
from torch import nn
import torch.nn.functional as F
from dlbook.core import check_close, set_seed


pytestmark = pytest.mark.usefixtures('one_thread')   # tests/conftest.py: tiny tensors, one torch thread
from dlbook.gan import (d_loss, g_loss_minimax, g_loss_nonsat, ring_centers, sample_ring, modes_covered, mlp, gan_step, train_gan,
                        conv_transpose2d, DCGenerator, DCDiscriminator, dcgan_init)

bce = F.binary_cross_entropy_with_logits


@pytest.mark.parametrize('scale', [0.1, 1., 10., 80.])
@pytest.mark.parametrize('shape', [(1,), (7,), (16, 1)])
def test_losses_match_bce(scale, shape):
    set_seed(int(scale * 10) + len(shape))
    r = (scale * torch.randn(*shape)).requires_grad_()
    f = (scale * torch.randn(*shape)).requires_grad_()
    pairs = [(d_loss(r, f), bce(r, torch.ones_like(r)) + bce(f, torch.zeros_like(f))),
             (g_loss_minimax(f), -bce(f, torch.zeros_like(f))), (g_loss_nonsat(f), bce(f, torch.ones_like(f)))]
    for ours, theirs in pairs:
        check_close(ours, theirs)
        ga = torch.autograd.grad(ours, (r, f), allow_unused=True, materialize_grads=True)
        gb = torch.autograd.grad(theirs, (r, f), allow_unused=True, materialize_grads=True)
        for a, b in zip(ga, gb): check_close(a, b)
        assert torch.isfinite(ours)


def test_losses_finite_differences():
    set_seed(1)
    r, f = torch.randn(5, dtype=torch.float64, requires_grad=True), torch.randn(5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(d_loss, (r, f))
    assert torch.autograd.gradcheck(g_loss_minimax, (f,))
    assert torch.autograd.gradcheck(g_loss_nonsat, (f,))


def test_saturation():
    "At a confidently rejected fake, the minimax gradient vanishes and the non-saturating one does not."
    l = torch.tensor([-12.], requires_grad=True)
    g_mm, = torch.autograd.grad(g_loss_minimax(l), l)
    g_ns, = torch.autograd.grad(g_loss_nonsat(l), l)
    assert abs(float(g_mm)) < 1e-5 and abs(float(g_ns) + 1) < 1e-5


def test_loss_bad_inputs():
    with pytest.raises(ValueError, match=r'one logit per sample.*\(4, 2\)'): d_loss(torch.zeros(4, 2), torch.zeros(4))
    with pytest.raises(ValueError, match='one logit per sample'): g_loss_nonsat(torch.zeros(2, 3, 1))
    with pytest.raises(TypeError, match='float tensors'): g_loss_minimax(torch.zeros(3, dtype=torch.long))
    with pytest.raises(TypeError, match='float tensors'): d_loss([0.], torch.zeros(1))


CT_CASES = [(1, 1, 1, 1, 0, 0, 3), (1, 2, 3, 1, 1, 0, 5), (2, 3, 4, 2, 1, 0, 7), (3, 2, 3, 2, 1, 1, 5), (4, 4, 5, 3, 2, 2, 3),
            (2, 1, 4, 2, 3, 0, 6), (3, 5, 2, 2, 0, 1, 4), (2, 2, 3, 3, 0, 0, 1)]


@pytest.mark.parametrize('cin,cout,k,s,p,op,size', CT_CASES)
@pytest.mark.parametrize('batch,bias', [(1, True), (3, False)])
def test_conv_transpose_parity(cin, cout, k, s, p, op, size, batch, bias):
    set_seed(cin * 100 + k * 10 + s)
    layer = nn.ConvTranspose2d(cin, cout, k, s, p, op, bias=bias)
    x = torch.randn(batch, cin, size, size + 1, requires_grad=True)    # non-square on purpose
    ours = conv_transpose2d(x, layer.weight, layer.bias, s, p, op)
    theirs = layer(x)
    check_close(ours, theirs)
    go = torch.randn_like(theirs)
    wrt = (x, layer.weight) + ((layer.bias,) if bias else ())
    for a, b in zip(torch.autograd.grad(ours, wrt, go), torch.autograd.grad(theirs, wrt, go)): check_close(a, b)


def test_conv_transpose_is_conv_gradient_and_finite_differences():
    set_seed(2)
    x, w = torch.randn(2, 3, 9, 9, requires_grad=True), torch.randn(4, 3, 3, 3)
    y = F.conv2d(x, w, stride=2, padding=1)
    gy = torch.randn_like(y)
    check_close(torch.autograd.grad(y, x, gy)[0], conv_transpose2d(gy, w, stride=2, padding=1))
    xd = torch.randn(1, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    wd = torch.randn(2, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    bd = torch.randn(2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: conv_transpose2d(x, w, b, 2, 1, 1), (xd, wd, bd))


def test_conv_transpose_bad_inputs():
    with pytest.raises(ValueError, match=r'\(batch, in_channels, H, W\), got \(2, 3, 3\)'): conv_transpose2d(torch.randn(2, 3, 3), torch.randn(2, 1, 2, 2))
    with pytest.raises(ValueError, match=r'in_channels=2.*got \(3, 1, 2, 2\)'): conv_transpose2d(torch.randn(1, 2, 3, 3), torch.randn(3, 1, 2, 2))
    with pytest.raises(ValueError, match='output_padding < stride'): conv_transpose2d(torch.randn(1, 2, 3, 3), torch.randn(2, 1, 2, 2), stride=2, output_padding=2)


def test_ring_and_coverage():
    c = ring_centers(8, 2.)
    assert c.shape == (8, 2)
    check_close(c.norm(dim=1), torch.full((8,), 2.))
    x = sample_ring(4000, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x, sample_ring(4000, generator=torch.Generator().manual_seed(0)))
    assert modes_covered(x, c, 0.05) [0] == 8 and modes_covered(x, c, 0.05)[1] > 0.98
    one = c[3] + 0.01 * torch.randn(500, 2)
    assert modes_covered(one, c, 0.05) == (1, 1.0)
    # a mode needs at least min_frac of the samples: 4 points out of 1000 on mode 0 do not count
    mix = torch.cat([c[1].repeat(996, 1), c[0].repeat(4, 1)])
    assert modes_covered(mix, c, 0.05)[0] == 1 and modes_covered(mix, c, 0.05, min_frac=0.004)[0] == 2
    with pytest.raises(ValueError, match=r'\(n, 2\), got \(5,\)'): modes_covered(torch.zeros(5), c, 0.05)


def test_mlp():
    m = mlp([3, 5, 4, 2])
    assert [type(l).__name__ for l in m] == ['Linear', 'ReLU', 'Linear', 'ReLU', 'Linear']
    assert m(torch.randn(6, 3)).shape == (6, 2)


def test_gan_step_updates_each_net_with_its_own_loss():
    "With SGD, one gan_step must equal: D step on real vs detached fakes, then G step through the updated D, same z."
    set_seed(3)
    G, D = mlp([2, 8, 2]), mlp([2, 8, 1])
    G2, D2 = mlp([2, 8, 2]), mlp([2, 8, 1])
    G2.load_state_dict(G.state_dict()); D2.load_state_dict(D.state_dict())
    real = torch.randn(16, 2)
    og, od = torch.optim.SGD(G.parameters(), 0.1), torch.optim.SGD(D.parameters(), 0.1)
    torch.manual_seed(9)
    ld, lg = gan_step(G, D, og, od, real, 2)
    torch.manual_seed(9)
    z = torch.randn(16, 2)
    fake = G2(z).detach()
    ld2 = d_loss(D2(real), D2(fake))
    gD = torch.autograd.grad(ld2, list(D2.parameters()))
    with torch.no_grad():
        for p, g in zip(D2.parameters(), gD): p -= 0.1 * g
    lg2 = g_loss_nonsat(D2(G2(z)))
    gG = torch.autograd.grad(lg2, list(G2.parameters()))
    with torch.no_grad():
        for p, g in zip(G2.parameters(), gG): p -= 0.1 * g
    check_close(ld, ld2); check_close(lg, lg2)
    for a, b in zip(list(G.parameters()) + list(D.parameters()), list(G2.parameters()) + list(D2.parameters())): check_close(a, b)


def test_r1_penalty_on_a_linear_discriminator():
    "For D(x) = w·x + b the gradient w.r.t. x is w, so the penalty adds exactly r1/2·|w|² to D's loss."
    set_seed(4)
    G, D = mlp([2, 4, 2]), nn.Linear(2, 1)
    real = torch.randn(8, 2)
    losses = []
    for r1 in (0., 0.5):
        Dc = nn.Linear(2, 1); Dc.load_state_dict(D.state_dict())
        Gc = mlp([2, 4, 2]); Gc.load_state_dict(G.state_dict())
        torch.manual_seed(0)
        ld, _ = gan_step(Gc, Dc, torch.optim.SGD(Gc.parameters(), 0.), torch.optim.SGD(Dc.parameters(), 0.), real, 2, r1=r1)
        losses.append(ld)
    check_close(losses[1] - losses[0], 0.25 * D.weight.detach().pow(2).sum())


def test_train_gan_learns_the_ring_and_is_reproducible():
    def run(steps):
        set_seed(0)
        G, D = mlp([8, 64, 64, 64, 2]), mlp([2, 64, 64, 64, 1])
        gen = torch.Generator().manual_seed(0)
        seen = []
        h = train_gan(G, D, lambda: sample_ring(256, generator=gen), steps, 8, lr_g=1e-3, lr_d=1e-3, r1=0.1, every=steps // 2,
                      on_snapshot=lambda step, g: seen.append((step, g.training)))
        with torch.no_grad(): x = G(torch.randn(2000, 8, generator=torch.Generator().manual_seed(1)))
        return h, x, seen
    h, x, seen = run(500)
    assert h['loss_d'].shape == h['loss_g'].shape == (500,)
    assert seen == [(250, False), (500, False)]                  # snapshots see the generator in eval mode
    assert modes_covered(x, ring_centers(), 0.05)[0] >= 6
    h1, x1, _ = run(60)
    h2, x2, _ = run(60)
    assert torch.equal(h1['loss_d'], h2['loss_d']) and torch.equal(x1, x2)


def test_train_gan_bad_inputs():
    G, D = mlp([2, 4, 2]), mlp([2, 4, 1])
    with pytest.raises(ValueError, match='steps must be >= 1'): train_gan(G, D, lambda: torch.zeros(4, 2), 0, 2)
    with pytest.raises(TypeError, match='sample_real must be a function'): train_gan(G, D, torch.zeros(4, 2), 5, 2)


def test_dcgan_shapes_init_and_errors():
    set_seed(5)
    G, D = DCGenerator(16, 8), DCDiscriminator(8)
    G.apply(dcgan_init); D.apply(dcgan_init)
    img = G(torch.randn(3, 16))
    assert img.shape == (3, 1, 28, 28) and img.abs().max() <= 1
    assert D(img).shape == (3,)
    w = G.net[4].weight.detach()
    assert abs(float(w.std()) - 0.02) < 0.005 and abs(float(w.mean())) < 0.005
    with pytest.raises(ValueError, match=r'\(batch, z_dim=16\), got \(3, 8\)'): G(torch.randn(3, 8))
    with pytest.raises(ValueError, match=r'\(batch, 1, 28, 28\), got \(3, 1, 32, 32\)'): D(torch.randn(3, 1, 32, 32))
