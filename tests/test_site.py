"""The website: chapters render with their executed outputs, figures and offline maths.

The book is built from the chapters as executed by the notebook tests (small parameters, so this
stays fast), with the project's own _config.yml, _toc.yml, extensions and style; only the execution
is switched off. The HTML of every page is checked (tables rendered, no error output, alt text and
captions, references resolved, every internal link and anchor resolves, launch/download/repository
buttons agree with _config.yml), then a real browser (Debian's chromium, driven by Playwright) opens
every chapter served on localhost at a 1280-px window and checks that MathJax typesets, nothing is
requested from another host, the console stays clean and no code block is wider than its column.
"""
from __future__ import annotations

import functools
import json
import http.server
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
import yaml

from conftest import ROOT, chapter_notebooks, execute_chapter

CHROMIUM = Path("/usr/bin/chromium")
TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)+\|?\s*$", re.M)  # |---|---|
IMAGE_FILE = re.compile(r"(^|/)[^/\s]+\.(png|jpe?g|svg|gif|webp)$", re.I)
ROLE_TEXT = re.compile(r"\{(cite|cite:p|cite:t|ref|numref|eq|doc|glue|glue:text|term)\}`")
REMOTE_ASSET = re.compile(r'<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)="(?:https?:)?//', re.I)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    if not (ROOT / "_extra" / "mathjax" / "tex-chtml.js").is_file():
        pytest.fail("MathJax is missing: run `make mathjax` (make test does it)")
    book = tmp_path_factory.mktemp("book")
    for name in ("_toc.yml", "intro.md", "references.md", "references.bib"):
        shutil.copy(ROOT / name, book / name)
    shutil.copytree(ROOT / "_ext", book / "_ext")
    shutil.copytree(ROOT / "_static", book / "_static")
    (book / "_extra").symlink_to(ROOT / "_extra")
    (book / "assignments").symlink_to(ROOT / "assignments")  # the chapters' "Graded in" download links
    (book / "chapters").mkdir()
    for md in (ROOT / "chapters").glob("*.md"):
        shutil.copy(md, book / "chapters" / md.name)
    for notebook in chapter_notebooks():
        shutil.copy(execute_chapter(notebook), book / "chapters" / notebook.name)
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    config["execute"]["execute_notebooks"] = "off"  # already executed, with the test parameters
    (book / "_config.yml").write_text(yaml.safe_dump(config))
    result = subprocess.run([str(Path(sys.executable).parent / "jupyter-book"), "build", str(book), "-W", "--keep-going"],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return book / "_build" / "html"


def test_every_chapter_page_has_its_outputs_and_figures(site):
    for notebook in chapter_notebooks():
        html = (site / "chapters" / f"{notebook.stem}.html").read_text(encoding="utf-8")
        assert "cell_output" in html, f"{notebook.stem}: no executed outputs on the page"
        figures = re.findall(r'<img[^>]+src="\.\./_images/[^"]+\.png"', html)
        assert figures, f"{notebook.stem}: no figures on the page"
        assert "Traceback (most recent call last)" not in html and "output traceback" not in html, (
            f"{notebook.stem}: an error is shown on the page")


def test_pages_load_nothing_from_other_hosts_and_serve_mathjax(site):
    for page in site.rglob("*.html"):
        html = page.read_text(encoding="utf-8")
        remote = REMOTE_ASSET.search(html)
        assert remote is None, f"{page.relative_to(site)} loads a remote asset: {html[remote.start():remote.start() + 160]}"
    chapter = (site / "chapters" / "02_convolution.html").read_text(encoding="utf-8")
    src = re.search(r'<script[^>]+src="([^"?]*tex-chtml\.js)', chapter)
    assert src, "no MathJax script on the chapter page"
    assert (site / "chapters" / src.group(1)).resolve().is_file(), f"MathJax script {src.group(1)} is not in the site"
    assert "Eq." in chapter or "equation" in chapter


def test_progress_bars_show_only_their_final_state(site):
    for page in (site / "chapters").glob("*.html"):
        for block in re.findall(r'<div class="output stderr.*?<pre>(.*?)</pre>', page.read_text(encoding="utf-8"), re.S):
            bars = [line for line in block.splitlines() if "%|" in line]
            finished = {line.split(":")[0] for line in bars if "100%|" in line}
            redraws = [line for line in bars if line.split(":")[0] in finished and "100%|" not in line]
            assert not redraws, f"{page.name}: progress bar redraws shown as lines: {redraws[:2]}"


def test_glued_numbers_are_rendered(site):
    html = (site / "chapters" / "02_convolution.html").read_text(encoding="utf-8")
    assert re.search(r"The answer is\s*(<[^>]+>)*\s*50", html), "the glued receptive-field answer is missing"


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")
def test_chapter_in_a_real_browser(site):
    from playwright.sync_api import sync_playwright

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)  # port 0: any free port
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run"])
            page = browser.new_page()
            errors, foreign = [], []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: None if r.url.startswith((base, "data:")) else foreign.append(r.url))
            page.goto(f"{base}/chapters/02_convolution.html")
            page.wait_for_load_state("networkidle")
            page.wait_for_selector("mjx-container", timeout=20_000)
            typeset = page.locator("mjx-container").count()
            images = page.evaluate("Array.from(document.images).filter(i => i.complete && i.naturalWidth > 0).length")
            browser.close()
    finally:
        server.shutdown()
    assert not errors, f"console errors: {errors}"
    assert not foreign, f"requests to other hosts: {foreign}"
    assert typeset > 20, f"only {typeset} formulas typeset by MathJax"
    assert images >= 5, f"only {images} figures loaded"


