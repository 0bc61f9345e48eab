"House rules for the course notebooks, checked on the files (nothing is executed here)."
import ast, importlib, inspect, json, re, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / 'tools'))
import refresh  # noqa: E402

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


@pytest.mark.parametrize('nb', NOTEBOOKS, ids=lambda p: p.name)
def test_exempted_cells_say_why(nb):
    for i, c in enumerate(cells(nb)):
        s = src(c)
        if 'NBVAL_IGNORE_OUTPUT' not in s and 'NBVAL_SKIP' not in s: continue
        for l in s.splitlines():
            if 'NBVAL_' in l and l.strip().startswith('#') and re.sub(r'#\s*NBVAL_[A-Z_]+', '', l).strip():
                raise AssertionError(f"{nb.name}, code cell {i}: nbval only sees a marker alone on its line; "
                                     f"put the reason on the next line: {l.strip()!r}")
        comments = [l for l in s.splitlines() if l.strip().startswith('#') and not l.startswith('#|')]
        reason = [l for l in comments if re.sub(r'#\s*NBVAL_\w+', '', l).strip(' #:-')]
        assert reason, f"{nb.name}, code cell {i}: exempted from nbval without a comment saying why"


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
