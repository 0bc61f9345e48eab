#!/usr/bin/env python
"""Insert or update the cells that let a course notebook run outside this repository (Colab, a bare Jupyter).

    python tools/setup_cell.py              # every notebook the sidebar of _quarto.yml lists
    python tools/setup_cell.py nbs/12_autograd.ipynb ...
    python tools/setup_cell.py --check      # exit 1 if a notebook lacks the cells or holds an old version

Right after a notebook's title cell it puts
1. a markdown cell (id `dlbook-run`) with an "open in Colab" link built from `git_url` and `branch`
   in settings.ini (the website shows this link on every page);
2. a code cell (id `dlbook-setup`, hidden on the website by `#| hide`) that installs the `dlbook`
   package from the repository when `import dlbook` fails. Where dlbook is installed it does
   nothing and prints nothing, so nbval's stored-output check is unaffected.

Running it again changes nothing; after a change of `git_url` or `branch` it updates both cells.
A newly inserted code cell gets the execution count a fresh run would give (the counts of the
cells after it move up by one), so the notebook stays "refreshed" without re-running it.
"""
import argparse, json, os, re, sys
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS))
import sitecfg  # noqa: E402
import refresh  # noqa: E402

RUN_ID, SETUP_ID = 'dlbook-run', 'dlbook-setup'


def install_spec(cfg) -> str:
    "What pip installs on a machine without dlbook: the package straight from the repository's branch."
    return f'git+{cfg.git_url}@{cfg.branch}'


def setup_source(spec: str, lib: str = 'dlbook') -> str:
    "The install cell's code (IPython: `%pip` installs into the running kernel's environment)."
    return (f"#| hide\n"
            f"# On Colab or any Python without {lib}: install the course package from its repository.\n"
            f"try:\n"
            f"    import {lib}\n"
            f"except ImportError:\n"
            f"    %pip install -q {spec}")


def run_source(cfg, nb_name: str) -> str:
    "The markdown cell: where to run this notebook."
    return (f"**Run it yourself:** [open this notebook in Colab]({cfg.colab_url(nb_name)}) "
            f"(a free Google account; no GPU needed), or run it in Jupyter after installing the course as the README says. "
            f"In a notebook, the first code cell installs `{cfg.settings.get('lib_name', 'dlbook')}` when it is missing.")


def _src(c): return c['source'] if isinstance(c['source'], str) else ''.join(c['source'])


def apply(nb: dict, cfg, nb_name: str) -> bool:
    "Insert or update both cells in notebook `nb` (a dict, changed in place); return whether anything changed."
    cells = nb['cells']
    want = {RUN_ID: run_source(cfg, nb_name), SETUP_ID: setup_source(install_spec(cfg), cfg.settings.get('lib_name', 'dlbook'))}
    changed = False
    for cid in (RUN_ID, SETUP_ID):
        hits = [i for i, c in enumerate(cells) if c.get('id') == cid]
        if len(hits) > 1: raise ValueError(f"{nb_name}: {len(hits)} cells have id {cid!r}; keep one")
        if hits:
            c = cells[hits[0]]
            if _src(c) != want[cid]: c['source'] = want[cid]; changed = True
            continue
        title = next((i for i, c in enumerate(cells) if c['cell_type'] == 'markdown' and re.match(r'\s*#\s', _src(c))), None)
        at = 0 if title is None else title + 1
        if cid == SETUP_ID: at = next(i for i, c in enumerate(cells) if c.get('id') == RUN_ID) + 1
        if cid == RUN_ID:
            cells.insert(at, {'cell_type': 'markdown', 'id': RUN_ID, 'metadata': {}, 'source': want[cid]})
        else:
            code = [c for c in cells if c['cell_type'] == 'code' and _src(c).strip()]
            later = [c for c in cells[at:] if c['cell_type'] == 'code' and c.get('execution_count') is not None]
            count = None
            if code and all(c.get('execution_count') is not None for c in code):   # a refreshed notebook: keep it so
                count = later[0]['execution_count'] if later else code[-1]['execution_count'] + 1
                for c in later:
                    c['execution_count'] += 1
                    for o in c.get('outputs', []):     # an execute_result repeats its cell's count
                        if o.get('execution_count') is not None: o['execution_count'] += 1
            cells.insert(at, {'cell_type': 'code', 'execution_count': count, 'id': SETUP_ID, 'metadata': {},
                              'outputs': [], 'source': want[cid]})
        changed = True
    return changed


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('notebooks', nargs='*', type=Path)
    ap.add_argument('--check', action='store_true', help='change nothing; exit 1 if a notebook would change')
    a = ap.parse_args(argv)
    cfg = sitecfg.load()
    paths = a.notebooks or [cfg.nbs_path / f for f in cfg.files if f.endswith('.ipynb')]
    stale = []
    for p in paths:
        text = p.read_text(encoding='utf-8')
        nb = json.loads(text)
        if apply(nb, cfg, p.name):
            stale.append(p)
            if not a.check: p.write_text(refresh.dumps(refresh.normalize(nb)), encoding='utf-8')
    if a.check and stale:
        sys.exit(f"{len(stale)} notebooks lack the current run/setup cells: python tools/setup_cell.py "
                 + ' '.join(os.path.relpath(p, cfg.root) for p in stale))
    print(f"{'would update' if a.check else 'updated'} {len(stale)} of {len(paths)} notebooks")


if __name__ == '__main__':
    main()
