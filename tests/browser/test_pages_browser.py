"""The pipeline's real pages in Chromium: the example children's chronologies and the index.

The pages come from one run of the flow over the hand-written example children
(`example_site`), so these tests read what a social worker would open. Expectations about
entries come from the run's chronology table, not from the page, so that a page that drops,
adds or mislabels an entry fails. The example children:

- EX0000003, Kai: a teenager who was in care; many entries, summaries of routine activity,
  missing episodes, placements, and a case note whose text holds markup (`<img onerror>`,
  `<script>`), counted in a summary entry.
- EX0000002, Leo: child protection. EX0000001, Poppy: a baby with two entries.
  EX0000004, Maya: on a child protection plan, with an allocated worker and team.
"""

from __future__ import annotations

import re
import shutil
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from playwright.sync_api import Dialog, Page, expect

from tests.browser.conftest import ExampleSite, PageLog, axe_violations, file_url, log_of

POPPY, LEO, KAI, MAYA = "EX0000001", "EX0000002", "EX0000003", "EX0000004"
PHONE = (375, 812)
DESKTOP = (1280, 900)
DOCS_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
# The payloads in Kai's case note EXCN0307 (fixtures/examples/ex3_teenager_in_care.yml).
IMG_PAYLOAD = "<img src=x onerror=alert(1)>"
SCRIPT_PAYLOAD = "<script>alert(2)</script>"
EVERYTHING = "Everything, with routine entries"
SEARCH = "Search by name, id, worker, team or status"
COLUMNS = ["No.", "Date", "Age", "What happened", "Source", "Why it is here"]


@dataclass(frozen=True)
class Example:
    """What the example fixtures (fixtures/examples/*.yml) say about a child."""

    name: str
    born: str
    status: str


EXAMPLES = {
    POPPY: Example("Poppy Fairbank", "14 Jun 2025", "not open to children's social care"),
    LEO: Example("Leo Marwood", "3 Sep 2016", "closed"),
    KAI: Example("Kai Pellow", "20 Aug 2007", "care leaver"),
    MAYA: Example("Maya Begum", "14 Jan 2025", "child protection plan"),
}

# The ids of the chronology rows the reader can see (rendered, not `hidden`), in page order.
_SHOWN_ROWS = """() => Array.from(document.querySelectorAll("#entries tbody tr"))
    .filter((row) => row.getClientRects().length > 0).map((row) => row.id)"""
_SHOWN_CHILDREN = """() => Array.from(document.querySelectorAll("#children tbody tr"))
    .filter((row) => row.getClientRects().length > 0)
    .map((row) => row.cells[1].textContent)"""
_DISPLAYS = "(elements) => elements.map((element) => getComputedStyle(element).display)"


# ------------------------------------------------------------------------------ helpers

@pytest.fixture(scope="module")
def chronology(example_site: ExampleSite) -> pd.DataFrame:
    """The run's chronology table: the entries each page should show, one row each."""
    return pd.read_parquet(example_site.version / "chronology").sort_values(["child_id", "seq"])


def entries_of(chronology: pd.DataFrame, child_id: str) -> pd.DataFrame:
    return chronology[chronology["child_id"] == child_id]


def row_ids(entries: pd.DataFrame) -> list[str]:
    """The page's row ids of these entries (entry_row.html: id="e-$seq"), in order."""
    return [f"e-{seq}" for seq in entries["seq"]]


def open_page(page: Page, path: Path) -> str:
    url = file_url(path)
    page.goto(url)
    return url


def shown_rows(page: Page) -> list[str]:
    return page.evaluate(_SHOWN_ROWS)


def show_everything(page: Page) -> None:
    page.get_by_label(EVERYTHING).check()
    expect(page.locator("#shown")).to_have_text(re.compile(r"^Showing (\d+) of \1 entries$"))


def open_summary_of(page: Page, record: str) -> None:
    """Open the "records counted" list of the summary entry that counts `record`."""
    page.locator("details.members", has_text=record).locator("summary").click()


def displays(page: Page, selector: str) -> list[str]:
    """The computed `display` of every element the selector matches (at least one)."""
    found = page.locator(selector).evaluate_all(_DISPLAYS)
    assert found, f"nothing matches {selector}"
    return found


def assert_clean(log: PageLog) -> None:
    """No script error, console error or CSP violation, and no request failed."""
    assert log.errors == []
    assert log.failed_requests == []


