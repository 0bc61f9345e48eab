#!/usr/bin/env python
"""Loader throughput: one shuffled epoch at batch 256, iterating only (no model).

    python benchmarks/bench_loaders.py [--repeats 7] [--threads N]

Compares dlbook.loaders.TensorLoader with torch.utils.data.DataLoader(TensorDataset(...)) and its default
collation, on Fashion-MNIST (60,000 x 784 values) and MNIST-1D (4,000 x 40 values), and with the *floor*:
one gather pass over the epoch's bytes, `p = torch.randperm(n); x[p]; y[p]`, which any shuffling loader has to
do in some form (also timed gathering into a preallocated buffer, which skips the cost of fresh memory). All variants run in one process, alternated round by round (so a burst of load elsewhere hits
them alike); each number is the median over the rounds. Targets: TensorLoader >= 5x faster than DataLoader on
Fashion-MNIST, >= 20x on MNIST-1D, and within 1.3x of the floor.

On a machine shared with other busy jobs, PyTorch's worker threads spin and wait for each other on every
parallel operation, and a loader that makes one medium-sized call per batch suffers most. Measure there with
`--threads 1 --clock cpu`, or run under `OMP_WAIT_POLICY=PASSIVE`; both are printed in the header.
"""
import argparse, os, statistics, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import torch
from torch.utils.data import DataLoader, TensorDataset
from dlbook.loaders import TensorLoader, fashion_tfm
from dlbook.data import load_fashion_mnist, load_mnist1d


def drain(it):
    "Iterate an epoch, touching each batch only by reference."
    n = 0
    for b in it: n += 1
    return n


def floor(x, y):
    def run():
        p = torch.randperm(len(x))
        x[p]; y[p]
    return run


def floor_prealloc(x, y):
    bx, by = torch.empty_like(x), torch.empty_like(y)
    def run():
        p = torch.randperm(len(x))
        torch.index_select(x, 0, p, out=bx); torch.index_select(y, 0, p, out=by)
    return run


def variants_for(name, x, y, x_u8=None, bs=256):
    v = {'floor': floor(x, y), 'floor, preallocated': floor_prealloc(x, y),
         'TensorLoader': (lambda tl: lambda: drain(tl))(TensorLoader(x, y, bs=bs, shuffle=True, seed=0)),
         'torch DataLoader': (lambda dl: lambda: drain(dl))(DataLoader(TensorDataset(x, y), batch_size=bs, shuffle=True))}
    if x_u8 is not None:
        v['floor (uint8)'] = floor(x_u8, y)
        v['TensorLoader (uint8)'] = (lambda tl: lambda: drain(tl))(TensorLoader(x_u8, y, bs=bs, shuffle=True, seed=0))
        v['TensorLoader (uint8 + tfm)'] = (lambda tl: lambda: drain(tl))(
            TensorLoader(x_u8, y, bs=bs, shuffle=True, seed=0, tfm=fashion_tfm()))
        v['torch DataLoader (uint8)'] = (lambda dl: lambda: drain(dl))(DataLoader(TensorDataset(x_u8, y), batch_size=bs, shuffle=True))
    return v


def measure(variants, repeats, clock=time.perf_counter):
    times = {k: [] for k in variants}
    for f in variants.values(): f()                       # warm-up
    for _ in range(repeats):
        for k, f in variants.items():                      # alternate the variants within each round
            t = clock(); f(); times[k].append(clock() - t)
    return {k: statistics.median(ts) for k, ts in times.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--repeats', type=int, default=7)
    ap.add_argument('--threads', type=int, default=None, help='torch.set_num_threads (default: torch default)')
    ap.add_argument('--clock', choices=['wall', 'cpu'], default='wall',
                    help="'cpu' times with this process's CPU time: on a machine shared with other jobs it is closer "
                         "to what a quiet machine's wall clock would show (use it with --threads 1)")
    a = ap.parse_args()
    if a.repeats < 5: sys.exit('--repeats must be >= 5 (medians of fewer runs are too noisy)')
    if a.threads: torch.set_num_threads(a.threads)
    clock = time.perf_counter if a.clock == 'wall' else time.process_time
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores, {a.clock} clock, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}, "
          f"median of {a.repeats} rounds")
    xu, y = load_fashion_mnist('train')
    xu = xu.reshape(len(xu), -1)
    xf = (xu.float() / 255).contiguous()
    m = load_mnist1d()
    sets = {'Fashion-MNIST (60000 x 784)': (variants_for('fmnist', xf, y, x_u8=xu), 5),
            'MNIST-1D (4000 x 40)': (variants_for('mnist1d', m['x'], m['y']), 20)}
    ok = True
    for name, (variants, target) in sets.items():
        med = measure(variants, a.repeats, clock)
        print(f"\n{name}: one shuffled epoch, batch 256")
        for k, t in med.items(): print(f"  {k:28s} {t * 1e3:9.2f} ms")
        speedup = med['torch DataLoader'] / med['TensorLoader']
        to_floor = med['TensorLoader'] / med['floor']
        print(f"  speed-up of TensorLoader over torch DataLoader (float32, same data): {speedup:6.1f}x  (target >= {target}x)")
        print(f"  TensorLoader / floor (float32):                                    {to_floor:6.2f}   (target <= 1.3)")
        print(f"  TensorLoader / floor into a preallocated buffer (float32):         "
              f"{med['TensorLoader'] / med['floor, preallocated']:6.2f}")
        ok &= speedup >= target and to_floor <= 1.3
        if 'floor (uint8)' in med:
            print(f"  speed-up, uint8 storage for both:                                  "
                  f"{med['torch DataLoader (uint8)'] / med['TensorLoader (uint8)']:6.1f}x")
            print(f"  TensorLoader / floor (uint8):                                      "
                  f"{med['TensorLoader (uint8)'] / med['floor (uint8)']:6.2f}")
            print(f"  float32 DataLoader vs uint8 TensorLoader + per-batch tfm:          "
                  f"{med['torch DataLoader'] / med['TensorLoader (uint8 + tfm)']:6.1f}x")
    print('\nall targets met' if ok else '\nsome targets NOT met (see above; check the machine load)')


if __name__ == '__main__':
    main()
