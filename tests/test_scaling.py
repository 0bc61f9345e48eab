"""Tests of dlbook.scaling: the cost model, two torchrun "nodes" meeting by c10d rendezvous on a free port running chapter 43's
script unchanged, launcher failures and time limits, and an elastic restart (--max-restarts) that resumes from CheckpointCB."""
import json, subprocess, sys, textwrap
from pathlib import Path
import pytest
import torch
from dlbook.scaling import ring_allreduce_seconds, fit_latency_bandwidth, weak_scaling_efficiency, free_port, launch_nodes
from dlbook.distributed import ring_all_reduce_sim

TORCHRUN = str(Path(sys.executable).parent / 'torchrun')


def test_allreduce_model_counts_what_the_ring_sends():
    for n in (2, 4, 8):
        sent = ring_all_reduce_sim([torch.zeros(8 * 1000) for _ in range(n)])[1][0]
        assert ring_allreduce_seconds(8 * 1000, n, alpha=0., beta=1.) == sent       # beta = 1 number per second


def test_fit_recovers_latency_and_bandwidth_from_noisy_times():
    g = torch.Generator().manual_seed(0)
    sizes = [2 ** k for k in range(10, 25, 2)]
    times = [ring_allreduce_seconds(s, 2, 150e-6, 0.5e9) * (1 + 0.05 * torch.randn(1, generator=g).item()) for s in sizes]
    a, b = fit_latency_bandwidth(sizes, times, 2)
    assert abs(a / 150e-6 - 1) < 0.15 and abs(b / 0.5e9 - 1) < 0.15


def test_weak_scaling_efficiency_falls_with_n_and_with_size():
    effs = [weak_scaling_efficiency(1e12, 10 ** 8, n) for n in (1, 2, 8, 16, 32)]
    assert effs[0] == 1 and all(x > y for x, y in zip(effs, effs[1:]))
    assert weak_scaling_efficiency(1e12, 10 ** 9, 32) < weak_scaling_efficiency(1e12, 10 ** 7, 32)
    with pytest.raises(ValueError, match='at least 1 process'): ring_allreduce_seconds(1e6, 0, 1e-6, 1e9)


def test_free_port_is_bindable():
    import socket
    p = free_port()
    with socket.socket() as s: s.bind(('127.0.0.1', p))


def test_chapter_43_script_runs_unchanged_on_two_nodes(tmp_path):
    logs = launch_nodes(['-m', 'dlbook.distributed', '--n_train', '1024', '--n_valid', '256', '--ckpt', str(tmp_path / 'ck.pt')],
                        n_nodes=2, timeout=300)
    text = '\n'.join(logs)
    assert '2 processes; gradients averaged by hand' in text and "['ck.pt']" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ['ck.pt']


def test_launch_nodes_fails_with_the_logs(tmp_path):
    with pytest.raises(RuntimeError, match='node 0 failed with exit status'):
        launch_nodes([str(tmp_path / 'missing.py')], n_nodes=2, timeout=200)


def test_launch_nodes_time_limit(tmp_path):
    script = tmp_path / 'sleepy.py'
    script.write_text('import time\ntime.sleep(600)\n')
    with pytest.raises(RuntimeError, match='ran past 20 s'):
        launch_nodes([str(script)], n_nodes=2, timeout=20)


ELASTIC = textwrap.dedent('''
    import json, os, sys
    from pathlib import Path
    import torch
    from torch import nn
    from dlbook.core import set_seed
    from dlbook.learner import Learner, MetricsCB, Callback
    from dlbook.loaders import TensorLoader, DataLoaders
    from dlbook.checkpoint import CheckpointCB
    from dlbook.distributed import setup, cleanup, explain_failures, DataParallelCB

    tmp = Path(sys.argv[1])
    rank, world = setup(timeout_s=30)

    def learner(cbs=()):
        set_seed(0)
        g = torch.Generator().manual_seed(0)
        x, w = torch.randn(256, 10, generator=g), torch.randn(10, 4, generator=g)
        dls = DataLoaders(TensorLoader(x, (x @ w).argmax(1), bs=64, shuffle=True, seed=3), None)
        model = nn.Sequential(nn.Linear(10, 32), nn.Tanh(), nn.Linear(32, 4))
        return Learner(model, dls, lr=0.05, opt_func=lambda p, lr: torch.optim.SGD(p, lr=lr, momentum=0.9), cbs=[MetricsCB(show=False), *cbs])

    class CrashOnce(Callback):
        def after_batch(self):
            if rank == 1 and self.learn.train_iter == 5 and not (tmp / 'crashed').exists():
                (tmp / 'crashed').touch(); os._exit(1)         # the first attempt dies in the middle of epoch 1

    with explain_failures():
        learn = learner([DataParallelCB(), CheckpointCB(tmp / 'ck.pt', every=3, resume=True), CrashOnce()])
        learn.fit_one_cycle(3)
        if rank == 0:
            ref = learner(); ref.fit_one_cycle(3)                # one process, no interruption, the global batch
            diff = max((a - b).abs().max().item() for a, b in zip(learn.model.parameters(), ref.model.parameters()))
            (tmp / 'res.json').write_text(json.dumps({'diff': diff, 'steps': learn.train_iter, 'crashed': (tmp / 'crashed').exists()}))
    cleanup()
''')


def test_elastic_restart_resumes_from_the_checkpoint(tmp_path):
    (tmp_path / 'w.py').write_text(ELASTIC)
    # Two restarts allowed: the planned crash uses one; once in a clean-clone CI run the restarted pair also died (gloo:
    # "Connection reset by peer", then SIGABRT), which passes here in isolation. A further restart resumes from the same checkpoint.
    out = subprocess.run([TORCHRUN, '--standalone', '--nproc-per-node=2', '--max-restarts=2', str(tmp_path / 'w.py'), str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-4000:]
    r = json.loads((tmp_path / 'res.json').read_text())
    assert r['crashed'] and r['steps'] == 12                  # it did crash once, and the restarted job finished all 12 steps
    assert r['diff'] < 1e-5                                    # same weights as one uninterrupted process on the global batch
