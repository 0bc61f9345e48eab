"Tests of dlbook.deep: init functions vs torch.nn.init, BatchNorm/LayerNorm parity (values, running stats, gradients), finite differences, bad inputs."
import math
import pytest
import torch
from torch import nn
import torch.nn.functional as F
from dlbook.deep import (fans, gain, xavier_normal_, xavier_uniform_, kaiming_normal_, kaiming_uniform_, init_weights_,
                         BatchNorm1d, BatchNorm2d, LayerNorm, ResBlock, deep_mlp, layer_stats)
from dlbook.core import check_close, set_seed


# ---------------------------------------------------------------- initialization
@pytest.mark.parametrize('shape', [(7, 5), (1000, 300), (16, 8, 3, 3), (4, 2, 5), (3, 2, 1, 1)])
def test_fans_match_torch(shape):
    assert fans(torch.empty(shape)) == nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))


@pytest.mark.parametrize('nl,a', [('linear', 0), ('sigmoid', 0), ('tanh', 0), ('relu', 0), ('selu', 0),
                                  ('leaky_relu', 0.01), ('leaky_relu', 0.2), ('leaky_relu', math.sqrt(5)), ('conv2d', 0)])
def test_gain_matches_torch(nl, a):
    check_close(gain(nl, a), nn.init.calculate_gain(nl, a))


INITS = [(xavier_normal_, nn.init.xavier_normal_, {}, lambda fi, fo: math.sqrt(2 / (fi + fo))),
         (xavier_normal_, nn.init.xavier_normal_, {'gain': 2.0}, lambda fi, fo: 2 * math.sqrt(2 / (fi + fo))),
         (xavier_uniform_, nn.init.xavier_uniform_, {}, lambda fi, fo: math.sqrt(2 / (fi + fo))),
         (kaiming_normal_, nn.init.kaiming_normal_, {}, lambda fi, fo: math.sqrt(2 / fi)),
         (kaiming_normal_, nn.init.kaiming_normal_, {'mode': 'fan_out'}, lambda fi, fo: math.sqrt(2 / fo)),
         (kaiming_normal_, nn.init.kaiming_normal_, {'a': 0.1, 'nonlinearity': 'leaky_relu'}, lambda fi, fo: math.sqrt(2 / 1.01 / fi)),
         (kaiming_uniform_, nn.init.kaiming_uniform_, {}, lambda fi, fo: math.sqrt(2 / fi)),
         (kaiming_uniform_, nn.init.kaiming_uniform_, {'a': math.sqrt(5), 'nonlinearity': 'leaky_relu'}, lambda fi, fo: math.sqrt(1 / 3 / fi)),
         (kaiming_uniform_, nn.init.kaiming_uniform_, {'nonlinearity': 'tanh', 'mode': 'fan_out'}, lambda fi, fo: 5 / 3 / math.sqrt(fo))]


@pytest.mark.parametrize('ours,theirs,kw,formula', INITS)
@pytest.mark.parametrize('shape', [(1000, 1000), (2000, 400), (128, 64, 3, 3)])
def test_init_statistics_match_torch(ours, theirs, kw, formula, shape):
    set_seed(0)
    w1, w2 = ours(torch.empty(shape), **kw), theirs(torch.empty(shape), **kw)
    want = formula(*fans(w1))
    for w in (w1, w2):   # a million draws: the sample std is within ~0.1% of the true one
        check_close(w.std(), want, atol=0, rtol=0.005)
        check_close(w.mean(), 0.0, atol=5 * want / math.sqrt(w.numel()), rtol=0)
    check_close(w1.std(), w2.std(), atol=0, rtol=0.01)
    if 'uniform' in ours.__name__:
        b = math.sqrt(3) * want
        assert 0.999 * b < w1.abs().max() <= b
    else:   # a normal draw: about 68.3% within one std
        check_close(((w1.abs() < want).float().mean()), 0.6827, atol=0.005, rtol=0)


@pytest.mark.parametrize('ours,theirs,kw,formula', INITS)
def test_init_same_seed_same_draws(ours, theirs, kw, formula):
    set_seed(3); a = ours(torch.empty(50, 40), **kw)
    set_seed(3); b = theirs(torch.empty(50, 40), **kw)
    check_close(a, b, atol=1e-7, rtol=1e-6)


def test_init_bad_inputs():
    with pytest.raises(ValueError, match='at least 2 dims'): kaiming_normal_(torch.empty(10))
    with pytest.raises(ValueError, match="'fan_in' or 'fan_out'"): kaiming_uniform_(torch.empty(3, 3), mode='avg')
    with pytest.raises(ValueError, match='unknown nonlinearity'): kaiming_normal_(torch.empty(3, 3), nonlinearity='gelu')


def test_init_weights_zeroes_biases_and_keeps_grads_off():
    m = init_weights_(nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Conv2d(3, 4, 3)), kaiming_normal_)
    assert m[0].bias.abs().sum() == 0 and m[2].bias.abs().sum() == 0
    assert m[0].weight.grad_fn is None and m[0].weight.requires_grad


