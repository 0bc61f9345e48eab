"Parity, finite-difference and edge-case tests for dlbook.activations (from-scratch activations vs PyTorch)."
import math
import pytest
import torch
import torch.nn.functional as F
from dlbook.core import check_close
from dlbook.activations import (ACTIVATIONS, TORCH_ACTIVATIONS, get_activation, activate, Activation, numerical_derivative,
                                init_mlp, probe_mlp, dead_fraction, leaky_relu, leaky_relu_grad, relu, sigmoid, softplus, tanh)

NAMES = sorted(ACTIVATIONS)
SMOOTH = ['sigmoid', 'tanh', 'gelu', 'gelu_tanh', 'softplus']
TOL = {torch.float64: dict(atol=1e-8, rtol=1e-8), torch.float32: dict(atol=1e-5, rtol=1e-4)}


def random_shapes(n, seed):
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        ndim = int(torch.randint(0, 4, (1,), generator=g))
        yield tuple(int(s) for s in torch.randint(1, 6, (ndim,), generator=g))


def torch_grad(name, x):
    x = x.detach().clone().requires_grad_()
    (g,) = torch.autograd.grad(TORCH_ACTIVATIONS[name](x).sum(), x)
    return g


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('name', NAMES)
def test_parity_random_shapes(name, dtype):
    f, df = get_activation(name)
    for i, shape in enumerate(random_shapes(25, seed=sum(map(ord, name)))):
        x = torch.randn(shape, dtype=dtype, generator=torch.Generator().manual_seed(i)) * 6
        check_close(f(x), TORCH_ACTIVATIONS[name](x), name=f'{name} {shape} value', **TOL[dtype])
        check_close(df(x), torch_grad(name, x), name=f'{name} {shape} derivative', **TOL[dtype])


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('name', NAMES)
def test_extreme_inputs_finite_and_match(name, dtype):
    f, df = get_activation(name)
    x = torch.tensor([-1e4, -1e3, -100., -88.8, -30., -20.5, 20.5, 30., 88.8, 100., 1e3, 1e4], dtype=dtype)
    y, d = f(x), df(x)
    assert torch.isfinite(y).all() and torch.isfinite(d).all(), (name, y, d)
    check_close(y, TORCH_ACTIVATIONS[name](x), name=f'{name} extreme value', **TOL[dtype])
    check_close(d, torch_grad(name, x), name=f'{name} extreme derivative', **TOL[dtype])


@pytest.mark.parametrize('name', NAMES)
def test_finite_differences_float64(name):
    f, df = get_activation(name)
    x = torch.randn(500, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 5
    x = x[x.abs() > 1e-4]  # the finite difference straddles ReLU's corner otherwise
    check_close(df(x), numerical_derivative(f, x), atol=1e-7, rtol=1e-6, name=f'{name} vs finite differences')


@pytest.mark.parametrize('name', NAMES)
def test_activate_backward_matches_torch(name):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(7, 5, dtype=torch.float64, generator=g) * 4
    up = torch.randn(7, 5, dtype=torch.float64, generator=g)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    (activate(a, name) * up).sum().backward()
    (TORCH_ACTIVATIONS[name](b) * up).sum().backward()
    check_close(a.grad, b.grad, atol=1e-10, name=f'{name} backward')


@pytest.mark.parametrize('name', SMOOTH)
def test_gradcheck(name):
    x = torch.randn(6, dtype=torch.float64, generator=torch.Generator().manual_seed(3)).mul(3).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: activate(t, name), (x,))


def test_leaky_slope_and_module():
    x = torch.randn(100, generator=torch.Generator().manual_seed(4))
    for slope in (0.0, 0.2, 1.0):
        check_close(leaky_relu(x, slope), F.leaky_relu(x, slope))
        check_close(leaky_relu_grad(x, slope), torch.where(x > 0, 1.0, slope))
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), Activation('tanh'), torch.nn.Linear(3, 2))
    assert net(torch.randn(5, 4)).shape == (5, 2)
    assert 'tanh' in repr(net)


def test_known_values():
    assert sigmoid(torch.zeros(1)).item() == 0.5
    assert tanh(torch.tensor([0.])).item() == 0.0
    check_close(softplus(torch.zeros(1)), torch.tensor([math.log(2)]))
    assert relu(torch.tensor([-0.0, 3.0])).tolist() == [0.0, 3.0]


@pytest.mark.parametrize('name', NAMES)
def test_empty_inputs(name):
    f, df = get_activation(name)
    for shape in [(0,), (3, 0), (0, 2, 2)]:
        x = torch.empty(shape)
        assert f(x).shape == shape and df(x).shape == shape
        assert activate(x, name).shape == shape


@pytest.mark.parametrize('name', NAMES)
def test_bad_dtypes(name):
    f, df = get_activation(name)
    for fn in (f, df, lambda t: activate(t, name)):
        with pytest.raises(TypeError, match=r'x\.float\(\)'): fn(torch.arange(4))
        with pytest.raises(TypeError, match='torch.as_tensor'): fn([1.0, 2.0])


def test_unknown_names_and_bad_arguments():
    with pytest.raises(KeyError, match='choose one of'): get_activation('swish')
    with pytest.raises(KeyError, match='choose one of'): Activation('elu')
    with pytest.raises(ValueError, match='scale must be positive'): init_mlp([4, 3], scale=0)
    x, y = torch.randn(8, 4), torch.randint(0, 10, (8,))
    with pytest.raises(ValueError, match=r'\(8, 4\) and \(7,\)'): probe_mlp(x, y[:7])
    with pytest.raises(ValueError, match='depth must be at least 1'): probe_mlp(x, y, depth=0)
    with pytest.raises(ValueError, match=r'got \(0, 3\)'): dead_fraction(torch.zeros(0, 3))
    with pytest.raises(ValueError, match=r'\(N, units\)'): dead_fraction(torch.zeros(3))


def test_dead_fraction():
    z = torch.tensor([[1., -1., -2., 0.], [-1., -1., 3., 0.]])
    check_close(dead_fraction(z), 0.5)   # columns 1 and 3 never exceed 0


def test_probe_mlp_shows_vanishing_gradients():
    # sigmoid's derivative is at most 1/4, so its gradients shrink geometrically towards the input; tanh's do not
    x, y = torch.randn(128, 32, generator=torch.Generator().manual_seed(5)), torch.randint(0, 10, (128,))
    g_sig = probe_mlp(x, y, 'sigmoid', depth=12, width=32)['wgrad_rms']
    g_tanh = probe_mlp(x, y, 'tanh', depth=12, width=32)['wgrad_rms']
    assert g_sig[0] / g_sig[-1] < 1e-5, g_sig
    assert g_tanh[0] / g_tanh[-1] > 1e-2, g_tanh
    # and the weight gradients it reports are the real ones: compare with a torch-only rebuild
    params = init_mlp([32, 16, 16, 10], scale=1.5, seed=3)
    r = probe_mlp(x, y, 'gelu', params=params)
    ref = [(W.detach().clone().requires_grad_(), b.detach().clone().requires_grad_()) for W, b in params]
    h = x
    for W, b in ref[:-1]: h = F.gelu(h @ W.T + b)
    out = h @ ref[-1][0].T + ref[-1][1]
    F.mse_loss(out, F.one_hot(y, 10).float()).backward()
    check_close(r['wgrad_rms'], torch.stack([W.grad.pow(2).mean().sqrt() for W, _ in ref]), atol=1e-7)
