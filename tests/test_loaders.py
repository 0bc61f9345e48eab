"Tests of dlbook.loaders: correctness of each epoch, reproducible shuffles, drop_last, transforms, bad inputs."
import math
import pytest
import torch
from torch.utils.data import DataLoader as TorchDataLoader, TensorDataset, RandomSampler as TorchRandomSampler
from dlbook.loaders import (ArrayDataset, SequentialSampler, RandomSampler, BatchSampler, collate, DataLoader,
                            TensorLoader, DataLoaders, fashion_tfm, fashion_dls, mnist1d_dls)
from dlbook.data import FASHION_MEAN, FASHION_STD
from dlbook.core import check_close, set_seed


pytestmark = pytest.mark.usefixtures('one_thread')   # tests/conftest.py: tiny tensors, one torch thread


def targets_of(loader):
    return torch.cat([b[-1] for b in loader])


@pytest.mark.parametrize('n,bs,drop_last', [(1, 1, False), (10, 3, False), (10, 3, True), (10, 10, True), (10, 20, False),
                                            (1000, 64, False), (1000, 64, True), (1024, 64, True), (7, 2, True)])
@pytest.mark.parametrize('shuffle', [False, True])
def test_every_sample_once_per_epoch(n, bs, drop_last, shuffle):
    idx = torch.arange(n)
    tl = TensorLoader(torch.randn(n, 3), idx, bs=bs, shuffle=shuffle, drop_last=drop_last, seed=1)
    expect_batches = n // bs if drop_last else math.ceil(n / bs)
    for _ in range(3):
        batches = list(tl)
        assert len(batches) == len(tl) == expect_batches
        assert all(len(yb) == bs for _, yb in batches[:-1])
        if drop_last: assert all(len(yb) == bs for _, yb in batches)
        seen = torch.cat([yb for _, yb in batches]) if batches else torch.zeros(0, dtype=torch.long)
        assert len(set(seen.tolist())) == len(seen)                     # nothing twice
        if not drop_last: assert torch.equal(seen.sort().values, idx)   # everything once
        else: assert len(seen) == expect_batches * bs
        if not shuffle: assert torch.equal(seen, idx[:len(seen)])
        for xb, yb in batches: assert torch.equal(xb, tl.tensors[0][yb])   # inputs stay paired with targets


def test_reproducible_and_fresh_shuffles():
    a = TensorLoader(torch.arange(500), bs=50, shuffle=True, seed=7)
    b = TensorLoader(torch.arange(500), bs=50, shuffle=True, seed=7)
    ea = [targets_of(a) for _ in range(3)]
    eb = [targets_of(b) for _ in range(3)]
    for x, y in zip(ea, eb): assert torch.equal(x, y)
    assert not torch.equal(ea[0], ea[1]) and not torch.equal(ea[1], ea[2])
    assert not torch.equal(targets_of(TensorLoader(torch.arange(500), bs=50, shuffle=True, seed=8)), ea[0])
    # no seed: drawn from torch's global RNG, so set_seed makes it repeatable
    set_seed(3); c = targets_of(TensorLoader(torch.arange(500), bs=50, shuffle=True))
    set_seed(3); d = targets_of(TensorLoader(torch.arange(500), bs=50, shuffle=True))
    assert torch.equal(c, d)
    # an explicit generator is used as is
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(targets_of(TensorLoader(torch.arange(500), shuffle=True, generator=g1)),
                       targets_of(TensorLoader(torch.arange(500), shuffle=True, generator=g2)))


def test_state_dict_resumes_the_shuffle(tmp_path):
    a = TensorLoader(torch.arange(300), bs=32, shuffle=True, seed=0)
    targets_of(a)
    torch.save(a.state_dict(), tmp_path / 'ld.pt')
    nxt = targets_of(a)
    b = TensorLoader(torch.arange(300), bs=32, shuffle=True, seed=99)
    b.load_state_dict(torch.load(tmp_path / 'ld.pt', weights_only=True))
    assert torch.equal(targets_of(b), nxt)
    with pytest.raises(ValueError, match='does not shuffle'):
        TensorLoader(torch.arange(3)).load_state_dict(a.state_dict())


def test_tfm_applies_to_inputs_only():
    x = torch.randint(0, 256, (100, 28, 28), dtype=torch.uint8)
    y = torch.arange(100)
    for flat, shape in [(True, (10, 784)), (False, (10, 1, 28, 28))]:
        for xb, yb in TensorLoader(x, y, bs=10, shuffle=True, seed=0, tfm=fashion_tfm(flat)):
            assert xb.shape == shape and xb.dtype == torch.float32 and yb.dtype == torch.int64
            check_close(xb.reshape(10, 28, 28), (x[yb].float() / 255 - FASHION_MEAN) / FASHION_STD, atol=1e-5)
    doubled = torch.cat([xb for xb, _ in TensorLoader(torch.arange(10.), torch.arange(10), bs=4, tfm=lambda t: 2 * t)])
    assert torch.equal(doubled, 2 * torch.arange(10.))


def test_batches_are_not_aliased_across_epochs():
    tl = TensorLoader(torch.arange(64.), torch.arange(64), bs=16, shuffle=True, seed=0)
    kept = [(xb.clone(), xb) for xb, _ in tl]
    list(tl); list(tl)
    for copy, xb in kept: assert torch.equal(copy, xb)


