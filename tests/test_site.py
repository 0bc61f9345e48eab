"The offline website: render it, open pages in headless Chromium, and check they are not blank or broken."
import os, shutil, subprocess, sys, tempfile
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / '_site'
SHOTS = SITE / '_screenshots'           # screenshots land here (git-ignored with _site/)
PAGES = {'index.html': 'home', 'neuron.html': 'chapter 1, the artificial neuron'}
CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser') or shutil.which('google-chrome')


def _stale():
    if not (SITE / 'index.html').exists(): return True
    built = (SITE / 'index.html').stat().st_mtime
    return any(p.stat().st_mtime > built for p in (ROOT / 'nbs').glob('*.ipynb'))


@pytest.fixture(scope='module')
def site():
    if CHROMIUM is None:
        if os.environ.get('CI'): pytest.fail("chromium is not installed: CI must install it (apt-get install chromium)")
        pytest.skip('chromium not installed (apt-get install chromium)')
    if _stale():
        subprocess.run([sys.executable, str(ROOT / 'tools' / 'render_site.py')], check=True, cwd=ROOT)
    SHOTS.mkdir(exist_ok=True)
    return SITE


def _chromium(*args):
    with tempfile.TemporaryDirectory() as prof:
        r = subprocess.run([CHROMIUM, '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
                            '--no-first-run', '--disable-component-update', '--disable-sync', f'--user-data-dir={prof}',
                            '--virtual-time-budget=20000', '--window-size=1280,1400', *args],
                           capture_output=True, text=True, timeout=120)
    return r


@pytest.mark.parametrize('page', list(PAGES))
def test_page_renders(site, page):
    url = (site / page).as_uri()
    dom = _chromium('--dump-dom', url).stdout
    assert len(dom) > 10_000, f"{page}: the rendered page is (nearly) blank"
    assert 'id="dlbook-sidebar"' in dom, f"{page}: the course navigation is missing"
    for target in ['core.html', 'data.html', 'neuron.html']:
        assert f'href="{target}"' in dom, f"{page}: the sidebar lacks a link to {target}"
    assert dom.count('src="data:image/png;base64,') >= 1, f"{page}: lost its figures"
    assert 'class="MathJax_Error"' not in dom, f"{page}: MathJax failed to typeset some math"
    if page == 'neuron.html':
        assert dom.count('class="MathJax"') >= 10, f"{page}: the math was not typeset (MathJax did not run)"
        assert '$$' not in dom.split('<main', 1)[1], f"{page}: raw $$...$$ left in the page"


@pytest.mark.parametrize('page', list(PAGES))
def test_screenshot_not_blank(site, page):
    import matplotlib.image as mpimg
    shot = SHOTS / page.replace('.html', '.png')
    _chromium(f'--screenshot={shot}', (site / page).as_uri())
    assert shot.exists(), f"chromium wrote no screenshot of {page}"
    img = mpimg.imread(shot)
    assert img.shape[0] >= 1000 and img.shape[1] >= 1200
    assert img[..., :3].std() > 0.05, f"{page}: the screenshot is a blank page"
