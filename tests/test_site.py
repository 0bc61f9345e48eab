"""The offline website in a real browser: every page opened in headless Chromium, checked, and photographed.

Debian's chromium is driven by Selenium through Debian's chromedriver (no browser download). The
pages are served over loopback HTTP (search needs it). Screenshots land in _site/_screenshots/.
"""
import functools, http.server, os, re, shutil, sys, tempfile, threading, time
from pathlib import Path
from urllib.parse import urlsplit
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / 'tools'))
import sitecfg, render_site  # noqa: E402

CFG = sitecfg.load()
PAGES = render_site.site_pages(CFG)            # {source file: page}, from _quarto.yml's sidebar and navbar
ORDER = [PAGES[f] for f in CFG.files]           # reading order: previous/next links follow it
NAVBAR = [PAGES[href] for _, href in CFG.navbar]
TOC = ', '.join(f'.jp-RenderedMarkdown h{n}[id]' for n in render_site.toc_levels(CFG))
SITE = ROOT / '_site'
SHOTS = SITE / '_screenshots'
CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser')
DRIVER = shutil.which('chromedriver')

# What must never reach a page: the reprs a notebook prints when a cell's last line returns an object.
STRAY = [r'<Figure size \d+x\d+', r'<matplotlib\.', r'\bLine2D\(', r'<Axes', r'^Text\(-?\d', r' at 0x[0-9a-f]{6,}>',
         r'\b\w+\(children=\(', r'<IPython\.core', r'<torch\.utils\.data']
# TeX that MathJax left alone, in prose (code and outputs excluded)
RAW_TEX = r'\$\$|\\\(|\\\[|\\begin\{|\$[^$\s][^$\n]*\$'
# pandoc attributes that only Quarto understands, e.g. `[source](...){target="_blank"}`, `## Title {#id}`
QUARTO_ATTRS = r'\{(?:[#.][\w-]+|[\w-]+=)[^}\n]*\}'


def _quiet_handler(directory):
    class H(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a): pass
    return functools.partial(H, directory=str(directory))


@pytest.fixture(scope='module')
def browser():
    if not (CHROMIUM and DRIVER):
        msg = "the browser checks need Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"
        if os.environ.get('CI'): pytest.fail(msg)
        pytest.skip(msg)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    render_site.ensure_built(SITE)
    SHOTS.mkdir(exist_ok=True)
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), _quiet_handler(SITE))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix='dlbook-chromium-')
    for a in ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--window-size=1400,1000',
              '--disable-background-networking', '--no-first-run', '--disable-component-update', '--disable-sync',
              f'--user-data-dir={profile}']:
        opts.add_argument(a)
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    driver.set_page_load_timeout(60)
    try: yield driver, f'http://127.0.0.1:{httpd.server_port}/'
    finally:
        driver.quit(); httpd.shutdown(); shutil.rmtree(profile, ignore_errors=True)


def _open(driver, url, timeout=90):
    "Load `url` and wait until MathJax has typeset the page."
    driver.get(url)
    t0 = time.time()
    while driver.execute_script("return document.documentElement.getAttribute('data-mathjax')") != 'done':
        if time.time() - t0 > timeout: raise AssertionError(f"{url}: MathJax did not finish within {timeout} s")
        time.sleep(0.05)


# One round trip gathers everything the checks need from the rendered page.
PROBE = r"""
const q = s => Array.from(document.querySelectorAll(s));
const text = s => q(s).map(e => e.innerText).join('\n');
return {
  main: (document.querySelector('#dlbook-main') || {innerText: ''}).innerText,
  title: (document.querySelector('h1.title') || {innerText: ''}).innerText,
  sidebar: q('#dlbook-sidebar a').map(a => a.getAttribute('href')),
  active: q('#dlbook-sidebar a.active').map(a => a.getAttribute('href')),
  navActive: q('#dlbook-navbar a.active').map(a => a.getAttribute('href')),
  images: q('#dlbook-main img').map(i => [i.getAttribute('src').slice(0, 60), i.complete, i.naturalWidth]),
  prose: text('.jp-RenderedMarkdown, .dlbook-title, .dlbook-map'),
  math: q('.MathJax, .MathJax_Display, .MathJax_SVG').length,
  tex: q('script[type^="math/tex"]').length,
  // noErrors shows bad TeX as its source (.noError, <merror>); noUndefined shows an unknown macro as red text
  mathErrors: q('.MathJax_Error, .noError, merror, .MJX_Assistive_MathML mtext[mathcolor="red"]').map(e => e.textContent).concat(
              document.body.innerText.includes('Math Processing Error') ? ['Math Processing Error'] : []),
  outputs: text('.jp-OutputArea'),
  stderr: text('[data-mime-type="application/vnd.jupyter.stderr"]'),
  prev: q('.dlbook-pager a.prev').map(a => a.getAttribute('href')),
  next: q('.dlbook-pager a.next').map(a => a.getAttribute('href')),
  toc: q('#dlbook-toc a').map(a => a.getAttribute('href')),
  headings: q(arguments[0]).map(h => '#' + h.id),   // the headings the table of contents should list
  colab: q('#dlbook-main a[href^="https://colab.research.google.com/"]').map(a => a.getAttribute('href')),
  widgets: q('[data-dlbook-widget]').map(w => +w.dataset.figures),
  map: q('.dlbook-map .part').map(p => [p.querySelector('h3').innerText, Array.from(p.querySelectorAll('a')).map(a => a.getAttribute('href'))]),
};
"""


