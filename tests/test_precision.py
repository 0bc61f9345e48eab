"Tests of dlbook.precision: bfloat16 rounding by bits, loss scaling vs GradScaler under real float16 autocast, AutocastCB and ChannelsLastCB."
import math
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.amp import GradScaler
from dlbook.core import set_seed, check_close
from dlbook.conv import simple_cnn
from dlbook.learner import Learner, MetricsCB, GradClipCB
from dlbook.loaders import TensorLoader, DataLoaders
from dlbook.perf import SyncCheckCB
from dlbook.precision import float_format, round_to_bf16, LossScaler, autocast_dtype, AutocastCB, ChannelsLastCB, train_step_fn

pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.mark.parametrize('seed', range(3))
def test_round_to_bf16_matches_torch_on_random_bit_patterns(seed):
    g = torch.Generator().manual_seed(seed)
    bits = torch.randint(-2 ** 31, 2 ** 31 - 1, (200_000,), generator=g, dtype=torch.int64).to(torch.int32)
    x = bits.view(torch.float32)                              # every kind of float32: subnormals, huge, inf, NaN
    ours, ref = round_to_bf16(x), x.to(torch.bfloat16).float()
    ok = ~x.isnan()
    assert torch.equal(ours.view(torch.int32)[ok], ref.view(torch.int32)[ok])
    assert ours[~ok].isnan().all()


def test_float_format_matches_finfo_everywhere():
    for e, m, dt in [(8, 23, torch.float32), (11, 52, torch.float64), (8, 7, torch.bfloat16), (5, 10, torch.float16), (5, 2, torch.float8_e5m2)]:
        f, fi = float_format(e, m), torch.finfo(dt)
        assert (f['max'], f['smallest_normal'], f['eps']) == (fi.max, fi.smallest_normal, fi.eps)
    with pytest.raises(ValueError, match='at least 2 exponent bits'): float_format(1, 3)


def test_loss_scaler_matches_grad_scaler_under_float16_autocast():
    "Real float16 overflows (a large initial scale, growth every step): same skipped steps, scales and weights as GradScaler."
    def run(ours):
        set_seed(0)
        model = simple_cnn((4, 8, 8))
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        sc = LossScaler(2. ** 14, growth_interval=1) if ours else GradScaler('cpu', init_scale=2. ** 14, growth_interval=1)
        g, log = torch.Generator().manual_seed(3), []
        for i in range(12):
            x, y = torch.randn(16, 1, 28, 28, generator=g), torch.randint(0, 10, (16,), generator=g)
            with torch.autocast('cpu', dtype=torch.float16): loss = F.cross_entropy(model(x), y)
            if ours: sc.scale_loss(loss).backward(); sc.step(opt); sc.update(); log.append(sc.scale)
            else: sc.scale(loss).backward(); sc.step(opt); sc.update(); log.append(sc.get_scale())
            opt.zero_grad()
        return log, model
    (l1, m1), (l2, m2) = run(True), run(False)
    steps = [b / a for a, b in zip(l1, l1[1:])]
    assert l1 == l2 and 0.5 in steps and 2.0 in steps                  # it backed off and grew
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values()): assert torch.equal(a, b)


def test_loss_scaler_rejects_bad_factors():
    with pytest.raises(ValueError, match='growth_factor > 1'): LossScaler(growth_factor=0.5)


def tiny_dls(n=128):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)
    return DataLoaders(TensorLoader(x, y, bs=32, shuffle=True, seed=0), TensorLoader(x[:64], y[:64], bs=32))


def test_autocast_dtype_follows_onednn():
    dt, why = autocast_dtype('cpu')
    assert dt == (torch.bfloat16 if torch.ops.mkldnn._is_mkldnn_bf16_supported() else None) and why


@pytest.mark.parametrize('dtype', ['auto', torch.bfloat16, torch.float16, None])
def test_autocast_cb_trains_without_host_sync_unless_scaling(dtype):
    set_seed(0)
    cb = AutocastCB(dtype)
    sync = SyncCheckCB(error=False)
    learn = Learner(simple_cnn((4, 8, 8)), tiny_dls(), lr=1e-2, cbs=[MetricsCB(show=False), cb, sync, GradClipCB(1.)])
    learn.fit(1)
    expected = (autocast_dtype('cpu')[0] if dtype == 'auto' else dtype) or torch.float32
    assert learn.pred.dtype == expected and next(learn.model.parameters()).dtype == torch.float32
    assert len(sync.calls) == (learn.train_iter if dtype == torch.float16 else 0)   # the scaler's overflow check, one per step
    assert torch.isfinite(learn.recorder.loss_values).all()


def test_autocast_cb_says_so_once(capsys):
    from dlbook import precision
    precision._ANNOUNCED.clear()
    for _ in range(2): Learner(nn.Linear(3, 2), DataLoaders(TensorLoader(torch.randn(8, 3), torch.randint(0, 2, (8,)), bs=4), None),
                               cbs=[MetricsCB(show=False), AutocastCB()]).fit(1)
    assert capsys.readouterr().out.count('AutocastCB on cpu') == 1
    with pytest.raises(ValueError, match="must be 'auto'"): AutocastCB('bf16')


def test_channels_last_cb_gives_the_same_training():
    def run(cl):
        set_seed(0)
        learn = Learner(simple_cnn((4, 8, 8)), tiny_dls(), lr=1e-2, cbs=[MetricsCB(show=False)] + ([ChannelsLastCB()] if cl else []))
        learn.fit(1)
        return learn
    a, b = run(False), run(True)
    assert b.model[0][0].weight.is_contiguous(memory_format=torch.channels_last)
    for p, q in zip(a.model.parameters(), b.model.parameters()): check_close(p, q, atol=1e-4, rtol=1e-3)


def test_train_step_fn_variants_agree():
    set_seed(0)
    m, x, y = simple_cnn((4, 8, 8)), torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    for kw in [{}, {'channels_last': True}, {'dtype': torch.bfloat16}]:
        train_step_fn(m, x, y, **kw)()                       # runs; the model passed in is left untouched
    assert all(p.grad is None for p in m.parameters())


@pytest.mark.skipif(torch.cuda.is_available(), reason='pinned memory exists here')
def test_pinned_memory_needs_an_accelerator():
    "Chapter 41 says pinned memory only exists where there is an accelerator to read it."
    with pytest.raises(RuntimeError, match='accelerator'): torch.randn(3).pin_memory()
