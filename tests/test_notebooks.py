"House rules for the course notebooks, checked on the files (nothing is executed here)."
import ast, importlib, inspect, json, re, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / 'tools'))
import refresh  # noqa: E402
import outputs  # noqa: E402

NOTEBOOKS = refresh.course_notebooks()
CHAPTERS = [p for p in NOTEBOOKS if re.match(r'\d\d_', p.name)]


def cells(path, kind='code'):
    return [c for c in json.loads(path.read_text(encoding='utf-8'))['cells'] if c['cell_type'] == kind]


def src(c): return c['source'] if isinstance(c['source'], str) else ''.join(c['source'])


@pytest.mark.parametrize('nb', NOTEBOOKS, ids=lambda p: p.name)
def test_normalized(nb):
    text = nb.read_text(encoding='utf-8')
    assert refresh.dumps(refresh.normalize(json.loads(text))) == text, \
        f"{nb.name} is not normalized: run `python tools/refresh.py {nb.relative_to(ROOT)}`"


@pytest.mark.parametrize('nb', NOTEBOOKS, ids=lambda p: p.name)
def test_every_code_cell_was_run_and_stored(nb):
    "nbval compares stored outputs: a cell saved unexecuted would silently check nothing."
    unrun = [i for i, c in enumerate(cells(nb)) if c.get('execution_count') is None and src(c).strip() and not src(c).startswith('#| eval: false')]
    assert not unrun, f"{nb.name}: code cells {unrun} have no execution count; run `python tools/refresh.py {nb.relative_to(ROOT)}`"


@pytest.mark.parametrize('nb', NOTEBOOKS, ids=lambda p: p.name)
def test_imports_in_cells_of_their_own(nb):
    "nbdev executes every cell holding an import while building the API docs; mixed cells break nbdev_proc_nbs."
    bad = []
    for i, c in enumerate(cells(nb)):
        s = src(c)
        if re.search(r'^#\|\s*export', s, re.M): continue
        try: tree = ast.parse(s)
        except SyntaxError: continue
        nodes = list(ast.walk(tree))
        if any(isinstance(n, (ast.Import, ast.ImportFrom)) for n in nodes) and any(isinstance(n, (ast.Expr, ast.Assign)) for n in nodes):
            bad.append(i)
    assert not bad, f"{nb.name}: code cells {bad} mix imports with other code; put the imports in a cell of their own"


# --- The contract (CONTRIBUTING.md, "Exact outputs and results") -------------------------------------------
# Every output is exact (compared by nbval digit for digit) or a result (dlbook.core.result: marked, masked by
# the one rule in nbval_sanitize.cfg). .ci/run runs the notebooks a second time under another CPU configuration:
# that pass is what catches an unmarked result. The tests below check the stored files.

@pytest.mark.parametrize('nb', NOTEBOOKS, ids=lambda p: p.name)
def test_no_cell_is_exempted_from_nbval(nb):
    "Results are marked value by value; whole cells are never hidden from the comparison."
    bad = [i for i, c in enumerate(cells(nb)) if re.search(r'NBVAL_(IGNORE_OUTPUT|SKIP)', src(c))]
    assert not bad, (f"{nb.name}: code cells {bad} carry NBVAL_IGNORE_OUTPUT/NBVAL_SKIP; print the values that vary "
                     "with dlbook.core.result(...) instead, so that the rest of the output is still compared")


@pytest.mark.parametrize('nb', NOTEBOOKS, ids=lambda p: p.name)
def test_results_mark_values_not_whole_outputs(nb):
    "A marked span is one number (or, where the cell says so, one line of sampled text): the words around it stay compared."
    for i, c in enumerate(cells(nb)):
        text = outputs.text_outputs(c)
        for line in text.splitlines():
            assert line.count(outputs.MARK) % 2 == 0, f"{nb.name}, code cell {i}: an unpaired result mark in {line[:80]!r}"
        for m in outputs.SPAN.finditer(text):
            v = m.group(1)
            if outputs.NUMBER.match(v): continue
            assert '# text result:' in src(c), (f"{nb.name}, code cell {i}: the result {v[:60]!r} is not a number; mark numbers one "
                                                "by one, or say why a line of text is a result with a '# text result:' comment")
            assert len(v) <= 400, f"{nb.name}, code cell {i}: a text result of {len(v)} characters hides too much"


