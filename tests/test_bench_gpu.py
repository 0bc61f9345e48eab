"benchmarks/bench_gpu.py must not rot: its CI smoke run on the CPU, tiny sizes; and its ResNet is ResNet-18-shaped."
import json, subprocess, sys
from pathlib import Path
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / 'benchmarks'))
import bench_gpu  # noqa: E402


def test_resnet18_like_has_resnet18s_parameter_count():
    m = bench_gpu.resnet18_like()
    assert sum(p.numel() for p in m.parameters()) == 11_689_512          # torchvision's resnet18
    assert m(torch.zeros(1, 3, 64, 64)).shape == (1, 1000)


def test_bench_gpu_tiny_run_on_cpu(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / 'benchmarks' / 'bench_gpu.py'), '--tiny', '--no-compile', '--device', 'cpu',
                          '--out', str(tmp_path / 'b.json')], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    rec = json.loads((tmp_path / 'b.json').read_text())
    assert rec['device'] == 'cpu' and rec['tiny'] and set(rec['matmul_peak_tflops']) == {'float32', 'bfloat16'}
    assert [(r['model'], r['config']) for r in rec['rows']] == [(m, c) for m in ('course CNN 28px', 'ResNet-18-like 32px') for c in ('float32', 'bfloat16')]
    assert all(r['images_per_s'] > 0 and r['tflops'] > 0 for r in rec['rows'])
    assert 'device: cpu' in out.stdout
