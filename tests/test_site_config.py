"""The Quarto path stays right (it cannot run here: no Quarto): one _quarto.yml for both builds, every sidebar and
navbar entry exists, the nbdev settings Quarto needs are there, and deploy.yaml runs what the README documents."""
import re, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / 'tools'))
import sitecfg, api_page, render_site  # noqa: E402

CFG = sitecfg.load()


def test_one_configuration_for_both_builds():
    link = ROOT / 'nbs' / '_quarto.yml'
    assert link.is_symlink() and link.resolve() == (ROOT / '_quarto.yml').resolve(), \
        "nbs/_quarto.yml must be a link to the top-level _quarto.yml (nbdev reads nbs/, the offline renderer the top level)"
    assert CFG.quarto['project']['type'] == 'website'
    assert 'nbdev.yml' in CFG.quarto.get('metadata-files', []), "_quarto.yml must load nbs/nbdev.yml (site URL, repository, output folder)"


def test_every_sidebar_and_navbar_entry_exists():
    assert CFG.files and CFG.files[0] == 'index.ipynb', "the sidebar starts with the home page, index.ipynb"
    missing = [f for f in CFG.files if not (CFG.nbs_path / f).exists()]
    assert not missing, f"_quarto.yml's sidebar lists {missing}, which are not in nbs/"
    assert len(set(CFG.files)) == len(CFG.files), "a notebook is listed twice in the sidebar"
    for text, href in CFG.navbar:
        assert (CFG.nbs_path / href).exists() or href == api_page.QMD, f"navbar entry {text!r} links {href}, which nothing provides"
    assert api_page.QMD in [h for _, h in CFG.navbar], "the navbar should link the API reference"
    assert 'nbs/' + api_page.QMD in (ROOT / '.gitignore').read_text().split(), f"nbs/{api_page.QMD} is generated: git-ignore it"


def test_the_options_readers_rely_on_are_set():
    web, html = CFG.quarto['website'], CFG.quarto['format']['html']
    assert html.get('toc') is True, "format.html.toc: the on-page table of contents"
    assert web.get('page-navigation') is True, "website.page-navigation: previous/next links"
    assert web['navbar'].get('search') is True, "website.navbar.search"
    assert html.get('html-math-method') == 'mathjax'


def test_nbdev_settings_quarto_needs():
    s = CFG.settings
    for key in ['lib_name', 'lib_path', 'nbs_path', 'doc_path', 'doc_host', 'doc_baseurl', 'git_url', 'branch', 'title', 'description']:
        assert s.get(key), f"settings.ini lacks {key}, which nbdev_docs (Quarto) needs"
    assert s['custom_sidebar'].lower() == 'true', "custom_sidebar = True: the sidebar is hand-written in _quarto.yml, nbdev must not write one"
    assert CFG.site_url.startswith('https://') and CFG.site_url.endswith('/')
    assert CFG.github_repo.count('/') == 1, "git_url must be a GitHub repository (the Colab links are built from it)"


def _readme_quarto_commands():
    readme = (ROOT / 'README.md').read_text(encoding='utf-8')
    section = readme.split('### The website', 1)[1].split('\n## ', 1)[0]
    block = re.search(r'Published site.*?```bash\n(.*?)```', section, re.S)
    assert block, "README's website section should show the Quarto build commands in a bash block"
    return [l.split('#')[0].strip() for l in block.group(1).splitlines() if l.split('#')[0].strip()]


def test_deploy_runs_the_commands_the_readme_documents():
    import yaml
    wf = yaml.safe_load((ROOT / '.github' / 'workflows' / 'deploy.yaml').read_text(encoding='utf-8'))
    steps = [st for job in wf['jobs'].values() for st in job['steps']]
    runs = [line.strip() for st in steps for line in st.get('run', '').splitlines() if line.strip()]
    cmds = _readme_quarto_commands()
    assert cmds and 'nbdev_docs' in cmds
    at = [runs.index(c) if c in runs else None for c in cmds]
    assert None not in at, f"deploy.yaml does not run {[c for c, i in zip(cmds, at) if i is None]}, which the README documents"
    assert at == sorted(at), "deploy.yaml runs the README's commands in another order"
    install = ' '.join(runs[:min(at)])
    assert 'pip install -e ".[dev]"' in install and 'torch' in install, "deploy.yaml installs the course (CPU torch first) before building"
    publish = [st for st in steps if 'gh-pages' in st.get('uses', '')]
    assert publish and publish[0]['with']['publish_dir'].strip('./') == CFG.settings['doc_path'], \
        "deploy.yaml publishes a folder other than settings.ini's doc_path (where nbdev_docs writes the site)"


def test_ci_builds_the_offline_site():
    run = (ROOT / '.ci' / 'run').read_text(encoding='utf-8')
    assert 'python tools/render_site.py' in run and 'chromium-driver' in run
    for cmd in ['python tools/render_site.py']:
        assert cmd in (ROOT / 'README.md').read_text(encoding='utf-8')


def test_api_qmd_for_quarto(tmp_path):
    "tools/api_page.py writes the page Quarto renders: front matter, then the API reference's markdown."
    headings = render_site.proc_headings(ROOT / '_proc', CFG) if (ROOT / '_proc' / 'index.ipynb').exists() else None
    md = api_page.markdown(CFG, headings)
    lib = CFG.settings['lib_name']
    assert md.count(f'\n## {lib}.') >= 1 and '](' in md
    assert not re.search(r'\]\(https?://' + re.escape(CFG.site_url.split('//', 1)[1]), md), "API links must be relative to the site"


def test_sidebar_parsing():
    labels = {}
    secs = sitecfg.parse_sidebar(['index.ipynb', {'text': 'Start', 'href': 'a.ipynb'},
                                  {'section': 'I', 'contents': ['b.ipynb', {'section': 'sub', 'contents': ['c.ipynb']}, 'd.ipynb']}],
                                 labels)
    assert secs == [(None, ['index.ipynb', 'a.ipynb']), ('I', ['b.ipynb']), ('I / sub', ['c.ipynb']), ('I', ['d.ipynb'])]
    assert labels == {'a.ipynb': 'Start'}
    with pytest.raises(ValueError, match='must be a file name or have an `href`'):
        sitecfg.parse_sidebar([{'text': 'no link'}])


def test_a_clone_under_a_hidden_folder_gets_a_clear_error(tmp_path):
    "nbdev silently processes no notebook below a folder named like `.cache`: the renderer says so and what to do."
    import render_site
    assert render_site.hidden_folders(tmp_path / 'work' / 'dlbook') == []
    assert render_site.hidden_folders(tmp_path / '.cache' / 'dlbook') == ['.cache']
    with pytest.raises(SystemExit, match=r"starts with a dot \(\.cache\).*Clone or move the repository"):
        render_site.process_notebooks(tmp_path / '.cache' / 'dlbook')
