"""The browser harness itself: each test holds a page that the harness must catch or pass."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page
from playwright.sync_api import Error as PlaywrightError

import tests.browser.conftest as harness
from tests.browser.conftest import AXE_IMPACTS, PageLog, axe_violations, file_url, log_of

STYLE = "body{font-family:sans-serif;color:#111;background:#fff}"
SCRIPT = 'document.getElementById("out").textContent="script ran";'
# A clean page's body: a landmark, a heading, a labelled control, an image with alt text (no
# src: the pipeline's policy has no img-src, so even a data: image would be a CSP violation).
CLEAN_BODY = """<main><h1>Chronology</h1>
<p id="out">no script</p>
<img alt="A blank picture" width="10" height="10">
<form><label for="q">Search</label> <input id="q" type="text"></form>
</main>"""


def sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def write_page(path: Path, body: str, *, csp: bool = True, script: str = SCRIPT,
               head: str = "") -> str:
    """A page like the pipeline's: inline style and script, allowed by hash in a strict CSP."""
    policy = (f"default-src 'none'; style-src {sha256(STYLE)}; script-src {sha256(SCRIPT)}")
    meta = f'<meta http-equiv="Content-Security-Policy" content="{policy}">' if csp else ""
    path.write_text(f"""<!doctype html>
<html lang="en-GB"><head><meta charset="utf-8">{meta}<title>Test page</title>
<style>{STYLE}</style>{head}</head>
<body>{body}<script>{script}</script></body></html>""", encoding="utf-8")
    return file_url(path)


def test_self_contained_page_requests_only_itself(page: Page, page_log: PageLog,
                                                  tmp_path: Path) -> None:
    url = write_page(tmp_path / "child.html", CLEAN_BODY)
    page.goto(url)
    # The hashed script ran, so the policy is right and the page is as it will be read.
    assert page.locator("#out").text_content() == "script ran"
    assert page_log.requests == [url]
    assert page_log.outside_requests(url) == []
    assert page_log.outside_requests(url + "#entries") == []
    assert page_log.errors == []


def test_csp_blocked_request_is_still_recorded(page: Page, page_log: PageLog,
                                               tmp_path: Path) -> None:
    image = "https://example.invalid/x.png"
    url = write_page(tmp_path / "child.html", f'<main><h1>x</h1><img alt="" src="{image}"></main>')
    page.goto(url)
    # Chromium hands the request to Playwright, then fails it for the CSP: never fetched.
    assert page_log.outside_requests(url) == [image]
    assert page_log.failed_requests == [(image, "csp")]
    assert len(page_log.csp_violations) == 1
    assert image in page_log.csp_violations[0]


def test_script_not_in_the_policy_is_blocked_and_reported(page: Page, page_log: PageLog,
                                                          tmp_path: Path) -> None:
    url = write_page(tmp_path / "child.html", CLEAN_BODY, script=SCRIPT + "/* edited */")
    page.goto(url)
    assert page.locator("#out").text_content() == "no script"
    assert len(page_log.csp_violations) == 1
    assert "script-src" in page_log.csp_violations[0]


def test_file_next_to_the_page_counts_as_outside(page: Page, page_log: PageLog,
                                                 tmp_path: Path) -> None:
    (tmp_path / "other.css").write_text("h1{color:rgb(0, 128, 0)}", encoding="utf-8")
    url = write_page(tmp_path / "child.html", CLEAN_BODY, csp=False,
                     head='<link rel="stylesheet" href="other.css">')
    page.goto(url)
    # Without a policy the stylesheet loads and applies: the page is not self-contained.
    assert page.locator("h1").evaluate("e => getComputedStyle(e).color") == "rgb(0, 128, 0)"
    assert page_log.outside_requests(url) == [file_url(tmp_path / "other.css")]
    assert page_log.failed_requests == []
    assert page_log.errors == []
    # axe reads stylesheets in place: it adds no request of its own (its preload would).
    assert axe_violations(page) == []
    assert page_log.outside_requests(url) == [file_url(tmp_path / "other.css")]
    assert page_log.errors == []


