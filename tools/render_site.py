#!/usr/bin/env python
"""Render the course website offline, without Quarto.

    python tools/render_site.py            # runs nbdev_proc_nbs, then writes _site/
    python tools/render_site.py --no-proc  # reuse an existing _proc/

With Quarto installed, `nbdev_docs` builds the real site from the same `_quarto.yml`
(see .github/workflows/deploy.yaml). This script is the offline stand-in used in CI and
on machines without Quarto: it converts nbdev's processed notebooks (`_proc/`, API docs
included) to static HTML with nbconvert, adds the sidebar from `_quarto.yml`, and serves
MathJax from a local copy so the math typesets with no network.
"""
import argparse, html, json, re, shutil, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SITE_URL = 'https://dlbook.github.io/dlbook/'  # doc_host + doc_baseurl in settings.ini


def sidebar(quarto_yml: Path):
    "[(section title or None, [notebook file names])] from the sidebar in `_quarto.yml`."
    import yaml
    cfg = yaml.safe_load(quarto_yml.read_text())
    out = []
    for item in cfg['website']['sidebar']['contents']:
        if isinstance(item, str): out.append((None, [item]))
        elif 'section' in item: out.append((item['section'], [c if isinstance(c, str) else c['href'] for c in item['contents']]))
        else: out.append((None, [item['href']]))
    return cfg['website'].get('title', 'dlbook'), out


def front_matter(nb: dict) -> dict:
    "Title, description and output file from the raw YAML cell nbdev puts first."
    import yaml
    cells = nb['cells']
    if cells and cells[0]['cell_type'] == 'raw':
        src = ''.join(cells[0]['source']).strip()
        if src.startswith('---'):
            return yaml.safe_load(src.strip('-\n')) or {}
    return {}


def _directives(src: str) -> dict:
    return dict(re.findall(r'^#\|\s*([\w-]+):\s*(\S+)\s*$', src, flags=re.M))


def prepare(nb: dict) -> dict:
    "Apply the Quarto cell options nbdev relies on: drop front matter, honour `echo: false` and `output: asis`."
    cells = []
    for c in nb['cells']:
        src = ''.join(c['source']) if isinstance(c['source'], list) else c['source']
        if c['cell_type'] == 'raw' and src.lstrip().startswith('---'): continue
        c = dict(c, source=src)
        if c['cell_type'] == 'code':
            d = _directives(src)
            if d.get('include') == 'false': continue
            src = re.sub(r'^#\|.*\n?', '', src, flags=re.M)
            if d.get('output') == 'asis':  # show_doc: its markdown output becomes a markdown cell
                md = ''.join(''.join(o.get('data', {}).get('text/markdown', '')) for o in c.get('outputs', []))
                md = re.sub(r'\)\{target="_blank"[^}]*\}', ')', md)   # Quarto-only link attributes
                cells.append({'cell_type': 'markdown', 'metadata': {}, 'source': md, 'id': c.get('id', 'x')})
                continue
            c = dict(c, source=src)
            if d.get('echo') == 'false': c['metadata'] = dict(c.get('metadata', {}), jupyter={'source_hidden': True}, transient={'remove_source': True})
        cells.append(c)
    return dict(nb, cells=cells)


NAV_CSS = """
body { margin: 0; }
#dlbook-top { position: fixed; top: 0; left: 0; right: 0; height: 44px; background: #2780e3; color: #fff;
  display: flex; align-items: center; padding: 0 16px; font: 600 18px system-ui, sans-serif; z-index: 10; }
#dlbook-top a { color: #fff; text-decoration: none; }
#dlbook-sidebar { position: fixed; top: 44px; bottom: 0; left: 0; width: 230px; overflow-y: auto; padding: 12px;
  background: #f7f7f9; border-right: 1px solid #ddd; font: 14px system-ui, sans-serif; box-sizing: border-box; }
#dlbook-sidebar .section { font-weight: 600; margin: 12px 0 4px; color: #333; }
#dlbook-sidebar a { display: block; padding: 2px 6px; color: #2780e3; text-decoration: none; border-radius: 3px; }
#dlbook-sidebar a.active { background: #2780e3; color: #fff; }
#dlbook-main { margin: 56px 0 0 250px; max-width: 980px; padding-right: 16px; }
#dlbook-main .jp-InputPrompt, #dlbook-main .jp-OutputPrompt { display: none; }
"""


