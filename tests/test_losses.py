"Parity, finite-difference and edge-case tests for dlbook.losses (from-scratch losses vs torch.nn.functional)."
import math
import pytest
import torch
import torch.nn.functional as F
from dlbook.core import check_close
from dlbook.losses import (mse_loss, mae_loss, huber_loss, bce_with_logits, binary_cross_entropy, cross_entropy,
                           soft_cross_entropy, logsumexp, log_softmax, softmax, reduce_loss, torch_reference,
                           parity_check, naive_cross_entropy, naive_bce_with_logits)

REDUCTIONS = ['mean', 'sum', 'none']
TOL = {torch.float64: dict(atol=1e-10, rtol=1e-9), torch.float32: dict(atol=1e-5, rtol=1e-4)}


def gen(seed): return torch.Generator().manual_seed(seed)


def random_shape(g, min_ndim=1):
    ndim = int(torch.randint(min_ndim, 4, (1,), generator=g))
    return tuple(int(s) for s in torch.randint(1, 6, (ndim,), generator=g))


def extreme_logits(shape, g, dtype):
    return ((torch.randint(0, 3, shape, generator=g) - 1) * 1e4 + torch.randn(shape, generator=g)).to(dtype)


def elementwise_cases(seed, dtype, n=12):
    "(loss, input, target) triples with random shapes, ordinary and extreme."
    g = gen(seed)
    for _ in range(n):
        s = random_shape(g)
        x, y = (torch.randn(s, generator=g) * 3).to(dtype), torch.randn(s, generator=g).to(dtype)
        yield mse_loss, x, y
        yield mae_loss, x, y
        yield huber_loss, x, y
        for lg in (x, extreme_logits(s, g, dtype)):
            yield bce_with_logits, lg, torch.rand(s, generator=g).round().to(dtype)
            yield bce_with_logits, lg, torch.rand(s, generator=g).to(dtype)
        p = torch.rand(s, generator=g).clamp(1e-6, 1 - 1e-6).to(dtype)
        p.view(-1)[0] = 1e-6
        p.view(-1)[-1] = 1 - 1e-6 if dtype == torch.float64 else 1 - 2 ** -20
        yield binary_cross_entropy, p, torch.rand(s, generator=g).round().to(dtype)


def class_cases(seed, dtype, n=12):
    "(loss, logits, target) for cross_entropy / soft_cross_entropy with shapes (C,), (N, C), (N, C, d...)."
    g = gen(seed)
    for i in range(n):
        s = random_shape(g, min_ndim=1)
        if i % 4 == 0: s = s[:1]                 # a single (C,) logit vector with a scalar target
        C = s[1] if len(s) > 1 else s[0]
        tshape = (s[:1] + s[2:]) if len(s) > 1 else ()
        for lg in ((torch.randn(s, generator=g) * 3).to(dtype), extreme_logits(s, g, dtype)):
            yield cross_entropy, lg, torch.randint(0, C, tshape, generator=g)
            probs = torch.softmax(torch.randn(s, generator=g) * 2, dim=1 if len(s) > 1 else 0).to(dtype)
            yield soft_cross_entropy, lg, probs


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('reduction', REDUCTIONS)
def test_parity_elementwise_losses(dtype, reduction):
    n = 0
    for fn, x, y in elementwise_cases(seed=10, dtype=dtype):
        parity_check(fn, torch_reference(fn.__name__), x, y, reduction, **TOL[dtype]); n += 1
    assert n == 12 * 8


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('reduction', REDUCTIONS)
def test_parity_class_losses(dtype, reduction):
    for fn, x, y in class_cases(seed=11, dtype=dtype):
        parity_check(fn, torch_reference(fn.__name__), x, y, reduction, **TOL[dtype])


