"""Fixtures for tests that open the pipeline's HTML pages in a real headless Chromium.

The pages must work on their own, opened from disk: no request beyond the page's own file
(not even a stylesheet next to it), no script error, no Content-Security-Policy violation,
and no serious accessibility problem; and without JavaScript they must still read well.

Usage::

    from tests.browser.conftest import axe_violations, file_url, log_of

    def test_child_page(page, page_log, tmp_path):
        url = file_url(tmp_path / "child.html")
        page.goto(url)                              # waits for the load event
        assert page_log.outside_requests(url) == []
        assert page_log.errors == []                # script errors, console errors, CSP
        assert axe_violations(page) == []           # serious and critical only

    def test_child_page_without_script(no_script_page, tmp_path):
        url = file_url(tmp_path / "child.html")
        no_script_page.goto(url)
        assert no_script_page.get_by_role("row").count() == 12
        assert log_of(no_script_page).outside_requests(url) == []

`new_page(java_script_enabled=..., viewport=(w, h))` makes further pages, each in a context
of its own. Every page from these fixtures records what it asked for in a `PageLog`. Browser
tests belong in this folder: the fixtures are visible only here, and the browser is shut down
once its last test has run (see `browser`). `example_site` is the pipeline's real output for
the hand-written example children (the index and a page per child), built before Chromium
starts (see `browser`).

Chromium comes from Debian (`apt-get install -y chromium`; Playwright's own browser download
cannot reach its host here) at /usr/bin/chromium, or from $CHRONOLOGY_CHROMIUM. axe-core comes
from `npm ci --prefix tests/browser`. Without either the tests skip, naming the install
command, unless $CHRONOLOGY_REQUIRE_BROWSER is set (CI sets it): then they fail.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import NoReturn

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Request,
    WebError,
    sync_playwright,
)
from playwright.sync_api import Error as PlaywrightError

from transforms.pages import page_id

HERE = Path(__file__).resolve().parent
AXE_JS = HERE / "node_modules" / "axe-core" / "axe.min.js"
DEFAULT_CHROMIUM = "/usr/bin/chromium"
# Keep Chromium from calling home (updates, sync, field trials) so that the only traffic is
# what the page under test asks for, and so that nothing waits on a network that isn't there.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",  # runs as root in CI, where Chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
DEFAULT_VIEWPORT = (1280, 900)
# Fail a stuck locator or navigation in seconds, not Playwright's default 30 s.
ACTION_TIMEOUT_MS = 10_000
AXE_IMPACTS = ("minor", "moderate", "serious", "critical")


def _unavailable(message: str) -> NoReturn:
    """Skip the test, or fail it where the browser tests must run (CI)."""
    if os.environ.get("CHRONOLOGY_REQUIRE_BROWSER", "") not in ("", "0"):
        pytest.fail(f"{message} (CHRONOLOGY_REQUIRE_BROWSER is set, so this fails)",
                    pytrace=False)
    pytest.skip(message)


def file_url(path: str | os.PathLike[str]) -> str:
    """The file:// URL of a page on disk, as Chromium reports it in requests."""
    return Path(path).resolve().as_uri()


def _without_fragment(url: str) -> str:
    # Chromium requests a URL without its #fragment.
    return url.split("#", 1)[0]


@dataclass
class PageLog:
    """What one page asked for and complained about, in order, since it was made."""

    java_script_enabled: bool
    # Every URL the page (and any popup of its context) requested, its own navigations
    # included. A request that the page's CSP blocks is still listed: Chromium issues it to
    # Playwright and fails it at once, with failure "csp". data: URLs are not requests.
    requests: list[str] = field(default_factory=list)
    # (URL, reason) of requests that failed: "csp", "net::ERR_FILE_NOT_FOUND", ...
    failed_requests: list[tuple[str, str]] = field(default_factory=list)
    # console.error() calls and Chromium's own error messages (CSP violations, failed loads).
    console_errors: list[str] = field(default_factory=list)
    # Uncaught exceptions and unhandled promise rejections in the page's scripts.
    page_errors: list[str] = field(default_factory=list)

    def outside_requests(self, own_url: str) -> list[str]:
        """Requests for anything but `own_url` (another file next to the page counts too)."""
        own = _without_fragment(own_url)
        return [url for url in self.requests if url != own]

    @property
    def errors(self) -> list[str]:
        """Page errors then console errors: a working page has none."""
        return [*self.page_errors, *self.console_errors]

    @property
    def csp_violations(self) -> list[str]:
        """The console errors in which Chromium reports a Content-Security-Policy violation."""
        return [text for text in self.console_errors if "Content Security Policy" in text]


