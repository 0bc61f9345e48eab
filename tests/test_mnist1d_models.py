"The MNIST-1D model builders: output shapes, parameter counts, gradients, and clear errors on bad input."
import pytest
import torch
from torch import nn
from dlbook.mnist1d_models import (SignalInput, count_params, logistic, mlp, paper_cnn, cnn,
                                   GRUClassifier, paper_gru)

BUILDERS = {
    'logistic': logistic, 'paper_mlp': mlp, 'mlp_dropout': lambda **kw: mlp((64, 32, 16), p_drop=0.3, **kw),
    'paper_cnn': paper_cnn, 'cnn': cnn, 'cnn_small': lambda **kw: cnn((8, 16), kernel=3, **kw),
    'paper_gru': paper_gru, 'gru_max': lambda **kw: GRUClassifier(8, pool='max', **kw),
    'gru_one_way': lambda **kw: GRUClassifier(5, bidirectional=False, **kw),
}


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)


@pytest.mark.parametrize('name', BUILDERS)
@pytest.mark.parametrize('shape', [(5, 40), (5, 1, 40), (1, 40)])
def test_forward_shape(name, shape):
    m = BUILDERS[name]()
    m.eval()
    out = m(torch.randn(shape))
    assert out.shape == (shape[0], 10)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize('name', BUILDERS)
def test_other_length_and_classes(name):
    m = BUILDERS[name](length=64, n_classes=3)
    assert m(torch.randn(4, 64)).shape == (4, 3)


@pytest.mark.parametrize('name', BUILDERS)
def test_backward_reaches_every_parameter(name):
    m = BUILDERS[name]()
    x, y = torch.randn(6, 40), torch.randint(0, 10, (6,))
    nn.functional.cross_entropy(m(x), y).backward()
    for pname, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, f"{name}: no gradient reaches {pname}"


@pytest.mark.parametrize('name', BUILDERS)
@pytest.mark.parametrize('shape', [(5, 41), (5, 39), (40,), (5, 2, 40), (5, 40, 1), (2, 3, 1, 40)])
def test_wrong_shape_is_named(name, shape):
    m = BUILDERS[name]()
    with pytest.raises(ValueError, match=r'got shape \(' + ', '.join(map(str, shape))):
        m(torch.randn(shape))


def test_error_messages_say_what_to_do():
    with pytest.raises(ValueError, match=r'x\[None\]'): logistic()(torch.randn(40))
    with pytest.raises(ValueError, match='pass signals of length 40'): cnn()(torch.randn(3, 50))
    with pytest.raises(TypeError, match=r'x\.float\(\)'): mlp()(torch.zeros(3, 40, dtype=torch.long))
    with pytest.raises(TypeError, match='torch.as_tensor'): paper_gru()([[0.0] * 40])


@pytest.mark.parametrize('make, msg', [
    (lambda: SignalInput(layout='image'), 'layout must be one of'),
    (lambda: SignalInput(length=0), 'length must be a positive int'),
    (lambda: mlp(p_drop=1.0), 'p_drop is a probability'),
    (lambda: cnn(kernel=4), 'must be odd'),
    (lambda: cnn(channels=()), 'at least one layer'),
    (lambda: paper_cnn(length=2), 'too short'),
    (lambda: GRUClassifier(pool='mean'), "'flat' or 'max'"),
])
def test_bad_arguments(make, msg):
    with pytest.raises(ValueError, match=msg): make()


def test_signal_input_layouts():
    x = torch.randn(3, 40)
    assert SignalInput()(x).shape == (3, 40)
    assert SignalInput(layout='channels')(x).shape == (3, 1, 40)
    assert SignalInput(layout='steps')(x).shape == (3, 40, 1)
    assert torch.equal(SignalInput(layout='steps')(x[:, None])[..., 0], x)   # (batch, 1, length) is accepted too


def test_parameter_counts_match_the_architectures():
    assert count_params(logistic()) == 40 * 10 + 10
    assert count_params(mlp()) == (40 * 100 + 100) + (100 * 100 + 100) + (100 * 10 + 10)
    conv = lambda ci, co, k: ci * co * k + co
    assert count_params(paper_cnn()) == conv(1, 25, 5) + 2 * conv(25, 25, 3) + 125 * 10 + 10
    gru6 = 2 * 3 * (6 * 1 + 6 * 6 + 2 * 6)
    assert count_params(paper_gru()) == gru6 + 480 * 10 + 10
    assert count_params(GRUClassifier(32, pool='max')) == 2 * 3 * (32 + 32 * 32 + 64) + 64 * 10 + 10
    bn = 2 * 32
    assert count_params(cnn()) == 32 * 5 + 3 * 32 * 32 * 5 + 4 * bn + 32 * 10 + 10


def test_paper_cnn_lengths_shrink_as_described():
    m = paper_cnn()
    x = m[0](torch.randn(2, 40))
    lengths = []
    for layer in m:
        if isinstance(layer, nn.Conv1d): x = layer(x); lengths.append(x.shape[-1])
    assert lengths == [19, 10, 5]


def test_gru_heads_see_the_right_widths():
    "'max' hands the head one value per feature (2 directions x hidden); 'flat' hands it every step's features."
    m = GRUClassifier(4, pool='max').eval()
    feats = []
    m.head.register_forward_hook(lambda mod, inp, out: feats.append(inp[0].shape))
    m(torch.randn(2, 40))
    m = GRUClassifier(4, pool='flat').eval()
    m.head.register_forward_hook(lambda mod, inp, out: feats.append(inp[0].shape))
    m(torch.randn(2, 40))
    assert feats == [(2, 8), (2, 40 * 8)]


def test_cnn_is_nearly_shift_equivariant_before_pooling():
    "Shifting the input shifts every conv feature map (away from the borders); the average then barely changes."
    m = cnn((8, 8), kernel=3).eval()
    x = torch.zeros(1, 40); x[0, 15:20] = torch.tensor([1., 3., 5., 3., 1.])
    body = m[:-3]
    a, b = body(x), body(torch.roll(x, 4, dims=1))
    torch.testing.assert_close(b[..., 14:34], a[..., 10:30])
    assert not torch.allclose(b, a)