@pytest.mark.parametrize('delta', [0.1, 1.0, 3.0])
def test_huber_delta(delta):
    g = gen(12)
    x, y = torch.randn(50, generator=g) * 4, torch.randn(50, generator=g)
    parity_check(lambda a, b, reduction: huber_loss(a, b, delta, reduction),
                 lambda a, b, reduction: F.huber_loss(a, b, reduction=reduction, delta=delta), x, y, 'mean')


def test_finite_differences_float64():
    g = gen(13)
    x, y = torch.randn(4, 3, generator=g, dtype=torch.float64), torch.randn(4, 3, generator=g, dtype=torch.float64)
    x = x + torch.sign(x - y) * 0.01     # keep |x - y| away from MAE's and Huber's corners
    lg = (torch.randn(4, 5, generator=g, dtype=torch.float64) * 3)
    tg = torch.randint(0, 5, (4,), generator=g)
    pr = torch.softmax(torch.randn(4, 5, generator=g, dtype=torch.float64), 1)
    p = torch.rand(4, 3, generator=g, dtype=torch.float64) * 0.9 + 0.05
    checks = [(lambda t: mse_loss(t, y), x), (lambda t: mae_loss(t, y), x), (lambda t: huber_loss(t, y, 0.7), x),
              (lambda t: bce_with_logits(t, y.sigmoid()), x), (lambda t: binary_cross_entropy(t, y.gt(0).double()), p),
              (lambda t: cross_entropy(t, tg), lg), (lambda t: soft_cross_entropy(t, pr), lg),
              (lambda t: logsumexp(t, 1), lg), (lambda t: softmax(t, 0), lg)]
    for fn, inp in checks:
        assert torch.autograd.gradcheck(fn, (inp.clone().requires_grad_(),))


def test_bce_gradient_at_zero_logit():
    # softplus has a corner in max(z,0) and |z|; the gradient at exactly z = 0 must still be sigma(0) - y = 0.5 - y
    z = torch.zeros(3, requires_grad=True)
    bce_with_logits(z, torch.tensor([0., 0.5, 1.]), 'sum').backward()
    check_close(z.grad, torch.tensor([0.5, 0., -0.5]))


def test_logsumexp_and_softmax():
    g = gen(14)
    for _ in range(20):
        s = random_shape(g)
        x = extreme_logits(s, g, torch.float32)
        for dim in range(len(s)):
            check_close(logsumexp(x, dim), torch.logsumexp(x, dim), rtol=1e-5)
            check_close(logsumexp(x, dim, keepdim=True), torch.logsumexp(x, dim, keepdim=True), rtol=1e-5)
            check_close(log_softmax(x, dim), F.log_softmax(x, dim), rtol=1e-5)
            check_close(softmax(x, dim), F.softmax(x, dim))
    inf = float('inf')
    check_close(logsumexp(torch.tensor([[-inf, -inf], [inf, 0.], [-inf, 1.]]), 1), torch.tensor([-inf, inf, 1.]))


@pytest.mark.parametrize('reduction', REDUCTIONS)
def test_empty_inputs_match_torch(reduction):
    # mean of nothing is nan (as in PyTorch), sum is 0, none is empty
    e = torch.zeros(0, 3)
    for fn in (mse_loss, mae_loss, huber_loss, bce_with_logits):
        check_close(fn(e, e, reduction=reduction), torch_reference(fn.__name__)(e, e, reduction=reduction))
    check_close(binary_cross_entropy(e, e, reduction=reduction), F.binary_cross_entropy(e, e, reduction=reduction))
    t = torch.zeros(0, dtype=torch.long)
    check_close(cross_entropy(e, t, reduction), F.cross_entropy(e, t, reduction=reduction))
    check_close(soft_cross_entropy(e, e, reduction), F.cross_entropy(e, e, reduction=reduction))
    assert reduce_loss(torch.zeros(0), 'sum').item() == 0


