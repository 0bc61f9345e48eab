"Tests of dlbook.conv: conv2d (loops and im2col), im2col, pooling and Conv2d vs PyTorch (values and gradients), finite differences, receptive fields, bad inputs."
import math
import pytest
import torch
from torch import nn
import torch.nn.functional as F
from dlbook.conv import (conv_out_size, pad2d, conv2d_loops, im2col, conv2d, Conv2d, max_pool2d, avg_pool2d, receptive_field,
                         conv_block, simple_cnn, ResBlock2d, small_resnet, count_macs)
from dlbook.core import check_close, set_seed

# (input shape, weight shape, stride, padding)
CONV_CASES = [((2, 1, 8, 8), (4, 1, 3, 3), 1, 0), ((2, 1, 8, 8), (4, 1, 3, 3), 1, 1), ((2, 3, 9, 7), (5, 3, 3, 3), 1, 1),
              ((3, 4, 10, 10), (6, 4, 3, 3), 2, 1), ((1, 2, 7, 9), (3, 2, 2, 4), (2, 1), (0, 2)), ((2, 3, 5, 5), (2, 3, 5, 5), 1, 0),
              ((2, 8, 6, 6), (16, 8, 1, 1), 1, 0), ((1, 2, 11, 11), (3, 2, 5, 5), 3, 2), ((2, 2, 4, 4), (1, 2, 3, 3), 3, 1),
              ((1, 1, 1, 1), (2, 1, 3, 3), 1, 1), ((2, 3, 6, 5), (4, 3, 4, 2), (3, 2), 1), ((1, 16, 14, 14), (32, 16, 3, 3), 1, 1)]


@pytest.mark.parametrize('fn', [conv2d_loops, conv2d])
@pytest.mark.parametrize('x_shape,w_shape,stride,padding', CONV_CASES)
@pytest.mark.parametrize('bias', [True, False])
def test_conv2d_parity_values_and_grads(fn, x_shape, w_shape, stride, padding, bias):
    set_seed(0)
    x = torch.randn(x_shape, dtype=torch.float64, requires_grad=True)
    w = torch.randn(w_shape, dtype=torch.float64, requires_grad=True)
    b = torch.randn(w_shape[0], dtype=torch.float64, requires_grad=True) if bias else None
    ins = [t for t in (x, w, b) if t is not None]
    y1, y2 = fn(x, w, b, stride, padding), F.conv2d(x, w, b, stride, padding)
    check_close(y1, y2, atol=1e-10, name='output')
    g = torch.randn_like(y2)
    for name, g1, g2 in zip('xwb', torch.autograd.grad(y1, ins, g), torch.autograd.grad(y2, ins, g)):
        check_close(g1, g2, atol=1e-10, name=f'grad wrt {name}')


@pytest.mark.parametrize('x_shape,w_shape,stride,padding', CONV_CASES[:6])
def test_conv2d_float32_parity(x_shape, w_shape, stride, padding):
    set_seed(1)
    x, w, b = torch.randn(x_shape), torch.randn(w_shape), torch.randn(w_shape[0])
    check_close(conv2d(x, w, b, stride, padding), F.conv2d(x, w, b, stride, padding), atol=1e-4)


