"dlbook.experiment: each Recipe field reaches the training run, seeds are reproducible, mean_std and margin on edge cases, errors."
import math
from unittest import mock
import pytest
import torch
import torch.nn.functional as F
from dlbook import experiment
from dlbook.experiment import Recipe, train_recipe, mean_std, margin
from dlbook.learner import EarlyStoppingCB
from dlbook.regularize import AugmentCB, Dropout


def tiny_data():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(300, 40, generator=g), torch.arange(300) % 10
    return {'train': (x[:200], y[:200]), 'valid': (x[200:250], y[200:250]), 'test': (x[250:], y[250:])}


def captured(recipe):
    with mock.patch.object(experiment, 'fit_classifier', wraps=experiment.fit_classifier) as fc:
        r = train_recipe(recipe, tiny_data(), seed=1, n_train=100, width=8, epochs=1)
    return r, fc.call_args


def test_every_field_reaches_the_run(one_thread):
    _, call = captured(Recipe())
    kw = call.kwargs
    assert kw['wd'] == 0.0 and kw['cbs'] == [] and kw['loss_func'] is F.cross_entropy
    assert not any(isinstance(m, torch.nn.Dropout) for m in call.args[0]().modules())
    _, call = captured(Recipe(wd=0.3, dropout=0.4, shift=2, noise=0.1, smoothing=0.2, early_stop=True))
    kw = call.kwargs
    assert kw['wd'] == 0.3
    assert [type(cb) for cb in kw['cbs']] == [AugmentCB, EarlyStoppingCB]
    assert kw['loss_func'].keywords == {'eps': 0.2}
    drops = [m.p for m in call.args[0]().modules() if isinstance(m, torch.nn.Dropout)]
    assert drops == [0.4, 0.4]
    x = torch.zeros(5, 40)
    out = kw['cbs'][0].aug(x, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.std() > 0.05           # the noise is in the pipeline


def test_reproducible_and_seed_dependent(one_thread):
    a = train_recipe(Recipe(shift=3, dropout=0.2), tiny_data(), seed=5, n_train=100, width=8, epochs=2)
    b = train_recipe(Recipe(shift=3, dropout=0.2), tiny_data(), seed=5, n_train=100, width=8, epochs=2)
    assert a == b and all(0 <= v <= 1 for v in a.values())


def test_mean_std_and_margin():
    assert mean_std([2, 4]) == (3.0, math.sqrt(2))
    assert margin([0.5, 0.5], [0.5, 0.5]) == 0.0
    assert margin([0.6, 0.6], [0.5, 0.5]) == -math.inf
    assert margin([0.50, 0.52, 0.48], [0.70, 0.70, 0.70]) == pytest.approx(0.2 / 0.02)
    with pytest.raises(ValueError, match='at least 2 values'): margin([1.0], [2.0, 3.0])


def test_recipe_names():
    assert str(Recipe(wd=0.1, dropout=0.2)) == 'wd 0.1 + dropout 0.2'
    assert str(Recipe(noise=0.0)) == 'none'


def test_errors():
    with pytest.raises(TypeError, match='must be a Recipe'): train_recipe(dict(wd=0.1), tiny_data(), 0)
    with pytest.raises(KeyError, match='missing'): train_recipe(Recipe(), {'train': tiny_data()['train']}, 0)