# ---------------------------------------------------------------- batch norm
def _bn_pair(cls, tcls, C, dtype, **kw):
    theirs = tcls(C, **kw).to(dtype)
    with torch.no_grad(): theirs.weight.normal_(1, 0.5); theirs.bias.normal_(0, 0.5)
    ours = cls(C, **kw).to(dtype)
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


BN_CASES = [(BatchNorm1d, nn.BatchNorm1d, (32, 10)), (BatchNorm1d, nn.BatchNorm1d, (2, 3)), (BatchNorm1d, nn.BatchNorm1d, (8, 5, 7)),
            (BatchNorm1d, nn.BatchNorm1d, (1, 4, 6)), (BatchNorm2d, nn.BatchNorm2d, (16, 8, 5, 5)),
            (BatchNorm2d, nn.BatchNorm2d, (2, 3, 1, 2)), (BatchNorm2d, nn.BatchNorm2d, (4, 16, 14, 14))]


@pytest.mark.parametrize('cls,tcls,shape', BN_CASES)
@pytest.mark.parametrize('momentum', [0.1, 0.5, 1.0, 0.0])
def test_batchnorm_parity_train_and_eval(cls, tcls, shape, momentum):
    set_seed(0)
    ours, theirs = _bn_pair(cls, tcls, shape[1], torch.float64, momentum=momentum)
    for step in range(4):
        x = (torch.randn(shape, dtype=torch.float64) * (step + 1) + step).requires_grad_()
        x2 = x.detach().clone().requires_grad_()
        y1, y2 = ours(x), theirs(x2)
        check_close(y1, y2, atol=1e-10, name='train output')
        check_close(ours.running_mean, theirs.running_mean, atol=1e-10, name='running_mean')
        check_close(ours.running_var, theirs.running_var, atol=1e-10, name='running_var')
        assert int(ours.num_batches_tracked) == int(theirs.num_batches_tracked) == step + 1
        g = torch.randn_like(y1)
        ours.zero_grad(); theirs.zero_grad()
        y1.backward(g); y2.backward(g)
        check_close(x.grad, x2.grad, atol=1e-9, name='grad wrt input')
        check_close(ours.weight.grad, theirs.weight.grad, atol=1e-9, name='grad wrt weight')
        check_close(ours.bias.grad, theirs.bias.grad, atol=1e-9, name='grad wrt bias')
    ours.eval(); theirs.eval()
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True); x2 = x.detach().clone().requires_grad_()
    y1, y2 = ours(x), theirs(x2)
    check_close(y1, y2, atol=1e-10, name='eval output')
    g = torch.randn_like(y1); y1.backward(g); y2.backward(g)
    check_close(x.grad, x2.grad, atol=1e-10, name='eval grad wrt input')
    check_close(ours.weight.grad, theirs.weight.grad, atol=1e-9, name='eval grad wrt weight')


@pytest.mark.parametrize('cls,tcls,shape', [BN_CASES[0], BN_CASES[4]])
def test_batchnorm_float32_parity_and_options(cls, tcls, shape):
    set_seed(1)
    for kw in [dict(affine=False), dict(track_running_stats=False), dict(eps=1e-3)]:
        theirs = tcls(shape[1], **kw); ours = cls(shape[1], **kw); ours.load_state_dict(theirs.state_dict())
        for mode in ('train', 'eval'):
            getattr(ours, mode)(); getattr(theirs, mode)()
            x = torch.randn(shape) * 2 + 1
            check_close(ours(x), theirs(x), atol=1e-5, name=f'{kw} {mode}')


def test_batchnorm_eval_is_independent_of_batch():
    set_seed(2)
    bn = BatchNorm2d(3)
    for _ in range(5): bn(torch.randn(8, 3, 4, 4) * 2 + 3)
    bn.eval()
    x = torch.randn(6, 3, 4, 4)
    check_close(bn(x)[:2], bn(x[:2]))


