"Tests of dlbook.checkpoint: exact resume, crash-safe writes (SIGKILL), refusal of malicious pickles, corrupt files, NaN and Ctrl-C handling."
import hashlib, io, math, os, pickle, signal, subprocess, sys, textwrap, time
from pathlib import Path
from types import SimpleNamespace
import pytest
import torch
from torch import nn
from dlbook.core import set_seed
from dlbook.learner import Learner, MetricsCB, Callback, CancelFitException, OneCycleCB
from dlbook.checkpoint import *
from dlbook.checkpoint import CKPT_FORMAT
from dlbook.loaders import TensorLoader, DataLoaders

ROOT = Path(__file__).resolve().parent.parent


class Batches:
    "(x, y) batches; shuffles with the global RNG, or with its own generator when `seed` is given."
    def __init__(self, x, y, bs, shuffle=False, seed=None):
        self.x, self.y, self.bs, self.shuffle = x, y, bs, shuffle
        self.gen = torch.Generator().manual_seed(seed) if seed is not None else None
    def __len__(self): return math.ceil(len(self.x) / self.bs)
    def __iter__(self):
        idx = torch.randperm(len(self.x), generator=self.gen) if self.shuffle else torch.arange(len(self.x))
        for i in range(0, len(idx), self.bs):
            j = idx[i:i + self.bs]
            x = self.x[j] + 0.01 * torch.randn(len(j), self.x.shape[1], generator=self.gen)  # random augmentation
            yield x, self.y[j]


def make_dls(own_gen):
    "own_gen: False (shuffle with the global RNG), True (the loader's generator), 'tl' (dlbook's TensorLoader, noisy tfm)."
    g = torch.Generator().manual_seed(0)
    w = torch.randn(6, 4, generator=g)
    xt, xv = torch.randn(90, 6, generator=g), torch.randn(30, 6, generator=g)
    if own_gen == 'tl':
        noisy = lambda xb: xb + 0.01 * torch.randn_like(xb)          # augmentation drawn from the global RNG
        return DataLoaders(TensorLoader(xt, (xt @ w).argmax(1), bs=8, shuffle=True, seed=7, tfm=noisy),
                           TensorLoader(xv, (xv @ w).argmax(1), bs=16))
    return SimpleNamespace(train=Batches(xt, (xt @ w).argmax(1), 8, shuffle=True, seed=7 if own_gen else None),
                           valid=Batches(xv, (xv @ w).argmax(1), 16))


def make_learner(seed, own_gen=False):
    set_seed(seed)
    model = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 4))
    return Learner(model, make_dls(own_gen), lr=1e-2, cbs=[MetricsCB(show=False)])


class StopAfter(Callback):
    order = 50
    def __init__(self, n): self.n = n
    def after_batch(self):
        if self.learn.train_iter == self.n: raise CancelFitException


def same_weights(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))


@pytest.mark.parametrize('own_gen', [False, True, 'tl'])
@pytest.mark.parametrize('stop', [5, 12, 31])   # 12 batches per epoch: mid-epoch, end of a training pass, a later epoch
def test_resume_is_bitwise_identical(tmp_path, own_gen, stop):
    straight = make_learner(0, own_gen)
    straight.fit_one_cycle(4, 1e-2)

    path = tmp_path / 'ck.pt'
    first = make_learner(0, own_gen)
    first.fit_one_cycle(4, 1e-2, cbs=[CheckpointCB(path), StopAfter(stop)])
    assert first.train_iter == stop and read_checkpoint(path)['pos']['train_iter'] == stop

    resumed = make_learner(99, own_gen)       # other initial weights, other RNG, fresh loader objects
    torch.rand(77)
    resumed.fit_one_cycle(4, 1e-2, cbs=[CheckpointCB(path, resume=True)])
    assert same_weights(straight, resumed)
    assert resumed.train_iter == 4 * 12


