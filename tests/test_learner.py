"Tests of dlbook.learner: event order, callback order, cancellation, schedules (vs OneCycleLR), metrics, helpers."
import math
from types import SimpleNamespace
import pytest
import torch
from torch import nn
import torch.nn.functional as F
from dlbook.core import set_seed
from dlbook.learner import *


class Batches:
    "Minimal (x, y) batch iterable with a length."
    def __init__(self, x, y, bs, shuffle=False): self.x, self.y, self.bs, self.shuffle = x, y, bs, shuffle
    def __len__(self): return math.ceil(len(self.x) / self.bs)
    def __iter__(self):
        idx = torch.randperm(len(self.x)) if self.shuffle else torch.arange(len(self.x))
        for i in range(0, len(idx), self.bs):
            j = idx[i:i + self.bs]
            yield self.x[j], self.y[j]


def make_dls(n_train=40, n_valid=20, bs=8, d=5, c=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(d, c, generator=g)
    xt, xv = torch.randn(n_train, d, generator=g), torch.randn(n_valid, d, generator=g)
    return SimpleNamespace(train=Batches(xt, (xt @ w).argmax(1), bs, shuffle=True), valid=Batches(xv, (xv @ w).argmax(1), bs))


def quiet(**kw): return [MetricsCB(kw.pop('metrics', None), show=False)]


class Trace(Callback):
    order = 100
    def __init__(self): self.log = []
for _e in EVENTS: setattr(Trace, _e, (lambda e: lambda self: self.log.append(e))(_e))


def test_event_order_one_epoch():
    dls = SimpleNamespace(train=Batches(torch.randn(4, 5), torch.zeros(4, dtype=torch.long), 2),
                          valid=Batches(torch.randn(2, 5), torch.zeros(2, dtype=torch.long), 2))
    tr = Trace()
    Learner(nn.Linear(5, 3), dls, cbs=quiet() + [tr]).fit(1)
    train_batch = ['before_batch', 'after_pred', 'after_loss', 'before_backward', 'after_backward',
                   'before_step', 'after_step', 'after_batch']
    valid_batch = ['before_batch', 'after_pred', 'after_loss', 'after_batch']
    expected = (['before_fit', 'before_epoch'] + train_batch * 2 + ['after_epoch', 'before_epoch'] + valid_batch
                + ['after_epoch', 'after_fit', 'cleanup_fit'])
    assert tr.log == expected


def test_callback_order_and_ties():
    calls = []
    class A(Callback):
        def __init__(self, tag, order): self.tag, self.order = tag, order
        def before_fit(self): calls.append(self.tag)
    cbs = [A('late', 50), A('first-tie', -5), A('second-tie', -5), A('mid', 0)]
    learn = Learner(nn.Linear(5, 3), make_dls(), cbs=quiet() + cbs)
    learn.fit(0)
    assert calls == ['first-tie', 'second-tie', 'mid', 'late']
    assert [type(c).__name__ for c in sorted(learn.cbs, key=lambda c: c.order)][0] == 'DeviceCB'


def test_default_callbacks_and_lookup():
    learn = Learner(nn.Linear(5, 3), make_dls())
    assert {type(c) for c in learn.cbs} == {DeviceCB, MetricsCB, Recorder}
    assert isinstance(learn.recorder, Recorder) and isinstance(learn.metrics_cb, MetricsCB)
    with pytest.raises(AttributeError, match='no attribute or callback'): learn.nope


def test_fit_cbs_are_temporary():
    learn = Learner(nn.Linear(5, 3), make_dls(), cbs=quiet())
    tr = Trace()
    learn.fit(1, cbs=[tr])
    assert tr not in learn.cbs and tr.log


def test_cancel_batch_skips_step_but_runs_after_batch():
    class CancelOdd(Callback):
        def after_loss(self):
            if self.learn.training and self.learn.iter % 2: raise CancelBatchException
    tr = Trace()
    Learner(nn.Linear(5, 3), make_dls(n_train=40, bs=8), cbs=quiet() + [tr, CancelOdd()]).fit(1)
    assert tr.log.count('before_step') == 3 and tr.log.count('after_cancel_batch') == 2
    assert tr.log.count('after_batch') == 5 + 3     # 5 train + 3 valid batches


def test_cancel_epoch_and_fit():
    class CancelTrainEpoch(Callback):
        def after_batch(self):
            if self.learn.training: raise CancelEpochException
    tr = Trace()
    learn = Learner(nn.Linear(5, 3), make_dls(), cbs=quiet() + [tr, CancelTrainEpoch()])
    learn.fit(2)
    assert tr.log.count('before_step') == 2 and tr.log.count('after_cancel_epoch') == 2
    assert len(learn.metrics_cb.history) == 2      # validation still ran each epoch

    class StopAt(Callback):
        def before_batch(self):
            if self.learn.train_iter == 7: raise CancelFitException
    tr = Trace()
    learn = Learner(nn.Linear(5, 3), make_dls(), cbs=quiet() + [tr])
    learn.fit(10, cbs=[StopAt()])
    assert learn.train_iter == 7 and tr.log[-3:] == ['after_cancel_fit', 'after_fit', 'cleanup_fit']
    learn.fit(1)                                    # still usable
    assert learn.train_iter == 5


def test_replacing_backward_and_step():
    "A callback may do its own backward/step (as mixed precision does); the result equals the default."
    class OwnSteps(Callback):
        def before_backward(self): (self.learn.loss * 1.0).backward(); raise CancelBackwardException
        def before_step(self): self.learn.opt.step(); raise CancelStepException
    res = []
    for cbs in ([], [OwnSteps()]):
        set_seed(1)
        learn = Learner(nn.Linear(5, 3), make_dls(), cbs=quiet() + cbs)
        learn.fit(2)
        res.append(learn.model.weight.detach().clone())
    assert torch.equal(*res)


def test_learner_matches_plain_loop_bitwise():
    dls = make_dls(n_train=64, bs=16)
    def model(): return nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 3))
    set_seed(3); m = model(); opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
    for _ in range(3):
        m.train()
        for xb, yb in dls.train:
            F.cross_entropy(m(xb), yb).backward(); opt.step(); opt.zero_grad()
        m.eval()
        with torch.no_grad():
            for xb, yb in dls.valid: m(xb)
    set_seed(3)
    learn = Learner(model(), dls, lr=1e-2, cbs=quiet() + [DeviceCB('cpu')])
    learn.fit(3)
    for a, b in zip(m.parameters(), learn.model.parameters()): assert torch.equal(a, b)


