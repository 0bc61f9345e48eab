"""The built site's links: no broken internal link or anchor, notebook links become page links, the API page
lists every export with a link to its entry, and every "source" link points at the line that defines the name."""
import importlib, inspect, json, re, sys
from html.parser import HTMLParser
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / 'tools'))
import sitecfg, render_site, check_links, api_page  # noqa: E402

CFG = sitecfg.load()
PAGES = render_site.site_pages(CFG)


@pytest.fixture(scope='module')
def site():
    return render_site.ensure_built(ROOT / '_site')


class Events(HTMLParser):
    "A page as a flat list of (kind, value, attrs): ('heading', text, level), ('link', href, attrs) and the text of each link."
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.events, self._h, self._a = [], None, None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if re.fullmatch(r'h[1-6]', tag): self._h = [tag, a.get('id'), '']
        if tag == 'a' and 'href' in a and not (a.get('class') or '').startswith('anchor-link'):
            self._a = [a['href'], a, '']

    def handle_data(self, data):
        if self._h is not None: self._h[2] += data
        if self._a is not None: self._a[2] += data

    def handle_endtag(self, tag):
        if self._h is not None and tag == self._h[0]:
            self.events.append(('heading', self._h[2].replace('¶', '').strip(), (self._h[0], self._h[1]))); self._h = None
        if tag == 'a' and self._a is not None:
            self.events.append(('link', self._a[0], dict(self._a[1], text=self._a[2].strip()))); self._a = None


def events(path: Path):
    e = Events(); e.feed(path.read_text(encoding='utf-8'))
    return e.events


def test_no_broken_link(site):
    "Every internal link and #anchor resolves, every link into the repository names a file and line that exist."
    rep = check_links.check(site, CFG)
    (site / '_links.txt').write_text(rep.text(), encoding='utf-8')
    print(rep.text().split('\n')[0])
    assert rep.pages >= len(PAGES) and rep.internal > 10 * len(PAGES) and rep.repository > 0
    assert not rep.broken, f"{len(rep.broken)} broken links (report: {site / '_links.txt'}):\n" + \
        '\n'.join(f"  {p}: {u} ({why})" for p, u, why in rep.broken[:30])


def test_checker_finds_what_it_should(tmp_path):
    "The link checker reports each kind of broken link and lists external ones (so a clean report means something)."
    (tmp_path / 'a.html').write_text('<h2 id="here">x</h2><a href="#here">ok</a><a href="b.html#there">ok</a>')
    (tmp_path / 'b.html').write_text(
        '<p id="there"></p><a href="a.html#nowhere">1</a><a href="12_autograd.ipynb">2</a><img src="gone.png">'
        f'<a href="{CFG.repo_url("dlbook/core.py", 10**6)}">3</a><a href="{CFG.repo_url("dlbook/no_such.py")}">4</a>'
        f'<a href="{CFG.site_url}a.html">5</a><a href="https://example.org/paper">ext</a><a href="mailto:x@y.z">m</a>')
    rep = check_links.check(tmp_path, CFG)
    why = '\n'.join(w for _, _, w in rep.broken)
    assert len(rep.broken) == 6, why
    for what in ["no element with id 'nowhere'", 'no file 12_autograd.ipynb', 'no file gone.png', 'lines, not 1000000',
                 'no_such.py is not in the repository', 'absolute link to the site itself']:
        assert what in why, f"{what!r} not reported:\n{why}"
    assert set(rep.external) == {'https://example.org/paper'} and 'https://example.org/paper' in rep.text()


def test_links_between_notebooks_become_links_between_pages(site):
    "A markdown link to a notebook (`[chapter](12_autograd.ipynb#part)`) becomes a link to its page (`autograd.html#part`)."
    rewrite = render_site.link_rewriter(CFG, PAGES)
    nb = next(f for f in CFG.files if f != 'index.ipynb')
    assert rewrite(f'{nb}#a-part') == f'{PAGES[nb]}#a-part' and rewrite(f'./{nb}') == PAGES[nb]
    assert rewrite(f'{CFG.site_url}{PAGES[nb]}#x') == f'{PAGES[nb]}#x' and rewrite('https://example.org/a.ipynb') == 'https://example.org/a.ipynb'
    seen = 0
    for src in CFG.files:
        cells = json.loads((CFG.nbs_path / src).read_text(encoding='utf-8'))['cells']
        md = '\n'.join(''.join(c['source']) for c in cells if c['cell_type'] == 'markdown')
        hrefs = {v for k, v, _ in events(site / PAGES[src]) if k == 'link'}
        for target, anchor in re.findall(r'\]\((?:\./)?([\w.-]+\.ipynb)(#[^)\s]*)?\)', md):
            seen += 1
            assert PAGES.get(target, '?') + anchor in hrefs, f"{src} links {target}{anchor}; its page has no link to {PAGES.get(target)}{anchor}"
            assert f'{target}' not in ' '.join(h for h in hrefs if not h.startswith('http')), f"{PAGES[src]} still links {target}"
    assert seen, "no notebook links to another: nothing was checked"


