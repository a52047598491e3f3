"""The website: chapters render with their executed outputs, figures and offline maths.

The book is built from the chapters as executed by the notebook tests (small parameters, so this
stays fast), with the project's own _config.yml, _toc.yml and extension; only the execution is
switched off. Then a real browser (Debian's chromium, driven by Playwright) opens a chapter served
on localhost and checks that MathJax typesets, nothing is requested from another host and the
console stays clean.
"""
from __future__ import annotations

import functools
import http.server
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, chapter_notebooks, execute_chapter

CHROMIUM = Path("/usr/bin/chromium")
REMOTE_ASSET = re.compile(r'<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)="(?:https?:)?//', re.I)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    if not (ROOT / "_extra" / "mathjax" / "tex-chtml.js").is_file():
        pytest.fail("MathJax is missing: run `make mathjax` (make test does it)")
    book = tmp_path_factory.mktemp("book")
    for name in ("_toc.yml", "intro.md"):
        shutil.copy(ROOT / name, book / name)
    shutil.copytree(ROOT / "_ext", book / "_ext")
    (book / "_extra").symlink_to(ROOT / "_extra")
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