@pytest.mark.parametrize('total,pct,div,fdiv', [(10, 0.3, 25., 1e4), (37, 0.25, 10., 100.), (100, 0.5, 25., 1e4), (7, 0.3, 25., 1e4)])
@pytest.mark.parametrize('kind', ['adamw', 'sgd'])
def test_one_cycle_equals_torch_onecycle(total, pct, div, fdiv, kind):
    def mk(params):
        groups = [{'params': params[:1]}, {'params': params[1:]}]
        return torch.optim.AdamW(groups, lr=1.) if kind == 'adamw' else torch.optim.SGD(groups, lr=1., momentum=0.9)
    max_lr = [0.01, 0.03]
    ref_opt = mk([nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))])
    sched = torch.optim.lr_scheduler.OneCycleLR(ref_opt, max_lr=max_lr, total_steps=total, pct_start=pct,
                                                div_factor=div, final_div_factor=fdiv)
    ref = []
    for _ in range(total):
        g = ref_opt.param_groups
        ref.append([(x['lr'], x['betas'][0] if kind == 'adamw' else x['momentum']) for x in g])
        ref_opt.step(); sched.step()

    got = []
    class Spy(Callback):
        order = 50
        def before_step(self):
            g = self.learn.opt.param_groups
            got.append([(x['lr'], x['betas'][0] if kind == 'adamw' else x['momentum']) for x in g])
    model = nn.Sequential(nn.Linear(5, 4), nn.Linear(4, 3))
    dls = make_dls(n_train=8 * total, bs=8)
    learn = Learner(model, dls, opt_func=lambda ps, lr: mk(list(ps)), cbs=quiet() + [Spy()])
    learn.fit(1, cbs=[OneCycleCB(max_lr, pct_start=pct, div_factor=div, final_div_factor=fdiv)])
    assert len(got) == total
    assert got == ref                      # exact, step for step, both groups, lr and momentum


def test_fit_one_cycle_stops_when_schedule_is_over():
    learn = Learner(nn.Linear(5, 3), make_dls(n_train=40, bs=8), cbs=quiet())
    learn.fit(3, cbs=[OneCycleCB(0.01, total_steps=7)])
    assert learn.train_iter == 7


def test_param_sched_cos():
    lrs = []
    class Spy(Callback):
        order = 50
        def before_step(self): lrs.append(self.learn.opt.param_groups[0]['lr'])
    learn = Learner(nn.Linear(5, 3), make_dls(n_train=40, bs=8), cbs=quiet() + [Spy()])
    learn.fit(2, cbs=[ParamSchedCB('lr', sched_cos(0.1, 0.0))])
    assert len(lrs) == 10
    assert lrs[0] == pytest.approx(0.1) and lrs[5] == pytest.approx(0.05)
    assert all(a > b for a, b in zip(lrs, lrs[1:]))


