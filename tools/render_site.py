#!/usr/bin/env python
"""Render the course website offline, without Quarto.

    python tools/render_site.py            # process the notebooks (nbdev), then write _site/
    python tools/render_site.py --no-proc  # reuse an existing _proc/
    python -m http.server -d _site         # then open http://localhost:8000 (search needs a server)

With Quarto installed, `nbdev_docs` builds the published site from the same `_quarto.yml`
(see .github/workflows/deploy.yaml; CONTRIBUTING.md lists where the two builds differ). This
script is the offline stand-in used in CI and on machines without Quarto. It

1. runs nbdev's notebook processing into `_proc/` (API docs, doc links, front matter), as
   `nbdev_proc_nbs` does but without its attempt to install Quarto and reinstall the package;
2. renders every page the sidebar and navbar of `_quarto.yml` list with nbconvert and the
   template in `tools/site_template/dlbook/` (sidebar, navbar, previous/next links, an
   on-page table of contents, "Open in Colab", the course map on the home page);
   headings get the identifiers pandoc (hence Quarto) gives them, so nbdev's API links such
   as `learner.html#learner.fit` resolve, and links between notebooks become links between pages;
3. adds the API reference page (tools/api_page.py), a local MathJax, and a Pagefind search index.
"""
import argparse, contextlib, html, json, os, re, shutil, subprocess, sys, time
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS))
import sitecfg, api_page  # noqa: E402

ROOT = TOOLS.parent
TEMPLATES = TOOLS / 'site_template'


# ---------------------------------------------------------------- nbdev processing

@contextlib.contextmanager
def _cwd(path):
    old = os.getcwd(); os.chdir(path)
    try: yield
    finally: os.chdir(old)


def hidden_folders(path: Path) -> list:
    "The folders above and at `path` whose names start with a dot: nbdev skips every notebook below such a folder."
    return [p for p in Path(path).resolve().parts if p.startswith('.')]


def process_notebooks(root: Path = ROOT) -> Path:
    "nbdev's `_proc/` (what Quarto renders): `nbdev_proc_nbs` minus its Quarto installer, which reinstalls the package."
    hidden = hidden_folders(root)
    if hidden:
        sys.exit(f"the repository is at {Path(root).resolve()}, inside a folder whose name starts with a dot ({', '.join(hidden)}): "
                 "nbdev (nbdev_proc_nbs, nbdev_docs, and this renderer) silently skips every notebook there. "
                 "Clone or move the repository to a path without such a folder, e.g. ~/dlbook, and run this again.")
    from nbdev.quarto import refresh_quarto_yml
    from nbdev.doclinks import _build_modidx
    from nbdev.serve import proc_nbs
    with _cwd(root):
        refresh_quarto_yml()      # nbs/nbdev.yml from settings.ini
        _build_modidx()           # dlbook/_modidx.py: the doc links and the API page read it
        return Path(proc_nbs())


# ---------------------------------------------------------------- notebooks -> pages

def front_matter(nb: dict) -> dict:
    "Title, description and output file from the raw YAML cell nbdev puts first."
    import yaml
    for c in nb['cells'][:1]:
        src = ''.join(c['source']).strip()
        if c['cell_type'] == 'raw' and src.startswith('---'):
            return yaml.safe_load(src.strip('-\n')) or {}
    return {}


def _directives(src: str) -> dict:
    return dict(re.findall(r'^#\|\s*([\w-]+):?\s*(\S*)\s*$', src, flags=re.M))


# nbdev writes show_doc's source link with Quarto attributes: `[source](URL){target="_blank" ...}`
_SOURCE_LINK = re.compile(r'\[source\]\(([^)\s]+)\)\{[^}]*\}')


def prepare(nb: dict) -> dict:
    "Apply the Quarto cell options nbdev relies on: front matter, `include`/`echo`/`output: false`, `output: asis`, `hide`."
    cells = []
    for c in nb['cells']:
        src = ''.join(c['source']) if isinstance(c['source'], list) else c['source']
        if c['cell_type'] == 'raw' and src.lstrip().startswith('---'): continue
        c = dict(c, source=src, metadata=dict(c.get('metadata', {})))
        if c['cell_type'] == 'code':
            d = _directives(src)
            if d.get('include') == 'false' or 'hide' in d: continue
            c['source'] = re.sub(r'^#\|.*\n?', '', src, flags=re.M)
            if d.get('output') == 'asis':   # show_doc: its markdown output becomes a markdown cell
                md = ''.join(''.join(o.get('data', {}).get('text/markdown', '')) for o in c.get('outputs', []))
                md = _SOURCE_LINK.sub(r'<a class="dlbook-source" href="\1">source</a>', md)
                cells.append({'cell_type': 'markdown', 'metadata': {}, 'source': md, 'id': c.get('id', 'x')})
                continue
            if d.get('output') == 'false': c['outputs'] = []
            if d.get('echo') == 'false': c['metadata']['transient'] = {'remove_source': True}
        if c['cell_type'] == 'markdown':
            c['source'] = _SOURCE_LINK.sub(r'<a class="dlbook-source" href="\1">source</a>', c['source'])
        cells.append(c)
    return dict(nb, cells=cells)


