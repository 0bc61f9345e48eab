#!/usr/bin/env python
"""The API reference page: every exported name of every `dlbook` module, linked to its entry in the chapter that defines it.

    python tools/api_page.py      # writes nbs/api.qmd for Quarto (git-ignored; run it before nbdev_docs)

`tools/render_site.py` renders the same markdown into `api.html` for the offline site. The
names come from each module's `__all__` (what `from dlbook.x import *` gives), the links from
nbdev's index `dlbook/_modidx.py` (written by `nbdev_export`), whose anchors are the headings
of nbdev's `show_doc` entries. Names nbdev does not document (constants) link to their chapter.
"""
import importlib, inspect, json, pkgutil, re, sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sitecfg  # noqa: E402

QMD = 'api.qmd'          # in nbs/, so Quarto renders it to api.html beside the chapters
TITLE = 'API reference'
DESCRIPTION = 'Every name the dlbook package exports, by module, with a link to where its chapter explains it.'


def notebook_meta(path: Path) -> dict:
    "Title, default_exp module and output page of a notebook, read from its cells as nbdev does."
    nb = json.loads(path.read_text(encoding='utf-8'))
    title, module = None, None
    for c in nb['cells']:
        src = c['source'] if isinstance(c['source'], str) else ''.join(c['source'])
        if title is None and c['cell_type'] == 'markdown':
            m = re.match(r'\s*#\s+(.+)', src)
            if m: title = m.group(1).strip()
        if c['cell_type'] == 'code' and module is None:
            m = re.search(r'^#\|\s*default_exp\s+(\S+)', src, re.M)
            if m: module = m.group(1)
    return {'title': title or path.stem, 'module': module, 'page': re.sub(r'^\d+_', '', path.stem) + '.html'}


def _modidx(cfg):
    lib = cfg.settings.get('lib_path', 'dlbook')
    ns = {}
    exec((cfg.root / lib / '_modidx.py').read_text(encoding='utf-8'), ns)
    return ns['d']['syms']


def _first_line(obj):
    doc = inspect.getdoc(obj) or ''
    line = doc.strip().split('\n\n')[0].replace('\n', ' ').strip()
    return line.replace('|', r'\|')


def _kind(obj):
    if inspect.isclass(obj): return 'class'
    if callable(obj): return 'function'
    return 'constant'


def entries(cfg=None, headings=None):
    """[(module, chapter (title, page), [(name, kind, link or None, summary)])] in reading order.

    `headings` ({page: [(level, id, text)]}, from tools/render_site.py) corrects nbdev's anchors where two
    names differ only in case (`mse` and `Mse`): nbdev links both to `#mse`, pandoc calls the second `#mse-1`."""
    cfg = cfg or sitecfg.load()
    lib = cfg.settings.get('lib_name', 'dlbook')
    metas = {f: notebook_meta(cfg.nbs_path / f) for f in cfg.files if f.endswith('.ipynb')}
    chapter = {}
    for f, m in metas.items():
        if m['module'] and m['module'] not in chapter: chapter[m['module']] = (m['title'], m['page'])
    syms = _modidx(cfg)
    pkg = importlib.import_module(lib)
    mods = [m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith('_')]
    order = {m: i for i, m in enumerate(chapter)}
    out = []
    for mod in sorted(mods, key=lambda m: (order.get(m, len(order)), m)):
        module = importlib.import_module(f'{lib}.{mod}')
        rows = []
        for name in getattr(module, '__all__', []):
            obj = getattr(module, name)
            link = syms.get(f'{lib}.{mod}', {}).get(f'{lib}.{mod}.{name}', (None,))[0]
            kind = _kind(obj)
            if link is None and kind != 'constant' and mod in chapter:
                # nbdev 2.4's index skips every cell of a notebook whose path contains 'auto' (12_autograd):
                # its show_doc entries still exist, under nbdev's anchor rule (the name in lower case)
                link = f'{chapter[mod][1]}#{name.lower()}'
            if link and headings:
                page = link.split('#')[0]
                exact = [hid for _, hid, text in headings.get(page, []) if text == name]
                if exact: link = f'{page}#{exact[0]}'
            summary = _first_line(obj) if kind != 'constant' else f'`{type(obj).__name__}`'
            rows.append((name, kind, link, summary))
        out.append((mod, chapter.get(mod), rows))
    return out


def markdown(cfg=None, headings=None) -> str:
    "The page's body as markdown (no front matter); `headings` as for `entries`."
    cfg = cfg or sitecfg.load()
    lib = cfg.settings.get('lib_name', 'dlbook')
    lib_path = cfg.settings.get('lib_path', lib)
    lines = [f'Each chapter exports one small module. The names below are what `from {lib}.MODULE import *` gives; '
             'each links to its entry in the chapter that builds it, where the entry\'s *source* link leads to the code. '
             'Constants have no entry of their own: they link to their chapter.', '']
    for mod, chap, rows in entries(cfg, headings):
        lines += [f'## {lib}.{mod}', '']
        src = f'[source]({cfg.repo_url(lib_path + "/" + mod + ".py")})'
        lines += [(f'Built in [{chap[0]}]({chap[1]}) · {src}' if chap else src), '']
        if not rows: lines += ['*(exports nothing)*', '']; continue
        lines += ['| name | kind | what it is |', '|---|---|---|']
        for name, kind, link, summary in rows:
            page = link or (chap[1] if chap else None)
            label = f'`{name}`'
            lines.append(f'| [{label}]({page}) | {kind} | {summary} |' if page else f'| {label} | {kind} | {summary} |')
        lines.append('')
    return '\n'.join(lines)


def write_qmd(cfg=None) -> Path:
    "Write nbs/api.qmd, the page Quarto renders (front matter + markdown), after processing the notebooks as nbdev_docs does."
    import render_site
    cfg = cfg or sitecfg.load()
    headings = render_site.proc_headings(render_site.process_notebooks(cfg.root), cfg)
    path = cfg.nbs_path / QMD
    path.write_text(f'---\ntitle: "{TITLE}"\ndescription: "{DESCRIPTION}"\n---\n\n' + markdown(cfg, headings), encoding='utf-8')
    return path


if __name__ == '__main__':
    print(f"wrote {write_qmd()}")
