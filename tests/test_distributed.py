"""Tests of dlbook.distributed with 2 processes on CPU (gloo), launched by torchrun on a free port, each in bounded time:
hand-written all-reduces, DataParallelCB equal to one process on the global batch, one checkpoint, and a crashed or hung rank."""
import json, subprocess, sys, textwrap, time
from pathlib import Path
import pytest
import torch
from dlbook.core import set_seed, check_close
from dlbook.distributed import ring_all_reduce_sim, GradAccumCB, torchrun

TORCHRUN = str(Path(sys.executable).parent / 'torchrun')

WORKER = textwrap.dedent('''
    import json, os, sys, time
    from pathlib import Path
    import torch, torch.distributed as dist
    import torch.nn.functional as F
    from torch import nn
    from dlbook.core import set_seed
    from dlbook.learner import Learner, MetricsCB, Callback, accuracy
    from dlbook.loaders import TensorLoader, DataLoaders
    from dlbook.checkpoint import CheckpointCB, read_checkpoint
    from dlbook.distributed import setup, cleanup, explain_failures, check_hand_written, ring_all_reduce, DataParallelCB, GradAccumCB

    mode, out, tmp = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    rank, world = setup(timeout_s=5.0 if mode == 'hang' else 30.0)

    def data(bs):
        g = torch.Generator().manual_seed(0)
        x, w = torch.randn(300, 10, generator=g), torch.randn(10, 4, generator=g)
        y = (x @ w).argmax(1)
        return DataLoaders(TensorLoader(x[:256], y[:256], bs=bs, shuffle=True, seed=3), TensorLoader(x[256:], y[256:], bs=16))

    def learner(bs, cbs=()):
        set_seed(0)                     # the same start everywhere (DDP would copy rank 0's weights anyway)
        model = nn.Sequential(nn.Linear(10, 32), nn.Tanh(), nn.Linear(32, 4))
        opt = lambda p, lr: torch.optim.SGD(p, lr=lr, momentum=0.9)
        return Learner(model, data(bs), lr=0.05, opt_func=opt, cbs=[MetricsCB(accuracy, show=False), *cbs])

    class Fail(Callback):
        def after_batch(self):
            if rank == 1 and self.learn.train_iter == 3:
                if mode == 'crash': os._exit(7)
                time.sleep(120)

    with explain_failures():
        if mode != 'ok':
            learner(64, [DataParallelCB(), Fail()]).fit(2)
            sys.exit(0)
        res = check_hand_written(rank, world)
        try: nn.SyncBatchNorm(3)(torch.randn(4, 3, 2, 2)); res['syncbn'] = 'ran'
        except ValueError as e: res['syncbn'] = str(e)
        t = torch.randn(1001, generator=torch.Generator().manual_seed(rank))     # float32, an odd size
        ref = t.clone(); dist.all_reduce(ref)
        res['ring_f32'] = (ring_all_reduce(t) - ref).abs().max().item()
        ddp = learner(64, [DataParallelCB(), CheckpointCB(tmp / 'ck.pt')])
        ddp.fit(2)
        acc = learner(32, [DataParallelCB(), GradAccumCB(2)])                   # 2 processes x 2 micro-batches of 16 = 64
        acc.fit(2, valid=False)
        dist.barrier()
        if rank == 0:
            one = learner(64); one.fit(2)                                          # one process, the global batch
            w = lambda l: [p.detach() for p in l.model.parameters()]
            ck = read_checkpoint(tmp / 'ck.pt')
            res.update(ddp_vs_one=max((a - b).abs().max().item() for a, b in zip(w(ddp), w(one))),
                       accum_vs_one=max((a - b).abs().max().item() for a, b in zip(w(acc), w(one))),
                       metrics_ddp=ddp.metrics_cb.history, metrics_one=one.metrics_cb.history,
                       files=sorted(p.name for p in tmp.iterdir()),
                       ckpt_vs_model=max((ck['model'][k] - v).abs().max().item() for k, v in ddp.model.state_dict().items()),
                       plain_after_fit=type(ddp.model).__name__, steps=ddp.train_iter)
            Path(out).write_text(json.dumps(res))
    cleanup()
''')


def launch(tmp_path, mode, timeout=240):
    script = tmp_path / 'worker.py'
    script.write_text(WORKER)
    (tmp_path / 'ckpts').mkdir(exist_ok=True)
    t0 = time.perf_counter()
    out = subprocess.run([TORCHRUN, '--standalone', '--nproc-per-node=2', str(script), mode, str(tmp_path / 'res.json'), str(tmp_path / 'ckpts')],
                         capture_output=True, text=True, timeout=timeout)
    return out, time.perf_counter() - t0


@pytest.mark.parametrize('N,n', [(2, 10), (3, 7), (4, 1000), (7, 3), (1, 5)])
def test_ring_simulation_sums_and_counts(N, n):
    set_seed(N)
    ts = [torch.randn(n, dtype=torch.float64) for _ in range(N)]
    outs, sent = ring_all_reduce_sim(ts)
    for o in outs: check_close(o, sum(ts), atol=1e-12)
    assert sum(sent) == N * 2 * (N - 1) * n // N or n % N


def test_two_processes_equal_one_process_on_the_global_batch(tmp_path):
    out, secs = launch(tmp_path, 'ok')
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    r = json.loads((tmp_path / 'res.json').read_text())
    assert r['grad'] < 1e-6 and r['ring'] == 0 and r['ring_f32'] < 1e-5      # hand-written averaging and ring
    assert r['ddp_vs_one'] < 1e-5                                             # DDP, 2 x 32 = one process with 64 (8 steps)
    assert r['accum_vs_one'] < 1e-5                                           # DDP and accumulation, 2 x 2 x 16 = 64
    assert r['steps'] == 8
    for a, b in zip(r['metrics_ddp'], r['metrics_one']):                      # all-reduced metrics = the whole set's
        for k in a: assert abs(a[k] - b[k]) < 1e-5, (k, a, b)
    assert r['files'] == ['ck.pt'] and r['ckpt_vs_model'] == 0                # exactly one checkpoint, rank 0's, plain keys
    assert r['plain_after_fit'] == 'Sequential'                               # the model is unwrapped after fit
    assert 'expected input tensor to be on GPU' in r['syncbn']                # SyncBatchNorm does not work on CPUs (chapter 43 says so)


def test_a_crashed_rank_stops_the_run(tmp_path):
    out, secs = launch(tmp_path, 'crash')
    assert out.returncode != 0 and secs < 200
    text = out.stdout + out.stderr
    assert 'exitcode  : 7' in text or 'another process probably crashed' in text.lower() or 'Another process probably crashed' in text


def test_a_hung_rank_times_out_with_a_clear_error(tmp_path):
    out, secs = launch(tmp_path, 'hang')
    assert out.returncode != 0 and secs < 200
    assert 'rank 0: a collective operation failed' in out.stderr and 'process-group timeout of 5.0 s' in out.stderr


def test_torchrun_helper_reports_failures():
    with pytest.raises(RuntimeError, match='torchrun failed with exit status'):
        torchrun('--standalone', '--nproc-per-node=1', '/nonexistent/script.py', timeout=120)


def test_grad_accum_rejects_bad_n():
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match='whole number'): GradAccumCB(bad)
