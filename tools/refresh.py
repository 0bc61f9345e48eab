#!/usr/bin/env python
"""Re-execute course notebooks in place, store their outputs, and normalize them.

    python tools/refresh.py                 # every notebook in nbs/
    python tools/refresh.py nbs/02_neuron.ipynb ...
    python tools/refresh.py --normalize-only [notebooks]   # no execution
    python tools/refresh.py --check         # fail if a notebook is not normalized
    python tools/refresh.py --claims-log DIR   # also log each claim (DIR/<notebook>.native.0.jsonl) for
                                               # `python benchmarks/sweep_claims.py --from-logs DIR`

Why not `nbdev_clean`: it sets every execution_count to null, and nbval (strict) then
fails each cell that has outputs ("Unrun reference cell has outputs"). This script keeps
the counts a fresh top-to-bottom run gives (1, 2, 3, ...) and strips only what varies
between machines and runs: kernel versions, timing metadata, widget state.
"""
import argparse, json, os, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NBS = ROOT / 'nbs'
KERNELSPEC = {'display_name': 'Python 3 (ipykernel)', 'language': 'python', 'name': 'python3'}
KEEP_CELL_META = {'tags'}


def course_notebooks():
    "Every notebook of the course, in reading order."
    return sorted(p for p in NBS.glob('*.ipynb') if not p.name.startswith('_'))


def normalize(nb: dict) -> dict:
    "Drop machine- and run-specific metadata; keep outputs and execution counts."
    nb['metadata'] = {'kernelspec': dict(KERNELSPEC), 'language_info': {'name': 'python'}}
    nb['nbformat'], nb['nbformat_minor'] = 4, 5
    for i, cell in enumerate(nb['cells']):
        cell['metadata'] = {k: v for k, v in cell.get('metadata', {}).items() if k in KEEP_CELL_META}
        cell.setdefault('id', f'c{i:03d}')
        if isinstance(cell.get('source'), list): cell['source'] = ''.join(cell['source'])
        if cell['cell_type'] != 'code': cell.pop('outputs', None); cell.pop('execution_count', None); continue
        for out in cell.get('outputs', []):
            if 'metadata' in out and out['metadata'] == {} and out.get('output_type') == 'stream': del out['metadata']
    return nb


def dumps(nb: dict) -> str:
    return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + '\n'


def execute(path: Path, timeout: int) -> float:
    "Run `path` top to bottom in a fresh kernel (cwd = its folder); return the seconds it took."
    import nbformat
    from nbclient import NotebookClient
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name='python3', resources={'metadata': {'path': str(path.parent)}},
                            record_timing=False, store_widget_state=False)
    t0 = time.perf_counter()
    client.execute()
    dt = time.perf_counter() - t0
    path.write_text(dumps(normalize(json.loads(nbformat.writes(nb)))), encoding='utf-8')
    return dt


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('notebooks', nargs='*', type=Path)
    ap.add_argument('--normalize-only', action='store_true', help='rewrite metadata only, run nothing')
    ap.add_argument('--check', action='store_true', help='exit 1 if any notebook is not normalized')
    ap.add_argument('--timeout', type=int, default=600, help='seconds allowed per cell')
    ap.add_argument('--claims-log', type=Path, metavar='DIR',
                    help='log every claim of the run (native configuration, seed offset 0) into DIR instead of asserting it')
    a = ap.parse_args(argv)
    paths = [p.resolve() for p in a.notebooks] or course_notebooks()
    bad, bad_claims = [], []
    for p in paths:
        if not p.exists(): sys.exit(f"{p}: no such notebook")
        if a.check or a.normalize_only:
            text = p.read_text(encoding='utf-8')
            new = dumps(normalize(json.loads(text)))
            if new != text:
                if a.check: bad.append(p.name)
                else: p.write_text(new, encoding='utf-8'); print(f"normalized {p.name}")
            continue
        if a.claims_log:
            a.claims_log.mkdir(parents=True, exist_ok=True)
            log = a.claims_log / f'{p.stem}.native.0.jsonl'
            log.unlink(missing_ok=True)
            os.environ.update(DLBOOK_CLAIMS_LOG=str(log), DLBOOK_NOTEBOOK=p.name, DLBOOK_CONFIG='native', DLBOOK_SEED_OFFSET='0')
        dt = execute(p, a.timeout)
        failed = []
        if a.claims_log and log.exists():
            failed = [r['name'] for r in map(json.loads, log.read_text(encoding='utf-8').splitlines()) if not r['ok']]
        print(f"{p.name:40s} {dt:6.1f} s" + (f"  FAILED CLAIMS: {failed}" if failed else ''), flush=True)
        if failed: bad_claims.append(f"{p.name}: {failed}")
    if bad_claims:
        sys.exit("claims below their bars (stored anyway; fix the recipe or the bar):\n" + '\n'.join(bad_claims))
    if bad:
        sys.exit("not normalized (run `python tools/refresh.py --normalize-only` and commit): " + ', '.join(bad))


if __name__ == '__main__':
    main()
