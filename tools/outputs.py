#!/usr/bin/env python
"""Count the kinds of stored outputs in the course notebooks (the contract in CONTRIBUTING.md).

    python tools/outputs.py            # a table: per notebook and per part, how many code cells are
                                       # exact, result, figure-only or silent, and every claim's bar

A code cell is
- *result* when its text output holds a result (a value that dlbook.core.result wrapped in U+2063 marks:
  nbval masks the marked values and compares the rest of the output exactly),
- *exact* when it has text output and no result in it (compared digit for digit),
- *figure* when its only output is an image (images are not compared),
- *silent* when it has no output.
"""
import json, re, sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARK = '\u2063'
SPAN = re.compile(f'{MARK}([^{MARK}\\n]*){MARK}')
NUMBER = re.compile(r'^\s*[-+]?(\d[\d,_]*(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*%?\s*$|^\s*[-+]?(nan|inf)\s*$')
CLAIM = re.compile(f'^(?P<name>.*): {MARK}(?P<value>[^{MARK}]*){MARK} \\(bar (?P<bar>[^;)]*)(; seed (?P<seed>-?\\d+))?\\)$', re.M)
PARTS = {'0': 'Foundations', '1': 'I', '2': 'II', '3': 'III', '4': 'IV', '5': 'V', '6': 'VI', '7': 'VII', 'i': 'home'}


def text_outputs(cell):
    "The text of a code cell's outputs (streams, plain text and HTML), joined."
    out = []
    for o in cell.get('outputs', []):
        if o['output_type'] == 'stream': out.append(o['text'] if isinstance(o['text'], str) else ''.join(o['text']))
        elif o['output_type'] == 'error': out.append('\n'.join(o.get('traceback', [])))
        for k in ('text/plain', 'text/html'):
            v = o.get('data', {}).get(k)
            if v is not None and not (k == 'text/plain' and 'image/png' in o.get('data', {})): out.append(v if isinstance(v, str) else ''.join(v))
    return ''.join(out)


def kind(cell):
    t = text_outputs(cell)
    if MARK in t: return 'result'
    if t.strip(): return 'exact'
    if cell.get('outputs'): return 'figure'
    return 'silent'


def cells(path):
    return [c for c in json.loads(Path(path).read_text(encoding='utf-8'))['cells'] if c['cell_type'] == 'code']


def counts(path) -> Counter:
    return Counter(kind(c) for c in cells(path))


def spans(path):
    "Every marked span in the stored outputs: (code cell index, text between the marks)."
    return [(i, m.group(1)) for i, c in enumerate(cells(path)) for m in SPAN.finditer(text_outputs(c))]


def claims(path):
    "Every claim printed in the stored outputs: dicts with name, value, bar (e.g. '≥ 0.9150') and seed."
    return [dict(m.groupdict(), cell=i) for i, c in enumerate(cells(path)) for m in CLAIM.finditer(text_outputs(c))]


def main():
    nbs = sorted((ROOT / 'nbs').glob('*.ipynb'))
    nbs = [p for p in nbs if not p.name.startswith('_')]
    print(f"{'notebook':28s} {'exact':>6s} {'result':>6s} {'figure':>6s} {'silent':>6s} {'claims':>6s}")
    per_part, total = {}, Counter()
    for p in nbs:
        c = counts(p); c['claims'] = len(claims(p))
        per_part.setdefault(PARTS.get(p.name[0], '?'), Counter()).update(c); total.update(c)
        print(f"{p.name:28s} {c['exact']:6d} {c['result']:6d} {c['figure']:6d} {c['silent']:6d} {c['claims']:6d}")
    print()
    for part, c in per_part.items():
        print(f"{'part ' + part:28s} {c['exact']:6d} {c['result']:6d} {c['figure']:6d} {c['silent']:6d} {c['claims']:6d}")
    print(f"{'all':28s} {total['exact']:6d} {total['result']:6d} {total['figure']:6d} {total['silent']:6d} {total['claims']:6d}")


if __name__ == '__main__':
    sys.exit(main())