def test_shape_mismatch_names_both_shapes():
    for fn in (mse_loss, mae_loss, huber_loss, bce_with_logits, binary_cross_entropy):
        with pytest.raises(ValueError, match=r'input shape \(4, 1\) and target shape \(4,\) differ'):
            fn(torch.full((4, 1), 0.5), torch.full((4,), 0.5))
    with pytest.raises(ValueError, match=r'logits of shape \(4, 3\) need a target of shape \(4,\).*got target shape \(5,\)'):
        cross_entropy(torch.zeros(4, 3), torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match=r'logits of shape \(2, 3, 5\) need a target of shape \(2, 5\)'):
        cross_entropy(torch.zeros(2, 3, 5), torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r'input shape \(4, 3\) and target shape \(4, 2\)'):
        soft_cross_entropy(torch.zeros(4, 3), torch.zeros(4, 2))


def test_wrong_dtypes():
    with pytest.raises(TypeError, match=r'pass target\.long\(\)'):
        cross_entropy(torch.zeros(4, 3), torch.tensor([0., 1., 2., 1.]))
    with pytest.raises(TypeError, match='use soft_cross_entropy'):
        cross_entropy(torch.zeros(4, 3), F.one_hot(torch.tensor([0, 1, 2, 1]), 3).float())
    with pytest.raises(TypeError, match=r'pass target\.long\(\)'):
        cross_entropy(torch.zeros(2, 3), torch.tensor([True, False]))
    with pytest.raises(TypeError, match=r'pass logits\.float\(\)'):
        cross_entropy(torch.zeros(4, 3, dtype=torch.long), torch.zeros(4, dtype=torch.long))
    with pytest.raises(TypeError, match=r'pass input\.float\(\)'):
        mse_loss(torch.zeros(3, dtype=torch.long), torch.zeros(3))
    with pytest.raises(TypeError, match=r'pass target\.float\(\)'):
        bce_with_logits(torch.zeros(3), torch.tensor([0, 1, 1]))
    with pytest.raises(TypeError, match='torch.as_tensor'):
        mae_loss([1.0], torch.zeros(1))


def test_out_of_range_classes():
    lg = torch.zeros(3, 4)
    with pytest.raises(ValueError, match=r'class index 4 is out of range for 4 classes; targets must lie in \[0, 3\]'):
        cross_entropy(lg, torch.tensor([0, 4, 1]))
    with pytest.raises(ValueError, match='class index -1 is out of range'):
        cross_entropy(lg, torch.tensor([0, -1, 1]))
    with pytest.raises(ValueError, match='no class dimension'):
        cross_entropy(torch.zeros(3, 0), torch.zeros(3, dtype=torch.long))


def test_other_bad_arguments():
    x = torch.zeros(3)
    with pytest.raises(ValueError, match="reduction must be one of"): mse_loss(x, x, reduction='avg')
    with pytest.raises(ValueError, match="delta must be positive"): huber_loss(x, x, delta=-1.0)
    with pytest.raises(ValueError, match='use bce_with_logits'): binary_cross_entropy(torch.tensor([0.5, 2.0]), torch.ones(2))
    with pytest.raises(ValueError, match='is empty'): logsumexp(torch.zeros(2, 0))
    with pytest.raises(KeyError, match='choose one of'): torch_reference('hinge')


def test_naive_forms_really_fail_and_stable_ones_do_not():
    lg = torch.tensor([[1e4, 0., -1e4], [-1e4, 1e4, 0.]])
    tg = torch.tensor([1, 0])
    assert not torch.isfinite(naive_cross_entropy(lg, tg)).all()
    assert torch.isfinite(cross_entropy(lg, tg, 'none')).all()
    check_close(cross_entropy(lg, tg, 'none'), torch.tensor([1e4, 2e4]))
    z = torch.tensor([-1e4, -100., 30., 1e4])
    for yv in (0., 1.):
        y = torch.full_like(z, yv)
        assert not torch.isfinite(naive_bce_with_logits(z, y)).all()
        assert torch.isfinite(bce_with_logits(z, y, 'none')).all()
