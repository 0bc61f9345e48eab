"Tests for dlbook.backprop: hand-written gradients against autograd and float64 finite differences, plus bad inputs."
import pytest
import torch
from torch import nn
from hypothesis import given, settings, strategies as st

from dlbook.core import check_close, seeded
from dlbook.backprop import (mse, mse_grad, relu_grad, lin_grad, mlp2_loss_and_grads, numerical_grad,
                             Module, Lin, Relu, Mse, Model)

F64 = torch.float64


def _params(k, h, m, dtype=torch.float32):
    return {'w1': torch.randn(k, h, dtype=dtype) * 0.5, 'b1': torch.randn(h, dtype=dtype) * 0.1,
            'w2': torch.randn(h, m, dtype=dtype) * 0.5, 'b2': torch.randn(m, dtype=dtype) * 0.1}


def _autograd_mlp2(x, t, p):
    leaves = {k: v.clone().requires_grad_() for k, v in {**p, 'x': x}.items()}
    pred = torch.relu(leaves['x'] @ leaves['w1'] + leaves['b1']) @ leaves['w2'] + leaves['b2']
    loss = nn.functional.mse_loss(pred, t)
    loss.backward()
    return loss, {k: v.grad for k, v in leaves.items()}


# ---- the loss ----
@settings(max_examples=30, deadline=None, database=None)
@given(shape=st.lists(st.integers(1, 6), min_size=1, max_size=3), seed=st.integers(0, 2**16))
def test_mse_and_grad_match_torch(shape, seed):
    with seeded(seed): p, t = torch.randn(shape, dtype=F64), torch.randn(shape, dtype=F64)
    pg = p.clone().requires_grad_()
    ref = nn.functional.mse_loss(pg, t); ref.backward()
    check_close(mse(p, t), ref); check_close(mse_grad(p, t), pg.grad)


def test_mse_bad_inputs():
    with pytest.raises(ValueError, match=r'prediction shape \(4, 1\) and target shape \(4,\) differ.*squeeze'):
        mse(torch.zeros(4, 1), torch.zeros(4))
    with pytest.raises(ValueError, match=r'prediction shape \(3, 2\) and target shape \(2, 3\) differ'):
        mse_grad(torch.zeros(3, 2), torch.zeros(2, 3))
    with pytest.raises(ValueError, match='empty batch'): mse(torch.zeros(0, 1), torch.zeros(0, 1))
    with pytest.raises(ValueError, match='empty batch'): mse_grad(torch.zeros(0), torch.zeros(0))
    with pytest.raises(TypeError, match=r'target has dtype torch.int64.*\.float\(\)'): mse(torch.zeros(3), torch.zeros(3, dtype=torch.int64))
    with pytest.raises(TypeError, match=r'prediction has dtype torch.int32'): mse(torch.zeros(3, dtype=torch.int32), torch.zeros(3))
    with pytest.raises(TypeError, match='torch tensor'): mse([1.0], torch.zeros(1))


# ---- the layer gradients ----
@settings(max_examples=30, deadline=None, database=None)
@given(n=st.integers(0, 7), k=st.integers(1, 7), m=st.integers(1, 7), seed=st.integers(0, 2**16))
def test_lin_and_relu_grad_match_autograd(n, k, m, seed):
    with seeded(seed):
        x, w, b, g = torch.randn(n, k, dtype=F64), torch.randn(k, m, dtype=F64), torch.randn(m, dtype=F64), torch.randn(n, m, dtype=F64)
    xl, wl, bl = (v.clone().requires_grad_() for v in (x, w, b))
    ((xl @ wl + bl) * g).sum().backward()
    gx, gw, gb = lin_grad(x, w, g)
    check_close(gx, xl.grad, name='grad x'); check_close(gw, wl.grad, name='grad w'); check_close(gb, bl.grad, name='grad b')
    zl = x.clone().requires_grad_()
    (torch.relu(zl) * torch.ones_like(x)).sum().backward()
    check_close(relu_grad(x, torch.ones_like(x)), zl.grad, name='relu grad')


def test_relu_grad_at_zero_matches_torch():
    z = torch.tensor([-1., 0., 1.], requires_grad=True)
    torch.relu(z).sum().backward()
    check_close(relu_grad(z.detach(), torch.ones(3)), z.grad)


