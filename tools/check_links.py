#!/usr/bin/env python
"""Check every link of the built site: internal links and #anchors must resolve; external ones are listed, not fetched.

    python tools/check_links.py            # checks _site/, writes _site/_links.txt, exits 1 on a broken link
    python tools/check_links.py --site DIR

Kinds of link:
- internal: a relative `href`/`src` (or one to the site's own published URL); the file must exist
  in the site and, for `page.html#anchor`, the page must have an element with that id;
- repository: a link into this repository on GitHub (`git_url/blob/branch/PATH#Lnn`, show_doc's
  "source" links) or to Colab's view of it; PATH must exist in the checkout and line nn in the file;
- external: anything else on the web; listed in the report with the pages that use it.
"""
import argparse, sys
from collections import defaultdict
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS))
import sitecfg  # noqa: E402

SKIP_DIRS = {'mathjax', 'pagefind', '_screenshots', '_static'}   # copied assets, not pages


class _Page(HTMLParser):
    "The ids of a page and its links: [(tag, attribute, url, line)]."
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids, self.links = set(), []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get('id'): self.ids.add(a['id'])
        if tag == 'a' and a.get('name'): self.ids.add(a['name'])
        for attr in ('href', 'src'):
            if a.get(attr) is not None and tag in ('a', 'img', 'script', 'link', 'iframe', 'source'):
                self.links.append((tag, attr, a[attr], self.getpos()[0]))


@dataclass
class Report:
    pages: int = 0
    internal: int = 0
    repository: int = 0
    broken: list = field(default_factory=list)                        # [(page, url, why)]
    external: dict = field(default_factory=lambda: defaultdict(set))  # {url: {pages}}

    def text(self):
        lines = [f"{self.pages} pages; {self.internal} internal links, {self.repository} links into the repository, "
                 f"{sum(len(p) for p in self.external.values())} external links to {len(self.external)} addresses; "
                 f"{len(self.broken)} broken", '']
        if self.broken:
            lines += ['Broken:'] + [f"  {p}: {u}  ({why})" for p, u, why in self.broken] + ['']
        lines += ['External (not fetched: check them by hand or on a machine with a network):']
        lines += [f"  {u}  <- {', '.join(sorted(ps))}" for u, ps in sorted(self.external.items())]
        return '\n'.join(lines) + '\n'


def _pages(site: Path):
    return sorted(p for p in site.rglob('*.html') if not (set(p.relative_to(site).parts[:-1]) & SKIP_DIRS))


def _repo_path(cfg, url):
    "(path in the checkout, line or None) for a link into this repository (GitHub or Colab), else None."
    prefixes = [f"{cfg.git_url}/blob/{cfg.branch}/", f"{cfg.git_url}/tree/{cfg.branch}/",
                f"https://colab.research.google.com/github/{cfg.github_repo}/blob/{cfg.branch}/"]
    for pre in prefixes:
        if url.startswith(pre):
            rest = urlsplit(url[len(pre):])
            line = rest.fragment[1:] if rest.fragment.startswith('L') else None
            return unquote(rest.path), (int(line.split('-')[0]) if line and line.split('-')[0].isdigit() else None)
    return None


def check(site: Path, cfg=None) -> Report:
    "Check every link of every page under `site`."
    cfg = cfg or sitecfg.load()
    parsed = {}
    for p in _pages(site):
        pp = _Page(); pp.feed(p.read_text(encoding='utf-8')); parsed[p.resolve()] = pp
    rep = Report(pages=len(parsed))
    lines_of = {}
    for page, pp in parsed.items():
        rel = page.relative_to(site.resolve()).as_posix()
        for tag, attr, url, _ in pp.links:
            url = url.strip()
            if not url or url.startswith(('mailto:', 'javascript:', 'data:', 'tel:')): continue
            if url.startswith(cfg.site_url):
                rep.broken.append((rel, url, "absolute link to the site itself: make it relative")); continue
            u = urlsplit(url)
            if u.scheme or url.startswith('//'):
                rp = _repo_path(cfg, url)
                if rp is None: rep.external[url].add(rel); continue
                rep.repository += 1
                path, line = rp
                f = cfg.root / path
                if not f.exists(): rep.broken.append((rel, url, f"{path} is not in the repository")); continue
                if line is not None:
                    if f not in lines_of: lines_of[f] = len(f.read_text(encoding='utf-8').splitlines())
                    if not 1 <= line <= lines_of[f]: rep.broken.append((rel, url, f"{path} has {lines_of[f]} lines, not {line}"))
                continue
            rep.internal += 1
            target = (page.parent / unquote(u.path)).resolve() if u.path else page
            if target.is_dir(): target = target / 'index.html'
            if not target.exists():
                rep.broken.append((rel, url, f"no file {unquote(u.path)} in the site")); continue
            if u.fragment and tag == 'a':
                ids = parsed[target].ids if target in parsed else None
                if ids is not None and unquote(u.fragment) not in ids:
                    rep.broken.append((rel, url, f"{target.name} has no element with id {unquote(u.fragment)!r}"))
    return rep


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--site', type=Path, default=sitecfg.ROOT / '_site')
    a = ap.parse_args(argv)
    rep = check(a.site)
    (a.site / '_links.txt').write_text(rep.text(), encoding='utf-8')
    print(rep.text().split('\n\n')[0] if not rep.broken else '\n'.join(rep.text().split('\nExternal')[0:1]))
    print(f"report: {a.site / '_links.txt'}")
    sys.exit(1 if rep.broken else 0)


if __name__ == '__main__':
    main()