# ------------------------------------------------------------------- the child's page

@pytest.mark.parametrize("child_id", list(EXAMPLES))
def test_child_page_renders(page: Page, page_log: PageLog, example_site: ExampleSite,
                            chronology: pd.DataFrame, child_id: str) -> None:
    example = EXAMPLES[child_id]
    entries = entries_of(chronology, child_id)
    open_page(page, example_site.child(child_id))

    # The heading names the child and gives the id, so a printout or a tab is unmistakable.
    expect(page.get_by_role("heading", level=1)).to_have_text(f"{example.name} {child_id}")
    facts = page.locator("dl.facts")
    expect(facts.locator("div", has=page.locator("dt", has_text="Date of birth"))
           .locator("dd")).to_have_text(re.compile("^" + re.escape(example.born)))
    expect(facts.locator("div", has=page.locator("dt", has_text=re.compile("^Status$")))
           .locator("dd")).to_have_text(example.status)

    # "At a glance" links to each dated key entry (not summaries), in date order.
    glance = page.get_by_role("region", name="At a glance")
    key = entries[(entries["level"] == "key") & ~entries["is_summary"]
                  & entries["event_date"].notna()]
    links = glance.get_by_role("link")
    assert [f"#{anchor}" for anchor in row_ids(key)] == [
        links.nth(i).get_attribute("href") for i in range(links.count())]

    # The timeline is a picture with a text alternative: a screen reader hears its summary.
    expect(page.get_by_role("img", name=re.compile(r"^Timeline from "))).to_be_visible()

    table = page.get_by_role("table", name=re.compile(r"entries, oldest first"))
    expect(table.get_by_role("columnheader")).to_have_text(COLUMNS)
    # Every entry of the child's chronology is a row, in order, and there is no other row.
    assert page.locator("#entries tbody tr").evaluate_all("rows => rows.map(r => r.id)") == \
        row_ids(entries)
    assert_clean(page_log)


def test_key_event_links_name_their_entries(page: Page, example_site: ExampleSite) -> None:
    open_page(page, example_site.child(KAI))
    links = page.get_by_role("region", name="At a glance").get_by_role("link")
    assert links.count() >= 10
    for i in range(links.count()):
        link = links.nth(i)
        target = page.locator(link.get_attribute("href") or "missing href")
        # The link says "date: title" of the entry it leads to, so the reader lands where the
        # words promised; a link to another entry, or none, fails here.
        when = target.locator("td.when time").inner_text()
        title = target.locator("td.what .title").inner_text()
        expect(link).to_have_text(f"{when}: {title}")
        expect(target).to_be_visible()


@pytest.mark.parametrize("kind", ["child", "index"])
@pytest.mark.parametrize("script", [True, False], ids=["script", "no-script"])
def test_page_requests_nothing_but_itself(new_page: Callable[..., Page],
                                          example_site: ExampleSite, kind: str,
                                          script: bool) -> None:
    page = new_page(java_script_enabled=script)
    path = example_site.child(KAI) if kind == "child" else example_site.index
    url = open_page(page, path)
    # Use the page as a reader would, so that whatever a control or a summary could load is
    # asked for now: a chronology is confidential and opened from disk, so no request may
    # leave it, not even for a stylesheet or a font next to it.
    if kind == "child":
        if script:
            show_everything(page)
            page.get_by_label("Category").select_option("missing")
            page.get_by_label("Category").select_option("")
        for details in page.locator("details").all():
            details.locator("summary").click()
        page.get_by_role("link", name=re.compile("Went missing")).first.click()
    elif script:
        page.get_by_label(SEARCH).fill("Pellow")
        expect(page.locator("#shown")).to_have_text("1 of 4 children match")
    log = log_of(page)
    assert log.outside_requests(url) == []
    assert_clean(log)


# -------------------------------------------------------------------------- filters

def test_default_view_shows_key_and_significant_entries(page: Page, example_site: ExampleSite,
                                                        chronology: pd.DataFrame) -> None:
    entries = entries_of(chronology, KAI)
    open_page(page, example_site.child(KAI))
    # Routine ("context") entries are the noise a reader opens the page past: hidden until
    # asked for, and the status line says how many of the entries are on screen.
    wanted = row_ids(entries[entries["level"] != "context"])
    assert 0 < len(wanted) < len(entries)
    assert shown_rows(page) == wanted
    expect(page.locator("#shown")).to_have_text(f"Showing {len(wanted)} of {len(entries)} entries")
    expect(page.get_by_label("Key and significant")).to_be_checked()