def pandoc_id(text: str) -> str:
    "The identifier pandoc (so Quarto) gives a heading with this text: nbdev's doc links use the same rule."
    s = ''.join(ch for ch in text.lower() if ch.isalnum() or ch.isspace() or ch in '_-.')
    s = '-'.join(s.split())
    while s and not s[0].isalpha(): s = s[1:]
    return s or 'section'


def _plain(fragment: str) -> str:
    return html.unescape(re.sub(r'<[^>]+>', '', fragment)).strip()


class PageState:
    "What one page collects while its markdown renders: heading ids (unique, as pandoc makes them) and its headings."
    def __init__(self, rewrite=lambda url: url):
        self.rewrite, self.ids, self.headings = rewrite, set(), []   # headings: [(level, id, text)] in page order

    def new_id(self, text):
        base = pandoc_id(text)
        hid, n = base, 0
        while hid in self.ids: n += 1; hid = f'{base}-{n}'
        self.ids.add(hid)
        return hid


def toc_levels(cfg) -> tuple:
    "Heading levels in the on-page table of contents: 2 up to `format.html.toc-depth` of _quarto.yml (Quarto's default 3)."
    depth = ((cfg.quarto.get('format') or {}).get('html') or {}).get('toc-depth', 3)
    return tuple(range(2, int(depth) + 1))


def _markdown(page: PageState, **kw):
    "A markdown-to-HTML function for one page: nbconvert's renderer (math kept for MathJax) with pandoc ids and page links."
    from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath

    class SiteRenderer(IPythonRenderer):
        def heading(self, text, level, **attrs):
            plain = _plain(text)
            hid = page.new_id(plain)
            page.headings.append((level, hid, plain))
            return f'<h{level} id="{hid}">{text}<a class="anchor-link" href="#{hid}">¶</a></h{level}>\n'

        def link(self, text, url, title=None):
            return super().link(text, page.rewrite(url), title)

    return MarkdownWithMath(renderer=SiteRenderer(escape=False, **kw)).render


def make_exporter(levels=(2, 3)):
    "An nbconvert HTMLExporter using the dlbook template, pandoc heading ids and link rewriting (set `.page` per page)."
    from jinja2 import pass_context
    from nbconvert import HTMLExporter

    class SiteExporter(HTMLExporter):
        page = None

        @pass_context     # nbconvert hands this filter the Jinja context (the cell, for its attachments)
        def markdown2html(self, context, source):
            cell = context.get('cell', {})
            return _markdown(self.page, attachments=cell.get('attachments', {}), embed_images=self.embed_images,
                             path=context.get('resources', {}).get('metadata', {}).get('path', ''),
                             anchor_link_text=self.anchor_link_text, exclude_anchor_links=self.exclude_anchor_links)(source)

        def from_notebook_node(self, nb, resources=None, **kw):
            # HTMLExporter's own version ends by re-parsing the whole page with BeautifulSoup to add alt texts and
            # tabindex attributes (a third of the render time); the dlbook template writes those itself.
            from nbconvert.exporters.templateexporter import TemplateExporter
            from nbconvert.filters.highlight import Highlight2HTML
            from nbconvert.filters.widgetsdatatypefilter import WidgetsDataTypeFilter
            lang = nb.metadata.get('language_info', {})
            self.register_filter('highlight_code', Highlight2HTML(pygments_lexer=lang.get('pygments_lexer', lang.get('name')), parent=self))
            resources = self._init_resources(resources)
            self.register_filter('filter_data_type', WidgetsDataTypeFilter(notebook_metadata=self._nb_metadata, parent=self, resources=resources))
            return TemplateExporter.from_notebook_node(self, nb, resources, **kw)

        def default_filters(self):
            yield from super().default_filters()
            yield ('markdown2html', self.markdown2html)
            yield ('page_toc', lambda _: [h for h in self.page.headings if h[0] in levels])

    ex = SiteExporter(template_name='dlbook', extra_template_basedirs=[str(TEMPLATES)])
    ex.exclude_input_prompt = ex.exclude_output_prompt = True
    return ex


