"dlbook.training: the helpers behind the first training run (bad input, and a small parity run on synthetic data)."
import pytest
import torch
from dlbook.core import check_close
from dlbook.training import flat_fashion, init_mlp, mlp_forward, shuffled_batches, train_ours, train_torch, accuracy


def test_bad_input_is_named():
    with pytest.raises(TypeError, match='floating dtype'): flat_fashion('test', torch.int64)
    with pytest.raises(ValueError, match='at least two'): init_mlp([784])
    with pytest.raises(ValueError, match='positive int'): init_mlp([784, 0, 10])
    with pytest.raises(ValueError, match='bs=0'): shuffled_batches(10, 0)
    with pytest.raises(ValueError, match='epochs=0'): shuffled_batches(10, 2, epochs=0)
    p = init_mlp([4, 3, 2])
    x, y = torch.randn(6, 4), torch.randint(0, 2, (6,))
    with pytest.raises(ValueError, match='lr must be positive'): train_ours(p, x, y, [torch.arange(6)], 0.0)
    with pytest.raises(ValueError, match='lr must be positive'): train_torch(p, x, y, [torch.arange(6)], -1.0)
    with pytest.raises(ValueError, match='6 inputs but 5 labels'): accuracy(p, x, y[:5])


def test_batches_cover_each_epoch_once():
    b = shuffled_batches(103, 10, epochs=3, seed=5)
    assert len(b) == 33
    for e in range(3): assert sorted(torch.cat(b[e * 11:(e + 1) * 11]).tolist()) == list(range(103))
    assert [t.tolist() for t in b] == [t.tolist() for t in shuffled_batches(103, 10, epochs=3, seed=5)]


def test_init_mlp_scale_and_seed():
    p = init_mlp([1000, 500, 10], seed=3)
    assert abs(p[0].std().item() - (2 / 1000) ** .5) < 2e-3 and p[1].abs().sum() == 0
    assert all(torch.equal(a, b) for a, b in zip(p, init_mlp([1000, 500, 10], seed=3)))


def test_training_parity_on_synthetic_data():
    "Three-layer MLP, float64: our engine and torch.autograd give the same losses and weights step by step."
    g = torch.Generator().manual_seed(0)
    x = torch.randn(500, 20, dtype=torch.float64, generator=g)
    y = (x[:, :3].sum(1) > 0).long() + (x[:, 3] > 1).long()
    p = init_mlp([20, 16, 8, 3], seed=1, dtype=torch.float64)
    b = shuffled_batches(500, 32, epochs=10, seed=2)
    wo, lo = train_ours(p, x, y, b, 0.2)
    wt, lt = train_torch(p, x, y, b, 0.2)
    check_close(lo, lt, atol=1e-10, rtol=1e-9, name='losses')
    for i, (a, c) in enumerate(zip(wo, wt)): check_close(a, c, atol=1e-10, rtol=1e-8, name=f'param {i}')
    assert lo[-20:].mean() < lo[:20].mean() * .7        # it learned something
    assert accuracy(wo, x, y) > 0.7
    check_close(mlp_forward(wo, x), mlp_forward(wt, x), atol=1e-9)