def test_everything_shows_every_entry(page: Page, example_site: ExampleSite,
                                      chronology: pd.DataFrame) -> None:
    entries = entries_of(chronology, KAI)
    open_page(page, example_site.child(KAI))
    page.get_by_label(EVERYTHING).check()
    expect(page.locator("#shown")).to_have_text(f"Showing {len(entries)} of {len(entries)} entries")
    assert shown_rows(page) == row_ids(entries)


# (scope, category): missing episodes are key, so they show by default; single visits are
# routine, so they show only with "Everything" (and the scope and category combine).
@pytest.mark.parametrize(("everything", "category"), [(False, "missing"), (True, "visit"),
                                                      (False, "visit")])
def test_category_shows_only_its_entries(page: Page, example_site: ExampleSite,
                                         chronology: pd.DataFrame, everything: bool,
                                         category: str) -> None:
    entries = entries_of(chronology, KAI)
    open_page(page, example_site.child(KAI))
    if everything:
        page.get_by_label(EVERYTHING).check()
    page.get_by_label("Category").select_option(category)
    wanted = entries[entries["category"] == category]
    if not everything:
        wanted = wanted[wanted["level"] != "context"]
    expect(page.locator("#shown")).to_have_text(f"Showing {len(wanted)} of {len(entries)} entries")
    assert shown_rows(page) == row_ids(wanted)


def test_key_event_link_reveals_an_entry_the_filter_hides(page: Page,
                                                          example_site: ExampleSite) -> None:
    open_page(page, example_site.child(KAI))
    page.get_by_label("Category").select_option("placement")
    target = page.locator("#e-13")  # 22 Jan 2022, went missing: not a placement
    expect(target).to_be_hidden()
    page.get_by_role("link", name="22 Jan 2022: Went missing").click()
    # A link that led to nothing would strand the reader: the script clears the filter
    # (showing everything) and brings the entry into view.
    expect(target).to_be_visible()
    expect(target).to_be_in_viewport()
    expect(page.get_by_label(EVERYTHING)).to_be_checked()
    expect(page.get_by_label("Category")).to_have_value("")


def test_entry_named_in_the_address_is_shown_on_opening(page: Page,
                                                        example_site: ExampleSite) -> None:
    # A link to one entry (from a note, an email, the PDF's destinations) must show it, even
    # a routine one that the default view hides: e-2 is Kai's first address, a context entry.
    page.goto(file_url(example_site.child(KAI)) + "#e-2")
    assert page.locator("#e-2").is_visible()


def test_key_event_link_followed_again_reveals_its_entry(page: Page,
                                                         example_site: ExampleSite) -> None:
    open_page(page, example_site.child(KAI))
    link = page.get_by_role("link", name="22 Jan 2022: Went missing")
    link.click()
    expect(page.locator("#e-13")).to_be_visible()
    # The reader filters again, then goes back to the same key event from "At a glance".
    page.get_by_label("Category").select_option("placement")
    expect(page.locator("#e-13")).to_be_hidden()
    link.click()
    expect(page.locator("#e-13")).to_be_visible(timeout=2_000)


def test_without_script_every_entry_shows_and_no_controls(no_script_page: Page,
                                                          example_site: ExampleSite,
                                                          chronology: pd.DataFrame) -> None:
    open_page(no_script_page, example_site.child(KAI))
    # Nothing can filter without script, so nothing may be hidden, and controls that would do
    # nothing must not be offered.
    assert shown_rows(no_script_page) == row_ids(entries_of(chronology, KAI))
    expect(no_script_page.locator("form#view")).to_be_hidden()
    assert_clean(log_of(no_script_page))


# -------------------------------------------------------------------- markup in text

def test_markup_in_a_case_note_is_shown_as_text_and_runs_nothing(
        page: Page, page_log: PageLog, example_site: ExampleSite) -> None:
    dialogs: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    open_page(page, example_site.child(KAI))
    show_everything(page)
    open_summary_of(page, "EXCN0307")
    member = page.locator("details.members li", has_text="EXCN0307")
    expect(member).to_be_visible()
    # The worker's words are evidence: shown exactly as written, markup and all...
    text = member.inner_text()
    assert IMG_PAYLOAD in text
    assert SCRIPT_PAYLOAD in text
    # ...and never interpreted: no alert, no element made from them, no blocked attempt.
    assert dialogs == []
    assert page.locator("script").count() == 1  # the page's own
    assert page.locator("img").count() == 0
    assert page.locator("[onerror]").count() == 0
    assert_clean(page_log)


