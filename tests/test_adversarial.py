"dlbook.adversarial: FGSM's known answer on linear models (random shapes), the max-norm bound and the clip, the random control, accuracy_under, errors."
import pytest
import torch
from torch import nn
from hypothesis import given, settings, strategies as st
from dlbook.adversarial import fgsm, random_sign, accuracy_under


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 6), d=st.integers(1, 30), eps=st.floats(0, 2), seed=st.integers(0, 10**6))
def test_fgsm_lowers_a_linear_margin_by_eps_times_the_l1_norm(n, d, eps, seed):
    torch.manual_seed(seed)
    lin = nn.Linear(d, 2).double()
    x, y = torch.randn(n, d, dtype=torch.float64), torch.randint(0, 2, (n,))
    margin = lambda z: (lin(z).gather(1, y[:, None]) - lin(z).gather(1, 1 - y[:, None]))[:, 0]
    w = (lin.weight[y] - lin.weight[1 - y]).detach()
    torch.testing.assert_close(margin(x) - margin(fgsm(lin, x, y, eps)), eps * w.abs().sum(1))
    xa = fgsm(lin, x, y, eps)
    assert (xa - x).abs().max() <= eps + 1e-12


def test_clip_and_modes():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 8), nn.Dropout(0.5), nn.ReLU(), nn.Linear(8, 3)).train()
    x, y = torch.rand(10, 5), torch.randint(0, 3, (10,))
    xa = fgsm(net, x, y, 0.3, lo=0.0, hi=1.0)
    assert xa.min() >= 0 and xa.max() <= 1 and net.training
    assert torch.equal(fgsm(net, x, y, 0.3, lo=0.0, hi=1.0), xa)         # evaluation mode: no dropout randomness
    xr = random_sign(x, 0.2, 0.0, 1.0, generator=torch.Generator().manual_seed(0))
    assert xr.min() >= 0 and xr.max() <= 1 and ((xr - x).abs() <= 0.2 + 1e-7).all()
    with torch.no_grad(): assert torch.equal(fgsm(net, x, y, 0.3, lo=0.0, hi=1.0), xa)


def test_accuracy_under_counts_and_restores_mode():
    lin = nn.Linear(3, 2)
    with torch.no_grad(): lin.weight.copy_(torch.tensor([[1., 0., 0.], [-1., 0., 0.]])); lin.bias.zero_()
    x = torch.tensor([[1., 0., 0.], [-1., 0., 0.], [0.5, 0., 0.]]); y = torch.tensor([0, 1, 1])
    accs = accuracy_under(lin.train(), x, y, lambda x, y, e: x * (1 - e), [0.0, 2.0])
    assert accs == pytest.approx([2 / 3, 1 / 3]) and lin.training


def test_errors():
    lin = nn.Linear(3, 2)
    with pytest.raises(ValueError, match='eps must be >= 0'): fgsm(lin, torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), -1)
    with pytest.raises(ValueError, match='same number of examples, got 2 and 1'): fgsm(lin, torch.zeros(2, 3), torch.zeros(1, dtype=torch.long), 0.1)
    with pytest.raises(ValueError, match='eps must be >= 0'): random_sign(torch.zeros(2), -0.5)
