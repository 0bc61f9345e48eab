"dlbook.regularize: dropout's distribution, translate against grid_sample on random shapes, the augmentations' invariants, label smoothing parity, errors."
import math
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from hypothesis import given, settings, strategies as st
from dlbook.regularize import (weight_decay_groups, l2_penalty, dropout, Dropout, translate, random_shift, random_flip,
                               random_erase, add_noise, compose, AugmentCB, smooth_cross_entropy)


@pytest.mark.parametrize('p', [0.1, 0.5, 0.9])
def test_dropout_distribution_matches_nn_dropout(p, one_thread):
    torch.manual_seed(0)
    x = torch.randn(1, 8).expand(100_000, 8).contiguous()
    for layer in (Dropout(p), nn.Dropout(p)):
        with torch.no_grad(): out = layer(x)
        n = out.numel()
        assert abs((out == 0).double().mean().item() - p) < 5 * math.sqrt(p * (1 - p) / n)
        kept = out != 0
        torch.testing.assert_close(out[kept], x[kept] / (1 - p))
        se = (x[0] ** 2 * p / (1 - p) / len(x)).sqrt()
        assert ((out.double().mean(0) - x[0]) / se).abs().max() < 5


def test_dropout_gradient_is_the_scaled_mask():
    x = torch.randn(50, 20, requires_grad=True)
    out = dropout(x, 0.25, generator=torch.Generator().manual_seed(3))
    out.sum().backward()
    mask = dropout(torch.ones(50, 20), 0.25, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(x.grad, mask)
    assert set(mask.unique().tolist()) <= {0.0, torch.tensor(1 / 0.75).item()}


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 4), c=st.integers(1, 3), h=st.integers(1, 9), w=st.integers(1, 9), seed=st.integers(0, 10**6))
def test_translate_equals_grid_sample(n, c, h, w, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g, dtype=torch.float64)
    sh = torch.stack([torch.randint(-h - 1, h + 2, (n,), generator=g), torch.randint(-w - 1, w + 2, (n,), generator=g)], 1)
    theta = torch.zeros(n, 2, 3, dtype=torch.float64)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    theta[:, 0, 2], theta[:, 1, 2] = -2 * sh[:, 1] / w, -2 * sh[:, 0] / h
    ref = F.grid_sample(x, F.affine_grid(theta, x.shape, align_corners=False), mode='nearest', padding_mode='zeros', align_corners=False)
    torch.testing.assert_close(translate(x, sh), ref, atol=0, rtol=0)
    # a shift and its inverse give back the pixels that stayed inside
    back = translate(translate(x, sh), -sh)
    inside = translate(torch.ones_like(x), sh, 0.0) > 0
    torch.testing.assert_close(back[translate(inside.double(), -sh) > 0], x[translate(inside.double(), -sh) > 0])


def test_signal_shift_keeps_values_and_fill():
    x = torch.randn(64, 40)
    out = random_shift(x, 5, fill=7.0, generator=torch.Generator().manual_seed(0))
    assert set(out.unique().tolist()) <= set(x.unique().tolist()) | {7.0}
    n_fill = (out == 7.0).sum(1)
    assert n_fill.max() <= 5 and (n_fill > 0).any()
    # each row is the original moved by one offset
    for k in range(64):
        s = [s for s in range(-5, 6) if torch.equal(translate(x[k:k + 1], torch.tensor([s]), 7.0), out[k:k + 1])]
        assert len(s) >= 1


