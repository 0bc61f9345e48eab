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


def test_apply_inserts_once_after_the_title_and_keeps_counts_consistent():
    nb = _load()
    if setup_cell.SETUP_ID in _ids(nb): pytest.skip(f'{CHAPTER} already has the cells (the tool has been run)')
    before = copy.deepcopy(nb)
    assert setup_cell.apply(nb, CFG, CHAPTER) is True
    ids = _ids(nb)
    title = next(i for i, c in enumerate(before['cells']) if c['cell_type'] == 'markdown' and c['source'].lstrip().startswith('# '))
    assert ids[title + 1:title + 3] == [setup_cell.RUN_ID, setup_cell.SETUP_ID] and len(nb['cells']) == len(before['cells']) + 2
    run, setup = nb['cells'][title + 1], nb['cells'][title + 2]
    assert CFG.colab_url(CHAPTER) in run['source']
    assert setup['source'].startswith('#| hide') and f'git+{CFG.git_url}@{CFG.branch}' in setup['source'] and setup['outputs'] == []
    # execution counts: what a fresh top-to-bottom run gives (the new cell runs first, the rest move up by one)
    old = [c['execution_count'] for c in before['cells'] if c['cell_type'] == 'code' and c['source'].strip()]
    new = [c['execution_count'] for c in nb['cells'] if c['cell_type'] == 'code' and c['source'].strip()]
    assert new == [old[0]] + [n + 1 for n in old], "the new cell should take the first count and the others move up by one"
    for c in nb['cells']:
        for o in c.get('outputs', []):
            if 'execution_count' in o: assert o['execution_count'] == c['execution_count'], "an execute_result's count left behind"
    # idempotent, and an update (a new git_url) changes the cells in place
    again = copy.deepcopy(nb)
    assert setup_cell.apply(again, CFG, CHAPTER) is False and again == nb
    moved = replace(CFG, settings=dict(CFG.settings, git_url='https://github.com/someone/fork'))
    assert setup_cell.apply(again, moved, CHAPTER) is True and _ids(again) == ids
    assert 'github/someone/fork/' in again['cells'][title + 1]['source'] and 'someone/fork@' in again['cells'][title + 2]['source']


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
    stale.write_text(json.dumps(_load()), encoding='utf-8')
    with pytest.raises(SystemExit, match='lack the current run/setup cells'):
        setup_cell.main(['--check', str(stale)])
    setup_cell.main(['--check', str(p)])   # up to date: returns without exiting


@pytest.mark.timeout(300)
def test_install_cell_installs_dlbook_offline_in_a_fresh_environment(tmp_path):
    """In a venv without dlbook the cell installs it from the repository; where dlbook imports, it does nothing.

    The venv sees this environment's packages (torch, numpy, IPython, ...) through a folder of links that leaves
    dlbook out, so pip installs only dlbook itself and needs no network (PIP_NO_INDEX=1)."""
    if subprocess.run(['git', '-C', str(ROOT), 'rev-parse', 'HEAD'], capture_output=True).returncode:
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
               PYTHONNOUSERSITE='1', OMP_NUM_THREADS='1', GIT_TERMINAL_PROMPT='0')
    env.pop('PYTHONPATH', None)
    env.pop('VIRTUAL_ENV', None)   # IPython would add that venv's packages (and our editable dlbook) to sys.path
    r = subprocess.run([str(py), '-c', script], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=280)
    assert r.returncode == 0, f"the install cell failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    line = next(l for l in r.stdout.splitlines() if l.startswith('INSTALLED'))
    assert str(target) in line, f"dlbook was imported from {line.split()[-1]}, not installed into the fresh venv {target}"