@pytest.mark.parametrize('fn', [conv2d_loops, conv2d])
@pytest.mark.parametrize('stride,padding', [(1, 0), (2, 1), ((1, 2), (1, 0))])
def test_conv2d_finite_differences(fn, stride, padding):
    set_seed(0)
    x = torch.randn(2, 2, 5, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 2, 3, 2, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: fn(x, w, b, stride, padding), (x, w, b), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize('k,s,p', [(3, 1, 0), (3, 2, 1), ((2, 3), (1, 2), (1, 0)), (1, 1, 0), (5, 3, 2), (4, 4, 0), ((1, 3), 1, (0, 1))])
def test_im2col_matches_unfold(k, s, p):
    set_seed(0)
    x = torch.randn(2, 3, 9, 8, dtype=torch.float64, requires_grad=True)
    c1, c2 = im2col(x, k, s, p), F.unfold(x, k, padding=p, stride=s)
    check_close(c1, c2, atol=0)
    g = torch.randn_like(c1)
    check_close(torch.autograd.grad(c1, x, g)[0], torch.autograd.grad(c2, x, g)[0], atol=1e-12)


def test_pad2d():
    x = torch.arange(6.).view(1, 1, 2, 3)
    y = pad2d(x, (1, 2), value=-1)
    assert y.shape == (1, 1, 4, 7)
    check_close(y, F.pad(x, (2, 2, 1, 1), value=-1))
    assert pad2d(x, 0) is x


def test_conv_layer_parity_and_init():
    set_seed(0)
    for kw in [dict(stride=1, padding=1), dict(stride=2, padding=0, bias=False), dict(stride=(2, 1), padding=(1, 2))]:
        ref = nn.Conv2d(4, 6, (3, 2), **kw).double()
        ours = Conv2d(4, 6, (3, 2), **kw).double(); ours.load_state_dict(ref.state_dict())
        x = torch.randn(3, 4, 9, 8, dtype=torch.float64, requires_grad=True)
        x2 = x.detach().clone().requires_grad_()
        y1, y2 = ours(x), ref(x2)
        check_close(y1, y2, atol=1e-10)
        g = torch.randn_like(y1); y1.backward(g); y2.backward(g)
        check_close(x.grad, x2.grad, atol=1e-10, name='grad wrt input')
        check_close(ours.weight.grad, ref.weight.grad, atol=1e-10, name='grad wrt weight')
        if ref.bias is not None: check_close(ours.bias.grad, ref.bias.grad, atol=1e-10, name='grad wrt bias')
    # same init distribution as nn.Conv2d: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases
    w1, w2 = Conv2d(256, 64, 3).weight, nn.Conv2d(256, 64, 3).weight
    bound = 1 / math.sqrt(256 * 9)
    check_close(w1.std(), bound / math.sqrt(3), rtol=0.01, atol=0); check_close(w2.std(), bound / math.sqrt(3), rtol=0.01, atol=0)
    assert w1.abs().max() <= bound and Conv2d(256, 64, 3).bias.abs().max() <= bound


POOL_CASES = [((2, 3, 8, 8), 2, None, 0), ((2, 3, 7, 7), 2, None, 0), ((1, 4, 9, 9), 3, 2, 1), ((2, 2, 6, 10), (2, 3), (1, 2), (1, 1)),
              ((1, 1, 5, 5), 3, 1, 0), ((1, 2, 4, 4), 4, None, 2), ((3, 1, 10, 7), (3, 1), (2, 1), (1, 0)), ((1, 1, 1, 1), 1, None, 0)]


@pytest.mark.parametrize('ours,theirs', [(max_pool2d, F.max_pool2d), (avg_pool2d, F.avg_pool2d)])
@pytest.mark.parametrize('shape,k,s,p', POOL_CASES)
def test_pool_parity_values_and_grads(ours, theirs, shape, k, s, p):
    set_seed(0)
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)   # continuous: no ties
    y1, y2 = ours(x, k, s, p), theirs(x, k, s, p)
    check_close(y1, y2, atol=1e-12)
    g = torch.randn_like(y2)
    check_close(torch.autograd.grad(y1, x, g)[0], torch.autograd.grad(y2, x, g)[0], atol=1e-12)


@pytest.mark.parametrize('fn', [max_pool2d, avg_pool2d])
def test_pool_finite_differences(fn):
    set_seed(0)
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: fn(x, 3, 2, 1), (x,), eps=1e-6, atol=1e-6)


def test_conv_out_size_matches_torch():
    for size in range(1, 12):
        for k in range(1, 5):
            for s in range(1, 4):
                for p in range(0, 3):
                    if k > size + 2 * p: continue
                    got = F.conv2d(torch.zeros(1, 1, size, size), torch.zeros(1, 1, k, k), stride=s, padding=p).shape[-1]
                    assert conv_out_size(size, k, s, p) == got