# ---- the whole two-layer network ----
@settings(max_examples=25, deadline=None, database=None)
@given(n=st.integers(1, 8), k=st.integers(1, 6), h=st.integers(1, 8), m=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_mlp2_matches_autograd_random_shapes(n, k, h, m, seed):
    with seeded(seed): x, t, p = torch.randn(n, k), torch.randn(n, m), _params(k, h, m)
    loss, grads = mlp2_loss_and_grads(x, t, **p)
    ref_loss, ref = _autograd_mlp2(x, t, p)
    check_close(loss, ref_loss, name='loss')
    for key in ['w1', 'b1', 'w2', 'b2', 'x']: check_close(grads[key], ref[key], name=f'grad {key}')


@pytest.mark.parametrize('seed', range(4))
def test_mlp2_finite_differences_float64(seed):
    with seeded(seed): x, t, p = torch.randn(5, 4, dtype=F64), torch.randn(5, 2, dtype=F64), _params(4, 6, 2, F64)
    _, grads = mlp2_loss_and_grads(x, t, **p)
    f = lambda: mlp2_loss_and_grads(x, t, **p)[0]
    for key in ['w1', 'b1', 'w2', 'b2']: check_close(grads[key], numerical_grad(f, p[key]), atol=1e-7, rtol=1e-6, name=key)
    check_close(grads['x'], numerical_grad(f, x), atol=1e-7, rtol=1e-6, name='x')


def test_numerical_grad():
    x = torch.tensor([[0.3, -2.0], [1.5, 0.0]], dtype=F64)
    before = x.clone()
    check_close(numerical_grad(lambda: (x.sin() * x).sum(), x), x.cos() * x + x.sin(), atol=1e-8)
    assert torch.equal(x, before)
    with pytest.raises(TypeError, match='float64'): numerical_grad(lambda: x.sum(), x.float())
    with pytest.raises(ValueError, match='contiguous'): numerical_grad(lambda: x.sum(), x.T)
    assert numerical_grad(lambda: torch.tensor(0.), torch.zeros(0, dtype=F64)).shape == (0,)


# ---- the modules ----
@settings(max_examples=20, deadline=None, database=None)
@given(n=st.integers(1, 6), sizes=st.lists(st.integers(1, 6), min_size=2, max_size=4), seed=st.integers(0, 2**16))
def test_model_matches_torch_sequential(n, sizes, seed):
    with seeded(seed):
        layers = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(Lin(a, b, dtype=F64))
            layers[-1].params['b'] += torch.randn(b, dtype=F64)
            if i < len(sizes) - 2: layers.append(Relu())
        model = Model(layers, Mse())
        x, t = torch.randn(n, sizes[0], dtype=F64), torch.randn(n, sizes[-1], dtype=F64)
    tm = model.to_torch()
    loss = model.loss(x, t); gx = model.backward()
    xl = x.clone().requires_grad_()
    ref = nn.functional.mse_loss(tm(xl), t); ref.backward()
    check_close(loss, ref); check_close(gx, xl.grad, name='grad x')
    ours, theirs = model.grads(), dict(tm.named_parameters())
    assert list(ours) == [k.replace('weight', 'w').replace('bias', 'b') for k in theirs]
    for (k, g), (tk, tp) in zip(ours.items(), theirs.items()):
        check_close(g, tp.grad.T if tk.endswith('weight') else tp.grad, name=k)


def test_model_finite_differences_float64():
    with seeded(11):
        model = Model([Lin(3, 5, dtype=F64), Relu(), Lin(5, 4, dtype=F64), Relu(), Lin(4, 2, dtype=F64)], Mse())
        x, t = torch.randn(6, 3, dtype=F64), torch.randn(6, 2, dtype=F64)
    model.loss(x, t); model.backward()
    grads = {k: g.clone() for k, g in model.grads().items()}
    f = lambda: model.loss(x, t)
    for k, p in model.params().items(): check_close(grads[k], numerical_grad(f, p), atol=1e-7, rtol=1e-6, name=k)


def test_training_matches_torch_sgd():
    with seeded(12):
        model = Model([Lin(4, 8), Relu(), Lin(8, 1, gain=1.0)], Mse())
        x, t = torch.randn(32, 4), torch.randn(32, 1)
    tm = model.to_torch(); opt = torch.optim.SGD(tm.parameters(), lr=0.1)
    ours, theirs = [], []
    for _ in range(30):
        ours.append(model.loss(x, t)); model.backward(); model.sgd_step(0.1)
        l = nn.functional.mse_loss(tm(x), t); opt.zero_grad(); l.backward(); opt.step(); theirs.append(l.detach())
    check_close(torch.stack(ours), torch.stack(theirs), atol=1e-5)
    assert ours[-1] < ours[0]


def test_empty_batch_through_layers():
    lin, r = Lin(4, 3), Relu()
    out = r(lin(torch.zeros(0, 4)))
    assert out.shape == (0, 3)
    gx = lin.backward(r.backward(torch.zeros(0, 3)))
    assert gx.shape == (0, 4)
    assert torch.equal(lin.grads['w'], torch.zeros(4, 3)) and torch.equal(lin.grads['b'], torch.zeros(3))
    with pytest.raises(ValueError, match='empty batch'): Model([Lin(4, 1)], Mse()).loss(torch.zeros(0, 4), torch.zeros(0, 1))


def test_module_misuse_errors():
    with pytest.raises(RuntimeError, match='Lin.backward was called before any forward pass'): Lin(2, 3).backward(torch.ones(1, 3))
    lin = Lin(2, 3); lin(torch.ones(5, 2))
    with pytest.raises(ValueError, match=r'gradient of shape \(5, 2\) for an output of shape \(5, 3\)'): lin.backward(torch.ones(5, 2))
    with pytest.raises(ValueError, match='needs grad_out'): lin.backward()
    with pytest.raises(ValueError, match=r'input of shape \(5, 4\) but expects \(N, 2\)'): lin(torch.ones(5, 4))
    with pytest.raises(TypeError, match='torch.int64'): lin(torch.ones(5, 2, dtype=torch.int64))
    with pytest.raises(RuntimeError, match='no gradients yet'): Model([Lin(2, 1)], Mse()).grads()
    with pytest.raises(NotImplementedError): Module()(torch.ones(1))

    class Twice(Module):
        def forward(self, x): return 2 * x
    with pytest.raises(TypeError, match='knows Lin and Relu, not Twice'): Model([Twice()], Mse()).to_torch()
    m = Model([Lin(2, 1)], Mse())
    with pytest.raises(ValueError, match=r'prediction shape \(3, 1\) and target shape \(3,\)'): m.loss(torch.ones(3, 2), torch.ones(3))