# ---- every page, from its HTML ------------------------------------------------------------------

def _soup(page: Path):
    from bs4 import BeautifulSoup

    return BeautifulSoup(page.read_text(encoding="utf-8"), "html.parser")


def _chapter_pages(site: Path) -> dict[str, Path]:
    pages = {nb.stem: site / "chapters" / f"{nb.stem}.html" for nb in chapter_notebooks()}
    pages.update({md.stem: site / "chapters" / f"{md.stem}.html" for md in (ROOT / "chapters").glob("*.md")})
    return pages


def _prose_text(page: Path) -> str:
    """The article's text without code and outputs shown as code."""
    article = _soup(page).select_one("article.bd-article")
    for code in article.find_all(["pre", "code", "script", "style"]):
        code.decompose()
    return article.get_text("\n")


def _markdown_tables(notebook: Path) -> int:
    """Tables in the executed notebook: in Markdown cells and in Markdown outputs (markdown_table)."""
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    count = 0
    for cell in nb["cells"]:
        texts = [cell["source"]] if cell["cell_type"] == "markdown" else [
            output.get("data", {}).get("text/markdown", "") for output in cell.get("outputs", [])]
        count += sum(len(TABLE_RULE.findall("".join(t) if isinstance(t, list) else t)) for t in texts)
    return count


def test_tables_render_as_tables(site):
    # Bug caught: myst-nb rendered Markdown outputs as CommonMark, so every markdown_table showed
    # as lines of "| a | b |" text (issue 17).
    for notebook in chapter_notebooks():
        page = site / "chapters" / f"{notebook.stem}.html"
        text = _prose_text(page).replace("\u2014", "---").replace("\u2013", "--")  # typography made --- a dash
        raw = TABLE_RULE.search(text)
        assert raw is None, f"{notebook.stem}: a Markdown table shown as text: {raw.group(0).strip()!r}"
        expected = _markdown_tables(execute_chapter(notebook))
        tables = len(_soup(page).select("article table"))
        assert tables >= expected, f"{notebook.stem}: {expected} Markdown tables, only {tables} rendered as <table>"


