"Parity sweeps and bad-input checks for dlbook.attention (too many cases for the lesson itself)."
import math
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from dlbook.core import check_close, set_seed
from dlbook.attention import (attention_weights, causal_mask, copy_mha_weights, LearnedPositions, mha_parity, MultiHeadAttention,
                              padding_mask, scaled_dot_product_attention, sdpa_parity, sinusoidal_positions)

pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.mark.parametrize('seed', range(6))
def test_sdpa_matches_torch_random_shapes_and_masks(seed):
    g = torch.Generator().manual_seed(seed)
    B, H = [int(t) for t in torch.randint(1, 4, (2,), generator=g)]
    L, S, d, dv = [int(t) for t in torch.randint(1, 9, (4,), generator=g)]
    q, k, v = torch.randn(B, H, L, d, generator=g), torch.randn(B, H, S, d, generator=g), torch.randn(B, H, S, dv, generator=g)
    bool_mask = torch.rand(B, 1, L, S, generator=g) > 0.3
    float_mask = torch.randn(L, S, generator=g).masked_fill(torch.rand(L, S, generator=g) > 0.8, -math.inf)
    for kw in ({}, dict(attn_mask=bool_mask), dict(attn_mask=float_mask), dict(is_causal=True), dict(scale=0.7)):
        assert sdpa_parity(q, k, v, **kw) < 1e-5


def test_sdpa_float64_is_tight():
    set_seed(0)
    q, k, v = (torch.randn(2, 5, 7, dtype=torch.float64) for _ in range(3))
    assert sdpa_parity(q, k, v, atol=1e-12, is_causal=True) < 1e-12


def test_gradcheck_with_masks():
    set_seed(1)
    q, k, v = (torch.randn(2, 4, 3, dtype=torch.float64, requires_grad=True) for _ in range(3))
    fm = torch.zeros(4, 4, dtype=torch.float64); fm[1, 2] = -math.inf; fm[2] = -math.inf
    assert torch.autograd.gradcheck(lambda q, k, v: scaled_dot_product_attention(q, k, v, attn_mask=fm), (q, k, v))
    assert torch.autograd.gradcheck(lambda q, k, v: scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.3), (q, k, v))


def test_query_that_sees_nothing_gives_zero_and_finite_gradients():
    set_seed(2)
    q, k, v = (torch.randn(3, 4, requires_grad=True) for _ in range(3))
    m = torch.ones(3, 3, dtype=torch.bool); m[1] = False
    out = scaled_dot_product_attention(q, k, v, attn_mask=m)
    test_out = F.scaled_dot_product_attention(q, k, v, attn_mask=m)
    check_close(out, test_out)
    assert torch.equal(out[1], torch.zeros(4))
    out.sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in (q, k, v))


def test_weights_are_a_distribution_and_respect_the_mask():
    set_seed(3)
    q, k = torch.randn(2, 5, 8), torch.randn(2, 6, 8)
    m = torch.rand(5, 6) > 0.5
    m[:, 0] = True
    w = attention_weights(q, k, attn_mask=m)
    check_close(w.sum(-1), torch.ones(2, 5))
    assert (w[:, ~m] == 0).all()


@pytest.mark.parametrize('d_model,heads,L,S,cross', [(8, 1, 1, 1, False), (12, 3, 6, 6, False), (16, 4, 3, 9, True), (32, 8, 7, 2, True)])
def test_mha_matches_torch(d_model, heads, L, S, cross):
    set_seed(d_model + L)
    x = torch.randn(2, L, d_model)
    ctx = torch.randn(2, S, d_model) if cross else None
    lengths = [S if cross else L, max(1, (S if cross else L) - 1)]
    km = padding_mask(lengths, S if cross else L)
    assert mha_parity(d_model, heads, x, context=ctx) < 1e-5
    assert mha_parity(d_model, heads, x, context=ctx, key_mask=km) < 1e-5
    if not cross: assert mha_parity(d_model, heads, x, key_mask=km, is_causal=True) < 1e-5


def test_mha_without_bias_matches_torch():
    set_seed(4)
    theirs = nn.MultiheadAttention(12, 3, bias=False, batch_first=True)
    ours = copy_mha_weights(MultiHeadAttention(12, 3, bias=False), theirs)
    x = torch.randn(2, 5, 12)
    check_close(ours(x), theirs(x, x, x, need_weights=False)[0])


def test_mha_gradcheck_float64():
    set_seed(5)
    mha = MultiHeadAttention(6, 2).double()
    x = torch.randn(2, 4, 6, dtype=torch.float64, requires_grad=True)
    km = padding_mask([4, 2])
    assert torch.autograd.gradcheck(lambda x: mha(x, key_mask=km, is_causal=True), (x,))


