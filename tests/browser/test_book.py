"""The built book (`make book`, build/book/html) in headless Chromium, served from a loopback port.

Run with `make test-book` (it builds the book first). Every page: no console error or uncaught exception, no
request leaving the machine, every image loaded, every internal link and anchor found, the maths typeset (no raw
TeX outside code). The search page finds "hemisphere"; every notebook page has Binder and Colab buttons that point
at the repository named in pyproject.toml. Screenshots: build/book-screens/.
The checks are shown failing on a page with a broken image, a dead link and MathJax blocked.
"""
from __future__ import annotations

import functools
import http.server
import re
import sys
import threading
import urllib.parse
from pathlib import Path

import pytest
from PIL import Image

from conftest import ROOT, emptied_screens, free_port, wait_until

sys.path.insert(0, str(ROOT / "book"))
from repository import repository  # noqa: E402

SITE = ROOT / "build" / "book" / "html"
SCREENS = ROOT / "build" / "book-screens"
PAGES = sorted(str(p.relative_to(SITE)) for p in SITE.rglob("*.html") if not p.relative_to(SITE).parts[0]
               .startswith("_static")) if SITE.is_dir() else []
NOTEBOOK_PAGES = [p for p in PAGES if p.startswith("notebooks/")]
# text that MathJax would have turned into maths: TeX commands or delimiters left in the page's prose
RAW_TEX = (r"\\(frac|nabla|mathbf|mathrm|sqrt|int|sum|partial|left|right|begin|sigma|rho|theta|varepsilon)\b"
           r"|\$\$|\\\(|\\\[|\$[^$\s][^$]*[_^\\][^$]*\$")    # the last: inline $...$ with a sub/superscript or a command

RAW_TEX_JS = """(pattern) => {
  const re = new RegExp(pattern), skip = ["PRE", "CODE", "SCRIPT", "STYLE", "TEXTAREA", "MJX-CONTAINER", "SAMP"];
  const found = [], walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    let e = n.parentElement, inside = false;
    for (; e; e = e.parentElement) if (skip.includes(e.tagName) || e.classList.contains("highlight")) { inside = true; break; }
    if (!inside && re.test(n.textContent)) found.push(n.textContent.trim().slice(0, 80));
  }
  return found;
}"""


@pytest.fixture(scope="session")
def site():
    """build/book/html over HTTP on a free loopback port (the book is a static site: a plain file server)."""
    if not (SITE / "index.html").is_file():
        pytest.fail(f"no book at {SITE}: run `make test-book` (it runs `make book` first)", pytrace=False)
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(SITE))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def book_screens() -> Path:
    """build/book-screens/, emptied of an earlier run's PNGs (the widget test's build/screens/ is left alone)."""
    return emptied_screens(SCREENS)


class Visit:
    """One page in the browser: what it logged, raised and tried to fetch from outside, then the DOM to check."""

    def __init__(self, browser, site: str, block: str | None = None):
        self.site, self.errors, self.outside = site, [], []
        self.page = browser.new_page()
        self.page.on("console", lambda m: self.errors.append(f"console {m.type}: {m.text}")
                     if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        self.page.route("**/*", self._route)
        self.block = block

    def _route(self, route):
        url = route.request.url
        if self.block and self.block in url:
            return route.abort()
        if url.startswith((self.site + "/", "data:", "blob:", "about:")):
            return route.continue_()
        self.outside.append(url)
        return route.abort()

    def open(self, path: str, timeout: float):
        self.page.goto(f"{self.site}/{path}", wait_until="load", timeout=timeout * 1000)
        if self.page.evaluate("() => !!document.querySelector('.math')") and not self.block:
            self.page.wait_for_function(
                "() => window.MathJax && MathJax.startup && MathJax.startup.promise && "
                "(MathJax.startup.promise.then(() => window.__typeset = true), window.__typeset === true)",
                timeout=timeout * 1000)
        return self

    def broken_images(self) -> list[str]:
        self.page.evaluate("() => Promise.all([...document.images].map(i => i.decode().catch(() => null)))")
        return self.page.evaluate(
            "() => [...document.images].filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src)")

    def links(self) -> list[str]:
        return self.page.evaluate("() => [...document.querySelectorAll('a[href]')].map(a => a.href)")

    def raw_tex(self) -> list[str]:
        return self.page.evaluate(RAW_TEX_JS, RAW_TEX)

    def math_counts(self) -> tuple[int, int]:
        return self.page.evaluate("() => [document.querySelectorAll('.math').length, "
                                  "document.querySelectorAll('mjx-container').length]")

    def close(self):
        self.page.close()


@functools.lru_cache(maxsize=None)
def ids_of(path: Path) -> frozenset[str]:
    return frozenset(re.findall(r'\bid="([^"]+)"', path.read_text(errors="replace")))


def dead_links(links: list[str], site: str) -> list[str]:
    """The internal links whose file is not in the site, or whose #anchor is no id in that file."""
    dead = []
    for link in links:
        if not link.startswith(site + "/"):
            continue
        parsed = urllib.parse.urlsplit(link)
        path = SITE / urllib.parse.unquote(parsed.path).lstrip("/")
        if path.is_dir():
            path = path / "index.html"
        if not path.is_file():
            dead.append(link)
        elif parsed.fragment and path.suffix == ".html" and urllib.parse.unquote(parsed.fragment) not in ids_of(path):
            dead.append(link)
    return dead


def screenshot_name(page: str) -> str:
    return page.removesuffix(".html").replace("/", "-") + ".png"


@pytest.mark.parametrize("page", PAGES)
def test_every_page_loads_offline_with_images_links_and_maths(browser, site, page, timeout, book_screens):
    visit = Visit(browser, site).open(page, timeout)
    try:
        assert visit.errors == [], visit.errors
        assert visit.outside == [], f"{page} requested from outside the machine: {visit.outside}"
        assert visit.broken_images() == []
        assert dead_links(visit.links(), site) == []
        assert visit.raw_tex() == [], f"{page}: raw TeX on the page (MathJax did not typeset it)"
        math, typeset = visit.math_counts()
        assert typeset >= math, f"{page}: {math} maths elements, {typeset} typeset by MathJax"
        if not page.startswith("_modules/"):
            visit.page.screenshot(path=str(book_screens / screenshot_name(page)))
    finally:
        visit.close()


def test_the_pages_hold_what_the_book_promises():
    """Every notebook has its page, with its maths; the widget notebooks show stills, the API has every module."""
    assert [p.removeprefix("notebooks/").removesuffix(".html") for p in NOTEBOOK_PAGES] == \
        [p.stem for p in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))]
    assert {"index.html", "api.html", "benchmarks.html", "search.html"} <= set(PAGES)
    welcome = (SITE / "notebooks" / "02_charges_to_hemisphere.html").read_text()
    assert "the figure it showed when the notebook was run" in welcome
    for page in ("05_sampling", "06_digits"):                  # the animations play on the site: GIF files
        html = (SITE / "notebooks" / f"{page}.html").read_text()
        images = [SITE / "notebooks" / src for src in re.findall(r'<img[^>]+src="([^"]+)"', html)]
        gifs = [i for i in images if i.is_file() and i.read_bytes()[:6] == b"GIF89a"]
        assert gifs, f"{page}: no GIF on its page"
        assert all(Image.open(i).n_frames > 10 for i in gifs), f"{page}: a GIF with too few frames to be an animation"
    api = (SITE / "api.html").read_text()
    for module in ("pfgm_lite.field", "pfgm_lite.sampling.ode", "pfgm_lite.methods.pfgm", "pfgm_lite.train"):
        assert f'id="module-{module}"' in api, module