@pytest.mark.parametrize('make,msg', [
    (lambda: TensorLoader(torch.zeros(0, 3), torch.zeros(0)), 'empty'),
    (lambda: TensorLoader(torch.zeros(5, 3), torch.zeros(4)), 'different numbers of samples [5, 4]'),
    (lambda: TensorLoader(torch.zeros(5), bs=0), '>= 1'),
    (lambda: TensorLoader(torch.zeros(5), bs=-3), '>= 1'),
    (lambda: TensorLoader(torch.zeros(5), bs=2.5), 'must be an int'),
    (lambda: TensorLoader(torch.zeros(5), bs=True), 'must be an int'),
    (lambda: TensorLoader(torch.zeros(5), bs='8'), 'must be an int'),
    (lambda: TensorLoader(), 'at least one tensor'),
    (lambda: TensorLoader([1, 2, 3]), 'torch.as_tensor'),
    (lambda: TensorLoader(torch.tensor(3.)), '0-d tensor'),
    (lambda: TensorLoader(torch.zeros(5), tfm=3), 'tfm must be a function'),
    (lambda: TensorLoader(torch.zeros(5), shuffle=True, seed=1.5), 'seed must be an int'),
    (lambda: TensorLoader(torch.zeros(5), shuffle=True, generator=3), 'torch.Generator'),
    (lambda: TensorLoader(torch.zeros(5), shuffle=True, seed=1, generator=torch.Generator()), 'either seed or generator'),
    (lambda: ArrayDataset(torch.zeros(3), torch.zeros(2)), 'different numbers'),
    (lambda: DataLoader([], bs=2), 'empty'),
    (lambda: BatchSampler(SequentialSampler(4), 0), '>= 1'),
    (lambda: collate([]), 'empty'),
    (lambda: collate([object()]), 'collate_fn'),
    (lambda: DataLoaders(None, None), 'training loader'),
    (lambda: mnist1d_dls(valid_size=4000, device='cpu'), 'leave some samples'),
    (lambda: mnist1d_dls(valid_size=10.5, device='cpu'), 'valid_size must be an int'),
    (lambda: mnist1d_dls(bs=0, device='cpu'), '>= 1'),
])
def test_bad_inputs(make, msg):
    with pytest.raises((ValueError, TypeError)) as e: make()
    assert msg in str(e.value)


def test_from_scratch_loader_matches_torch():
    x, y = torch.randn(203, 4), torch.randint(0, 5, (203,))
    for bs, drop_last in [(16, False), (16, True), (203, False), (1, False)]:
        ours = DataLoader(ArrayDataset(x, y), bs=bs, shuffle=True, seed=11, drop_last=drop_last)
        theirs = TorchDataLoader(TensorDataset(x, y), batch_size=bs, drop_last=drop_last,
                                 sampler=TorchRandomSampler(range(203), generator=torch.Generator().manual_seed(11)))
        a, b = list(ours), list(theirs)
        assert len(a) == len(b) == len(ours) == len(theirs)
        for (xa, ya), (xb, yb) in zip(a, b): assert torch.equal(xa, xb) and torch.equal(ya, yb)
    seq = list(DataLoader(ArrayDataset(x, y), bs=50))
    assert torch.equal(torch.cat([b[0] for b in seq]), x)


def test_samplers():
    assert list(BatchSampler(SequentialSampler(5), 2)) == [[0, 1], [2, 3], [4]]
    rs = RandomSampler(50, seed=0)
    assert sorted(rs) == list(range(50)) and list(rs) != list(rs)
    assert list(RandomSampler(50, seed=0)) == list(RandomSampler(50, seed=0))
    assert collate([(1, 2.0), (3, 4.0)])[0].tolist() == [1, 3]


def test_fashion_dls():
    dls = fashion_dls(bs=128, valid_size=5000, device='cpu', seed=1)
    assert (dls.train.n, dls.valid.n, dls.test.n) == (55000, 5000, 10000)
    xb, yb = next(iter(dls.train))
    assert xb.shape == (128, 784) and xb.dtype == torch.float32 and yb.shape == (128,)
    assert dls.train.tensors[0].dtype == torch.uint8                   # stored as bytes
    assert dls.train.shuffle and not dls.valid.shuffle and not dls.test.shuffle
    # the split is seeded, disjoint, and covers the training set
    again = fashion_dls(bs=128, valid_size=5000, device='cpu', seed=1)
    assert torch.equal(again.valid.tensors[1], dls.valid.tensors[1]) and torch.equal(again.valid.tensors[0], dls.valid.tensors[0])
    from dlbook.loaders import _split
    assert not torch.equal(_split(60000, 5000, 2)[1], _split(60000, 5000, 1)[1])
    counts = torch.bincount(torch.cat([dls.train.tensors[1], dls.valid.tensors[1]]))
    assert counts.tolist() == [6000] * 10
    unsplit = fashion_dls(bs=8, valid_size=0, flat=False, device='cpu')
    assert unsplit.valid is None and unsplit.train.n == 60000
    assert next(iter(unsplit.test))[0].shape == (16, 1, 28, 28)


def test_mnist1d_dls():
    dls = mnist1d_dls(bs=100, valid_size=400, device='cpu')
    assert (dls.train.n, dls.valid.n, dls.test.n) == (3600, 400, 1000)
    xb, yb = next(iter(dls.train))
    assert xb.shape == (100, 40) and yb.shape == (100,)
    assert next(iter(mnist1d_dls(flat=False, device='cpu').test))[0].shape == (256, 1, 40)