def test_metrics_match_full_pass():
    "Epoch metrics equal a direct computation over the whole set, despite an uneven last batch."
    dls = make_dls(n_train=40, n_valid=23, bs=8)
    learn = Learner(nn.Linear(5, 3), dls, metrics=accuracy, cbs=[Recorder()])
    learn.metrics_cb.show = False
    learn.fit(1)
    with torch.no_grad():
        pred = learn.model(dls.valid.x)
        loss, acc = F.cross_entropy(pred, dls.valid.y), (pred.argmax(1) == dls.valid.y).float().mean()
    row = learn.metrics_cb.history[-1]
    assert row['valid_loss'] == pytest.approx(loss.item(), rel=1e-5)
    assert row['valid_accuracy'] == pytest.approx(acc.item(), abs=1e-6)
    assert learn.validate() == pytest.approx({'loss': row['valid_loss'], 'accuracy': row['valid_accuracy']})


def test_metrics_sync_once_per_epoch(monkeypatch):
    "No per-step host sync in the loop with the default callbacks: count conversions of tensors to Python numbers."
    learn = Learner(nn.Linear(5, 3), make_dls(n_train=80, bs=8), opt_func=torch.optim.SGD, metrics=accuracy, cbs=[DeviceCB('cpu')])
    learn.metrics_cb.show = False
    counts = {'n': 0}
    for name in ('item', 'tolist', '__float__', '__bool__', '__int__'):
        orig = getattr(torch.Tensor, name)
        def wrapped(self, *a, _orig=orig, **k):
            counts['n'] += 1
            return _orig(self, *a, **k)
        monkeypatch.setattr(torch.Tensor, name, wrapped)
    learn.fit(3)
    monkeypatch.undo()
    assert counts['n'] == 3 * 2, counts     # one .tolist() per train epoch and per valid epoch


def test_get_preds_and_validate_default_dl():
    dls = make_dls(n_valid=21)
    learn = Learner(nn.Linear(5, 3), dls, cbs=quiet(metrics=accuracy))
    p, t = learn.get_preds()
    assert p.shape == (21, 3) and torch.equal(t, dls.valid.y)
    assert set(learn.validate()) == {'loss', 'accuracy'}


def test_lr_find_restores_state_and_plots():
    import matplotlib; matplotlib.use('Agg')
    set_seed(0)
    learn = Learner(nn.Linear(5, 3), make_dls(n_train=400, bs=8), cbs=quiet())
    learn.fit(1, lr=1e-4)
    before = {k: v.clone() for k, v in learn.model.state_dict().items()}
    opt_before = {k: {kk: vv.clone() for kk, vv in v.items()} for k, v in learn.opt.state_dict()['state'].items()}
    f = learn.lr_find(num_it=30)
    assert 1 <= len(f.losses) <= 30 and f.lrs[0] == pytest.approx(1e-7)
    assert all(torch.equal(before[k], v) for k, v in learn.model.state_dict().items())
    for k, v in learn.opt.state_dict()['state'].items():
        assert all(torch.equal(opt_before[k][kk], vv) for kk, vv in v.items())
    assert f.lrs[len(f.losses) // 10] / 10 <= f.suggestion() <= f.lrs[len(f.losses) - 1] / 10
    f.plot()


def test_early_stopping_restores_best():
    class FakeLoss(Callback):
        "Make the validation loss follow a script, independent of training."
        order = 11
        seq = [1.0, 0.5, 0.7, 0.8, 0.9, 0.1]
        def after_epoch(self):
            if not self.learn.training:
                self.learn.metrics_cb.history[-1]['valid_loss'] = self.seq[self.learn.epoch]
    snaps = {}
    class Snap(Callback):
        order = 16
        def after_epoch(self):
            if not self.learn.training: snaps[self.learn.epoch] = self.learn.model.weight.detach().clone()
    learn = Learner(nn.Linear(5, 3), make_dls(), lr=0.05, cbs=quiet())
    es = EarlyStoppingCB(patience=2)
    learn.fit(6, cbs=[es, FakeLoss(), Snap()])
    assert es.best_epoch == 1 and learn.epoch == 3
    assert torch.equal(learn.model.weight, snaps[1])
    with pytest.raises(KeyError, match='not one of'):
        learn.fit(1, cbs=[EarlyStoppingCB(monitor='valid_acc')])


def test_grad_clip():
    norms = []
    class Spy(Callback):
        order = 50
        def after_backward(self):
            norms.append(torch.norm(torch.stack([p.grad.norm() for p in self.learn.model.parameters()])))
    learn = Learner(nn.Linear(5, 3), make_dls(), lr=0.1, loss_func=lambda p, y: 1e3 * F.cross_entropy(p, y), cbs=quiet())
    learn.fit(1, cbs=[GradClipCB(0.5), Spy()])
    assert all(n <= 0.5 + 1e-5 for n in norms)
    with pytest.raises(ValueError, match='max_norm'): GradClipCB(0)


def test_activation_stats_hooks_removed_and_shapes():
    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Dropout(0.1), nn.Linear(8, 3))
    learn = Learner(model, make_dls(n_train=40, bs=8), cbs=quiet())
    st = ActivationStats(every=2)
    learn.fit(2, cbs=[st])
    assert len(st.layers) == 3 and all(not m._forward_hooks for m in model.modules())
    assert st.stacked('mean').shape == (3, 5) and st.stacked('hist').shape == (3, 5, 40)
    relu = model[1](model[0](learn.dls.train.x))
    assert float(st.near_zero()[1].mean()) > 0.2 and (relu >= 0).all()