def test_resume_after_epoch_end_checkpoint_and_periodic_saves(tmp_path):
    "Checkpoint every 5 steps and at epoch ends; resume from the copy taken at step 15 (mid epoch 1)."
    straight = make_learner(0)
    straight.fit_one_cycle(3, 1e-2)
    path = tmp_path / 'ck.pt'
    snaps = {}
    class Copy(Callback):
        order = 60
        def after_batch(self):
            if self.learn.training and self.learn.train_iter == 15: snaps[15] = path.read_bytes()
    learn = make_learner(0)
    cb = CheckpointCB(path, every=5)
    learn.fit_one_cycle(3, 1e-2, cbs=[cb, Copy()])
    assert cb.n_saved == 36 // 5 + 3
    assert read_checkpoint(path)['pos'] == {'epoch': 3, 'batch': 0, 'train_iter': 36}
    path.write_bytes(snaps[15])
    resumed = make_learner(5)
    resumed.fit_one_cycle(3, 1e-2, cbs=[CheckpointCB(path, resume=True)])
    assert same_weights(straight, resumed)


def test_file_loads_with_weights_only_and_holds_everything(tmp_path):
    learn = make_learner(0)
    path = tmp_path / 'ck.pt'
    learn.fit_one_cycle(2, 1e-2, cbs=[CheckpointCB(path, every=4)])
    outer = torch.load(path, weights_only=True)
    assert outer['format'] == CKPT_FORMAT and outer['payload'].dtype == torch.uint8
    payload = outer['payload'].numpy().tobytes()
    assert hashlib.sha256(payload).hexdigest() == outer['sha256']
    ck = torch.load(io.BytesIO(payload), weights_only=True)
    assert set(ck) == {'model', 'opt', 'cbs', 'pos', 'rng', 'rng_epoch'}
    assert ck['cbs']['one_cycle_cb'] == {'i': 24} and ck['pos']['epoch'] == 2
    assert set(ck['rng']['global']) >= {'python', 'numpy', 'torch'}
    assert ck['opt']['state'] and all(torch.equal(ck['model'][k], v) for k, v in learn.model.state_dict().items())


CHILD = textwrap.dedent('''
    import os, sys, time, torch
    from dlbook.checkpoint import write_checkpoint
    path, mode = sys.argv[1], sys.argv[2]
    write_checkpoint(path, {'v': torch.full((10,), 1.), 'step': 1})
    if mode == 'fsync':              # stall after writing all bytes of the temp file, before the rename
        def stall(fd): print('WRITING', flush=True); time.sleep(120)
        os.fsync = stall
    elif mode == 'half':             # stall after writing half of the bytes
        real = os.fdopen
        def fdopen(*a, **k):
            f = real(*a, **k)
            w = f.write
            def half(d): w(d[:len(d) // 2]); f.flush(); print('WRITING', flush=True); time.sleep(120)
            f.write = half
            return f
        os.fdopen = fdopen
    else:                            # no stalling: overwrite a big checkpoint over and over until killed
        print('WRITING', flush=True)
    for step in range(2, 10**6):
        write_checkpoint(path, {'v': torch.full((4_000_000,), float(step)), 'step': step})
''')