# ---------------------------------------------------------------------- phone width

@pytest.mark.parametrize("view", ["child", "child-everything", "index"])
def test_phone_width_has_no_sideways_scrolling(new_page: Callable[..., Page],
                                               example_site: ExampleSite, view: str) -> None:
    page = new_page(viewport=PHONE)
    open_page(page, example_site.index if view == "index" else example_site.child(KAI))
    if view == "child-everything":
        # The widest content: every entry, and every summary's list of records open.
        show_everything(page)
        for details in page.locator("details").all():
            details.locator("summary").click()
    # A page wider than the phone hides its right-hand side behind a sideways scroll.
    assert page.evaluate("() => document.documentElement.scrollWidth") <= PHONE[0]


# On a phone each entry is a small grid: number, date and age on one line, then what happened,
# the sources and the reasons each across the whole entry (the desktop column widths of the
# source and reason cells must not follow them there).
@pytest.mark.parametrize("cell", ["what", "sources", "why"])
def test_phone_width_entries_read_across_the_screen(new_page: Callable[..., Page],
                                                    example_site: ExampleSite,
                                                    cell: str) -> None:
    page = new_page(viewport=PHONE)
    open_page(page, example_site.child(KAI))
    show_everything(page)
    boxes = page.locator("#entries tbody tr").evaluate_all("""(rows, cell) => rows.map(row => {
        const box = row.getBoundingClientRect();
        return {id: row.id, left: box.left, right: box.right,
                cell: row.querySelector("td." + cell).getBoundingClientRect().width}; })""",
                                                           cell)
    assert len(boxes) > 30
    for box in boxes:
        # Each entry fits on the screen, and its text has (nearly) the full width to itself
        # rather than a column a few words wide squeezed beside the others.
        assert 0 <= box["left"] and box["right"] <= PHONE[0], box
        assert box["cell"] >= 0.8 * (box["right"] - box["left"]), box


def test_phone_width_keeps_each_option_with_its_words(new_page: Callable[..., Page],
                                                      example_site: ExampleSite) -> None:
    page = new_page(viewport=PHONE)
    open_page(page, example_site.child(KAI))
    # A radio button stranded at the end of a line reads as belonging to the option before.
    lines = page.locator("form#view fieldset label").evaluate_all(
        "labels => labels.map(label => [label.textContent.trim(), "
        "label.getClientRects().length])")
    assert lines == [["Key and significant", 1], [EVERYTHING, 1]]


# ------------------------------------------------------------------------- printing

def test_print_hides_what_only_helps_on_screen(page: Page, example_site: ExampleSite) -> None:
    open_page(page, example_site.child(KAI))
    page.emulate_media(media="print")
    # A printed chronology goes into a court bundle or a case file: controls do nothing on
    # paper, the glance and timeline repeat the entries, and the age and reasons columns
    # are for screening on screen.
    for selector in ("form#view", "section.glance", "section.timeline", "th.col-why",
                     "td.why", "th.col-age", "td.age"):
        assert set(displays(page, selector)) == {"none"}, selector
    # The printed page says whose chronology it is and as of when, above the table.
    expect(page.locator(".print-only")).to_be_visible()


def test_print_keeps_the_numbered_chronology(page: Page, example_site: ExampleSite) -> None:
    open_page(page, example_site.child(KAI))
    page.emulate_media(media="print")
    expect(page.get_by_role("columnheader")).to_have_text(["No.", "Date", "What happened",
                                                           "Source"])
    for selector in ("td.num", "td.when", "td.what", "td.sources"):
        assert "none" not in displays(page, selector), selector


# ---- reading the text of Chromium's PDF (Skia: Flate streams, Identity-H fonts, ToUnicode)

_OBJECT = re.compile(rb"(\d+) 0 obj\s*(.*?)endobj", re.S)
_TEXT_OPERATOR = re.compile(rb"/(\w+) [\d.]+ Tf|<([0-9A-Fa-f]*)> Tj|\[(.*?)\] TJ|\b(BT|ET)\b",
                            re.S)


