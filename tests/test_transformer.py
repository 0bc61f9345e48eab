"Parity, causality and bad-input checks for dlbook.transformer (the pre-norm block and the GPT of chapter 71)."
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from dlbook.core import check_close, set_seed
from dlbook.attention import causal_mask
from dlbook.transformer import GPT, TransformerBlock, copy_torch_layer, generate, torch_layer_parity

pytestmark = pytest.mark.usefixtures('one_thread')


def torch_block(d, h, ff):
    return nn.TransformerEncoderLayer(d, h, ff, dropout=0., activation='gelu', norm_first=True, batch_first=True)


@pytest.mark.parametrize('d,h,ff,B,L', [(8, 1, 16, 1, 1), (16, 4, 64, 2, 5), (24, 3, 40, 3, 9), (32, 8, 128, 2, 12)])
def test_block_matches_torch(d, h, ff, B, L):
    set_seed(d + L)
    x = torch.randn(B, L, d)
    km = torch.arange(L) < torch.randint(1, L + 1, (B, 1))
    km[:, 0] = True
    for kw in (dict(is_causal=True), dict(is_causal=False), dict(key_mask=km, is_causal=False), dict(key_mask=km, is_causal=True)):
        assert torch_layer_parity(TransformerBlock(d, h, ff), torch_block(d, h, ff), x, **kw) < 1e-5


def test_block_gradcheck_float64():
    set_seed(1)
    blk = TransformerBlock(6, 2, 8).double()
    x = torch.randn(2, 4, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: blk(x), (x,))


@pytest.mark.parametrize('layers,heads,d', [(1, 1, 8), (2, 4, 32), (3, 2, 16)])
def test_gpt_future_never_changes_the_past(layers, heads, d):
    set_seed(layers)
    m = GPT(50, d, layers, heads, max_len=20, dropout=0.1).eval()
    ids = torch.randint(0, 50, (3, 20))
    with torch.no_grad():
        base = m(ids)
        for t in range(20):
            x = ids.clone(); x[:, t] = (x[:, t] + 7) % 50
            out = m(x)
            assert torch.equal(out[:, :t], base[:, :t]), f"position {t} leaked into earlier predictions"
            assert not torch.equal(out[:, t], base[:, t])


def test_gpt_gradients_do_not_flow_from_the_past_to_the_future():
    "The loss at position t has zero gradient with respect to the embeddings of the inputs after t."
    set_seed(2)
    m = GPT(30, 16, 2, 2, max_len=10)
    ids = torch.randint(0, 30, (1, 10))
    emb = m.emb(ids).detach().requires_grad_()
    x = m.pos(emb)
    for b in m.blocks: x = b(x)
    m.head(m.norm(x))[0, 4].sum().backward()
    assert (emb.grad[0, 5:] == 0).all() and (emb.grad[0, :5] != 0).any()


def test_rows_of_a_batch_are_independent():
    set_seed(3)
    m = GPT(30, 16, 2, 2, max_len=10).eval()
    a, b = torch.randint(0, 30, (1, 10)), torch.randint(0, 30, (4, 10))
    check_close(m(torch.cat([a, b]))[:1], m(a), atol=1e-6)


def test_gpt_learns_a_pattern():
    "A tiny GPT learns to continue a repeating sequence: a check that the model and its training can learn at all."
    set_seed(4)
    seq = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7] * 40)
    x = seq.unfold(0, 17, 4)
    m = GPT(8, 32, 2, 4, max_len=16)
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    for _ in range(150):
        loss = F.cross_entropy(m(x[:, :-1]).flatten(0, 1), x[:, 1:].flatten())
        opt.zero_grad(); loss.backward(); opt.step()
    assert loss.item() < 0.1
    out = generate(m, torch.tensor([3, 4, 5]), 20, temperature=0.5, seed=0)
    assert out.tolist() == [(3 + i) % 8 for i in range(23)]


def test_generate_windows_and_is_reproducible():
    set_seed(5)
    m = GPT(20, 16, 1, 2, max_len=8)
    prompt = torch.randint(0, 20, (30,))      # longer than the window: only the last 8 are seen
    a, b = generate(m, prompt, 10, seed=3), generate(m, prompt, 10, seed=3)
    assert torch.equal(a, b) and len(a) == 40 and torch.equal(a[:30], prompt)
    assert m.training                          # put back in training mode as found
    c = generate(m, torch.cat([torch.randint(0, 20, (22,)), prompt[-8:]]), 10, seed=3)
    assert torch.equal(c[-10:], a[-10:])        # nothing before the last 8 tokens matters


@pytest.mark.parametrize('fn,match', [
    (lambda: GPT(10)(torch.randint(0, 10, (1, 65))), 'longer than max_len=64'),
    (lambda: GPT(10)(torch.randn(1, 5)), 'integer token ids'),
    (lambda: GPT(10)(torch.randint(0, 10, (5,))), '(batch, length) integer token ids'),
    (lambda: generate(GPT(10), torch.tensor([1]), 3, temperature=-1), 'temperature must be > 0'),
    (lambda: generate(GPT(10), torch.tensor([], dtype=torch.long), 3), 'at least one token'),
    (lambda: copy_torch_layer(TransformerBlock(16, 2, 32), torch_block(16, 2, 64)), 'linear1 has shape (64, 16)'),
    (lambda: copy_torch_layer(TransformerBlock(16, 2), torch_block(16, 4, 64)), 'num_heads=4'),
    (lambda: TransformerBlock(10, 3), 'not divisible'),
])
def test_bad_inputs(fn, match):
    with pytest.raises((ValueError, TypeError)) as e: fn()
    assert match in str(e.value), str(e.value)