@pytest.mark.parametrize('mode', ['half', 'fsync', 'loop'])
def test_sigkill_while_writing_leaves_previous_checkpoint(tmp_path, mode):
    path = tmp_path / 'ck.pt'
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get('PYTHONPATH', ''))
    p = subprocess.Popen([sys.executable, '-c', CHILD, str(path), mode], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    try:
        line = p.stdout.readline()
        assert line.strip() == 'WRITING', (line, p.stderr.read() if p.poll() is not None else '')
        if mode == 'loop': time.sleep(1.5)
        os.kill(p.pid, signal.SIGKILL)
        p.wait(30)
    finally:
        if p.poll() is None: p.kill()
    assert p.returncode == -signal.SIGKILL
    ck = read_checkpoint(path)                  # loads, and is one complete version
    if mode == 'loop':
        assert ck['step'] >= 1 and torch.equal(ck['v'], torch.full((4_000_000,), float(ck['step']))) if ck['step'] > 1 else True
    else:
        assert ck['step'] == 1 and torch.equal(ck['v'], torch.ones(10))
        assert len(list(tmp_path.glob('.ck.pt.*.tmp'))) == 1   # the killed writer's temp file is left, never read


class Evil:
    def __init__(self, marker): self.marker = str(marker)
    def __reduce__(self): return (os.system, (f'touch {self.marker}',))


def test_malicious_pickles_are_refused_unexecuted(tmp_path):
    marker = tmp_path / 'pwned'
    raw = tmp_path / 'raw.pt'
    raw.write_bytes(pickle.dumps({'model': Evil(marker)}))                  # a bare pickle
    zipped = tmp_path / 'zipped.pt'
    torch.save({'model': {'w': torch.ones(2)}, 'x': Evil(marker)}, zipped)  # a torch.save archive with a payload
    inner = io.BytesIO(); torch.save({'model': Evil(marker)}, inner)       # a well-formed wrapper, valid checksum, evil inside
    payload = inner.getvalue()
    wrapped = tmp_path / 'wrapped.pt'
    buf = io.BytesIO()
    torch.save({'format': CKPT_FORMAT, 'sha256': hashlib.sha256(payload).hexdigest(),
                'payload': torch.frombuffer(bytearray(payload), dtype=torch.uint8)}, buf)
    wrapped.write_bytes(buf.getvalue())
    learn = make_learner(0)
    for f in (raw, zipped, wrapped):
        with pytest.raises(CheckpointError, match='refused unread'): read_checkpoint(f)
        with pytest.raises(CheckpointError, match='refused unread'): load_checkpoint(f, learn)
        with pytest.raises(CheckpointError): learn.fit(1, cbs=[CheckpointCB(f, resume=True)])
    assert not marker.exists()
    pickle.loads(raw.read_bytes())              # sanity: the payload does work when trusted
    assert marker.exists()


def test_truncated_and_corrupt_files_give_clear_errors(tmp_path):
    learn = make_learner(0)
    path = tmp_path / 'ck.pt'
    save_checkpoint(path, learn)
    raw = path.read_bytes()
    good = read_checkpoint(path)
    bad = tmp_path / 'bad.pt'
    for n in (0, 1, 10, 100, len(raw) // 3, len(raw) // 2, len(raw) - 22, len(raw) - 1):
        bad.write_bytes(raw[:n])
        with pytest.raises(CheckpointError, match='truncated or corrupt|not a dlbook'): read_checkpoint(bad)
    g = torch.Generator().manual_seed(0)
    detected = 0
    for pos in torch.randint(0, len(raw), (60,), generator=g).tolist():
        bad.write_bytes(raw[:pos] + bytes([raw[pos] ^ 0x10]) + raw[pos + 1:])
        try: ck = read_checkpoint(bad)
        except CheckpointError as e:
            detected += 1
            assert str(bad) in str(e)
            continue
        # a flip in bytes the reader never uses may go unnoticed; then the data must be intact
        assert all(torch.equal(ck['model'][k], v) for k, v in good['model'].items())
    assert detected >= 50
    with pytest.raises(CheckpointError, match='no checkpoint file'): read_checkpoint(tmp_path / 'missing.pt')
    torch.save({'w': torch.ones(1)}, bad)
    with pytest.raises(CheckpointError, match='not a dlbook'): read_checkpoint(bad)


def test_load_into_wrong_model(tmp_path):
    path = tmp_path / 'ck.pt'
    save_checkpoint(path, make_learner(0))
    other = Learner(nn.Linear(6, 4), make_dls(False), cbs=[MetricsCB(show=False)])
    with pytest.raises(CheckpointError, match='does not fit this model'): load_checkpoint(path, other)


class Sabotage(Callback):
    order = -10
    def __init__(self, at): self.at = at
    def after_pred(self):
        if self.learn.training and self.learn.train_iter == self.at: self.learn.pred = self.learn.pred * float('inf')


@pytest.mark.parametrize('check_every', [1, 4])
def test_nonfinite_stops_names_step_restores(capsys, check_every):
    learn = make_learner(0)
    snap = {}
    class Snap(Callback):
        def after_loss(self):
            if self.learn.training and self.learn.train_iter == 16: snap.update({k: v.clone() for k, v in self.learn.model.state_dict().items()})
    nf = NonFiniteCB(check_every)
    learn.fit(5, cbs=[nf, Sabotage(17), Snap()])
    assert nf.bad_step == 17 and 'step 17' in capsys.readouterr().out
    assert learn.train_iter == (17 if check_every == 1 else 19)       # stops at the bad step, or at the next check
    assert all(torch.equal(snap[k], v) for k, v in learn.model.state_dict().items())
    learn.fit(1)                                                      # usable afterwards
    assert all(torch.isfinite(p).all() for p in learn.model.parameters())


def test_nonfinite_quiet_when_all_is_well():
    learn = make_learner(0)
    nf = NonFiniteCB()
    learn.fit(2, cbs=[nf])
    assert nf.bad_step is None and learn.train_iter == 24


def test_ctrl_c_stops_after_batch_and_never_exits(tmp_path, monkeypatch):
    def no_exit(*a): raise AssertionError('sys.exit was called')
    monkeypatch.setattr(sys, 'exit', no_exit)
    events = []
    class Press(Callback):
        def after_pred(self):
            if self.learn.training and self.learn.train_iter == 6: os.kill(os.getpid(), signal.SIGINT)
    class Watch(Callback):
        order = 200
        def after_step(self): events.append(self.learn.train_iter)
    old = signal.getsignal(signal.SIGINT)
    learn = make_learner(0)
    ic = InterruptCB()
    path = tmp_path / 'ck.pt'
    learn.fit(3, cbs=[ic, Press(), Watch(), CheckpointCB(path)])
    assert ic.interrupted and learn.train_iter == 7 and events[-1] == 6   # batch 6 completed its step, then stop
    assert read_checkpoint(path)['pos'] == {'epoch': 0, 'batch': 7, 'train_iter': 7}
    assert signal.getsignal(signal.SIGINT) is old
    learn.fit(1)
    assert learn.train_iter == 12


def test_second_ctrl_c_interrupts_at_once():
    class PressTwice(Callback):
        def after_pred(self):
            if self.learn.training and self.learn.train_iter == 3:
                os.kill(os.getpid(), signal.SIGINT); os.kill(os.getpid(), signal.SIGINT)
    old = signal.getsignal(signal.SIGINT)
    learn = make_learner(0)
    with pytest.raises(KeyboardInterrupt): learn.fit(2, cbs=[InterruptCB(), PressTwice()])
    assert signal.getsignal(signal.SIGINT) is old and not learn.in_fit
    learn.fit(1)


def test_interrupt_resume_bitwise(tmp_path):
    "Ctrl-C in the middle, then the same command with resume=True: same weights as an uninterrupted run."
    straight = make_learner(0)
    straight.fit_one_cycle(3, 1e-2)
    class Press(Callback):
        def after_pred(self):
            if self.learn.training and self.learn.train_iter == 17: os.kill(os.getpid(), signal.SIGINT)
    path = tmp_path / 'ck.pt'
    a = make_learner(0)
    a.fit_one_cycle(3, 1e-2, cbs=[InterruptCB(), Press(), CheckpointCB(path, resume=True)])
    b = make_learner(1)
    b.fit_one_cycle(3, 1e-2, cbs=[InterruptCB(), CheckpointCB(path, resume=True)])
    assert same_weights(straight, b)
