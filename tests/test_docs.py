"""The documentation site as a reader sees it: the built pages served on localhost and opened
in real headless Chromium (Debian's /usr/bin/chromium driven by Python playwright).

Needs the built site (``mkdocs build``, which ``.ci/run`` does before the tests) and Chromium;
without them the tests skip and say which is missing, except when
``MIXEDMODELS_REQUIRE_DOCS=1`` (set by ``.ci/run``), where a missing piece is a failure.

Also checked here without a browser: the site's build refuses an example that raises (a
one-page site with markdown-exec, built with ``--strict`` as mkdocs.yml builds ours).
"""

from __future__ import annotations

import functools
import http.server
import io
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SITE = Path(os.environ.get("MIXEDMODELS_DOCS_SITE", ROOT / "site"))
CHROMIUM = Path(os.environ.get("MIXEDMODELS_CHROMIUM", "/usr/bin/chromium"))
REQUIRED = os.environ.get("MIXEDMODELS_REQUIRE_DOCS") == "1"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.docs


def _missing(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"MIXEDMODELS_REQUIRE_DOCS=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def site_url():
    if not (SITE / "index.html").is_file():
        _missing(f"the documentation site is not built ({SITE}/index.html absent; "
                 "run `mkdocs build`)")
    handler = functools.partial(_QuietHandler, directory=str(SITE))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not CHROMIUM.is_file():
        _missing(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("Python playwright is not installed (pip install -e '.[docs]')")
    profile = tmp_path_factory.mktemp("chromium-profile")  # a fresh --user-data-dir
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=FLAGS,
            viewport={"width": 1280, "height": 900},
        )
        try:
            yield context
        finally:
            context.close()


def _visit(browser, url: str):
    """Open ``url``; return the page and every console error, page error and failed
    request seen while it loaded."""
    page = browser.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
            if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    response = page.goto(url, wait_until="networkidle")
    assert response is not None and response.status == 200, url
    return page, problems


def _check_screenshot(png: bytes, min_colours: int) -> None:
    from PIL import Image

    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(png) > 20_000, f"screenshot only {len(png)} bytes"
    image = Image.open(io.BytesIO(png)).convert("RGB")
    assert image.width >= 1000 and image.height >= 800
    lo, hi = zip(*image.getextrema(), strict=True)
    assert max(hi) - min(lo) > 200, "the screenshot is (nearly) one colour"
    colours = image.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) >= min_colours, len(colours or [])


def test_home_page_shows_the_executed_summary(browser, site_url, tmp_path):
    page, problems = _visit(browser, f"{site_url}/index.html")
    text = page.inner_text("body")
    # the first example ran at build time: lme4's summary layout with sleepstudy's numbers
    assert "REML criterion at convergence: 1743.6" in text
    assert "Data: sleepstudy" in text
    assert "Traceback" not in text
    png = page.screenshot(path=str(tmp_path / "home.png"))
    _check_screenshot(png, min_colours=20)
    assert problems == []


def test_tutorial_page_shows_its_figures(browser, site_url, tmp_path):
    page, problems = _visit(browser, f"{site_url}/tutorial.html")
    text = page.inner_text("body")
    assert "ICC = tau^2 / (tau^2 + sigma^2) = 0.2113" in text  # the README's key output
    assert "Traceback" not in text
    sizes = page.eval_on_selector_all(
        "article img", "imgs => imgs.map(i => [i.complete, i.naturalWidth, i.naturalHeight])"
    )
    assert len(sizes) == 5  # data, fitted lines, caterpillar, residuals, profiles
    assert all(done and w > 300 and h > 200 for done, w, h in sizes), sizes
    figure = page.locator("article img").nth(3)  # the residual plots
    figure.scroll_into_view_if_needed()
    page.wait_for_timeout(500)  # the header's title swap on scrolling is animated
    png = page.screenshot(path=str(tmp_path / "tutorial.png"))
    _check_screenshot(png, min_colours=200)  # antialiased plots, not a blank page
    assert problems == []


def test_a_broken_example_fails_the_build(tmp_path):
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent))
    try:
        import markdown_exec  # noqa: F401
    except ImportError:
        mkdocs = None
    if mkdocs is None:
        _missing("mkdocs with markdown-exec is not installed (pip install -e '.[docs]')")
    (tmp_path / "docs").mkdir()
    page = '# t\n\n```python exec="on"\nraise ValueError("broken example")\n```\n'
    (tmp_path / "docs" / "index.md").write_text(page)
    (tmp_path / "mkdocs.yml").write_text(
        "site_name: t\nplugins:\n  - markdown-exec\n"
        "markdown_extensions:\n  - pymdownx.superfences\n"
    )
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    run = subprocess.run([mkdocs, "build", "--strict"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode != 0
    assert "broken example" in run.stderr
    # the same page without the error builds: the failure is the example's
    (tmp_path / "docs" / "index.md").write_text(page.replace('raise ValueError', 'print'))
    ok = subprocess.run([mkdocs, "build", "--strict"], cwd=tmp_path, env=env,
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