def test_script_errors_are_recorded(page: Page, page_log: PageLog, tmp_path: Path) -> None:
    url = write_page(tmp_path / "child.html", CLEAN_BODY, csp=False,
                     script='console.error("console says no"); missingFunction();')
    page.goto(url)
    assert page_log.console_errors == ["console says no"]
    assert len(page_log.page_errors) == 1
    assert "missingFunction" in page_log.page_errors[0]
    assert page_log.errors == [*page_log.page_errors, "console says no"]


def test_axe_runs_under_a_strict_csp(page: Page, page_log: PageLog, tmp_path: Path) -> None:
    url = write_page(tmp_path / "child.html", """<main><h1>Chronology</h1><p id="out"></p>
<img width="10" height="10"><form><input id="q" type="text"></form></main>""")
    page.goto(url)
    # The policy refuses an injected <script>, which is why the harness evaluates axe instead.
    with pytest.raises(PlaywrightError, match="Content Security Policy"):
        page.add_script_tag(content="window.injected = true;")
    page_log.console_errors.clear()

    violations = axe_violations(page)
    assert sorted((v.rule, v.impact) for v in violations) == [
        ("image-alt", "critical"), ("label", "critical")]
    assert [selector for v in violations for selector, _ in v.nodes] == ["img", "#q"]
    # axe ran inside the policy without breaking it or fetching anything.
    assert page_log.errors == []
    assert page_log.outside_requests(url) == []


def test_axe_passes_a_clean_page_and_filters_by_impact(page: Page, tmp_path: Path) -> None:
    page.goto(write_page(tmp_path / "child.html", CLEAN_BODY))
    assert axe_violations(page, impacts=AXE_IMPACTS) == []
    # No <h1> and no landmark: moderate problems only, so the default audit lets them by.
    page.goto(write_page(tmp_path / "bare.html", '<p id="out">text</p>'))
    assert axe_violations(page) == []
    moderate = axe_violations(page, impacts="moderate")
    assert {v.rule for v in moderate} >= {"page-has-heading-one", "region"}
    with pytest.raises(ValueError, match="unknown axe impacts"):
        axe_violations(page, impacts=("Serious",))


def test_no_script_page_shows_the_noscript_rendering(no_script_page: Page,
                                                    tmp_path: Path) -> None:
    url = write_page(tmp_path / "child.html",
                     CLEAN_BODY + "<noscript><p>All entries are shown.</p></noscript>")
    no_script_page.goto(url)
    assert no_script_page.locator("#out").text_content() == "no script"
    assert no_script_page.locator("noscript p").is_visible()
    log = log_of(no_script_page)
    assert log.outside_requests(url) == []
    assert log.errors == []
    # axe needs the page's event loop, which is off here: refused, not hung.
    with pytest.raises(ValueError, match="axe needs JavaScript"):
        axe_violations(no_script_page)


def test_axe_times_out_rather_than_hangs(browser: Browser, tmp_path: Path) -> None:
    # A page the fixtures did not make, so axe_violations cannot tell that JavaScript is off.
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(write_page(tmp_path / "child.html", CLEAN_BODY))
        with pytest.raises(AssertionError, match="axe did not finish within 1 s"):
            axe_violations(page, timeout_s=1)
    finally:
        context.close()


def test_viewport(new_page: Callable[..., Page], tmp_path: Path) -> None:
    url = write_page(tmp_path / "child.html", CLEAN_BODY)
    default, narrow = new_page(), new_page(viewport=(360, 640))
    for page in (default, narrow):
        page.goto(url)
    assert default.evaluate("() => [innerWidth, innerHeight]") == [1280, 900]
    assert narrow.evaluate("() => [innerWidth, innerHeight]") == [360, 640]


def test_missing_tools_skip_or_fail(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(harness, "AXE_JS", tmp_path / "axe.min.js")
    harness._axe_source.cache_clear()
    try:
        monkeypatch.delenv("CHRONOLOGY_REQUIRE_BROWSER", raising=False)
        with pytest.raises(pytest.skip.Exception, match=r"npm ci --prefix tests/browser"):
            harness._axe_source()
        monkeypatch.setenv("CHRONOLOGY_REQUIRE_BROWSER", "1")
        with pytest.raises(pytest.fail.Exception, match=r"npm ci --prefix tests/browser"):
            harness._axe_source()
    finally:
        harness._axe_source.cache_clear()
