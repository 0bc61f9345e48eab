"dlbook.explorer: building the widget trains nothing; the Train button retrains with the slider values and redraws; the figure; errors."
from functools import partial
from unittest import mock
import matplotlib
matplotlib.use('Agg')
import pytest
import torch
from dlbook import explorer
from dlbook.explorer import CHOICES, explore, plot_explore, make_explorer


def tiny_data():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(400, 40, generator=g), torch.arange(400) % 10
    return {'train': (x[:300], y[:300]), 'valid': (x[300:], y[300:])}


def test_widget_trains_only_on_the_button(one_thread):
    data = tiny_data()
    calls = []
    def fake(d, *args, **kw):
        calls.append((args, kw))
        return explore(d, 100, 8, steps=6, every=3)
    with mock.patch.object(explorer, 'explore', side_effect=fake):
        ui = make_explorer(data)
        controls, image = ui.children
        assert calls == [] and image.value == b''
        sliders = {w.description: w for w in controls.children if hasattr(w, 'description')}
        sliders['n_train'].value, sliders['width'].value, sliders['augment'].value = 250, 16, True
        assert calls == []                                   # moving sliders does not train
        controls.manual_button.click()
    assert calls == [((250, 16, 0.0, 0.0, True), {'seed': 0})]
    assert image.value[:4] == b'\x89PNG'


def test_defaults_are_among_the_choices():
    ui = make_explorer(tiny_data())
    for w in ui.children[0].children:
        if getattr(w, 'description', None) in CHOICES: assert w.value in CHOICES[w.description]


def test_plot_and_errors(one_thread):
    h = explore(tiny_data(), n_train=100, width=8, steps=6, every=3, augment=True, dropout=0.2, wd=0.1)
    assert [r['step'] for r in h] == [0, 3, 6]
    fig = plot_explore(h, 'x')
    assert len(fig.axes) == 2 and all(len(ax.lines) == 2 for ax in fig.axes)
    with pytest.raises(ValueError, match='history is empty'): plot_explore([])
    with pytest.raises(KeyError, match="'train' and 'valid'"): explore({'valid': tiny_data()['valid']})