def problems(p: dict, page: str, src: str) -> list:
    "Everything wrong with a page, from the PROBE of it: [message]."
    bad = []
    def check(ok, msg):
        if not ok: bad.append(f"{page}: {msg}")
    check(len(p['main']) > 500 and p['title'].strip(), f"(nearly) blank: {len(p['main'])} characters, title {p['title']!r}")
    # navigation: the whole sidebar, with this page marked
    check(p['sidebar'] == [PAGES[f] for f in CFG.files], f"the sidebar differs from _quarto.yml's: {p['sidebar']}")
    want = [page] if page in ORDER else []
    check(p['active'] == want, f"the sidebar should mark {want} as the current page, marks {p['active']}")
    check(p['navActive'] == ([page] if page in NAVBAR else []), f"the navbar marks {p['navActive']} as current")
    # figures
    broken = [i for i in p['images'] if not (i[1] and i[2] > 0)]
    check(not broken, f"{len(broken)} images did not load: {broken[:3]}")
    # math: typeset, no error, nothing left raw
    check(not p['mathErrors'], f"MathJax could not typeset {p['mathErrors'][:3]}")
    check(p['math'] >= p['tex'], f"{p['tex']} formulas found, {p['math']} typeset")
    raw = re.findall(RAW_TEX, p['prose'])
    check(not raw, f"TeX left untypeset in the prose: {raw[:5]}")
    attrs = re.findall(QUARTO_ATTRS, p['prose'])
    check(not attrs, f"Quarto/pandoc attribute syntax shown as text (the offline renderer does not apply it): {attrs[:3]}")
    # outputs: no error, no traceback, no stray repr
    check(not p['stderr'].strip(), f"error or warning output on the page: {p['stderr'][:400]!r}")
    check('Traceback (most recent call last)' not in p['outputs'], "a traceback in the outputs")
    stray = [m.group(0) for pat in STRAY for m in [re.search(pat, p['outputs'], re.M)] if m]
    check(not stray, f"stray object reprs in the outputs (end the cell with `_ = ...` or `plt.show()`): {stray}")
    # reading order
    i = ORDER.index(page) if page in ORDER else None
    want_prev = [ORDER[i - 1]] if i else []
    want_next = [ORDER[i + 1]] if i is not None and i + 1 < len(ORDER) else []
    check((p['prev'], p['next']) == (want_prev, want_next), f"previous/next links {p['prev']}/{p['next']}, want {want_prev}/{want_next}")
    # table of contents: one entry per section and subsection heading, in page order
    check(p['headings'], "no section headings")
    check(p['toc'] == p['headings'], f"the table of contents ({len(p['toc'])} entries) differs from the headings ({len(p['headings'])})")
    # run it elsewhere
    if src.endswith('.ipynb'):
        check(CFG.colab_url(src) in p['colab'], f"no 'Open in Colab' link to {CFG.colab_url(src)} (found {p['colab']})")
    # the home page shows the course map: each part of the sidebar with its chapters
    if page == 'index.html':
        want = [[sec, [PAGES[f] for f in files]] for sec, files in CFG.sections if sec]
        check(p['map'] == want, f"the course map shows {p['map']}, the sidebar has {want}")
    # widgets: a note that says it is interactive in Jupyter, beside the figure the cell stored
    check(all(n >= 1 for n in p['widgets']), "an ipywidgets explorer stored no figure, so the page shows only its note: have "
          "its cell also show the starting figure (e.g. `plt.show()` of it before the widget), then refresh the notebook")
    return bad


@pytest.mark.parametrize('src', list(PAGES), ids=lambda s: PAGES[s])
def test_page(browser, src):
    "Open the page, check it (see `problems`), and save a screenshot of its top."
    driver, base = browser
    page = PAGES[src]
    _open(driver, base + page)
    p = driver.execute_script(PROBE, TOC)
    driver.save_screenshot(str(SHOTS / page.replace('.html', '.png')))
    bad = problems(p, page, src)
    assert not bad, '\n'.join(bad)