def _stream(body: bytes) -> bytes:
    head, _, rest = body.partition(b"stream")
    data = rest.lstrip(b"\r\n").rsplit(b"endstream", 1)[0]
    return zlib.decompress(data) if b"/FlateDecode" in head else data


def _to_unicode(cmap: bytes) -> dict[int, str]:
    table: dict[int, str] = {}
    for block in re.findall(rb"beginbfchar(.*?)endbfchar", cmap, re.S):
        for code, text in re.findall(rb"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>", block):
            table[int(code, 16)] = bytes.fromhex(text.decode()).decode("utf-16-be")
    for block in re.findall(rb"beginbfrange(.*?)endbfrange", cmap, re.S):
        for low, high, first in re.findall(
                rb"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>", block):
            for offset, code in enumerate(range(int(low, 16), int(high, 16) + 1)):
                table[code] = chr(int(first, 16) + offset)
    return table


def _page_order(objects: dict[int, bytes], number: int) -> Iterator[int]:
    body = objects[number]
    if re.search(rb"/Type\s*/Pages\b", body):
        kids = re.search(rb"/Kids\s*\[(.*?)\]", body, re.S)
        assert kids is not None
        for kid in re.findall(rb"(\d+) 0 R", kids.group(1)):
            yield from _page_order(objects, int(kid))
    else:
        yield number


def pdf_text(pdf: bytes) -> list[list[str]]:
    """Each page's text, as the pieces Chromium draws (a line, a word run, a counter), in
    drawing order. Enough for Chromium's own PDFs, which compress their text: not a parser."""
    objects = {int(number): body for number, body in _OBJECT.findall(pdf)}
    catalog = next(body for body in objects.values() if re.search(rb"/Type\s*/Catalog", body))
    root = re.search(rb"/Pages (\d+) 0 R", catalog)
    assert root is not None
    pages = []
    for number in _page_order(objects, int(root.group(1))):
        body = objects[number]
        fonts: dict[bytes, dict[int, str]] = {}
        font_block = re.search(rb"/Font\s*<<(.*?)>>", body, re.S)
        for name, ref in re.findall(rb"/(\w+) (\d+) 0 R", font_block.group(1) if font_block
                                    else b""):
            cmap = re.search(rb"/ToUnicode (\d+) 0 R", objects[int(ref)])
            assert cmap is not None, "a font without a ToUnicode map: its text is unreadable"
            fonts[name] = _to_unicode(_stream(objects[int(cmap.group(1))]))
        contents = re.search(rb"/Contents\s*(\[.*?\]|\d+ 0 R)", body, re.S)
        assert contents is not None
        drawn = b"".join(_stream(objects[int(ref)])
                         for ref in re.findall(rb"(\d+) 0 R", contents.group(1)))
        pieces: list[str] = []
        font: dict[int, str] = {}
        run: list[str] = []
        for name, shown, array, mark in _TEXT_OPERATOR.findall(drawn):
            if name:
                font = fonts[name]
            elif mark == b"BT":
                run = []
            elif mark == b"ET":
                pieces.append("".join(run))
            else:
                for hexes in re.findall(rb"<([0-9A-Fa-f]*)>", array) if array else [shown]:
                    codes = bytes.fromhex(hexes.decode())
                    run.append("".join(font.get(int.from_bytes(codes[i:i + 2]), "\ufffd")
                                       for i in range(0, len(codes), 2)))
        pages.append(pieces)
    return pages


def printed_numbers(pages: list[list[str]]) -> list[int]:
    """The entry numbers printed in the No. column: the counter, then "." (td.num::before)."""
    return [int(piece) for page in pages for piece, after in zip(page, page[1:], strict=False)
            if piece.isdigit() and after == "."]


def test_pdf_reader_reads_chromium_text(page: Page, tmp_path: Path) -> None:
    # The reader below is ours, so check it on a page whose text we know, in two fonts.
    path = tmp_path / "known.html"
    path.write_text("<!doctype html><title>t</title><p>Plain £5 &amp; “quotes”</p>"
                    "<p><b>Bold 123</b></p>", encoding="utf-8")
    open_page(page, path)
    (pieces,) = pdf_text(page.pdf(format="A4"))
    assert pieces == ["Plain £5 & “quotes”", "Bold 123"]


