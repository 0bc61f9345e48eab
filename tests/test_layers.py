"Tests for dlbook.layers: matmul variants, Linear, MLP, images_to_inputs against PyTorch, plus bad inputs."
import math
import pytest
import torch
from torch import nn
from hypothesis import given, settings, strategies as st

from dlbook.core import check_close, set_seed, seeded
from dlbook.layers import (check_matmul_args, matmul_loops, matmul_dot, matmul_bcast, matmul_einsum,
                           Linear, MLP, relu, images_to_inputs)
from dlbook.data import FASHION_MEAN, FASHION_STD

FAST = [matmul_dot, matmul_bcast, matmul_einsum]
ALL = [matmul_loops] + FAST


# ---- matmul variants: values ----
@settings(max_examples=40, deadline=None, database=None)
@given(n=st.integers(0, 9), k=st.integers(0, 9), m=st.integers(0, 9), seed=st.integers(0, 2**16),
       dtype=st.sampled_from([torch.float32, torch.float64]))
def test_matmul_variants_match_torch(n, k, m, seed, dtype):
    with seeded(seed): a, b = torch.randn(n, k, dtype=dtype), torch.randn(k, m, dtype=dtype)
    expected = a @ b
    for f in ALL:
        got = f(a, b)
        assert got.dtype == dtype and got.shape == (n, m), (f.__name__, got.dtype, got.shape)
        check_close(got, expected, name=f.__name__)


@pytest.mark.parametrize('shape', [(64, 300, 50), (1, 1000, 1), (200, 3, 70)])
def test_fast_variants_larger_shapes(shape):
    n, k, m = shape
    with seeded(0): a, b = torch.randn(n, k), torch.randn(k, m)
    for f in FAST: check_close(f(a, b), a @ b, atol=1e-4, name=f.__name__)


# ---- matmul variants: gradients flow like torch.matmul's ----
@pytest.mark.parametrize('f', ALL, ids=lambda f: f.__name__)
def test_matmul_gradients_match_torch(f):
    with seeded(1): a, b, g = torch.randn(3, 4, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64), torch.randn(3, 2, dtype=torch.float64)
    a1, b1 = a.clone().requires_grad_(), b.clone().requires_grad_()
    a2, b2 = a.clone().requires_grad_(), b.clone().requires_grad_()
    (f(a1, b1) * g).sum().backward()
    (torch.matmul(a2, b2) * g).sum().backward()
    check_close(a1.grad, a2.grad, name='grad a'); check_close(b1.grad, b2.grad, name='grad b')


@pytest.mark.parametrize('f', [matmul_bcast, matmul_einsum], ids=lambda f: f.__name__)
def test_matmul_finite_differences_float64(f):
    with seeded(2): a, b = torch.randn(4, 5, dtype=torch.float64, requires_grad=True), torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(f, (a, b), eps=1e-6, atol=1e-6)


# ---- matmul variants: edge cases and bad inputs ----
@pytest.mark.parametrize('f', ALL, ids=lambda f: f.__name__)
def test_matmul_empty(f):
    assert f(torch.zeros(0, 4), torch.randn(4, 3)).shape == (0, 3)
    assert f(torch.randn(2, 4), torch.zeros(4, 0)).shape == (2, 0)
    check_close(f(torch.zeros(3, 0), torch.zeros(0, 2)), torch.zeros(3, 2))   # empty sum is zero, as in torch


@pytest.mark.parametrize('f', ALL, ids=lambda f: f.__name__)
def test_matmul_shape_mismatch_names_both_shapes(f):
    with pytest.raises(ValueError, match=rf"{f.__name__}: \(3, 4\) @ \(5, 2\): inner sizes 4 and 5 differ"):
        f(torch.randn(3, 4), torch.randn(5, 2))
    with pytest.raises(ValueError, match=r"\(4,\) @ \(4, 2\): both must be 2-D"):
        f(torch.randn(4), torch.randn(4, 2))
    with pytest.raises(ValueError, match=r"\(2, 3, 4\) @ \(4, 2\)"):
        f(torch.randn(2, 3, 4), torch.randn(4, 2))


@pytest.mark.parametrize('f', ALL, ids=lambda f: f.__name__)
def test_matmul_dtypes(f):
    with pytest.raises(TypeError, match=r'torch.int64 @ torch.float32.*\.float\(\)'):
        f(torch.ones(2, 3, dtype=torch.int64), torch.ones(3, 2))
    with pytest.raises(TypeError, match=r'dtypes differ, torch.float32 @ torch.float64'):
        f(torch.ones(2, 3), torch.ones(3, 2, dtype=torch.float64))
    with pytest.raises(TypeError, match='torch tensors'):
        f([[1.0, 2.0]], torch.ones(2, 1))


def test_check_matmul_args_accepts_good_input():
    assert check_matmul_args(torch.ones(2, 3), torch.ones(3, 4)) is None