# Faults injected into a good page, each of which `problems` must report (so the checks above can fail).
FAULTS = r"""
const md = document.querySelector('.jp-RenderedMarkdown');
document.querySelector('.dlbook-map a').remove();
const add = (where, html) => { const d = document.createElement('div'); d.innerHTML = html; where.appendChild(d); return d; };
add(md, '<img src="no-such-figure.png">');
add(md, '<p>left raw: $\\alpha + 1$ and a {target="_blank"}</p>');
const out = document.querySelector('.jp-OutputArea') || add(document.querySelector('#dlbook-main'), '<div class="jp-OutputArea"></div>');
add(out, '<pre><Figure size 640x480 with 1 Axes></pre>'.replace('<F', '&lt;F').replace('s>', 's&gt;'));
add(out, '<div data-mime-type="application/vnd.jupyter.stderr"><pre>Traceback (most recent call last):</pre></div>');
add(md, '<div data-dlbook-widget data-figures="0"></div>');
document.querySelector('#dlbook-sidebar a.active').classList.remove('active');
document.querySelector('.dlbook-pager a.next').remove();
document.querySelector('#dlbook-toc li').remove();
const bad = add(md, '<p>typeset badly: $\\undefinedmacro{x}$ and $x^{$</p>');
window.__typeset = false;
MathJax.Hub.Queue(['Typeset', MathJax.Hub, bad], () => { window.__typeset = true; });
"""


def test_checks_catch_faults(browser):
    "Every kind of fault the page checks look for, injected into the home page, is reported."
    driver, base = browser
    _open(driver, base + 'index.html')
    assert not problems(driver.execute_script(PROBE, TOC), 'index.html', 'index.ipynb'), "the home page should be clean to start with"
    driver.execute_script(FAULTS)
    _wait(lambda: driver.execute_script('return window.__typeset'), what='MathJax')
    found = '\n'.join(problems(driver.execute_script(PROBE, TOC), 'index.html', 'index.ipynb'))
    for what in ['images did not load', 'MathJax could not typeset', 'TeX left untypeset', 'attribute syntax',
                 'error or warning output', 'traceback', 'stray object reprs', 'should mark', 'previous/next',
                 'table of contents', 'explorer stored no figure', 'course map']:
        assert what in found, f"the injected fault {what!r} went unreported; problems() said:\n{found}"


def _wait(fn, timeout=30, what='condition'):
    t0 = time.time()
    while True:
        v = fn()
        if v: return v
        if time.time() - t0 > timeout: raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def _defining_page(word):
    "The page whose API entries define a name containing `word` (from nbdev's index), e.g. 'kaiming' -> deep.html."
    ns = {}
    exec((ROOT / 'dlbook' / '_modidx.py').read_text(encoding='utf-8'), ns)
    hits = sorted({link.split('#')[0] for mod in ns['d']['syms'].values() for name, (link, _) in mod.items()
                   if word in name.rsplit('.', 1)[-1].lower()})
    assert len(hits) == 1, f"expected one chapter to define names with {word!r}, found {hits}"
    return hits[0]


@pytest.mark.parametrize('query,word', [('Kaiming', 'kaiming')])
def test_search_leads_to_the_chapter(browser, query, word):
    "Type a query into the search box on the home page; the first result is the chapter that builds it, and following it gets there."
    from selenium.webdriver.common.by import By
    driver, base = browser
    want = _defining_page(word)
    _open(driver, base + 'index.html')
    box = _wait(lambda: driver.find_elements(By.CSS_SELECTOR, '#dlbook-search input'), what='the search box')[0]
    box.send_keys(query)
    def first_href():
        try:
            links = driver.find_elements(By.CSS_SELECTOR, '.pagefind-ui__result-link')
            return links[0].get_attribute('href') if links else None
        except Exception: return None            # the list was re-rendered under us: look again
    href = _wait(first_href, what=f'results for {query!r}')
    for _ in range(30):                          # Pagefind fills the list in steps: wait until the first result stays put
        time.sleep(0.1)
        again = first_href()
        if again == href: break
        href = again
    driver.save_screenshot(str(SHOTS / f'_search_{query}.png'))
    _wait(lambda: driver.find_elements(By.CSS_SELECTOR, '.pagefind-ui__result-link'), what=f'results for {query!r}')[0].click()
    _wait(lambda: urlsplit(driver.current_url).path.rsplit('/', 1)[-1] != 'index.html', what='the result page to open')
    got = urlsplit(driver.current_url).path.rsplit('/', 1)[-1]
    assert got == want, f"search for {query!r}: the first result opened {got}, want {want} (the chapter that defines {word})"
    _open(driver, driver.current_url)
    assert query.lower() in driver.find_element(By.ID, 'dlbook-main').text.lower()
