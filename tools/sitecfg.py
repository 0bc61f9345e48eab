"""The website's configuration, read in one place.

`_quarto.yml` (title, navbar, sidebar) and `settings.ini` (repository, branch, site URL) drive
both site builds: `nbdev_docs` (Quarto) and `tools/render_site.py` (offline). Everything that
needs the sidebar or a setting (the renderer, the API page, the setup-cell tool, the tests)
calls `load()` instead of parsing those files again.
"""
from configparser import ConfigParser
from dataclasses import dataclass, field
from pathlib import Path
import re

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Site:
    "What the site builds need to know: the sidebar's sections, the navbar, and nbdev's settings."
    title: str
    sections: list                      # [(section title or None, [file names in nbs/])], in reading order
    navbar: list                        # [(text, file name in nbs/)]
    labels: dict                        # {file: the sidebar's `text` for it}, where the sidebar gives one
    settings: dict                      # settings.ini's [DEFAULT] section
    quarto: dict = field(repr=False, default_factory=dict)   # the whole parsed _quarto.yml
    root: Path = ROOT

    @property
    def files(self):
        "Every file the sidebar lists, in reading order."
        return [f for _, fs in self.sections for f in fs]

    @property
    def nbs_path(self): return self.root / self.settings.get('nbs_path', 'nbs')

    @property
    def site_url(self):
        "Where Quarto's build is published (nbdev writes doc links with this prefix)."
        return self.settings['doc_host'].rstrip('/') + '/' + self.settings.get('doc_baseurl', '').strip('/') + '/'

    @property
    def git_url(self): return self.settings['git_url'].rstrip('/')

    @property
    def branch(self): return self.settings.get('branch', 'main')

    @property
    def github_repo(self):
        "owner/name of the GitHub repository, from git_url."
        m = re.match(r'https?://github\.com/([^/]+/[^/]+?)(?:\.git)?$', self.git_url)
        if not m: raise ValueError(f"settings.ini: git_url must be https://github.com/OWNER/NAME, got {self.git_url!r}")
        return m.group(1)

    def repo_url(self, path, line=None):
        "A link to `path` (relative to the repository root) on GitHub, at `line` if given."
        return f"{self.git_url}/blob/{self.branch}/{path}" + (f"#L{line}" if line else '')

    def colab_url(self, nb_name):
        "Google Colab opens a notebook straight from GitHub with this address."
        nbs = self.settings.get('nbs_path', 'nbs')
        return f"https://colab.research.google.com/github/{self.github_repo}/blob/{self.branch}/{nbs}/{nb_name}"


def _href(item, where, labels):
    if isinstance(item, str): return item
    if isinstance(item, dict) and 'href' in item:
        if 'text' in item: labels[item['href']] = item['text']
        return item['href']
    raise ValueError(f"_quarto.yml: {where}: each entry must be a file name or have an `href`, got {item!r}")


def parse_sidebar(contents, labels=None):
    "[(section title or None, [files])] from `website.sidebar.contents` (sections may nest; they are flattened)."
    out, labels = [], ({} if labels is None else labels)
    def walk(items, title, where):
        loose = []
        for item in items:
            if isinstance(item, dict) and 'section' in item:
                if loose: out.append((title, loose)); loose = []
                sub = item['section'] if title is None else f"{title} / {item['section']}"
                walk(item.get('contents', []), sub, f"section {item['section']!r}")
            else: loose.append(_href(item, where, labels))
        if loose: out.append((title, loose))
    walk(contents, None, 'website.sidebar.contents')
    return out


def load(root: Path = ROOT) -> Site:
    "Read `_quarto.yml` and `settings.ini` under `root`."
    import yaml
    quarto = yaml.safe_load((root / '_quarto.yml').read_text(encoding='utf-8'))
    web = quarto.get('website', {})
    try: contents = web['sidebar']['contents']
    except (KeyError, TypeError): raise ValueError("_quarto.yml has no website.sidebar.contents: the course's reading order lives there")
    nav = []
    for side in ('left', 'right'):
        for item in (web.get('navbar') or {}).get(side, []) or []:
            if isinstance(item, dict) and 'href' in item: nav.append((item.get('text', item['href']), item['href']))
    cp = ConfigParser(delimiters=['='])
    cp.read(root / 'settings.ini', encoding='utf-8')
    labels = {}
    sections = parse_sidebar(contents, labels)
    return Site(title=web.get('title', 'dlbook'), sections=sections, navbar=nav, labels=labels,
                settings=dict(cp['DEFAULT']), quarto=quarto, root=root)
