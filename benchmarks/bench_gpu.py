#!/usr/bin/env python
"""Training throughput of the course CNN and a ResNet at 224 px on this machine's accelerator (or CPU), one command:

    python benchmarks/bench_gpu.py                      # on a GPU: a few minutes; writes benchmarks/results/bench_gpu_<device>.json
    python benchmarks/bench_gpu.py --tiny --no-compile  # the CI smoke run on a CPU: tiny sizes, seconds

For each model and configuration (float32; bfloat16 autocast, or float16 where the device has no bfloat16;
torch.compile of the float32 model) it times training steps (forward, backward, SGD update; channels last)
with torch.utils.benchmark, which synchronizes with the GPU, and reports images per second and the achieved
TFLOP/s (FLOPs counted by torch.utils.flop_counter) next to the measured bfloat16 (or float32) matmul peak.
The step functions are dlbook.precision.train_step_fn, the ones chapter 41 times on the CPU.
"""
import argparse, datetime, json, platform, sys, time
from pathlib import Path
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from dlbook.core import default_device
from dlbook.conv import simple_cnn, ResBlock2d
from dlbook.perf import seconds_per_call, matmul_gflops
from dlbook.precision import train_step_fn


def resnet18_like(n_classes=1000, channels=(64, 128, 256, 512)):
    "A ResNet-18-shaped network for 3-channel images: 7×7 stride-2 stem, max pool, two basic blocks per stage, global pooling."
    layers, ci = [nn.Conv2d(3, channels[0], 7, 2, 3, bias=False), nn.BatchNorm2d(channels[0]), nn.ReLU(), nn.MaxPool2d(3, 2, 1)], channels[0]
    for i, co in enumerate(channels):
        layers += [ResBlock2d(ci, co, 1 if i == 0 else 2), ResBlock2d(co, co)]
        ci = co
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(ci, n_classes))


def step_flops(model, x, y):
    "FLOPs of one training step (forward and backward) counted by FlopCounterMode."
    with FlopCounterMode(display=False) as fc:
        F.cross_entropy(model(x), y).backward()
    model.zero_grad(set_to_none=True)
    return fc.get_total_flops()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--device', default=None, help='default: dlbook.core.default_device()')
    ap.add_argument('--tiny', action='store_true', help='tiny batches and images: a smoke test that runs anywhere in seconds')
    ap.add_argument('--no-compile', action='store_true', help='skip the torch.compile rows (each compile costs tens of seconds)')
    ap.add_argument('--min-time', type=float, default=None, help='seconds of timing per row (default 2, tiny 0.05)')
    ap.add_argument('--out', default=None, help='JSON file (default: benchmarks/results/bench_gpu_<device>.json, not written with --tiny)')
    a = ap.parse_args(argv)
    dev = torch.device(a.device) if a.device else default_device()
    min_time = a.min_time or (0.05 if a.tiny else 2.0)
    if dev.type == 'cuda':
        name = torch.cuda.get_device_name(dev)
        low = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    else:
        name = platform.processor() or platform.machine()
        low = torch.bfloat16
    peak_n = 256 if a.tiny else (8192 if dev.type == 'cuda' else 2048)
    peaks = {str(dt).split('.')[1]: matmul_gflops(peak_n, dt, dev, min_time=min_time) / 1e3 for dt in (torch.float32, low)}
    print(f"device: {dev.type} ({name}); torch {torch.__version__}; matmul peak at n={peak_n}: "
          + ', '.join(f"{k} {v:.3g} TFLOP/s" for k, v in peaks.items()), flush=True)
    px = 32 if a.tiny else 224
    workloads = {'course CNN 28px': (lambda: simple_cnn(), (1, 28, 28), 10, 4 if a.tiny else 512),
                 f'ResNet-18-like {px}px': (lambda: resnet18_like(), (3, px, px), 1000, 2 if a.tiny else 128)}
    configs = {'float32': {}, str(low).split('.')[1]: {'dtype': low}}
    if not a.no_compile: configs['compiled float32'] = {'compiled': True}
    rows = []
    for wname, (make, shape, n_cls, bs) in workloads.items():
        torch.manual_seed(0)
        model = make().to(dev)
        x, y = torch.randn(bs, *shape, device=dev), torch.randint(0, n_cls, (bs,), device=dev)
        flops = step_flops(model, x, y)
        for cname, kw in configs.items():
            step = train_step_fn(model, x, y, channels_last=True, **kw)
            t0 = time.perf_counter(); step(); first = time.perf_counter() - t0        # compiles, for the compiled row
            s = seconds_per_call(step, min_time)
            tflops = flops / s / 1e12
            peak = peaks[str(kw.get('dtype', torch.float32)).split('.')[1]]
            rows.append(dict(model=wname, config=cname, batch=bs, images_per_s=bs / s, tflops=tflops, pct_of_peak=100 * tflops / peak,
                             first_step_s=first))
            print(f"{wname:22s} {cname:17s} batch {bs:4d}: {bs / s:10.1f} images/s  {tflops:8.3f} TFLOP/s  "
                  f"({100 * tflops / peak:5.1f}% of the matmul peak)  first step {first:6.2f} s", flush=True)
    rec = dict(date=datetime.date.today().isoformat(), device=dev.type, name=name, torch=torch.__version__, tiny=a.tiny,
               matmul_peak_tflops=peaks, rows=rows)
    if not a.tiny or a.out:
        out = Path(a.out or f"benchmarks/results/bench_gpu_{dev.type}.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(rec, indent=1) + '\n')
        print(f"wrote {out}")
    return rec


if __name__ == '__main__':
    main()
