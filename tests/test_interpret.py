"dlbook.interpret: every attribution method on models with known answers (random shapes), hooks removed, ranks vs scipy, randomization, errors."
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from scipy.stats import rankdata, spearmanr
from hypothesis import given, settings, strategies as st
from dlbook.interpret import (input_gradient, grad_times_input, smooth_grad, GradCAM, occlusion, ranks, rank_correlation,
                              layers_with_params, randomize_top)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 5), d=st.integers(2, 20), k=st.integers(2, 6), seed=st.integers(0, 10**6))
def test_linear_model_known_answers(n, d, k, seed):
    torch.manual_seed(seed)
    lin = nn.Linear(d, k).double()
    x = torch.randn(n, d, dtype=torch.float64)
    t = torch.randint(0, k, (n,))
    W = lin.weight.detach()[t]
    torch.testing.assert_close(input_gradient(lin, x, t), W)
    torch.testing.assert_close(grad_times_input(lin, x, t), W * x)
    torch.testing.assert_close(smooth_grad(lin, x, t, n=3, sigma=2.0), W)
    torch.testing.assert_close(occlusion(lin, x, t, patch=1, stride=1), W * x)
    # a patch of p values at baseline 0 removes the sum of w_i x_i over the patch; averaged over the patches covering i
    p = min(3, d)
    occ = occlusion(lin, x, t, patch=p, stride=1)
    starts = range(0, d - p + 1)
    ref = torch.stack([torch.stack([sum((W * x)[r, s:s + p].sum() for s in starts if s <= i < s + p) /
                                    sum(1 for s in starts if s <= i < s + p) for i in range(d)]) for r in range(n)])
    torch.testing.assert_close(occ, ref)


@settings(max_examples=15, deadline=None)
@given(c=st.integers(1, 5), h=st.integers(3, 9), w=st.integers(3, 9), seed=st.integers(0, 10**6))
def test_gradcam_equals_cam_on_gap_networks(c, h, w, seed):
    torch.manual_seed(seed)
    conv, head = nn.Conv2d(2, c, 3, padding=1).double(), nn.Linear(c, 4).double()
    net = nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), head)
    x = torch.randn(3, 2, h, w, dtype=torch.float64)
    t = torch.tensor([0, 3, 1])
    ref = F.relu((head.weight[t].view(3, c, 1, 1) * F.relu(conv(x))).sum(1)) / (h * w)
    torch.testing.assert_close(GradCAM(net, net[1])(x, t), ref.detach())
    assert not net[1]._forward_hooks


def test_gradcam_on_signals_upsamples_linearly():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv1d(1, 4, 5, stride=2), nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(4, 3))
    cam = GradCAM(net, net[1])(torch.randn(2, 1, 40), 2)
    assert cam.shape == (2, 40) and (cam >= 0).all()


def test_smooth_grad_is_the_mean_of_noisy_gradients():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    x = torch.randn(2, 6, dtype=torch.float64)
    got = smooth_grad(net, x, 1, n=5, sigma=0.3, generator=torch.Generator().manual_seed(4))
    noise = torch.randn((5, 2, 6), generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    span = (x.amax(1) - x.amin(1)).view(1, 2, 1)
    ref = torch.stack([input_gradient(net, x + 0.3 * span[0] * noise[j], 1) for j in range(5)]).mean(0)
    torch.testing.assert_close(got, ref)


def test_ranks_and_spearman_match_scipy():
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        v = torch.randint(0, 6, (25,), generator=g).double()
        torch.testing.assert_close(ranks(v), torch.tensor(rankdata(v.numpy()) - 1))
        a, b = torch.randint(0, 3, (2, 25), generator=g).double(), torch.randn(2, 25, generator=g, dtype=torch.float64)
        ref = torch.tensor([spearmanr(a[i], b[i]).statistic for i in range(2)], dtype=torch.float64)
        torch.testing.assert_close(rank_correlation(a, b), ref)


def test_randomize_top_changes_exactly_the_top_layers():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 6 * 6, 5))
    with torch.no_grad():
        for p in net.parameters(): p.add_(1.0)          # "trained": away from any initialization
    layers = layers_with_params(net)
    assert [type(m) for m in layers] == [nn.Conv2d, nn.BatchNorm2d, nn.Linear]
    for k in range(4):
        r = randomize_top(net, k, seed=1)
        changed = [not all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters())) for a, b in zip(layers, layers_with_params(r))]
        assert changed == [False] * (3 - k) + [True] * k
    state = torch.get_rng_state()
    randomize_top(net, 3, seed=1)
    assert torch.equal(state, torch.get_rng_state())    # the global generator is left alone


def test_errors_name_the_problem():
    lin = nn.Linear(4, 3)
    x = torch.randn(2, 4)
    with pytest.raises(ValueError, match=r'must be in \[0, 3\)'): input_gradient(lin, x, 5)
    with pytest.raises(TypeError, match='class indices'): grad_times_input(lin, x, [0.0, 1.0])
    with pytest.raises(ValueError, match='one per example'): input_gradient(lin, x, [0, 1, 2])
    with pytest.raises(ValueError, match='output class scores'): input_gradient(nn.Sequential(nn.Linear(4, 1), nn.Flatten(0)), x, 0)
    with pytest.raises(ValueError, match='not part of the model'): GradCAM(lin, nn.Linear(4, 3))
    with pytest.raises(ValueError, match='maps'): GradCAM(lin, lin)(x, 0)
    with pytest.raises(ValueError, match='need 1 <= patch'): occlusion(lin, x, 0, patch=5)
    with pytest.raises(ValueError, match='signals'): occlusion(lin, torch.randn(4), 0)
    with pytest.raises(ValueError, match='same shape'): rank_correlation(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match='1-D'): ranks(torch.zeros(2, 2))
    with pytest.raises(ValueError, match='from 0 to 1'): randomize_top(lin, 2)
    with pytest.raises(ValueError, match='n must be'): smooth_grad(lin, x, 0, n=0)