def test_printed_pdf_has_running_heads_and_page_numbers(page: Page,
                                                        example_site: ExampleSite) -> None:
    open_page(page, example_site.child(KAI))
    pdf = page.pdf(format="A4")
    # Kai's chronology runs over several sheets; each must say whose it is and where it sits
    # (the @page margin boxes), or a loose sheet of a bundle is anonymous.
    count = len(re.findall(rb"/Type\s*/Page\b", pdf))
    assert count > 1
    pages = pdf_text(pdf)
    assert len(pages) == count
    head = f"{EXAMPLES[KAI].name}, born {EXAMPLES[KAI].born} ({KAI})"
    for number, pieces in enumerate(pages, start=1):
        assert head in pieces, (number, pieces[:8])
        assert re.search(rf"Page {number} of {count}(?!\d)", "".join(pieces)), (number,
                                                                                pieces[:8])


@pytest.mark.parametrize("everything", [False, True], ids=["default", "everything"])
def test_printed_entries_are_numbered_one_by_one(page: Page, example_site: ExampleSite,
                                                 chronology: pd.DataFrame,
                                                 everything: bool) -> None:
    entries = entries_of(chronology, KAI)
    open_page(page, example_site.child(KAI))
    if everything:
        show_everything(page)
    printed = len(entries) if everything else int((entries["level"] != "context").sum())
    # The paper copy prints what is on screen, numbered 1, 2, 3... so that a bundle can cite
    # "entry 7" without gaps where hidden routine entries were (a CSS counter, td.num::before).
    assert printed_numbers(pdf_text(page.pdf(format="A4"))) == list(range(1, printed + 1))


def test_source_ids_are_not_split_on_screen(page: Page, example_site: ExampleSite) -> None:
    open_page(page, example_site.child(KAI))
    # A source id is what a reader copies to find the record: broken over two lines it reads
    # as two ids, or as one that does not exist.
    wrapped = page.locator("td.sources li").evaluate_all("""items => items.filter(item =>
        item.getBoundingClientRect().height > 1.5 * parseFloat(getComputedStyle(item).lineHeight))
        .map(item => item.textContent)""")
    assert wrapped == []


def test_printed_source_ids_are_not_split(page: Page, example_site: ExampleSite,
                                          chronology: pd.DataFrame) -> None:
    entries = entries_of(chronology, KAI)
    open_page(page, example_site.child(KAI))
    printed = entries[entries["level"] != "context"]  # the default view, as printed
    pieces = [piece for sheet in pdf_text(page.pdf(format="A4")) for piece in sheet]
    # Each id drawn whole, in one piece of text, as the court bundle's reader must copy it.
    split = [source for sources in printed["sources"] for source in sources
             if not any(source in piece for piece in pieces)]
    assert split == []


# --------------------------------------------------------------------------- index

def test_index_lists_every_child_with_a_link_to_their_page(page: Page, page_log: PageLog,
                                                           example_site: ExampleSite) -> None:
    open_page(page, example_site.index)
    rows = page.locator("#children tbody tr")
    expect(rows).to_have_count(len(EXAMPLES))
    for child_id, example in EXAMPLES.items():
        link = page.locator("#children tbody tr", has_text=child_id).get_by_role("link")
        expect(link).to_have_text(example.name)
        # Each name opens that child's own page, which the run wrote next to the index.
        target = (example_site.index.parent / (link.get_attribute("href") or "")).resolve()
        assert target == example_site.child(child_id).resolve()
        assert target.is_file()
    page.get_by_role("link", name=EXAMPLES[KAI].name).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"{EXAMPLES[KAI].name} {KAI}")
    assert_clean(page_log)


# What a reader might type, and whose rows should stay: a surname, an id (any case), a worker,
# a team, statuses (all words must match). No example child is looked after at the run's date
# (Kai has left care), so that search matches nobody.
@pytest.mark.parametrize(("query", "expected"), [
    ("Pellow", [KAI]), ("ex0000002", [LEO]), ("EXW010", [MAYA]), ("team south", [MAYA]),
    ("care leaver", [KAI]), ("not open", [POPPY]), ("child protection", [MAYA]),
    ("looked after", []),
])
def test_index_search_keeps_matching_children(page: Page, example_site: ExampleSite,
                                              query: str, expected: list[str]) -> None:
    open_page(page, example_site.index)
    page.get_by_label(SEARCH).fill(query)
    expect(page.locator("#shown")).to_have_text(f"{len(expected)} of 4 children match")
    assert sorted(page.evaluate(_SHOWN_CHILDREN)) == expected