def test_keyboard_interrupt_leaves_learner_usable():
    class Boom(Callback):
        def after_pred(self):
            if self.learn.train_iter == 2: raise KeyboardInterrupt
    learn = Learner(nn.Linear(5, 3), make_dls(), cbs=quiet())
    boom = Boom()
    with pytest.raises(KeyboardInterrupt): learn.fit(3, cbs=[boom])
    assert boom not in learn.cbs and not learn.in_fit
    learn.fit(1)
    assert learn.train_iter == 5


def test_mixed_precision_cpu_bf16():
    set_seed(0)
    learn = Learner(nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 3)), make_dls(n_train=200), lr=1e-2, cbs=quiet(metrics=accuracy))
    learn.fit(3, cbs=[MixedPrecisionCB(), GradClipCB(1.)])
    assert learn.pred.dtype == torch.bfloat16 and learn.model[0].weight.dtype == torch.float32
    assert not torch.is_autocast_enabled('cpu')
    assert learn.metrics_cb.history[-1]['valid_accuracy'] > 0.6


def test_progress_cb_runs(capsys):
    learn = Learner(nn.Linear(5, 3), make_dls(), cbs=quiet())
    learn.fit(2, cbs=[ProgressCB()])
    assert learn.metrics_cb.show is False and len(learn.metrics_cb.history) == 2


def test_bad_inputs():
    dls = make_dls()
    with pytest.raises(TypeError, match='nn.Module'): Learner(lambda x: x, dls)
    with pytest.raises(TypeError, match='.train and .valid'): Learner(nn.Linear(5, 3), [dls.train, dls.valid])
    with pytest.raises(ValueError, match='positive finite'): Learner(nn.Linear(5, 3), dls, lr=float('nan'))
    with pytest.raises(TypeError, match='not an instance'): Learner(nn.Linear(5, 3), dls, cbs=[Recorder])
    with pytest.raises(TypeError, match='subclass'): Learner(nn.Linear(5, 3), dls, cbs=[lambda: None])
    with pytest.raises(TypeError, match='metric'): Learner(nn.Linear(5, 3), dls, metrics=['accuracy'])
    class Typo(Callback):
        def after_stpe(self): pass
    with pytest.raises(ValueError, match='after_step'): Learner(nn.Linear(5, 3), dls, cbs=[Typo()])
    learn = Learner(nn.Linear(5, 3), dls, cbs=quiet())
    with pytest.raises(ValueError, match='whole number'): learn.fit(-1)
    bad = SimpleNamespace(train=[torch.randn(4, 5)], valid=[])
    with pytest.raises(TypeError, match=r'tuple \(x, y\)'): Learner(nn.Linear(5, 3), bad, cbs=quiet()).fit(1)
    with pytest.raises(ValueError, match='pct_start'): OneCycleCB(0.1, pct_start=1.5)


def test_early_stopping_stays_out_of_validate_after_fit():
    "An EarlyStoppingCB given to the Learner must not cancel a later learn.validate() (it only acts inside fit)."
    import torch
    from torch import nn
    from dlbook.learner import Learner, MetricsCB, EarlyStoppingCB
    from dlbook.loaders import TensorLoader, DataLoaders
    torch.manual_seed(0)
    x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    dls = DataLoaders(TensorLoader(x, y, bs=16, shuffle=True, seed=0), TensorLoader(x, y, bs=32))
    es = EarlyStoppingCB(monitor='valid_loss', patience=1, min_delta=1e9)   # never "improves": waits after epoch 1
    learn = Learner(nn.Linear(4, 2), dls, lr=1e-3, cbs=[MetricsCB(show=False), es])
    learn.fit(3)
    assert es.wait >= 1
    res = learn.validate()          # used to raise CancelFitException outside fit
    assert 'valid_loss' in res or 'loss' in res