# The log of each page made by `new_page`, found again by `log_of`; weak, so that a closed
# page's log goes with it.
_LOGS: weakref.WeakKeyDictionary[Page, PageLog] = weakref.WeakKeyDictionary()


def log_of(page: Page) -> PageLog:
    """The `PageLog` of a page made by the `page`, `no_script_page` or `new_page` fixtures."""
    try:
        return _LOGS[page]
    except KeyError:
        raise ValueError("this page was not made by the browser fixtures: no log") from None


def _record(context: BrowserContext, log: PageLog) -> None:
    # Listen on the context, not the page, so that a popup's traffic is caught too.
    def on_request(request: Request) -> None:
        log.requests.append(request.url)

    def on_failed(request: Request) -> None:
        log.failed_requests.append((request.url, request.failure or ""))

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            log.console_errors.append(message.text)

    def on_web_error(error: WebError) -> None:
        log.page_errors.append(str(error.error))

    context.on("request", on_request)
    context.on("requestfailed", on_failed)
    context.on("console", on_console)
    context.on("weberror", on_web_error)


@dataclass(frozen=True)
class ExampleSite:
    """The pages of one run of the flow over the example children: `site/` of its version."""

    root: Path

    @property
    def index(self) -> Path:
        return self.root / "index.html"

    @property
    def version(self) -> Path:
        """The run's version folder, whose tables (chronology/, children.parquet) the pages
        were made from."""
        return self.root.parent

    def child(self, child_id: str) -> Path:
        """The page of the child with this id (the same name the pipeline gives it)."""
        return self.root / "children" / f"{page_id(child_id)}.html"


# Fixtures that run the Prefect flow, so must be ready before Chromium starts (see `browser`).
_FLOW_FIXTURES = frozenset({"example_site", "examples_output"})


@pytest.fixture(scope="package")
def example_site(examples_output: Path) -> ExampleSite:
    """The real pages of the example children (a flow run of about a minute, once a session)."""
    site = ExampleSite(examples_output / "site")
    if not site.index.is_file():
        raise AssertionError(f"the example run wrote no index page at {site.index}")
    return site


# Package scope, not session: while sync Playwright runs, its event loop counts as running in
# the main thread, so asyncio.run() (Prefect, the other tests) fails until it stops. The
# browser tests all live in this package and run one after another, so one start serves all.
@pytest.fixture(scope="package")
def browser(request: pytest.FixtureRequest) -> Iterator[Browser]:
    """One headless Chromium for the tests in tests/browser (about 1.5 s to start)."""
    executable = os.environ.get("CHRONOLOGY_CHROMIUM") or DEFAULT_CHROMIUM
    if not (Path(executable).is_file() and os.access(executable, os.X_OK)):
        _unavailable(f"no Chromium at {executable}: install it with `apt-get install -y "
                     "chromium`, or set CHRONOLOGY_CHROMIUM to a Chromium executable")
    # For the same reason, the example site's flow run cannot start once Chromium is up: if any
    # test of this session will need it, build it now. Asked for only then, so the harness's
    # own tests, run alone, do not wait a minute for a flow run they do not use.
    if any(_FLOW_FIXTURES & set(getattr(item, "fixturenames", ()))
           for item in request.session.items):
        request.getfixturevalue("example_site")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def new_page(browser: Browser) -> Iterator[Callable[..., Page]]:
    """Make pages, each in a fresh context (no shared storage), closed after the test.

    `new_page(java_script_enabled=True, viewport=(1280, 900))`. Each page records into its
    `PageLog` (`log_of(page)`). The context is offline: a page that reaches out is recorded
    trying, and the test never touches a network.
    """
    contexts: list[BrowserContext] = []

    def make(*, java_script_enabled: bool = True,
             viewport: tuple[int, int] = DEFAULT_VIEWPORT) -> Page:
        width, height = viewport
        context = browser.new_context(
            viewport={"width": width, "height": height},
            java_script_enabled=java_script_enabled,
            offline=True,
        )
        contexts.append(context)
        context.set_default_timeout(ACTION_TIMEOUT_MS)
        log = PageLog(java_script_enabled=java_script_enabled)
        _record(context, log)
        page = context.new_page()
        _LOGS[page] = log
        return page

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def page(new_page: Callable[..., Page]) -> Page:
    """A page with JavaScript on, 1280x900; its log is the `page_log` fixture."""
    return new_page()