def test_random_erase_draws_one_rectangle_in_the_bounds():
    x = torch.zeros(2000, 2, 28, 28)
    out = random_erase(x, p=1.0, scale=(0.05, 0.2), ratio=(0.5, 2.0), value=1.0, generator=torch.Generator().manual_seed(0))
    box = out[:, 0] == 1
    assert torch.equal(out[:, 0], out[:, 1])                                    # the same rectangle in every channel
    area = box.flatten(1).sum(1).double() / (28 * 28)
    assert area.min() > 0.03 and area.max() < 0.24                              # rounding of the sides moves it a little
    rows, cols = box.any(2), box.any(1)
    assert torch.equal(box.flatten(1).sum(1), rows.sum(1) * cols.sum(1))       # a solid rectangle
    none = random_erase(x, p=0.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(none, x)
    frac = (random_erase(x, p=0.3, value=1.0, generator=torch.Generator().manual_seed(1)).flatten(1).amax(1) == 1).double().mean()
    assert abs(frac - 0.3) < 5 * math.sqrt(0.3 * 0.7 / 2000)


def test_flip_and_noise():
    x = torch.randn(4000, 1, 5, 6)
    out = random_flip(x, 0.5, generator=torch.Generator().manual_seed(0))
    flipped = (out == x.flip(-1)).flatten(1).all(1)
    same = (out == x).flatten(1).all(1)
    assert torch.equal(flipped | same, torch.ones(4000, dtype=torch.bool))
    assert abs(flipped.double().mean() - 0.5) < 0.05
    d = add_noise(x, 0.3, generator=torch.Generator().manual_seed(0)) - x
    assert abs(d.std() - 0.3) < 0.01 and abs(d.mean()) < 0.01
    assert torch.equal(add_noise(x, 0.0), x)


def test_compose_and_callback_reproducible():
    aug = compose(lambda x, generator=None: random_shift(x, 2, generator=generator), lambda x, generator=None: add_noise(x, 0.1, generator=generator))
    x = torch.randn(8, 1, 10, 10)
    assert torch.equal(aug(x, generator=torch.Generator().manual_seed(0)), aug(x, generator=torch.Generator().manual_seed(0)))
    with pytest.raises(TypeError, match='augmentation functions'): compose(random_shift, 3)


def test_label_smoothing_parity_random():
    g = torch.Generator().manual_seed(0)
    for n, k, eps in [(1, 2, 0.0), (17, 3, 0.05), (64, 100, 0.2), (5, 10, 0.999)]:
        z = torch.randn(n, k, generator=g, dtype=torch.float64, requires_grad=True)
        y = torch.randint(0, k, (n,), generator=g)
        a, b = smooth_cross_entropy(z, y, eps), F.cross_entropy(z, y, label_smoothing=eps)
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(torch.autograd.grad(a, z)[0], torch.autograd.grad(b, z)[0])


def test_weight_decay_groups_cover_every_parameter_once():
    m = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LayerNorm(4 * 26 * 26), nn.Linear(4 * 26 * 26, 10, bias=False))
    groups = weight_decay_groups(m, 0.01)
    ids = [id(p) for g in groups for p in g['params']]
    assert sorted(ids) == sorted(id(p) for p in m.parameters())
    assert {id(p) for p in groups[0]['params']} == {id(m[0].weight), id(m[4].weight)}
    torch.testing.assert_close(l2_penalty(m, 0.5), 0.25 * (m[0].weight.pow(2).sum() + m[4].weight.pow(2).sum()))


def test_errors_name_the_problem():
    x = torch.randn(4, 40)
    with pytest.raises(ValueError, match=r'probability in \[0, 1\]'): dropout(x, -0.2)
    with pytest.raises(ValueError, match='probability'): dropout(x, True)
    with pytest.raises(ValueError, match='max_shift must be a whole number'): random_shift(x, 1.5)
    with pytest.raises(ValueError, match=r'\(N, C, H, W\)'): random_erase(x)
    with pytest.raises(TypeError, match='float tensor'): random_flip(torch.zeros(4, 40, dtype=torch.uint8))
    with pytest.raises(ValueError, match='generator is on cpu but the tensor is on meta'):
        add_noise(torch.zeros(4, 40, device='meta'), 0.1, generator=torch.Generator())
    with pytest.raises(ValueError, match='std must be >= 0'): add_noise(x, -1.0)
    with pytest.raises(ValueError, match='scale'): random_erase(torch.zeros(2, 1, 4, 4), scale=(0.5, 0.2))
    with pytest.raises(ValueError, match='labels must be in'): smooth_cross_entropy(torch.zeros(2, 3), torch.tensor([0, 3]))
    with pytest.raises(TypeError, match='must be a function'): AugmentCB(None)