def test_mha_causal_future_never_changes_past():
    set_seed(6)
    mha = MultiHeadAttention(16, 4).eval()
    x = torch.randn(3, 10, 16)
    base = mha(x, is_causal=True)
    for t in range(10):
        x2 = x.clone(); x2[:, t] = torch.randn(3, 16)
        out = mha(x2, is_causal=True)
        assert torch.equal(out[:, :t], base[:, :t]), f"changing position {t} changed an earlier output"
        assert not torch.equal(out[:, t:], base[:, t:])


def test_mha_padding_never_changes_real_positions():
    set_seed(7)
    mha = MultiHeadAttention(16, 4).eval()
    x, km = torch.randn(2, 6, 16), padding_mask([4, 6])
    x2 = x.clone(); x2[0, 4:] = 100 * torch.randn(2, 16)
    check_close(mha(x2, key_mask=km)[0, :4], mha(x, key_mask=km)[0, :4], atol=1e-6)


def test_mha_dropout_only_in_training():
    set_seed(8)
    mha = MultiHeadAttention(16, 4, dropout=0.5)
    x = torch.randn(2, 5, 16)
    mha.eval()
    assert torch.equal(mha(x), mha(x))
    mha.train()
    assert not torch.equal(mha(x), mha(x))
    mean = torch.stack([mha(x) for _ in range(2000)]).mean(0)      # dropout keeps the expected value
    check_close(mean, mha.eval()(x), atol=0.05)


def test_positions():
    pe = sinusoidal_positions(50, 16).double()
    sims = pe @ pe.T
    for k in range(1, 6): assert float(sims.diagonal(k).max() - sims.diagonal(k).min()) < 1e-5
    check_close(pe[:, 0], torch.sin(torch.arange(50.)).double(), atol=1e-6)
    check_close(pe[:, 15], torch.cos(torch.arange(50.) * 10000 ** (-14 / 16)).double(), atol=1e-6)


@pytest.mark.parametrize('fn,match', [
    (lambda: scaled_dot_product_attention(torch.randn(3, 4), torch.randn(3, 5), torch.randn(3, 2)), 'same feature size'),
    (lambda: scaled_dot_product_attention(torch.randn(3, 4), torch.randn(3, 4), torch.randn(2, 2)), 'one value per key'),
    (lambda: scaled_dot_product_attention(torch.randn(4), torch.randn(3, 4), torch.randn(3, 2)), 'at least 2 dims'),
    (lambda: attention_weights(torch.randn(3, 4), torch.randn(5, 4), attn_mask=torch.ones(5, 3, dtype=torch.bool)), 'does not broadcast'),
    (lambda: attention_weights(torch.randn(3, 4), torch.randn(5, 4), attn_mask=torch.ones(3, 5, dtype=torch.int64)), 'must be bool'),
    (lambda: attention_weights(torch.randn(3, 4), torch.randn(3, 4), attn_mask=causal_mask(3), is_causal=True), 'not both'),
    (lambda: MultiHeadAttention(10, 4), 'not divisible'),
    (lambda: MultiHeadAttention(8, 2)(torch.randn(5, 8)), 'expects x of shape (batch, length, d_model=8)'),
    (lambda: MultiHeadAttention(8, 2)(torch.randn(1, 5, 8), context=torch.randn(1, 5, 4)), 'expects context of shape'),
    (lambda: MultiHeadAttention(8, 2)(torch.randn(2, 5, 8), key_mask=torch.ones(2, 4, dtype=torch.bool)), 'key_mask must be a bool tensor of shape (batch, S) = (2, 5)'),
    (lambda: copy_mha_weights(MultiHeadAttention(8, 2), nn.MultiheadAttention(8, 2, kdim=4, vdim=4)), 'kdim/vdim'),
    (lambda: copy_mha_weights(MultiHeadAttention(8, 2, bias=False), nn.MultiheadAttention(8, 2)), 'same bias'),
    (lambda: padding_mask([[1, 2]]), '1-D sequence'),
    (lambda: padding_mask([-1, 2]), 'whole numbers >= 0'),
    (lambda: LearnedPositions(4, 8)(torch.randn(1, 5, 8)), 'longer than max_len=4'),
    (lambda: LearnedPositions(4, 8)(torch.randn(1, 3, 6)), 'd_model=8'),
    (lambda: sinusoidal_positions(4, 7), 'must be even'),
])
def test_bad_inputs(fn, match):
    with pytest.raises((ValueError, TypeError), match=None) as e: fn()
    assert match in str(e.value), str(e.value)
