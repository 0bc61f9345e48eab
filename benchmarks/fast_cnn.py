#!/usr/bin/env python
"""The full-size run of chapter 42: train a Fashion-MNIST CNN with the best configuration this CPU supports, once.

    python benchmarks/fast_cnn.py [--channels 32,64,128] [--opt sgd] [--epochs 6] [--threads 1] [--out benchmarks/results/fast_cnn.json]

55,000 training images, 5,000 held out for validation (the model is chosen on these only), the official
10,000 test images scored once at the end. Recipe: dlbook.fastcnn.fast_cnn_learner (SGD with Nesterov momentum
or AdamW, one-cycle, batch 256, random horizontal flips, channels last, and the autocast type that
dlbook.precision.autocast_dtype picks on this machine: bfloat16 where native, else float32).
Writes a JSON record: machine, configuration, validation accuracy per epoch, test accuracy, training time
(wall-clock and CPU seconds of this process: on a shared machine the CPU seconds are the reliable figure).
"""
import argparse, datetime, json, os, platform, time
from pathlib import Path
import torch
from dlbook.core import set_seed
from dlbook.loaders import fashion_dls
from dlbook.precision import autocast_dtype
from dlbook.fastcnn import fast_cnn_learner, OPTIMIZERS


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--channels', default='32,64,128')
    ap.add_argument('--epochs', type=int, default=6)
    ap.add_argument('--opt', default='sgd', choices=sorted(OPTIMIZERS))
    ap.add_argument('--no-flip', action='store_true')
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--out', default='benchmarks/results/fast_cnn.json')
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    channels = tuple(int(c) for c in a.channels.split(','))
    dls = fashion_dls(bs=256, flat=False, valid_size=5000, seed=0)
    set_seed(a.seed)
    learn = fast_cnn_learner(dls, channels, opt=a.opt, flips=not a.no_flip)
    c0, t0 = time.process_time(), time.perf_counter()
    learn.fit_one_cycle(a.epochs, max_lr=learn.lr)
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    test = learn.validate(dls.test)
    dt, why = autocast_dtype('cpu')
    rec = dict(date=datetime.date.today().isoformat(), cpu=platform.processor() or platform.machine(),
               capability=torch.backends.cpu.get_cpu_capability(), native_bf16=bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),
               env={k: os.environ[k] for k in ('ATEN_CPU_CAPABILITY', 'ONEDNN_MAX_CPU_ISA') if k in os.environ},
               torch=torch.__version__, threads=a.threads, channels=channels, epochs=a.epochs, opt=a.opt, lr=learn.lr, flips=not a.no_flip,
               autocast=str(dt).replace('torch.', '') if dt else 'float32', seed=a.seed,
               valid_accuracy=[round(r['valid_accuracy'], 4) for r in learn.metrics_cb.history],
               test_accuracy=round(test['accuracy'], 4), train_cpu_s=round(cpu, 1), train_wall_s=round(wall, 1),
               images_per_cpu_s=round(a.epochs * 55000 / cpu))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(rec, indent=1) + '\n')
    print(json.dumps(rec))


if __name__ == '__main__':
    main()