def test_every_claim_sits_below_its_sweep():
    "Each claim printed in a stored notebook was swept (benchmarks/claims.json) and its bar holds at the worst run."
    sweep = json.loads((ROOT / 'benchmarks' / 'claims.json').read_text(encoding='utf-8'))['claims']
    swept = {(r['notebook'], r['name']): r for r in sweep}
    problems = []
    for nb in CHAPTERS:
        if nb.name.startswith('00_'): continue        # claim's own demonstration
        for cl in outputs.claims(nb):
            r = swept.get((nb.name, cl['name']))
            if r is None: problems.append(f"{nb.name}: claim {cl['name']!r} was never swept"); continue
            bar = ', '.join(b for b in (r['at_least'] is not None and f"≥ {r['at_least']}", r['at_most'] is not None and f"≤ {r['at_most']}") if b)
            if r['at_least'] is not None and r['min'] < r['at_least'] or r['at_most'] is not None and r['max'] > r['at_most']:
                problems.append(f"{nb.name}: claim {cl['name']!r} failed in the sweep (bar {bar}, min {r['min']:.4g}, max {r['max']:.4g})")
            for key, sign in (('at_least', '≥'), ('at_most', '≤')):
                m = re.search(sign + r' ([-+\d.eE]+)', cl['bar'])
                shown = float(m.group(1)) if m else None
                digits = len(m.group(1).split('.')[1]) if m and '.' in m.group(1) else 0
                if (shown is None) != (r[key] is None) or shown is not None and abs(shown - r[key]) > 0.5 * 10 ** -digits:
                    problems.append(f"{nb.name}: claim {cl['name']!r} has bar {cl['bar']!r} in the notebook but {bar!r} in the sweep")
    assert not problems, "re-run `python benchmarks/sweep_claims.py NOTEBOOK` after changing a claim:\n" + '\n'.join(problems)


@pytest.mark.parametrize('nb', CHAPTERS, ids=lambda p: p.name)
def test_chapter_has_the_parts_of_a_lesson(nb):
    md = '\n'.join(src(c) for c in cells(nb, 'markdown'))
    code = cells(nb)
    assert 'What you will learn' in md, f"{nb.name}: no objectives ('What you will learn here')"
    assert re.search(r'^#+ Exercises', md, re.M), f"{nb.name}: no Exercises section"
    assert any('#| default_exp' in src(c) for c in code), f"{nb.name}: exports no module"
    assert any('image/png' in o.get('data', {}) for c in code for o in c.get('outputs', [])), f"{nb.name}: no figure"


def test_sidebar_lists_every_notebook():
    import yaml
    side = yaml.safe_load((ROOT / '_quarto.yml').read_text())['website']['sidebar']['contents']
    listed = set()
    for item in side:
        if isinstance(item, str): listed.add(item)
        elif 'section' in item: listed |= {c if isinstance(c, str) else c['href'] for c in item['contents']}
        else: listed.add(item['href'])
    assert listed == {p.name for p in NOTEBOOKS}, "the sidebar in _quarto.yml and the notebooks in nbs/ differ"
    assert (ROOT / 'nbs' / '_quarto.yml').resolve() == (ROOT / '_quarto.yml').resolve(), "nbs/_quarto.yml must link to the top-level one"


MODULES = sorted(p.stem for p in (ROOT / 'dlbook').glob('*.py') if not p.stem.startswith('_'))


@pytest.mark.parametrize('mod', MODULES)
def test_exports_have_docstrings(mod):
    m = importlib.import_module(f'dlbook.{mod}')
    names = getattr(m, '__all__', [])
    missing = [n for n in names if (inspect.isfunction(getattr(m, n)) or inspect.isclass(getattr(m, n)))
               and getattr(m, n).__module__ == m.__name__ and not inspect.getdoc(getattr(m, n))]
    assert not missing, f"dlbook.{mod}: exported without a docstring: {missing}"
