"dlbook.data: the IDX reader, the search path, the verified download, all on small files the tests write."
import gzip, hashlib, os, shutil, struct
from pathlib import Path
import numpy as np
import pytest
import torch
from dlbook import data


def idx_bytes(arr: np.ndarray) -> bytes:
    return bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f'>{arr.ndim}I', *arr.shape) + arr.astype(np.uint8).tobytes()


def write_fashion(folder: Path, n_train=12, n_test=5, gz=True, seed=0):
    "Write four small Fashion-MNIST-shaped IDX files; return their arrays."
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, n in [('train', n_train), ('test', n_test)]:
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8); y = rng.integers(0, 10, n, dtype=np.uint8)
        for name, arr in zip(data.FASHION_FILES[split], (x, y)):
            raw = idx_bytes(arr)
            (folder / (name if gz else name[:-3])).write_bytes(gzip.compress(raw) if gz else raw)
            arrays[name] = raw
        arrays[split] = (x, y)
    return arrays


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    "No real data visible: empty cache, no DLBOOK_DATA, Debian's folder hidden."
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'cache'))
    monkeypatch.delenv('DLBOOK_DATA', raising=False)
    real = data.data_search_path
    monkeypatch.setattr(data, 'data_search_path', lambda name='fashion-mnist': [p for p in real(name) if not str(p).startswith('/usr/share')])
    return tmp_path


@pytest.mark.parametrize('gz', [True, False])
def test_load_from_dlbook_data(isolated, monkeypatch, gz):
    arrays = write_fashion(isolated / 'mydata' / 'fashion-mnist', gz=gz)
    monkeypatch.setenv('DLBOOK_DATA', str(isolated / 'mydata'))
    x, y = data.load_fashion_mnist('train', download=False)
    assert x.dtype == torch.uint8 and y.dtype == torch.int64 and x.shape == (12, 28, 28)
    assert np.array_equal(x.numpy(), arrays['train'][0]) and np.array_equal(y.numpy(), arrays['train'][1])
    xt, _ = data.load_fashion_mnist('test', download=False)
    assert xt.shape == (5, 28, 28)


def test_missing_data_says_how_to_get_it(isolated):
    with pytest.raises(FileNotFoundError, match='apt-get install dataset-fashion-mnist'):
        data.load_fashion_mnist('train', download=False)


def test_bad_split(isolated):
    with pytest.raises(ValueError, match="'train' or 'test'"):
        data.load_fashion_mnist('valid')


@pytest.mark.parametrize('damage, msg', [
    (lambda b: b[:-100], 'truncated'),
    (lambda b: b'\x01' + b[1:], 'not an IDX file'),
    (lambda b: b[:2] + b'\x42' + b[3:], 'unknown IDX type'),
])
def test_corrupt_files_are_refused(isolated, monkeypatch, damage, msg):
    folder = isolated / 'd'
    arrays = write_fashion(folder, gz=False)
    name = data.FASHION_FILES['train'][0][:-3]
    (folder / name).write_bytes(damage(arrays[data.FASHION_FILES['train'][0]]))
    monkeypatch.setenv('DLBOOK_DATA', str(folder))
    with pytest.raises(ValueError, match=msg):
        data.load_fashion_mnist('train', download=False)


def test_damaged_gzip(isolated, monkeypatch):
    folder = isolated / 'd'
    write_fashion(folder)
    p = folder / data.FASHION_FILES['train'][0]
    p.write_bytes(p.read_bytes()[:200])
    monkeypatch.setenv('DLBOOK_DATA', str(folder))
    with pytest.raises(ValueError, match='damaged gzip'):
        data.load_fashion_mnist('train', download=False)


def test_mismatched_images_and_labels(isolated, monkeypatch):
    folder = isolated / 'd'
    write_fashion(folder, gz=False)
    lab = data.FASHION_FILES['train'][1][:-3]
    (folder / lab).write_bytes(idx_bytes(np.zeros(7, np.uint8)))
    monkeypatch.setenv('DLBOOK_DATA', str(folder))
    with pytest.raises(ValueError, match='do not match'):
        data.load_fashion_mnist('train', download=False)


@pytest.fixture
def server(tmp_path, serve_dir):
    "A local HTTP server over a folder of generated .gz files (loopback only)."
    root = tmp_path / 'srv'
    arrays = write_fashion(root)
    sums = {n: hashlib.sha256(arrays[n]).hexdigest() for pair in data.FASHION_FILES.values() for n in pair}
    return serve_dir(root), root, sums, arrays


