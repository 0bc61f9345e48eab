"""tools/setup_cell.py: the cells that let a notebook run on Colab or any Python without dlbook.

The tool is idempotent and keeps a refreshed notebook refreshed; the install cell does nothing where dlbook is
installed, and in a fresh environment without dlbook it installs the package from the repository (tested offline:
`git+file://` of this checkout stands in for `git+https://github.com/...`)."""
import copy, json, os, subprocess, sys, venv
from dataclasses import replace
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / 'tools'))
import sitecfg, setup_cell, refresh  # noqa: E402
import test_notebooks  # noqa: E402  (the house rules, applied to a notebook the tool changed)

CFG = sitecfg.load()
CHAPTER = next(f for f in CFG.files if f != 'index.ipynb')


def _load(name=CHAPTER):
    return json.loads((CFG.nbs_path / name).read_text(encoding='utf-8'))


def _ids(nb): return [c.get('id') for c in nb['cells']]


def _toy():
    "A refreshed notebook in miniature: title, a code cell with an execute_result, prose, another code cell."
    code = lambda n, src, outs=(): {'cell_type': 'code', 'execution_count': n, 'id': f'c{n}', 'metadata': {}, 'outputs': list(outs), 'source': src}
    return {'cells': [{'cell_type': 'markdown', 'id': 't', 'metadata': {}, 'source': '# A chapter\n\n> What it is about.'},
                      code(1, '#| default_exp x'),
                      code(2, '1 + 1', [{'output_type': 'execute_result', 'execution_count': 2, 'metadata': {}, 'data': {'text/plain': '2'}}]),
                      {'cell_type': 'markdown', 'id': 'm', 'metadata': {}, 'source': 'Prose.'},
                      code(3, 'print(3)', [{'output_type': 'stream', 'name': 'stdout', 'text': '3\n'}])],
            'metadata': {}, 'nbformat': 4, 'nbformat_minor': 5}


def test_apply_inserts_once_after_the_title_and_keeps_counts_consistent():
    nb, name = _toy(), '42_toy.ipynb'
    assert setup_cell.apply(nb, CFG, name) is True
    assert _ids(nb) == ['t', setup_cell.RUN_ID, setup_cell.SETUP_ID, 'c1', 'c2', 'm', 'c3']
    run, setup = nb['cells'][1], nb['cells'][2]
    assert CFG.colab_url(name) in run['source'] and run['cell_type'] == 'markdown'
    assert setup['source'].startswith('#| hide') and f'git+{CFG.git_url}@{CFG.branch}' in setup['source'] and setup['outputs'] == []
    # execution counts as a fresh top-to-bottom run gives them: the new cell first, the others one up (outputs too)
    assert [c['execution_count'] for c in nb['cells'] if c['cell_type'] == 'code'] == [1, 2, 3, 4]
    assert nb['cells'][4]['outputs'][0]['execution_count'] == 3
    # idempotent, and a change of git_url updates both cells in place
    again = copy.deepcopy(nb)
    assert setup_cell.apply(again, CFG, name) is False and again == nb
    moved = replace(CFG, settings=dict(CFG.settings, git_url='https://github.com/someone/fork'))
    assert setup_cell.apply(again, moved, name) is True and _ids(again) == _ids(nb)
    assert 'github/someone/fork/' in again['cells'][1]['source'] and 'someone/fork@' in again['cells'][2]['source']
    # an unrefreshed notebook (no counts) keeps no count for the new cell; a notebook without a title gets the cells on top
    bare = _toy()
    for c in bare['cells']:
        if c['cell_type'] == 'code': c['execution_count'] = None
    setup_cell.apply(bare, CFG, name)
    assert bare['cells'][2]['execution_count'] is None
    untitled = _toy(); untitled['cells'].pop(0)
    setup_cell.apply(untitled, CFG, name)
    assert _ids(untitled)[:2] == [setup_cell.RUN_ID, setup_cell.SETUP_ID]


def test_once_adopted_every_notebook_has_the_current_cells():
    "After `python tools/setup_cell.py` has run, a notebook added or renamed without it (or after a git_url change) fails here."
    have = [f for f in CFG.files if setup_cell.SETUP_ID in _ids(_load(f))]
    if not have: pytest.skip('tools/setup_cell.py has not been applied to the notebooks yet')
    stale = [f for f in CFG.files if setup_cell.apply(_load(f), CFG, f)]
    assert not stale, f"run `python tools/setup_cell.py`: {stale} lack the current run/setup cells"