@pytest.mark.parametrize('cls,shape', [(BatchNorm1d, (4, 3)), (BatchNorm1d, (3, 2, 3)), (BatchNorm2d, (3, 2, 2, 2))])
@pytest.mark.parametrize('training', [True, False])
def test_batchnorm_finite_differences(cls, shape, training):
    "Central differences in float64 against autograd, wrt the input, weight and bias, in both modes."
    set_seed(0)
    bn = cls(shape[1]).double().train(training)
    with torch.no_grad(): bn.running_mean.normal_(); bn.running_var.uniform_(0.5, 2)
    bufs = {k: v for k, v in bn.named_buffers()}
    def f(x, w, b):   # fresh copies of the buffers, so that the running stats do not drift during the check
        return torch.func.functional_call(bn, {'weight': w, 'bias': b, **{k: v.clone() for k, v in bufs.items()}}, (x,))
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    w = torch.randn(shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.randn(shape[1], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(f, (x, w, b), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize('layer,x,match', [
    (BatchNorm2d(16), torch.randn(8, 3, 28, 28), r'BatchNorm2d\(16\).*\(16,\).*\(8, 3, 28, 28\)'),
    (BatchNorm1d(10), torch.randn(4, 12), r'\(10,\).*\(4, 12\)'),
    (BatchNorm2d(3), torch.randn(4, 3), 'BatchNorm1d'),
    (BatchNorm1d(3), torch.randn(2, 3, 4, 4), 'BatchNorm2d'),
    (BatchNorm1d(3), torch.randn(3), 'rank'),
    (BatchNorm1d(3), torch.randn(1, 3), 'more than one value'),
    (BatchNorm2d(3), torch.randn(1, 3, 1, 1), 'more than one value'),
    (LayerNorm(8), torch.randn(4, 6), r'\(8,\).*\(4, 6\)'),
    (LayerNorm((3, 4)), torch.randn(4, 4, 3), r'\(3, 4\).*\(4, 4, 3\)'),
    (LayerNorm((2, 3, 4)), torch.randn(3, 4), r'\(3, 4\)'),
    (ResBlock(8), torch.randn(2, 5), r'\(8, 8\).*\(2, 5\)')])
def test_bad_inputs_name_the_shapes(layer, x, match):
    with pytest.raises(ValueError, match=match): layer(x)


def test_batchnorm_bad_momentum_and_eval_single_example():
    with pytest.raises(ValueError, match='momentum'): BatchNorm1d(3, momentum=1.5)
    assert BatchNorm1d(3).eval()(torch.randn(1, 3)).shape == (1, 3)


# ---------------------------------------------------------------- layer norm
@pytest.mark.parametrize('shape,ns', [((16, 10), 10), ((2, 5, 7), 7), ((2, 5, 7), (5, 7)), ((3, 2, 4, 4), (2, 4, 4)), ((1, 1), 1), ((6,), 6)])
@pytest.mark.parametrize('affine', [True, False])
def test_layernorm_parity(shape, ns, affine):
    set_seed(0)
    theirs = nn.LayerNorm(ns, elementwise_affine=affine).double()
    if affine:
        with torch.no_grad(): theirs.weight.normal_(1, 0.5); theirs.bias.normal_(0, 0.5)
    ours = LayerNorm(ns, elementwise_affine=affine).double(); ours.load_state_dict(theirs.state_dict())
    x = (torch.randn(shape, dtype=torch.float64) * 3 + 2).requires_grad_(); x2 = x.detach().clone().requires_grad_()
    y1, y2 = ours(x), theirs(x2)
    check_close(y1, y2, atol=1e-10)
    g = torch.randn_like(y1); y1.backward(g); y2.backward(g)
    check_close(x.grad, x2.grad, atol=1e-9, name='grad wrt input')
    if affine:
        check_close(ours.weight.grad, theirs.weight.grad, atol=1e-9, name='grad wrt weight')
        check_close(ours.bias.grad, theirs.bias.grad, atol=1e-9, name='grad wrt bias')


def test_layernorm_finite_differences_and_batch_independence():
    set_seed(0)
    ln = LayerNorm(5).double()
    with torch.no_grad(): ln.weight.normal_(); ln.bias.normal_()
    x = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(ln, (x,), eps=1e-6, atol=1e-6)
    check_close(ln(x)[:1], ln(x[:1]), atol=1e-12)


# ---------------------------------------------------------------- residual blocks, deep MLPs, hooks
def test_resblock_gradient_and_identity():
    set_seed(0)
    blk = ResBlock(6, norm='layer').double()
    x = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(blk, (x,), eps=1e-6, atol=1e-6)
    zero = ResBlock(6, branch_scale=0.0)
    x = torch.randn(3, 6)
    check_close(zero(x), x)


@pytest.mark.parametrize('depth', [2, 3, 10])
@pytest.mark.parametrize('kw', [{}, {'init': kaiming_normal_}, {'norm': 'batch'}, {'norm': 'layer'}, {'residual': True},
                                {'residual': True, 'norm': 'batch'}])
def test_deep_mlp_depth_and_shapes(depth, kw):
    m = deep_mlp(depth, 16, n_in=12, n_out=3, **kw)
    assert sum(isinstance(l, nn.Linear) for l in m.modules()) == depth
    assert m(torch.randn(5, 12)).shape == (5, 3)


def test_residual_scaled_keeps_variance_at_depth():
    set_seed(0)
    x = torch.randn(512, 784)
    st = layer_stats(deep_mlp(50, 256, residual=True), x, torch.randint(0, 10, (512,)))
    assert max(st['act_std']) / min(st['act_std']) < 10          # scaled branches: growth below e (plus the first layers)
    st = layer_stats(deep_mlp(50, 256, init=kaiming_normal_), x, torch.randint(0, 10, (512,)))
    assert max(st['act_std']) / min(st['act_std']) < 10          # Kaiming keeps a plain ReLU net's scale


def test_layer_stats_removes_hooks_on_error():
    m = nn.Sequential(nn.Linear(4, 3), nn.Linear(5, 2))   # second layer has the wrong width
    with pytest.raises(RuntimeError): layer_stats(m, torch.randn(2, 4), torch.tensor([0, 1]))
    assert not m[0]._forward_hooks
    with pytest.raises(ValueError, match='no layer of types'): layer_stats(nn.ReLU(), torch.randn(2, 4), torch.tensor([0, 1]))
