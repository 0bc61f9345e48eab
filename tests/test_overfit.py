"dlbook.overfit: balanced subsets on random label sets, evaluate against a plain loop, EvalCB's schedule, fit_classifier's seeding, errors."
import math
from functools import partial
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st
from dlbook.overfit import class_subset, evaluate, EvalCB, fit_classifier
from dlbook.mnist1d_models import mlp


@settings(max_examples=60, deadline=None)
@given(counts=st.lists(st.integers(1, 30), min_size=2, max_size=8), frac=st.floats(0, 1), seed=st.integers(0, 2**31))
def test_class_subset_is_as_balanced_as_possible(counts, frac, seed):
    y = torch.cat([torch.full((c,), k) for k, c in enumerate(counts)])
    y = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))]
    n = len(counts) + round(frac * (len(y) - len(counts)))
    idx = class_subset(y, n, seed=seed)
    assert len(idx) == n == len(idx.unique()) and torch.equal(idx, idx.sort().values)
    got = torch.bincount(y[idx], minlength=len(counts))
    # a class gets fewer than another only when it has run out of examples
    for k, c in enumerate(counts):
        assert got[k] == c or got[k] >= got.max() - 1, (counts, n, got.tolist())
    assert torch.equal(class_subset(y, n, seed=seed), idx)


def test_class_subset_errors():
    y = torch.tensor([0, 1, 1, 2])
    with pytest.raises(ValueError, match='from the number of classes'): class_subset(y, 2)
    with pytest.raises(ValueError, match='to the number of examples'): class_subset(y, 5)
    with pytest.raises(ValueError, match='got 2.0'): class_subset(y, 2.0)
    with pytest.raises(TypeError, match='integer class labels'): class_subset(y.float(), 3)
    with pytest.raises(TypeError, match='integer class labels'): class_subset([0, 1, 2], 3)
    with pytest.raises(TypeError, match='1-D'): class_subset(y[None], 3)


def test_evaluate_matches_a_plain_loop_and_keeps_the_mode(one_thread):
    torch.manual_seed(0)
    x, y = torch.randn(1234, 40), torch.randint(0, 10, (1234,))
    m = mlp((32,), p_drop=0.5)
    for bs in (1, 100, 1000, 5000):
        r = evaluate(m, x, y, bs=bs)
        m.eval()
        with torch.no_grad(): out = m(x)
        m.train()
        assert math.isclose(r['loss'], F.cross_entropy(out, y).item(), rel_tol=1e-5)
        assert r['accuracy'] == (out.argmax(1) == y).sum().item() / len(y)
        assert m.training
    with pytest.raises(ValueError, match='same number'): evaluate(m, x[:0], y[:0])


def test_evalcb_schedule_and_fit_classifier_seeding(one_thread):
    x, y = torch.randn(250, 40), torch.randint(0, 10, (250,))
    learn = fit_classifier(partial(mlp, (8,)), (x, y), epochs=2, bs=100, track=dict(train=(x, y)), every=2, seed=3)
    assert [r['step'] for r in learn.eval_cb.history] == [0, 2, 4, 6]       # 3 batches per epoch, 6 steps
    again = fit_classifier(partial(mlp, (8,)), (x, y), epochs=2, bs=100, seed=3)
    other = fit_classifier(partial(mlp, (8,)), (x, y), epochs=2, bs=100, seed=4)
    w = lambda l: l.model.state_dict()['1.weight']
    assert torch.equal(w(learn), w(again)) and not torch.equal(w(learn), w(other))
    const = fit_classifier(partial(mlp, (8,)), (x, y), epochs=1, bs=100, lr=0.05, one_cycle=False)
    assert const.opt.param_groups[0]['lr'] == 0.05


def test_evalcb_errors():
    with pytest.raises(ValueError, match='positive number of steps'): EvalCB(0, train=(1, 2))
    with pytest.raises(ValueError, match='at least one set'): EvalCB(5)
    with pytest.raises(TypeError, match=r"pair \(x, y\)"): EvalCB(5, train=torch.zeros(3))


def test_fit_classifier_errors():
    x, y = torch.randn(20, 40), torch.randint(0, 10, (20,))
    with pytest.raises(TypeError, match='function that builds the model'): fit_classifier(mlp(), (x, y))
    with pytest.raises(TypeError, match=r'train must be a pair \(x, y\)'): fit_classifier(mlp, x)
    with pytest.raises(TypeError, match='y.long()'): fit_classifier(mlp, (x, y.float()))
    with pytest.raises(ValueError, match='valid: x and y hold 20 and 5'): fit_classifier(mlp, (x, y), (x, y[:5]))