# ---- Linear ----
@settings(max_examples=25, deadline=None, database=None)
@given(n=st.integers(0, 6), k=st.integers(1, 12), m=st.integers(1, 12), seed=st.integers(0, 2**16))
def test_linear_matches_nn_linear_values_and_grads(n, k, m, seed):
    with seeded(seed):
        lin = Linear(k, m)
        lin.b = torch.randn(m)                      # a nonzero bias so that it is tested too
        x = torch.randn(n, k)
    tl = lin.to_torch()
    lin.w.requires_grad_(); lin.b.requires_grad_()
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    with seeded(seed + 1): g = torch.randn(n, m)
    out1, out2 = lin(x1), tl(x2)
    check_close(out1, out2, name='output')
    (out1 * g).sum().backward(); (out2 * g).sum().backward()
    check_close(x1.grad, x2.grad, name='grad x')
    check_close(lin.w.grad, tl.weight.grad.T, name='grad w')
    check_close(lin.b.grad, tl.bias.grad, name='grad b')


def test_linear_finite_differences_float64():
    with seeded(3):
        lin = Linear(5, 4, dtype=torch.float64)
        x = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    lin.b = torch.randn(4, dtype=torch.float64)
    lin.w.requires_grad_(); lin.b.requires_grad_()
    def f(x, w, b):
        lin.w, lin.b = w, b
        return lin(x)
    assert torch.autograd.gradcheck(f, (x, lin.w, lin.b), eps=1e-6, atol=1e-6)


def test_linear_init_scale():
    with seeded(0):
        w_relu = Linear(1000, 500).w
        w_lin = Linear(1000, 500, gain=1.0).w
    assert abs(w_relu.std().item() / math.sqrt(2 / 1000) - 1) < 0.02
    assert abs(w_lin.std().item() / math.sqrt(1 / 1000) - 1) < 0.02
    assert abs(w_relu.mean().item()) < 0.01 * math.sqrt(2 / 1000) * 10
    assert torch.equal(Linear(3, 2).b, torch.zeros(2))


def test_linear_bad_inputs():
    lin = Linear(784, 50)
    with pytest.raises(ValueError, match=r'shape \(8, 10\) but expects \(N, 784\)'): lin(torch.randn(8, 10))
    with pytest.raises(ValueError, match=r'x.flatten\(1\)'): lin(torch.randn(8, 28, 28))
    with pytest.raises(ValueError, match=r'shape \(784,\)'): lin(torch.randn(784))
    with pytest.raises(TypeError, match=r'torch.uint8.*x.float\(\)'): lin(torch.zeros(2, 784, dtype=torch.uint8))
    with pytest.raises(TypeError, match=r'torch.float32 weights but got a torch.float64'): lin(torch.zeros(2, 784, dtype=torch.float64))
    with pytest.raises(TypeError, match='torch tensor'): lin([[0.0] * 784])
    with pytest.raises(ValueError, match='n_in, n_out >= 1'): Linear(0, 3)
    assert lin(torch.zeros(0, 784)).shape == (0, 50)


# ---- ReLU and MLP ----
def test_relu_matches_torch():
    with seeded(5): x = torch.randn(100, dtype=torch.float64, requires_grad=True)
    x2 = x.detach().clone().requires_grad_()
    relu(x).sum().backward(); torch.relu(x2).sum().backward()
    check_close(relu(x), torch.relu(x2)); check_close(x.grad, x2.grad)
    assert relu(torch.zeros(0)).shape == (0,)


@pytest.mark.parametrize('sizes', [[784, 256, 128, 10], [7, 1], [3, 5, 5, 5, 2]])
def test_mlp_matches_torch_sequential(sizes):
    with seeded(6):
        mlp = MLP(sizes)
        x = torch.randn(9, sizes[0])
    seq = mlp.to_torch()
    assert len(seq) == 2 * len(sizes) - 3
    check_close(mlp(x), seq(x), atol=1e-4)
    assert mlp(torch.zeros(0, sizes[0])).shape == (0, sizes[-1])
    acts = mlp.activations(x)
    assert [a.shape[1] for a in acts] == sizes[1:]
    assert all((a >= 0).all() for a in acts[:-1])      # hidden activations went through ReLU
    assert sum(p.numel() for p in mlp.parameters()) == sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))


def test_mlp_gradients_match_torch():
    with seeded(7): mlp, x = MLP([6, 5, 3]), torch.randn(4, 6)
    seq = mlp.to_torch()
    for p in mlp.parameters(): p.requires_grad_()
    mlp(x).pow(2).sum().backward(); seq(x).pow(2).sum().backward()
    for ours, theirs in zip(mlp.layers, [seq[0], seq[2]]):
        check_close(ours.w.grad, theirs.weight.grad.T, name='grad w'); check_close(ours.b.grad, theirs.bias.grad, name='grad b')


def test_mlp_bad_sizes():
    with pytest.raises(ValueError, match='at least an input and an output'): MLP([10])
    with pytest.raises(ValueError, match=r'expects \(N, 4\)'): MLP([4, 3])(torch.randn(2, 5))


# ---- images_to_inputs ----
def test_images_to_inputs():
    x = torch.tensor([[[0, 255], [128, 64]]], dtype=torch.uint8)
    out = images_to_inputs(x)
    assert out.shape == (1, 4) and out.dtype == torch.float32
    check_close(out, (torch.tensor([[0., 255, 128, 64]]) / 255 - FASHION_MEAN) / FASHION_STD)
    assert images_to_inputs(torch.zeros(0, 28, 28, dtype=torch.uint8)).shape == (0, 784)
    with pytest.raises(TypeError, match='uint8'): images_to_inputs(x.float())
    with pytest.raises(ValueError, match=r'N × H × W, got shape \(28, 28\)'): images_to_inputs(torch.zeros(28, 28, dtype=torch.uint8))