def headings_of(nb: dict) -> list:
    "[(level, id, text)] of a processed notebook's headings, as its page gets them (without rendering the page)."
    page, md = PageState(), None
    md = _markdown(page)
    for c in prepare(nb)['cells']:
        if c['cell_type'] == 'markdown': md(c['source'])
        elif c['cell_type'] == 'code':
            for o in c.get('outputs', []):
                d = o.get('data', {})   # a markdown output is shown as markdown unless a richer type comes first
                if 'text/markdown' in d and not {'text/html', 'application/javascript'} & set(d):
                    md(''.join(d['text/markdown']))
    return page.headings


def link_rewriter(cfg, outputs: dict):
    "Map a link as written in a notebook to one between pages: `12_autograd.ipynb#x` -> `autograd.html#x`, the site's own URL -> relative."
    def rewrite(url):
        if url.startswith(cfg.site_url): url = url[len(cfg.site_url):] or 'index.html'
        m = re.match(r'^(?:\./)?([^/#?:]+\.(?:ipynb|qmd))(#.*)?$', url)
        if m and m.group(1) in outputs: url = outputs[m.group(1)] + (m.group(2) or '')
        return url
    return rewrite


def proc_headings(proc: Path, cfg=None) -> dict:
    "{page: [(level, id, text)]} for every notebook the sidebar lists, from nbdev's `_proc/`."
    cfg = cfg or sitecfg.load()
    return {output_name(f): headings_of(json.loads((proc / f).read_text(encoding='utf-8'))) for f in cfg.files if f.endswith('.ipynb')}


def output_name(name: str) -> str:
    "The page a source file becomes, as nbdev and Quarto name it: `22_learner.ipynb` -> `learner.html`, `api.qmd` -> `api.html`."
    return re.sub(r'^\d+_', '', name.rsplit('.', 1)[0]) + '.html'


def site_pages(cfg=None) -> dict:
    "{source file: output page} for every page of the site: the sidebar's notebooks, then the navbar's other pages."
    cfg = cfg or sitecfg.load()
    out = {f: output_name(f) for f in cfg.files}
    for _, href in cfg.navbar: out.setdefault(href, output_name(href))
    return out


SOURCES = ['nbs/*.ipynb', 'dlbook/*.py', '_quarto.yml', 'settings.ini', 'tools/*.py', 'tools/site_template/**/*']