def _api_links(site):
    "{module: {name: href}} from the API page: links under each module's heading."
    out, mod = {}, None
    for kind, val, extra in events(site / 'api.html'):
        if kind == 'heading' and extra[0] == 'h2': mod = val; out[mod] = {}
        elif kind == 'link' and mod is not None: out[mod][extra['text']] = val
    return out


def _heading_ids(page: Path):
    return {extra[1]: val for kind, val, extra in events(page) if kind == 'heading' and extra[1]}


def test_api_page_lists_every_export(site):
    "Every name in every module's __all__ is on the API page, under its module; functions and classes link to their show_doc entry."
    lib = CFG.settings['lib_name']
    links = _api_links(site)
    modules = [m for m, _, _ in api_page.entries(CFG)]
    assert modules and all(f'{lib}.{m}' in links for m in modules), f"modules missing on the API page: {set(modules) - set(links)}"
    headings, n, bad = {}, 0, []
    for mod in modules:
        module = importlib.import_module(f'{lib}.{mod}')
        for name in module.__all__:
            n += 1
            href = links[f'{lib}.{mod}'].get(name)
            assert href, f"{lib}.{mod}.{name} is exported but not listed on the API page"
            obj = getattr(module, name)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                page, _, anchor = href.partition('#')
                if not anchor: bad.append(f"{lib}.{mod}.{name}: the API page links {href}, not an entry on the page"); continue
                if page not in headings: headings[page] = _heading_ids(site / page)
                if headings[page].get(anchor) != name:   # e.g. a section heading 'ReLU' took the id 'relu' first
                    bad.append(f"{lib}.{mod}.{name}: {href} lands on {headings[page].get(anchor)!r}, not on the entry for {name}")
    print(f"{n} exported names checked on the API page")
    assert not bad, ("links to API entries that land elsewhere (pandoc, hence Quarto, numbers a repeated heading id; "
                     "rename the section heading or the name):\n" + '\n'.join(bad))


def test_source_links_point_at_the_definition(site):
    "Each show_doc 'source' link names the file and line where the documented name is defined (def or class)."
    n, bad = 0, []
    lines_of = {}
    for page in sorted(set(PAGES.values())):
        ev = events(site / page)
        for i, (kind, url, extra) in enumerate(ev):
            if kind != 'link' or 'dlbook-source' not in (extra.get('class') or ''): continue
            heading = next((v for k, v, _ in ev[i + 1:] if k == 'heading'), None)
            path, line = check_links._repo_path(CFG, url)
            f = ROOT / path
            if f not in lines_of: lines_of[f] = f.read_text(encoding='utf-8').splitlines()
            name = heading.rsplit('.', 1)[-1]
            near = lines_of[f][line - 1:line + 4]       # the line itself, or just below its decorators
            n += 1
            if not any(re.match(rf'\s*(?:async\s+)?(?:def|class)\s+{re.escape(name)}\b', l) for l in near):
                bad.append(f"{page}: {heading}: {url} shows {near[:2]}")
    assert n > 0, "no source links found on the site"
    assert not bad, f"{len(bad)} of {n} source links miss the definition:\n" + '\n'.join(bad[:20])


def test_heading_ids_without_rendering_agree_with_the_pages(site):
    "tools/api_page.py (for Quarto) computes heading ids without rendering pages: they must be the pages' ids."
    for page, hs in render_site.proc_headings(ROOT / '_proc', CFG).items():
        rendered = [extra[1] for kind, _, extra in events(site / page) if kind == 'heading' and extra[1] and extra[1] != 'course-map-title']
        assert rendered == [h[1] for h in hs], f"{page}: heading ids differ between the page and render_site.headings_of"