def test_no_error_output_on_any_page(site):
    for name, page in _chapter_pages(site).items():
        soup = _soup(page)
        shown = soup.select("article .traceback, article .output.error")
        assert not shown, f"{name}: an error output on the page: {shown[0].get_text()[:300]}"
        assert "Traceback (most recent call last)" not in soup.get_text(), f"{name}: a traceback on the page"


def test_images_have_alt_text_and_figures_captions(site):
    # Bug caught: myst-nb's default alt text for a plot is its file name (screen readers read a hash).
    missing = []
    for name, page in _chapter_pages(site).items():
        soup = _soup(page)
        for img in soup.find_all("img"):
            alt = (img.get("alt") or "").strip()
            if len(alt.split()) < 2 or IMAGE_FILE.search(alt):
                missing.append(f"{name}: <img src={img.get('src')!r} alt={alt!r}>")
        for figure in soup.find_all("figure"):
            caption = figure.find("figcaption")
            if caption is None or not caption.get_text(strip=True):
                missing.append(f"{name}: a <figure> without a caption ({figure.get('id')})")
    assert not missing, (f"{len(missing)} images without meaningful alt text or figures without a caption "
                         "(cell metadata: \"mystnb\": {\"image\": {\"alt\": ...}, \"figure\": {\"caption\": ...}}):\n"
                         + "\n".join(missing[:20]))


def test_references_and_citations_resolve(site):
    for name, page in _chapter_pages(site).items():
        soup = _soup(page)
        unresolved = [x for x in soup.select("article .xref") if x.find_parent("a", href=True) is None]
        assert not unresolved, f"{name}: unresolved reference {unresolved[0]}"
        text = _prose_text(page)
        role = ROLE_TEXT.search(text)
        assert role is None, f"{name}: a role shown as text: {text[role.start():role.start() + 80]!r}"
        assert not re.search(r"\[\?\]|\?\?", text), f"{name}: an unresolved citation or number ('?')"


def _ids(page: Path, cache: dict) -> set[str]:
    if page not in cache:
        cache[page] = {tag.get("id") for tag in _soup(page).find_all(id=True)} | {
            tag.get("name") for tag in _soup(page).find_all("a", attrs={"name": True})}
    return cache[page]


def test_internal_links_and_anchors_resolve(site):
    # Bug caught: a link to a renamed chapter, a section anchor or an asset that the site lacks.
    broken, ids, checked = [], {}, 0
    for page in sorted(site.rglob("*.html")):
        if "_static" in page.relative_to(site).parts:
            continue  # the theme's template fragments
        for tag in _soup(page).find_all(["a", "link", "img", "script"]):
            url = tag.get("href") or tag.get("src")
            if not url or urlparse(url).scheme or url.startswith("//"):
                continue  # external: the buttons are checked against _config.yml below
            path, _, anchor = url.partition("#")
            path = unquote(path.split("?")[0])
            target = (page.parent / path).resolve() if path else page
            if target.is_dir():
                target = target / "index.html"
            checked += 1
            if not target.is_file():
                broken.append(f"{page.relative_to(site)}: {url} (no such file)")
            elif anchor and target.suffix == ".html" and unquote(anchor) not in _ids(target, ids):
                broken.append(f"{page.relative_to(site)}: {url} (no such anchor)")
    assert checked > 500, f"only {checked} internal links found: is the site complete?"
    assert not broken, f"{len(broken)} broken internal links:\n" + "\n".join(broken[:20])