def ensure_built(site: Path = ROOT / '_site') -> Path:
    "Build the site unless it is newer than every file it is made from (the tests call this; CI builds it just before)."
    index = site / 'index.html'
    newest = max(p.stat().st_mtime for g in SOURCES for p in ROOT.glob(g) if p.is_file())
    if not index.exists() or index.stat().st_mtime < newest:
        r = subprocess.run([sys.executable, str(TOOLS / 'render_site.py'), '--out', str(site)], cwd=ROOT, capture_output=True, text=True)
        if r.returncode: raise RuntimeError(f"building the site failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return site


def _num(name):
    m = re.match(r'(\d+)_', name)
    return m.group(1) if m else ''


def render(proc: Path, site: Path, cfg=None) -> dict:
    "Write every page of the site into `site`; return {output file: title}."
    import nbformat
    cfg = cfg or sitecfg.load()
    t0 = time.perf_counter()
    nbs = {p.name: json.loads(p.read_text(encoding='utf-8')) for p in sorted(proc.glob('*.ipynb'))}
    listed = [f for f in cfg.files]
    missing = [f for f in listed if f.endswith('.ipynb') and f not in nbs]
    if missing:
        sys.exit(f"_quarto.yml's sidebar lists {missing}, which nbdev did not process into {proc}: add the notebooks, fix the "
                 "sidebar, or (if nothing was processed) move the repository out of a folder whose name starts with a dot")
    not_notebooks = [f for f in listed if not f.endswith('.ipynb')]
    if not_notebooks: sys.exit(f"_quarto.yml's sidebar lists {not_notebooks}: the offline renderer renders notebooks only")
    unlisted = sorted(set(nbs) - set(listed))
    if unlisted: print(f"warning: {unlisted} are not in _quarto.yml's sidebar: rendered, but no page links to them")

    # every page: {source file: (output file, title, description, notebook)}
    pages = {}
    for name in listed + unlisted:
        fm = front_matter(nbs[name])
        out = output_name(name)
        if fm.get('output-file', out) != out: sys.exit(f"{name}: nbdev names its page {fm['output-file']}, tools/render_site.py {out}: make them agree")
        pages[name] = (out, fm.get('title') or name, fm.get('description', ''), nbs[name])
    for text, href in cfg.navbar:
        if href in pages: continue
        if href != api_page.QMD: sys.exit(f"_quarto.yml's navbar links {href}, which neither nbs/ nor tools/api_page.py provides")
        pages[href] = (output_name(href), api_page.TITLE, api_page.DESCRIPTION, None)   # made once the chapters are rendered
    outputs = {name: p[0] for name, p in pages.items()}
    rewrite = link_rewriter(cfg, outputs)

    if site.exists(): shutil.rmtree(site)
    (site / '_static').mkdir(parents=True)
    import jupyter_server_mathjax
    shutil.copytree(Path(jupyter_server_mathjax.__file__).parent / 'static', site / 'mathjax')
    shutil.copy(TEMPLATES / 'site.css', site / '_static' / 'site.css')
    exporter = make_exporter(toc_levels(cfg))
    lab = next(Path(p) for p in exporter.template_paths if (Path(p) / 'static' / 'index.css').exists() and Path(p).name == 'lab')
    shutil.copy(lab / 'static' / 'index.css', site / '_static' / 'jupyterlab.css')
    shutil.copy(lab / 'static' / 'theme-light.css', site / '_static' / 'jupyterlab-light.css')

    label = lambda f: cfg.labels.get(f) or pages[f][1]
    order = [f for f in listed]
    course_map = [(title, [(outputs[f], _num(f), pages[f][1], pages[f][2]) for f in files])
                  for title, files in cfg.sections if title]
    headings = {}
    for name, (out, title, desc, nb) in pages.items():
        if nb is None:   # the API reference: its links go to the entries' actual heading ids
            nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(api_page.markdown(cfg, headings))])
        i = order.index(name) if name in order else None
        d = {'root': '', 'site_title': cfg.title, 'title': title, 'description': desc,
             'navbar': [(text, outputs.get(href, href), href == name) for text, href in cfg.navbar],
             'sections': [(sec, [(outputs[f], label(f), f == name) for f in files]) for sec, files in cfg.sections],
             'prev': (outputs[order[i - 1]], label(order[i - 1])) if i else None,
             'next': (outputs[order[i + 1]], label(order[i + 1])) if i is not None and i + 1 < len(order) else None,
             'colab': cfg.colab_url(name) if name.endswith('.ipynb') else None,
             # tools/setup_cell.py puts the Colab link into the notebook itself (both builds show it): no second one then
             'colab_header': name.endswith('.ipynb') and cfg.colab_url(name) not in json.dumps(nb),
             'notebook_url': cfg.repo_url(f"{cfg.settings.get('nbs_path', 'nbs')}/{name}"),
             'course_map': course_map if out == 'index.html' else None}
        exporter.page = PageState(rewrite)
        node = nbformat.reads(json.dumps(prepare(nb)), as_version=4)
        body, _ = exporter.from_notebook_node(node, resources={'metadata': {'name': title}, 'dlbook': d})
        (site / out).write_text(body, encoding='utf-8')
        headings[out] = exporter.page.headings
    if 'index.html' not in outputs.values(): sys.exit("no page renders to index.html: the sidebar must list index.ipynb")
    t1 = time.perf_counter()
    search_index(site)
    print(f"wrote {len(pages)} pages to {site} in {t1 - t0:.1f} s, search index in {time.perf_counter() - t1:.1f} s")
    return {p[0]: p[1] for p in pages.values()}


def search_index(site: Path):
    "Pagefind's static search index (pip package pagefind-bin) under site/pagefind/."
    try: import pagefind_bin  # noqa: F401
    except ImportError: sys.exit("the search index needs Pagefind: pip install pagefind-bin (it is in settings.ini's dev_requirements)")
    r = subprocess.run([sys.executable, '-m', 'pagefind_bin', '--site', str(site), '--glob', '*.html', '--quiet',
                        '--exclude-selectors', '.anchor-link, a.dlbook-source'],
                       capture_output=True, text=True)
    if r.returncode: sys.exit(f"pagefind failed:\n{r.stdout}\n{r.stderr}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--no-proc', action='store_true', help='reuse _proc/ instead of processing the notebooks again')
    ap.add_argument('--out', type=Path, default=ROOT / '_site')
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    if not a.no_proc:
        process_notebooks(ROOT)
        print(f"processed the notebooks into _proc/ in {time.perf_counter() - t0:.1f} s")
    render(ROOT / '_proc', a.out)


if __name__ == '__main__':
    main()