def test_download_verifies_and_keeps_good_files(tmp_path, server):
    url, root, sums, arrays = server
    dest = data.download_fashion_mnist(tmp_path / 'dl', base_url=url, checksums=sums)
    assert sorted(p.name for p in dest.iterdir()) == sorted(sums)
    assert np.array_equal(data.read_idx(dest / data.FASHION_FILES['test'][0]), arrays['test'][0])


def test_download_with_wrong_content_keeps_nothing(tmp_path, server):
    url, root, sums, _ = server
    bad = dict(sums); bad[data.FASHION_FILES['train'][0]] = '0' * 64
    with pytest.raises(ValueError, match='damaged or not the published file'):
        data.download_fashion_mnist(tmp_path / 'dl', base_url=url, checksums=bad)
    left = sorted(p.name for p in (tmp_path / 'dl').iterdir())
    assert data.FASHION_FILES['train'][0] not in left and not any(n.endswith('.part') for n in left)


def test_download_unreachable_says_how_to_get_data(tmp_path, server):
    url, root, sums, _ = server
    (root / data.FASHION_FILES['train'][1]).unlink()  # the server answers 404 for this one
    with pytest.raises(OSError, match='apt-get install dataset-fashion-mnist'):
        data.download_fashion_mnist(tmp_path / 'dl', base_url=url, checksums=sums)
    assert not any(p.name.endswith('.part') for p in (tmp_path / 'dl').iterdir())


def test_load_downloads_into_cache_when_nothing_found(isolated, monkeypatch, server):
    url, _, sums, arrays = server
    monkeypatch.setattr(data, 'FASHION_URL', url)
    monkeypatch.setattr(data, 'FASHION_SHA256', sums)
    monkeypatch.setattr(data.download_fashion_mnist, '__defaults__', (None, url, sums, 5))
    x, y = data.load_fashion_mnist('test')
    assert np.array_equal(y.numpy(), arrays['test'][1])
    assert (isolated / 'cache' / 'dlbook' / 'fashion-mnist' / data.FASHION_FILES['test'][0]).exists()


@pytest.mark.skipif(not Path('/usr/share/datasets/fashion-mnist').exists(), reason='Debian dataset-fashion-mnist not installed')
def test_debian_files_match_published_checksums():
    d = Path('/usr/share/datasets/fashion-mnist')
    for name, digest in data.FASHION_SHA256.items():
        assert hashlib.sha256(gzip.decompress((d / name).read_bytes())).hexdigest() == digest, name


def test_mnist1d_is_generated_offline_and_deterministic(monkeypatch):
    import urllib.request
    monkeypatch.setattr(urllib.request, 'urlopen', lambda *a, **k: pytest.fail('load_mnist1d tried to download'))
    a, b = data.load_mnist1d(), data.load_mnist1d()
    assert a['x'].shape == (4000, 40) and a['x_test'].shape == (1000, 40)
    assert torch.equal(a['x'], b['x']) and set(a['y'].unique().tolist()) == set(range(10))


def test_download_verified_cut_connection_keeps_nothing(tmp_path, serve_dir):
    (tmp_path / 'srv').mkdir(); (tmp_path / 'srv' / 'f.bin').write_bytes(os.urandom(100_000))
    digest = hashlib.sha256((tmp_path / 'srv' / 'f.bin').read_bytes()).hexdigest()
    url = serve_dir(tmp_path / 'srv', truncate=True)
    with pytest.raises(ValueError, match='damaged or not the published file'):
        data.download_verified(url + 'f.bin', tmp_path / 'dl' / 'f.bin', digest)
    assert list((tmp_path / 'dl').iterdir()) == []
    good = serve_dir(tmp_path / 'srv')
    assert data.download_verified(good + 'f.bin', tmp_path / 'dl' / 'f.bin', digest).read_bytes() == (tmp_path / 'srv' / 'f.bin').read_bytes()


def test_download_verified_ctrl_c_keeps_nothing(tmp_path, serve_dir, monkeypatch):
    (tmp_path / 'srv').mkdir(); (tmp_path / 'srv' / 'f.bin').write_bytes(os.urandom(100_000))
    url = serve_dir(tmp_path / 'srv')
    def interrupted(src, dst, *a):
        dst.write(src.read(1000)); raise KeyboardInterrupt
    monkeypatch.setattr(shutil, 'copyfileobj', interrupted)
    with pytest.raises(KeyboardInterrupt):
        data.download_verified(url + 'f.bin', tmp_path / 'dl' / 'f.bin', '0' * 64)
    assert list((tmp_path / 'dl').iterdir()) == []
