"Tests of dlbook.perf: FLOP counts by hand vs FlopCounterMode, and no host sync in the Learner's training step."
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from dlbook.core import set_seed
from dlbook.conv import simple_cnn, small_resnet
from dlbook.learner import (Learner, MetricsCB, Callback, accuracy, OneCycleCB, GradClipCB, EarlyStoppingCB,
                            ActivationStats, MixedPrecisionCB)
from dlbook.checkpoint import CheckpointCB, NonFiniteCB
from dlbook.loaders import TensorLoader, DataLoaders
from dlbook.perf import flops_by_hand, SyncGuard, SyncCheckCB, HostSyncError, SYNC_CALLS

pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.mark.parametrize('make,shape', [(lambda: nn.Sequential(nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 3)), (7, 20)),
                                        (simple_cnn, (4, 1, 28, 28)), (small_resnet, (2, 1, 28, 28)),
                                        (lambda: nn.Sequential(nn.Conv2d(3, 8, (3, 5), stride=(2, 1), padding=(1, 0)), nn.Flatten()), (2, 3, 9, 11))])
def test_flops_by_hand_equal_flop_counter(make, shape):
    set_seed(0)
    model, x = make(), torch.randn(shape)
    rows = flops_by_hand(model, x)
    with FlopCounterMode(display=False) as fwd: out = model(x)
    with FlopCounterMode(display=False) as bwd: out.float().pow(2).sum().backward()
    assert sum(r['forward'] for r in rows) == fwd.get_total_flops()
    assert sum(r['backward'] for r in rows) == bwd.get_total_flops()


def test_input_that_needs_a_gradient_is_counted():
    lin = nn.Linear(5, 4)
    x = torch.randn(3, 5, requires_grad=True)
    assert flops_by_hand(lin, x)[0]['backward'] == 2 * flops_by_hand(lin, x)[0]['forward']
    with pytest.raises(ValueError, match='counts only those'): flops_by_hand(nn.ReLU(), x)


@pytest.mark.parametrize('name,fn', [('item', lambda t: t.sum().item()), ('__float__', lambda t: float(t.sum())),
                                     ('__int__', lambda t: int(t.sum())), ('__bool__', lambda t: bool(t.sum() > 0)),
                                     ('__bool__', lambda t: 1 if t.max() > 0 else 0), ('tolist', lambda t: t.tolist()),
                                     ('numpy', lambda t: t.numpy()), ('__format__', lambda t: f"{t.sum():.3f}"),
                                     ('nonzero', lambda t: (t > 0).nonzero()), ('boolean-mask indexing', lambda t: t[t > 0]),
                                     ('masked_select', lambda t: t.masked_select(t > 0)), ('unique', lambda t: t.unique()),
                                     ('__index__', lambda t: list(range(10))[torch.tensor(2)])])
def test_guard_catches(name, fn):
    t = torch.tensor([1., -2., 3.])
    with SyncGuard(error=False) as g: fn(t)
    assert [c['call'] for c in g.calls] == [name]
    with pytest.raises(HostSyncError, match=f'host-device sync: {name}'):
        with SyncGuard(): fn(t)
    assert torch.overrides._get_current_function_mode_stack() == []


def test_guard_ignores_device_side_work():
    t = torch.randn(4, 3, requires_grad=True)
    with SyncGuard():
        y = (t @ t.T).relu().sum() + torch.where(t > 0, t, 0).mean()
        y.backward()
        m = torch.maximum(torch.zeros(()), y.detach())
        _ = t.shape[0], len(t), t.dtype, t.device
    assert t.grad is not None and m.shape == ()


def data(n=192, d=12, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x, w = torch.randn(n, d, generator=g), torch.randn(d, classes, generator=g)
    y = (x @ w).argmax(1)
    return DataLoaders(TensorLoader(x[:128], y[:128], bs=32, shuffle=True, seed=1), TensorLoader(x[128:], y[128:], bs=32))


def mlp(): return nn.Sequential(nn.Linear(12, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 3))


@pytest.mark.parametrize('opt', ['adamw', 'sgd', 'adam'])
def test_learner_training_step_has_no_host_sync(opt, tmp_path):
    "The Learner's step with the callbacks of Parts II and III reads no tensor into Python (the epoch's metrics are read outside the guard)."
    set_seed(0)
    opt_func = {'adamw': torch.optim.AdamW, 'adam': torch.optim.Adam,
                'sgd': lambda p, lr: torch.optim.SGD(p, lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)}[opt]
    cb = SyncCheckCB()                         # raises at the first sync
    learn = Learner(mlp(), data(), lr=1e-2, opt_func=opt_func, cbs=[MetricsCB(accuracy, show=False), cb])
    learn.fit_one_cycle(2, cbs=[GradClipCB(1.0), EarlyStoppingCB(patience=5), ActivationStats(every=2),
                                CheckpointCB(tmp_path / 'ck.pt'), NonFiniteCB(check_every=1000)])
    assert learn.train_iter == 8 and cb.calls == []
    assert len(learn.metrics_cb.history) == 2 and (tmp_path / 'ck.pt').exists()


def test_mixed_precision_step_has_no_host_sync():
    set_seed(0)
    learn = Learner(mlp(), data(), lr=1e-2, cbs=[MetricsCB(show=False), SyncCheckCB(), MixedPrecisionCB(torch.bfloat16)])
    learn.fit(1)
    assert learn.pred.dtype == torch.bfloat16


def test_cnn_step_has_no_host_sync():
    set_seed(0)
    x, y = torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,))
    dls = DataLoaders(TensorLoader(x, y, bs=32, shuffle=True, seed=0), TensorLoader(x[:32], y[:32], bs=32))
    cb = SyncCheckCB(error=False)
    Learner(simple_cnn(), dls, cbs=[MetricsCB(accuracy, show=False), cb]).fit(1)
    assert cb.calls == []


class LogEveryStep(Callback):
    def after_batch(self):
        if self.learn.training: self.last = self.learn.loss.item()


def test_a_sync_in_the_step_fails_and_names_the_callback():
    set_seed(0)
    learn = Learner(mlp(), data(), cbs=[MetricsCB(show=False), LogEveryStep()])
    with pytest.raises(HostSyncError, match=r'item of a tensor in after_batch \(test_perf.py, line \d+\)'):
        learn.fit(1, cbs=[SyncCheckCB()])
    assert torch.overrides._get_current_function_mode_stack() == []   # cleanup_fit switched the guard off
    learn.fit(1)                                                         # and the Learner still trains without it
    cb = SyncCheckCB(error=False)
    learn.fit(1, cbs=[cb])
    assert len(cb.calls) == learn.train_iter == 4 and {c['tag'][0] for c in cb.calls} == {'train'}


def test_nonfinite_cb_syncs_only_when_it_checks():
    set_seed(0)
    cb = SyncCheckCB(error=False)
    learn = Learner(mlp(), data(), cbs=[MetricsCB(show=False), cb, NonFiniteCB(check_every=2)])
    learn.fit(1)
    assert len(cb.calls) == 2            # 4 steps, one check every 2: by design, and documented in chapter 23


def test_sync_calls_is_what_the_notebook_says():
    assert {'item', 'tolist', '__float__', '__bool__', 'nonzero'} <= SYNC_CALLS