@pytest.mark.parametrize("page", NOTEBOOK_PAGES)
def test_every_notebook_page_launches_on_binder_and_colab(browser, site, page, timeout):
    repo = repository()
    notebook = "notebooks/" + Path(page).stem + ".ipynb"
    visit = Visit(browser, site).open(page, timeout)
    try:
        links = set(visit.links())
        assert repo.binder(notebook) in links, f"{page}: no Binder button to {repo.binder(notebook)}"
        assert repo.colab(notebook) in links, f"{page}: no Colab button to {repo.colab(notebook)}"
    finally:
        visit.close()


def test_the_search_finds_hemisphere(browser, site, timeout, book_screens):
    visit = Visit(browser, site).open("search.html?q=hemisphere", timeout)
    try:
        found = wait_until(lambda: visit.page.evaluate(
            "() => [...document.querySelectorAll('#search-results li a')].map(a => a.href)"), timeout)
        assert found, "the search page listed nothing for 'hemisphere'"
        assert any("/notebooks/02_charges_to_hemisphere.html" in url for url in found), found
        assert visit.errors == [] and visit.outside == []
        visit.page.screenshot(path=str(book_screens / "search-hemisphere.png"))
    finally:
        visit.close()


def test_a_maths_and_a_widget_still_in_view(browser, site, timeout, book_screens):
    """Screenshots to look at: a displayed equation of notebook 01, and notebook 02's first widget still."""
    visit = Visit(browser, site).open("notebooks/01_poisson_equation.html", timeout)
    try:
        visit.page.locator("mjx-container[display='true']").first.scroll_into_view_if_needed()
        visit.page.screenshot(path=str(book_screens / "maths-01.png"))
        visit.open("notebooks/02_charges_to_hemisphere.html", timeout)
        visit.page.get_by_text("the figure it showed when the notebook was run").first.scroll_into_view_if_needed()
        visit.page.screenshot(path=str(book_screens / "widget-still-02.png"))
    finally:
        visit.close()


def test_the_checks_fail_on_a_broken_page(browser, site, timeout):
    """A broken image, a dead link, a missing anchor and MathJax blocked are each caught."""
    visit = Visit(browser, site, block="/_static/mathjax/").open("notebooks/01_poisson_equation.html", timeout)
    try:
        visit.page.evaluate("""() => {
          const img = document.createElement("img"); img.src = "nope.png"; document.body.append(img);
          for (const href of ["nope.html", "../index.html#no-such-anchor"]) {
            const a = document.createElement("a"); a.href = href; document.body.append(a);
          }
        }""")
        assert [src for src in visit.broken_images() if src.endswith("/nope.png")]
        dead = dead_links(visit.links(), site)
        assert f"{site}/notebooks/nope.html" in dead and f"{site}/index.html#no-such-anchor" in dead
        assert visit.raw_tex(), "MathJax was blocked, yet no raw TeX was found"
        math, typeset = visit.math_counts()
        assert math > 0 and typeset == 0
        assert any("nope.png" in e or "404" in e for e in visit.errors), visit.errors
    finally:
        visit.close()