def test_a_notebook_with_the_cells_keeps_the_house_rules(tmp_path):
    "Normalized, every cell stored as run, imports in cells of their own (the `%pip` cell is not Python to ast: skipped)."
    nb = _load()
    setup_cell.apply(nb, CFG, CHAPTER)
    p = tmp_path / CHAPTER
    p.write_text(refresh.dumps(refresh.normalize(nb)), encoding='utf-8')
    test_notebooks.test_normalized(p)
    test_notebooks.test_every_code_cell_was_run_and_stored(p)
    test_notebooks.test_imports_in_cells_of_their_own(p)
    stale = tmp_path / 'stale.ipynb'
    stale.write_text(json.dumps(_toy()), encoding='utf-8')
    with pytest.raises(SystemExit, match='lack the current run/setup cells'):
        setup_cell.main(['--check', str(stale)])
    setup_cell.main(['--check', str(p)])   # up to date: returns without exiting


@pytest.mark.timeout(300)
def test_install_cell_installs_dlbook_offline_in_a_fresh_environment(tmp_path):
    """In a venv without dlbook the cell installs it from the repository; where dlbook imports, it does nothing.

    The venv sees this environment's packages (torch, numpy, IPython, ...) through a folder of links that leaves
    dlbook out, so pip installs only dlbook itself and needs no network (PIP_NO_INDEX=1)."""
    home = tmp_path / 'home'   # a HOME of its own: pip and IPython caches, and git trusting a checkout another user owns (CI)
    home.mkdir()
    (home / '.gitconfig').write_text('[safe]\n\tdirectory = *\n')
    if subprocess.run(['git', '-C', str(ROOT), 'rev-parse', 'HEAD'], capture_output=True, env=dict(os.environ, HOME=str(home))).returncode:
        pytest.skip('not a git checkout')
    import site as _site
    here = Path(next(p for p in _site.getsitepackages() if p.endswith('site-packages')))
    deps = tmp_path / 'deps'
    deps.mkdir()
    for entry in here.iterdir():
        low = entry.name.lower()
        if low.startswith(('dlbook', '__editable__', '_dlbook')) or low.endswith('.pth'): continue
        (deps / entry.name).symlink_to(entry)
    env_dir = tmp_path / 'venv'
    venv.EnvBuilder(with_pip=False).create(env_dir)
    py = env_dir / 'bin' / 'python'
    target = next((env_dir / 'lib').glob('python3*/site-packages'))
    (target / 'zz_deps.pth').write_text(str(deps) + '\n')
    src = setup_cell.setup_source(f'git+file://{ROOT}')
    script = (
        "import sys, importlib.util\n"
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "sh = InteractiveShell.instance()\n"
        "assert importlib.util.find_spec('dlbook') is None, 'dlbook is importable before the cell ran: the test is broken'\n"
        f"r = sh.run_cell({src!r})\n"
        "r.raise_error()\n"
        "import dlbook, pathlib\n"
        "assert (pathlib.Path(dlbook.__file__).parent / 'core.py').exists(), 'the installed package lacks its modules'\n"
        "print('INSTALLED', dlbook.__file__)\n"
        f"r = sh.run_cell({src!r})\n"     # second run: dlbook imports, nothing happens
        "r.raise_error()\n")
    # offline: no index; PIP_NO_BUILD_ISOLATION=0 means *no* build isolation (setuptools comes from the linked packages)
    env = dict(os.environ, PIP_NO_INDEX='1', PIP_NO_BUILD_ISOLATION='0', PIP_DISABLE_PIP_VERSION_CHECK='1', PIP_CONFIG_FILE=os.devnull,
               PYTHONNOUSERSITE='1', OMP_NUM_THREADS='1', GIT_TERMINAL_PROMPT='0', HOME=str(home))
    env.pop('PYTHONPATH', None)
    env.pop('VIRTUAL_ENV', None)   # IPython would add that venv's packages (and our editable dlbook) to sys.path
    r = subprocess.run([str(py), '-c', script], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=280)
    assert r.returncode == 0, f"the install cell failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    line = next(l for l in r.stdout.splitlines() if l.startswith('INSTALLED'))
    assert str(target) in line, f"dlbook was imported from {line.split()[-1]}, not installed into the fresh venv {target}"