# The MathJax copy shipped in jupyter-server-mathjax has only the STIX-Web fonts: say so, or some glyphs fail.
MATHJAX_FONTS = """<script type="text/x-mathjax-config">
MathJax.Hub.Config({"HTML-CSS": {availableFonts: ["STIX-Web"], preferredFont: "STIX-Web", webFont: "STIX-Web", imageFont: null}});
</script>
"""


def nav_html(title, sections, pages, current):
    parts = [f'<div id="dlbook-top"><a href="index.html">{html.escape(title)}</a></div>', '<nav id="dlbook-sidebar" aria-label="Course contents">']
    for sec, files in sections:
        if sec: parts.append(f'<div class="section">{html.escape(sec)}</div>')
        for f in files:
            if f not in pages: continue
            out, t = pages[f]
            cls = ' class="active"' if f == current else ''
            parts.append(f'<a href="{out}"{cls}>{html.escape(t)}</a>')
    parts.append('</nav>')
    return '\n'.join(parts)


def render(proc: Path, site: Path):
    import nbformat
    from nbconvert import HTMLExporter
    title, sections = sidebar(ROOT / '_quarto.yml')
    listed = [f for _, fs in sections for f in fs]
    nbs = {p.name: json.loads(p.read_text(encoding='utf-8')) for p in sorted(proc.glob('*.ipynb'))}
    missing = [f for f in listed if f not in nbs]
    if missing: sys.exit(f"_quarto.yml's sidebar lists {missing}, which are not in {proc}: fix the sidebar or add the notebooks")
    pages = {}
    for name, nb in nbs.items():
        fm = front_matter(nb)
        out = fm.get('output-file') or name.replace('.ipynb', '.html')
        pages[name] = (out, fm.get('title') or name)
    if site.exists(): shutil.rmtree(site)
    site.mkdir(parents=True)
    import jupyter_server_mathjax
    shutil.copytree(Path(jupyter_server_mathjax.__file__).parent / 'static', site / 'mathjax')
    exporter = HTMLExporter(template_name='lab')
    exporter.mathjax_url = 'mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full'
    exporter.exclude_input_prompt = exporter.exclude_output_prompt = True
    link_map = {name: out for name, (out, _) in pages.items()}
    for name, nb in nbs.items():
        fm = front_matter(nb)
        node = nbformat.reads(json.dumps(prepare(nb)), as_version=4)
        body, _ = exporter.from_notebook_node(node, resources={'metadata': {'name': pages[name][1]}})
        body = body.replace(SITE_URL, '')                     # nbdev's doc links, made relative
        for src, out in link_map.items(): body = body.replace(f'href="{src}', f'href="{out}')
        body = re.sub(r'<script[^>]+src="https?://[^"]*"[^>]*>\s*</script>', '', body)  # no CDN scripts offline
        head = f'<h1 class="title">{html.escape(pages[name][1])}</h1>'
        if fm.get('description'): head += f'<p class="description"><em>{html.escape(fm["description"])}</em></p>'
        body = re.sub(r'(<body[^>]*>)', lambda m: m.group(1) + nav_html(title, sections, pages, name) + '<main id="dlbook-main">' + head, body, count=1)
        body = body.replace('</body>', '</main></body>').replace('</head>', f'<style>{NAV_CSS}</style></head>')
        body = body.replace('<!-- Load mathjax -->', MATHJAX_FONTS + '<!-- Load mathjax -->', 1)
        (site / pages[name][0]).write_text(body, encoding='utf-8')
    if 'index.ipynb' in pages and pages['index.ipynb'][0] != 'index.html':
        shutil.copy(site / pages['index.ipynb'][0], site / 'index.html')
    print(f"wrote {len(pages)} pages to {site}")
    return pages


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--no-proc', action='store_true', help='reuse _proc/ instead of running nbdev_proc_nbs')
    ap.add_argument('--out', type=Path, default=ROOT / '_site')
    a = ap.parse_args(argv)
    if not a.no_proc:
        r = subprocess.run(['nbdev_proc_nbs'], cwd=ROOT, capture_output=True, text=True)
        if r.returncode: sys.exit(f"nbdev_proc_nbs failed:\n{r.stdout}\n{r.stderr}")
    render(ROOT / '_proc', a.out)


if __name__ == '__main__':
    main()