@pytest.mark.parametrize('call,match', [
    (lambda: conv2d(torch.randn(3, 28, 28), torch.randn(8, 3, 3, 3)), r'\(N, C, H, W\).*\(3, 28, 28\)'),
    (lambda: conv2d(torch.randn(2, 3, 28, 28), torch.randn(8, 1, 3, 3)), r'\(2, 3, 28, 28\).*3 channels.*\(8, 1, 3, 3\)'),
    (lambda: conv2d_loops(torch.randn(2, 3, 8, 8), torch.randn(8, 4, 3, 3)), r'\(2, 3, 8, 8\).*\(8, 4, 3, 3\)'),
    (lambda: conv2d(torch.randn(2, 1, 4, 4), torch.randn(8, 1, 7, 7), padding=1), r'kernel 7×7.*larger than the padded input 6×6'),
    (lambda: conv2d(torch.randn(2, 1, 4, 9), torch.randn(8, 1, 5, 3)), r'larger than the padded input 4×9'),
    (lambda: conv2d(torch.randn(2, 1, 4, 4), torch.randn(8, 1, 3)), r'weight of shape'),
    (lambda: conv2d(torch.randn(2, 1, 4, 4), torch.randn(8, 1, 3, 3), torch.randn(4)), r'bias of shape \(4,\)'),
    (lambda: conv2d(torch.randn(2, 1, 4, 4), torch.randn(8, 1, 3, 3), stride=0), r'stride >= 1'),
    (lambda: im2col(torch.randn(4, 4), 2), r'\(4, 4\)'),
    (lambda: max_pool2d(torch.randn(8, 8), 2), r'\(N, C, H, W\)'),
    (lambda: avg_pool2d(torch.randn(1, 1, 8, 8), 2, padding=2), 'at most half'),
    (lambda: max_pool2d(torch.randn(1, 1, 2, 2), 3), 'larger than the padded input'),
    (lambda: Conv2d(3, 8, 3)(torch.randn(1, 4, 8, 8)), r'\(1, 4, 8, 8\).*\(8, 3, 3, 3\)'),
    (lambda: ResBlock2d(16, 32)(torch.randn(2, 8, 14, 14)), r'\(2, 8, 14, 14\)'),
    (lambda: receptive_field(nn.Linear(3, 3)), 'no convolution'),
    (lambda: conv_out_size(3, 5), 'larger than the padded input')])
def test_bad_inputs(call, match):
    with pytest.raises(ValueError, match=match): call()


def test_bad_stride_type():
    with pytest.raises(TypeError, match='pair of ints'): conv2d(torch.randn(1, 1, 5, 5), torch.randn(1, 1, 3, 3), stride=1.5)


def _linear_probe(model):
    layers = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            c = nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, bias=False)
            nn.init.constant_(c.weight, 1.0); layers.append(c)
        elif isinstance(m, nn.MaxPool2d): layers.append(nn.AvgPool2d(m.kernel_size, m.stride))
    return nn.Sequential(*layers)


@pytest.mark.parametrize('model', [simple_cnn(), simple_cnn((8, 8)),
                                   nn.Sequential(nn.Conv2d(1, 2, 5, 2, 2), nn.Conv2d(2, 2, 3, 1, 1), nn.MaxPool2d(3, 2), nn.Conv2d(2, 1, 3))])
def test_receptive_field_matches_gradient_support(model):
    probe = _linear_probe(model)
    x = torch.zeros(1, 1, 96, 96, requires_grad=True)
    for n, (_, r, _) in zip(range(1, len(probe) + 1), receptive_field(model)):
        out = probe[:n](x)
        g, = torch.autograd.grad(out[0, 0, out.shape[2] // 2, out.shape[3] // 2], x)
        assert (len(g[0, 0].abs().sum(1).nonzero()), len(g[0, 0].abs().sum(0).nonzero())) == (r, r)


def test_models_and_macs():
    assert simple_cnn()(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    assert small_resnet()(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    assert count_macs(nn.Linear(10, 4), (1, 10)) == 40
    c = nn.Conv2d(3, 8, 3, stride=2, padding=1)
    assert count_macs(c, (1, 3, 16, 16)) == 8 * 3 * 9 * 8 * 8
    assert count_macs(Conv2d(3, 8, 3, stride=2, padding=1), (1, 3, 16, 16)) == 8 * 3 * 9 * 8 * 8
    assert count_macs(small_resnet(), (1, 1, 28, 28)) > 3 * count_macs(simple_cnn(), (1, 1, 28, 28))
