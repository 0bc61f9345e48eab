"""Each bad input listed in the table of nbs/23_checkpoints.ipynb gets an error that names the problem (and the fix).

One test per row: (module, bad input, the call, expected exception type, a fragment of its message).
"""
import math, pickle, os
from types import SimpleNamespace
import pytest
import torch
from torch import nn
from dlbook import core, data, loaders, learner as L, checkpoint as C


class Batches:
    def __init__(self, x, y, bs): self.x, self.y, self.bs = x, y, bs
    def __len__(self): return math.ceil(len(self.x) / self.bs)
    def __iter__(self):
        for i in range(0, len(self.x), self.bs): yield self.x[i:i + self.bs], self.y[i:i + self.bs]


TINY = SimpleNamespace(train=Batches(torch.randn(8, 4), torch.zeros(8, dtype=torch.long), 4),
                       valid=Batches(torch.randn(4, 4), torch.zeros(4, dtype=torch.long), 4))


def quiet(): return [L.MetricsCB(show=False)]


class Evil:
    def __reduce__(self): return (os.system, ('true',))


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp('bad')
    (d / 'junk.pt').write_bytes(b'not a checkpoint at all')
    torch.save({'w': torch.zeros(1)}, d / 'plain.pt')
    (d / 'evil.pt').write_bytes(pickle.dumps(Evil()))
    C.save_checkpoint(d / 'other.pt', L.Learner(nn.Linear(3, 2), TINY, cbs=quiet()))
    return d


def _typo_cb():
    return type('CB', (L.Callback,), {'before_epoc': lambda self: None})()


CASES = [
    # module, description, call(files) , exception, message fragment
    ('core', 'set_seed(1.5)', lambda f: core.set_seed(1.5), TypeError, 'int seed'),
    ('core', 'set_seed(-1)', lambda f: core.set_seed(-1), ValueError, '[0, 2**32)'),
    ('core', 'set_rng_state without python/numpy', lambda f: core.set_rng_state({'torch': torch.get_rng_state()}), KeyError, 'lacks'),
    ('core', "default_device('cuda:7') without CUDA", lambda f: core.default_device('cuda:7'), RuntimeError, 'not available'),
    ('core', 'check_close shape mismatch', lambda f: core.check_close(torch.ones(2), torch.ones(3)), AssertionError, 'shape mismatch'),
    ('core', 'timeit(42)', lambda f: core.timeit(42), TypeError, 'function to call'),
    ('data', "load_fashion_mnist('valid')", lambda f: data.load_fashion_mnist('valid'), ValueError, "'train' or 'test'"),
    ('data', 'parse_idx(truncated)', lambda f: data.parse_idx(bytes([0, 0, 8, 1, 0, 0, 0, 5, 1, 2])), ValueError, 'truncated'),
    ('loaders', 'TensorLoader(x[:5], y[:4])', lambda f: loaders.TensorLoader(torch.ones(5, 2), torch.ones(4)), ValueError, 'different numbers of samples'),
    ('loaders', 'TensorLoader(x, bs=0)', lambda f: loaders.TensorLoader(torch.ones(5, 2), bs=0), ValueError, 'bs=256'),
    ('loaders', 'TensorLoader(list)', lambda f: loaders.TensorLoader([1, 2, 3]), TypeError, 'torch.as_tensor'),
    ('loaders', 'DataLoaders(None, valid)', lambda f: loaders.DataLoaders(None, TINY.valid), ValueError, 'needs a training loader'),
    ('learner', 'Learner(function)', lambda f: L.Learner(lambda x: x, TINY), TypeError, 'torch.nn.Module'),
    ('learner', 'Learner(model, tuple of loaders)', lambda f: L.Learner(nn.Linear(4, 2), (TINY.train, TINY.valid)), TypeError, '.train and .valid'),
    ('learner', 'Learner(lr=-1)', lambda f: L.Learner(nn.Linear(4, 2), TINY, lr=-1), ValueError, 'positive finite'),
    ('learner', 'Learner(cbs=[Recorder])', lambda f: L.Learner(nn.Linear(4, 2), TINY, cbs=[L.Recorder]), TypeError, 'not an instance'),
    ('learner', 'callback with before_epoc', lambda f: L.Learner(nn.Linear(4, 2), TINY, cbs=[_typo_cb()]), ValueError, 'before_epoch'),
    ('learner', "metrics=['accuracy']", lambda f: L.Learner(nn.Linear(4, 2), TINY, metrics=['accuracy']), TypeError, 'must be a function'),
    ('learner', 'fit(2.5)', lambda f: L.Learner(nn.Linear(4, 2), TINY, cbs=quiet()).fit(2.5), ValueError, 'whole number'),
    ('learner', 'loader yields bare tensors', lambda f: L.Learner(nn.Linear(4, 2), SimpleNamespace(train=[torch.ones(2, 4)], valid=[]), cbs=quiet()).fit(1),
     TypeError, 'tuple (x, y)'),
    ('learner', 'OneCycleCB(pct_start=30)', lambda f: L.OneCycleCB(0.1, pct_start=30), ValueError, 'pct_start'),
    ('learner', "EarlyStoppingCB(mode='best')", lambda f: L.EarlyStoppingCB(mode='best'), ValueError, "'min' or 'max'"),
    ('checkpoint', 'read_checkpoint(missing)', lambda f: C.read_checkpoint(f / 'nope.pt'), C.CheckpointError, 'no checkpoint file'),
    ('checkpoint', 'read_checkpoint(not a zip)', lambda f: C.read_checkpoint(f / 'junk.pt'), C.CheckpointError, 'not the zip archive'),
    ('checkpoint', 'read_checkpoint(plain torch.save)', lambda f: C.read_checkpoint(f / 'plain.pt'), C.CheckpointError, 'not a dlbook'),
    ('checkpoint', 'read_checkpoint(pickle with code)', lambda f: C.read_checkpoint(f / 'evil.pt'), C.CheckpointError, 'refused unread'),
    ('checkpoint', 'load_checkpoint(other architecture)', lambda f: C.load_checkpoint(f / 'other.pt', L.Learner(nn.Linear(4, 2), TINY)),
     C.CheckpointError, 'does not fit this model'),
    ('checkpoint', 'CheckpointCB(every=0)', lambda f: C.CheckpointCB(f / 'x.pt', every=0), ValueError, 'every must be'),
]


@pytest.mark.parametrize('mod,what,call,exc,frag', CASES, ids=[f'{c[0]}: {c[1]}' for c in CASES])
def test_bad_input(files, mod, what, call, exc, frag):
    if what.startswith('default_device') and torch.cuda.is_available(): pytest.skip('CUDA is available here')
    with pytest.raises(exc) as info: call(files)
    assert frag in str(info.value), str(info.value)


def test_at_least_20_across_the_package():
    assert len(CASES) >= 20
    assert {'core', 'data', 'loaders', 'learner', 'checkpoint'} <= {c[0] for c in CASES}