def test_index_search_cleared_shows_every_child(page: Page, example_site: ExampleSite) -> None:
    open_page(page, example_site.index)
    search = page.get_by_label(SEARCH)
    search.fill("Pellow")
    expect(page.locator("#shown")).to_have_text("1 of 4 children match")
    search.fill("")
    expect(page.locator("#shown")).to_have_text("4 children")
    assert sorted(page.evaluate(_SHOWN_CHILDREN)) == sorted(EXAMPLES)


def test_index_without_script_lists_everyone_and_no_search(no_script_page: Page,
                                                           example_site: ExampleSite) -> None:
    open_page(no_script_page, example_site.index)
    # A search box that cannot search would mislead: hidden, and the whole list is shown.
    expect(no_script_page.locator("form#search")).to_be_hidden()
    assert sorted(no_script_page.evaluate(_SHOWN_CHILDREN)) == sorted(EXAMPLES)
    assert_clean(log_of(no_script_page))


# -------------------------------------------------------------------- accessibility

@pytest.mark.parametrize("view", ["kai", "kai-everything-open", POPPY, LEO, MAYA, "index"])
def test_no_serious_accessibility_problems(page: Page, page_log: PageLog,
                                           example_site: ExampleSite, view: str) -> None:
    if view == "index":
        open_page(page, example_site.index)
    else:
        open_page(page, example_site.child(KAI if view.startswith("kai") else view))
    if view == "kai-everything-open":
        show_everything(page)
        open_summary_of(page, "EXCN0307")
        page.locator(".timeline details summary").click()
    # Serious and critical: what stops a screen-reader or keyboard user reading the page.
    violations = axe_violations(page)
    assert violations == [], "\n".join(str(v) for v in violations)
    assert_clean(page_log)


@pytest.mark.parametrize("kind", ["child", "index"])
def test_keyboard_focus_is_visible(page: Page, example_site: ExampleSite, kind: str) -> None:
    open_page(page, example_site.child(KAI) if kind == "child" else example_site.index)
    for _ in range(5):  # to the first link: past the index's search box
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.tagName") == "A":
            break
    focused = page.locator(":focus")
    expect(focused).to_have_count(1)
    assert focused.evaluate("e => e.tagName") == "A"
    # A keyboard user must see where they are: a solid outline, thick enough to notice, on
    # an element that is on screen (the skip link moves into view when focused).
    style = focused.evaluate("e => [getComputedStyle(e).outlineStyle, "
                             "parseFloat(getComputedStyle(e).outlineWidth)]")
    assert style[0] == "solid" and style[1] >= 2, style
    expect(focused).to_be_in_viewport()


def test_skip_link_takes_focus_to_the_chronology(page: Page, example_site: ExampleSite) -> None:
    open_page(page, example_site.child(KAI))
    page.keyboard.press("Tab")
    expect(page.locator(":focus")).to_have_text("Skip to the chronology")
    page.keyboard.press("Enter")
    # Focus, not just the scroll position, moves: the next Tab goes on from the chronology.
    expect(page.locator(":focus")).to_have_attribute("id", "chronology")


# ------------------------------------------------------------------------ screenshots

def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_screenshots_for_the_docs(new_page: Callable[..., Page], example_site: ExampleSite,
                                  tmp_path: Path, request: pytest.FixtureRequest) -> None:
    shots = {}
    for name, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        page = new_page(viewport=viewport)
        open_page(page, example_site.child(KAI))
        # The top of the page: header, "At a glance", timeline and the first entries. The
        # whole page is several screens tall, more than the docs need.
        height = min(1600, page.evaluate("() => document.documentElement.scrollHeight"))
        path = tmp_path / f"child-page-{name}.png"
        page.screenshot(path=path, full_page=True,
                        clip={"x": 0, "y": 0, "width": viewport[0], "height": height})
        data = path.read_bytes()
        assert _png_size(data) == (viewport[0], height)
        # A blank or single-colour capture of this size compresses to a few kB; the page's
        # text and timeline take far more.
        assert len(data) > 40_000, (name, len(data))
        shots[name] = path
    if request.config.getoption("--update-golden"):
        DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        for name, path in shots.items():
            shutil.copyfile(path, DOCS_SCREENSHOTS / f"child-page-{name}.png")
