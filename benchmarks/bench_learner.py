#!/usr/bin/env python
"""Learner.fit against a hand-written PyTorch loop: same model, data, seed and metrics.

    python benchmarks/bench_learner.py [--runs 7] [--epochs 2] [--threads 2]

Both variants train the Fashion-MNIST MLP (784-256-128-10, dropout 0.2, AdamW 1e-3, batch 256) for
`--epochs` epochs and evaluate on the test set after each epoch, accumulating the loss and accuracy on
the device (one host sync per epoch). Runs alternate between the variants (and alternate which goes
first) in one process; the script reports the median seconds per epoch of each, their ratio, and checks
that both variants end with bit-identical weights and identical per-epoch losses.
"""
import argparse, math, statistics, time
import torch
import torch.nn.functional as F
from torch import nn
from dlbook.core import set_seed
from dlbook.data import load_fashion_mnist, FASHION_MEAN, FASHION_STD
from dlbook.learner import Learner, MetricsCB, DeviceCB, accuracy


class Batches:
    "Minibatches (x[i], y[i]) in a fresh random order on each pass when `shuffle`."
    def __init__(self, x, y, bs, shuffle=False): self.x, self.y, self.bs, self.shuffle = x, y, bs, shuffle
    def __len__(self): return math.ceil(len(self.x) / self.bs)
    def __iter__(self):
        idx = torch.randperm(len(self.x)) if self.shuffle else torch.arange(len(self.x))
        for i in range(0, len(idx), self.bs):
            j = idx[i:i + self.bs]
            yield self.x[j], self.y[j]


class DLs:
    def __init__(self, train, valid): self.train, self.valid = train, valid


def make_model():
    return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Dropout(0.2), nn.Linear(256, 128), nn.ReLU(), nn.Dropout(0.2), nn.Linear(128, 10))


def hand_loop(dls, epochs, seed):
    set_seed(seed)
    model = make_model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    history = []
    for _ in range(epochs):
        model.train()
        tl, tn = torch.zeros(()), 0
        for xb, yb in dls.train:
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            tl += loss.detach() * len(yb); tn += len(yb)
        model.eval()
        vl, va, vn = torch.zeros(()), torch.zeros(()), 0
        with torch.no_grad():
            for xb, yb in dls.valid:
                pred = model(xb)
                vl += F.cross_entropy(pred, yb) * len(yb); va += (pred.argmax(1) == yb).float().mean() * len(yb); vn += len(yb)
        history.append(((tl / tn).item(), *(torch.stack([vl, va]) / vn).tolist()))
    return model, history


def learner_loop(dls, epochs, seed):
    set_seed(seed)
    learn = Learner(make_model(), dls, lr=1e-3, cbs=[MetricsCB(accuracy, show=False), DeviceCB('cpu')])
    learn.fit(epochs)
    return learn.model, [(h['train_loss'], h['valid_loss'], h['valid_accuracy']) for h in learn.metrics_cb.history]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--runs', type=int, default=7)
    ap.add_argument('--epochs', type=int, default=2)
    ap.add_argument('--threads', type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    xtr, ytr = load_fashion_mnist('train'); xte, yte = load_fashion_mnist('test')
    prep = lambda x: ((x.float() / 255 - FASHION_MEAN) / FASHION_STD).flatten(1)
    dls = DLs(Batches(prep(xtr), ytr, 256, shuffle=True), Batches(prep(xte), yte, 1024))
    variants = {'hand-written loop': hand_loop, 'Learner.fit': learner_loop}
    times = {k: [] for k in variants}
    results = {}
    hand_loop(dls, 1, 0); learner_loop(dls, 1, 0)   # warm-up (allocator, thread pool)
    for r in range(a.runs):
        order = list(variants) if r % 2 == 0 else list(variants)[::-1]
        for name in order:
            t0 = time.perf_counter()
            model, hist = variants[name](dls, a.epochs, seed=r)
            times[name].append((time.perf_counter() - t0) / a.epochs)
            results[name] = (model, hist)
        (m1, h1), (m2, h2) = results.values()
        same_w = all(torch.equal(p, q) for p, q in zip(m1.state_dict().values(), m2.state_dict().values()))
        print(f"run {r}: " + ', '.join(f"{k} {v[-1]:.3f} s/epoch" for k, v in times.items())
              + f"; ratio {times['Learner.fit'][-1] / times['hand-written loop'][-1]:.3f}; identical weights: {same_w}; "
              f"losses equal: {h1 == h2}", flush=True)
        assert same_w and h1 == h2, (h1, h2)
    med = {k: statistics.median(v) for k, v in times.items()}
    ratios = [l / h for l, h in zip(times['Learner.fit'], times['hand-written loop'])]
    print(f"\nmedian s/epoch over {a.runs} runs: hand {med['hand-written loop']:.3f}, Learner {med['Learner.fit']:.3f}")
    print(f"ratio of medians (Learner / hand): {med['Learner.fit'] / med['hand-written loop']:.3f}; "
          f"median of per-run ratios: {statistics.median(ratios):.3f}")
    print(f"final epoch: train loss {h1[-1][0]:.4f}, test loss {h1[-1][1]:.4f}, test accuracy {h1[-1][2]:.4f} (both variants)")


if __name__ == '__main__':
    main()