def test_launch_download_and_repository_buttons_agree_with_config(site):
    # Bug caught: buttons that point to another repository or branch than _config.yml names, or a
    # launch link to a notebook path that the repository does not have.
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    repository, launch = config["repository"], config["launch_buttons"]
    url, branch = repository["url"].rstrip("/"), repository.get("branch", "main")
    owner_repo = urlparse(url).path.strip("/")
    folder = (repository.get("path_to_book") or "").strip("/")
    for notebook in chapter_notebooks():
        soup = _soup(site / "chapters" / f"{notebook.stem}.html")
        links = {a["href"] for a in soup.find_all("a", href=True)}
        source = "/".join(p for p in (folder, "chapters", notebook.name) if p)
        assert (ROOT / source).is_file(), f"the buttons would open {source}, which the repository lacks"
        expected = {
            "repository": url,
            "Colab": f"{launch['colab_url'].rstrip('/')}/github/{owner_repo}/blob/{branch}/{source}",
            "Binder": f"{launch['binderhub_url'].rstrip('/')}/v2/gh/{owner_repo}/{branch}?urlpath=tree/{source}",
        }
        for button, href in expected.items():
            assert href in links, f"{notebook.stem}: no {button} button to {href}; links: {sorted(links)[:12]}"
        hosts = {urlparse(launch["colab_url"]).netloc, urlparse(launch["binderhub_url"]).netloc, urlparse(url).netloc}
        for href in links:
            if urlparse(href).netloc in hosts:
                assert owner_repo in href, f"{notebook.stem}: {href} does not point to {owner_repo}"
        issues = [h for h in links if "/issues" in h]
        assert issues and all(h.startswith(url + "/issues") for h in issues), f"{notebook.stem}: issue links {issues}"
        local = [h for h in links if h.endswith(".ipynb") and not urlparse(h).scheme]
        graded_in = [h for h in local if "/_downloads/" in h]  # the text's "Graded in" links to assignments
        downloads = [h for h in local if h not in graded_in]
        assert downloads, f"{notebook.stem}: no download button for the notebook"
        for href in downloads:
            target = (site / "chapters" / href).resolve()
            assert target.name == notebook.name and target.is_file(), f"{notebook.stem}: download {href} is not this notebook"
        for href in graded_in:
            target = (site / "chapters" / href).resolve()
            assert target.is_file() and (ROOT / "assignments" / target.stem / target.name).is_file(), (
                f"{notebook.stem}: {href} is not a student assignment notebook")


# ---- every chapter, in a real browser -----------------------------------------------------------

OVERFLOWING_CODE = """() => Array.from(document.querySelectorAll('article pre'))
  .filter(pre => pre.getBoundingClientRect().width > 0 && pre.scrollWidth > pre.clientWidth + 1)
  .map(pre => `${pre.scrollWidth} px in ${pre.clientWidth} px: ${pre.textContent.trim().split('\\n')[0].slice(0, 60)}`)"""


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")
def test_every_chapter_in_a_real_browser(site):
    # Bugs caught: code running off the text column at a common window width (issue 17), console
    # errors, requests to other hosts, maths not typeset, figures that do not load.
    from playwright.sync_api import sync_playwright

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    problems = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run"])
            for name, path in _chapter_pages(site).items():
                page = browser.new_page(viewport={"width": 1280, "height": 800})  # a width readers have
                errors, foreign = [], []
                page.on("console", lambda m, e=errors: e.append(m.text) if m.type == "error" else None)
                page.on("pageerror", lambda x, e=errors: e.append(str(x)))
                page.on("request", lambda r, f=foreign: None if r.url.startswith((base, "data:")) else f.append(r.url))
                page.goto(f"{base}/{path.relative_to(site).as_posix()}")
                page.wait_for_load_state("networkidle")
                if "math notranslate" in path.read_text(encoding="utf-8"):
                    page.wait_for_selector("mjx-container", timeout=20_000)
                over = page.evaluate(OVERFLOWING_CODE)
                broken = page.evaluate("Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0))"
                                       ".map(i => i.src)")
                problems += [f"{name}: console error {e}" for e in errors]
                problems += [f"{name}: request to another host {u}" for u in foreign]
                problems += [f"{name}: code wider than its column, {o}" for o in over]
                problems += [f"{name}: image not loaded {u}" for u in broken]
                page.close()
            browser.close()
    finally:
        server.shutdown()
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems[:30])