@pytest.fixture
def page_log(page: Page) -> PageLog:
    """What the `page` fixture's page requested and complained about."""
    return log_of(page)


@pytest.fixture
def no_script_page(new_page: Callable[..., Page]) -> Page:
    """A page with JavaScript off, as a reader who blocks scripts sees it; log: `log_of`.

    Locators, clicks and synchronous `evaluate` calls work; anything that waits on the
    page's event loop (a promise that needs a timer, so axe too) never settles. Note that
    Playwright's text matching (`get_by_text`) skips <noscript> content even here; use a CSS
    locator such as `page.locator("noscript p")` for it.
    """
    return new_page(java_script_enabled=False)


@cache
def _axe_source() -> str:
    if not AXE_JS.is_file():
        _unavailable(f"axe-core is not installed ({AXE_JS} is missing): run "
                     "`npm ci --prefix tests/browser`")
    return AXE_JS.read_text(encoding="utf-8")


@dataclass(frozen=True)
class AxeViolation:
    """One axe rule that failed, and the elements it failed on (CSS selector, HTML)."""

    rule: str
    impact: str
    help: str
    nodes: tuple[tuple[str, str], ...]

    def __str__(self) -> str:
        where = "; ".join(selector for selector, _ in self.nodes)
        return f"{self.impact} {self.rule}: {self.help} ({where})"


# Runs axe in the page and leaves a plain-data result in a global for `axe_violations` to wait
# on. preload: false, or axe fetches each <link> stylesheet itself (requests in the log, and
# CSP errors); iframes: false, as axe is not injected into frames and would wait on them.
_AXE_START = """() => {
  window.__chronologyAxe = undefined;
  axe.run(document, {resultTypes: ["violations"], preload: false, iframes: false}).then(
    (results) => { window.__chronologyAxe = {violations: results.violations.map((v) => ({
      rule: v.id, impact: v.impact || "", help: v.help,
      nodes: v.nodes.map((n) => [
        n.target.map((t) => Array.isArray(t) ? t.join(" >>> ") : t).join(" "),
        n.html.slice(0, 200)])}))}; },
    (error) => { window.__chronologyAxe = {error: String(error)}; });
}"""


def axe_violations(page: Page, impacts: Iterable[str] = ("serious", "critical"), *,
                   timeout_s: float = 60) -> list[AxeViolation]:
    """Run axe-core on the page as it is now; the violations of the given impacts.

    axe is loaded with `page.evaluate`, which the page's Content-Security-Policy does not
    govern (a <script> tag, `page.add_script_tag`, would be refused by `script-src 'sha256-…'`),
    so the page is audited under its real policy. It needs JavaScript on in the page.
    """
    wanted = {impacts} if isinstance(impacts, str) else set(impacts)
    if unknown := wanted - set(AXE_IMPACTS):
        raise ValueError(f"unknown axe impacts {sorted(unknown)}; axe's are {AXE_IMPACTS}")
    log = _LOGS.get(page)
    if log is not None and not log.java_script_enabled:
        raise ValueError("axe needs JavaScript: this page's context has it off")
    source = _axe_source()
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(source)
    page.evaluate(_AXE_START)
    try:
        # Playwright's evaluate has no timeout, so wait here: a page without a running event
        # loop would otherwise hang the test for ever.
        page.wait_for_function("() => window.__chronologyAxe !== undefined",
                               timeout=timeout_s * 1000)
    except PlaywrightError as error:
        raise AssertionError(f"axe did not finish within {timeout_s} s "
                             "(is JavaScript off in this page?)") from error
    result = page.evaluate("() => window.__chronologyAxe")
    if "error" in result:
        raise AssertionError(f"axe failed: {result['error']}")
    return [
        AxeViolation(rule=v["rule"], impact=v["impact"], help=v["help"],
                     nodes=tuple((selector, html) for selector, html in v["nodes"]))
        for v in result["violations"]
        if v["impact"] in wanted
    ]
