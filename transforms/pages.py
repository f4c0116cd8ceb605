"""Pages: each child's chronology page and the index of children, as HTML text.

A page is one self-contained file: its CSS and script are inline and named by hash in a
Content-Security-Policy that allows nothing else, so the page can make no network
request, and an injected script or event handler would not run even if one slipped
past escaping (Jinja's autoescape escapes every value; the few pieces built here as
HTML are escaped by `_escaped`). A page is made from its own child's rows only:
`child_pages` cuts each frame by child id and checks the cut.

Rendering is the hot path of a nightly run (100k pages), so the per-child work is
little more than handing prepared values to the template: dates, reasons and the
records a summary counts are formatted for the whole shard at once.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property, lru_cache
from pathlib import Path
from typing import NamedTuple

import jinja2
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from markupsafe import Markup

from transforms.rules import Rules
from transforms.shape import ages, event_details
from transforms.ssd import SEX
from transforms.timeline import PERIOD_NAMES, KeyEvent, Period, svg, timeline
from transforms.words import long_date, long_dates, plural

TEMPLATES = Path(__file__).parent / "templates"
LEVEL_WORDS = {"key": "Key", "significant": "Significant", "context": "Context"}
SEX_WORDS = {code: word for word, code in SEX.aliases.items()}
VISIT_TYPES = ("cin_visit", "cp_visit", "cla_visit")
MEMBER_COLUMNS = ["event_id", "event_date", "event_type", "code", "detail", "text", "seen",
                  "seen_alone", "source_table", "source_id"]
# The header's counts: column, then the words for one and for several.
_COUNTS = (("contacts", "contact", "contacts"), ("referrals", "referral", "referrals"),
           ("s47_enquiries", "S47 enquiry", "S47 enquiries"),
           ("cp_plans", "child protection plan", "child protection plans"),
           ("periods_of_care", "period of care", "periods of care"),
           ("placements", "placement", "placements"),
           ("missing_episodes", "missing episode", "missing episodes"))
_NOT_SAFE = re.compile(r"[^a-z0-9_-]+")
_SLOT = re.compile(r"\$([a-z_]+)")
_HTML_SPECIAL = "[&<>\"']"
# Characters left as they are in a CSS string; every other one is written as an escape.
_CSS_UNSAFE = re.compile(r"[^A-Za-z0-9 ,.()-]")


class PageError(ValueError):
    """A page could not be made safely; nothing of it is written."""


@dataclass(frozen=True)
class RowTemplate:
    """An HTML row with `$name` slots, filled for thousands of rows at once in Arrow.

    A chronology row is the page's inner loop, run a million times a night: filling it
    column-wise in Arrow costs microseconds where a Jinja loop costs milliseconds per
    page. Escaping is by construction: `text` slots are escaped here, and `html` slots
    take only fragments built from escaped text (`_wrapped`, `_html_lists`).
    """

    literals: tuple[str, ...]
    slots: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> RowTemplate:
        parts = _SLOT.split(text)
        return cls(literals=tuple(parts[0::2]), slots=tuple(parts[1::2]))

    def fill(self, text: dict[str, pa.Array], html: dict[str, pa.Array]) -> pa.Array:
        given = set(text) | set(html)
        if given != set(self.slots) or set(text) & set(html):
            raise PageError(f"row template slots {sorted(set(self.slots))} do not match the "
                            f"values given {sorted(given)}")
        pieces: list[pa.Array | str] = [self.literals[0]]
        for slot, literal in zip(self.slots, self.literals[1:], strict=True):
            pieces += [_escaped(text[slot]) if slot in text else html[slot], literal]
        return pc.binary_join_element_wise(*pieces, "")


@dataclass(frozen=True)
class Templates:
    child: jinja2.Template
    index: jinja2.Template
    row: RowTemplate
    index_row: RowTemplate
    style: Markup
    child_script: Markup
    index_script: Markup


# The values a page template reads are attributes (dataclasses and named tuples), not
# dict keys: Jinja's `a.b` tries an attribute first, and a dict would make it raise and
# catch an AttributeError for each of the hundred look-ups on each of 100k pages.
@dataclass(frozen=True, slots=True)
class Header:
    """A child's header and "at a glance" values."""

    child_id: str
    page_id: str
    name: str
    born_text: str
    facts: list[tuple[str, str]]
    seen: str
    seen_alone: str
    counts: list[tuple[str, int]]
    warning: str


class GlanceEvent(NamedTuple):
    """A key event as "at a glance" lists it, linked to its entry."""

    when_text: str
    text: str
    anchor: str


@dataclass(frozen=True)
class RunInfo:
    """What every page's footer says about the run that made it."""

    run_id: str
    generated_at: datetime
    as_of: pd.Timestamp
    rules_hash: str
    # False on an output's first run, when every entry is new and marking them is noise.
    marks_new: bool

    @cached_property
    def as_of_text(self) -> str:
        return long_date(self.as_of.date().isoformat())

    @cached_property
    def generated_text(self) -> str:
        return self.generated_at.strftime("%-d %b %Y %H:%M %Z").strip()


def load_templates(folder: Path = TEMPLATES) -> Templates:
    """The page templates, with their CSS and scripts, from `folder`."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(folder), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True, auto_reload=False,
                             undefined=jinja2.StrictUndefined)

    def text(name: str) -> Markup:  # our own files: inserted as they are, never escaped
        return Markup((folder / name).read_text(encoding="utf-8").strip())

    return Templates(child=env.get_template("child.html.j2"),
                     index=env.get_template("index.html.j2"),
                     row=RowTemplate.parse(text("entry_row.html") + "\n"),
                     index_row=RowTemplate.parse(text("index_row.html") + "\n"),
                     style=text("page.css"),
                     child_script=text("child.js"), index_script=text("index.js"))


def page_id(child_id: str) -> str:
    """The file name (without `.html`) of a child's page: safe and unique for any id.

    The id's letters and digits, lower-cased and at most 40 of them, keep the name
    recognisable; 64 bits of a hash of the whole id keep ids apart that differ only in
    case, punctuation, length or characters outside ASCII ("A 1", "a/1", "../a1").
    """
    slug = _NOT_SAFE.sub("-", child_id.lower()).strip("-")[:40].strip("-") or "child"
    return f"{slug}-{hashlib.sha256(child_id.encode('utf-8')).hexdigest()[:16]}"


def _pages_of(children: pd.DataFrame) -> list[str]:
    """The page ids of `children`: their `page_id` column (the children's table has it,
    from `page_ids`), else made from their ids."""
    if "page_id" in children.columns:
        return children["page_id"].astype("str").tolist()
    return [page_id(child) for child in children["child_id"].astype("str")]


def page_ids(child_ids: pd.Series) -> pd.Series:
    """`page_id` of each id; fails if two ids would share a page."""
    ids = pd.Series([page_id(c) for c in child_ids], index=child_ids.index, dtype="str")
    if ids.duplicated().any():
        raise PageError(f"{int(ids.duplicated().sum())} child ids would share a page file")
    return ids


def policy(styles: Sequence[str], script: str) -> Markup:
    """A Content-Security-Policy allowing just these inline styles and script: no
    request of any kind, no other script, no event-handler attributes, no forms.
    (Markup: it holds only fixed words and base64 hashes, which need no escaping.)"""
    return Markup(f"default-src 'none'; style-src {' '.join(_digest(s) for s in styles)}; "
                  f"script-src {_digest(script)}; base-uri 'none'; form-action 'none'")


@lru_cache(maxsize=16)  # the page's CSS and script are the same on every page
def _digest(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


# ----------------------------------------------------------------------- child pages

def child_pages(entries: pd.DataFrame, children: pd.DataFrame, periods: pd.DataFrame,
                members: pd.DataFrame, rules: Rules, templates: Templates, run: RunInfo
                ) -> Iterator[tuple[str, str]]:
    """(page id, HTML) of every child in `children` (sorted by child id).

    `entries` and `periods` are the children's chronology and periods; `members` their
    events (`MEMBER_COLUMNS`), for listing what each summary entry counts.
    """
    entries = entries.sort_values(["child_id", "seq"], kind="stable", ignore_index=True)
    # Only the kinds the timeline draws (legal statuses are in the header instead).
    periods = periods[periods["kind"].isin(list(PERIOD_NAMES)).to_numpy(dtype=bool)]
    periods = periods.sort_values(["child_id", "start_date", "kind"], kind="stable",
                                  ignore_index=True)
    ids = children["child_id"].astype("str").to_numpy()
    entry_at = _slices(entries["child_id"], ids)
    period_at = _slices(periods["child_id"], ids)
    rows = _per_child(_entry_rows(entries, members, rules, run, templates.row), entry_at)
    new_so_far = np.r_[0, np.cumsum(_is_new(entries, run))]
    new = new_so_far[entry_at[1:]] - new_so_far[entry_at[:-1]]
    categories = entries["category"].astype("str").fillna("").tolist()
    key_rows = _key_rows(entries)
    period_rows = _period_rows(periods)
    headers = _headers(children, run)
    births = [None if pd.isna(b) else b.date() for b in
              children["birth_date"].fillna(children["expected_birth_date"])]
    style = templates.style
    for i, header in enumerate(headers):
        first, last = entry_at[i], entry_at[i + 1]
        own_periods = period_rows[period_at[i]:period_at[i + 1]]
        keys = [key_rows[k] for k in range(first, last) if key_rows[k]]
        key_events = [KeyEvent(number=n, when=when, title=f"{n}. {title}, {when_text}")
                      for n, (when, when_text, title, _) in enumerate(keys, start=1)]
        picture = timeline(own_periods, key_events, births[i],
                           run.as_of.date())
        print_style = _print_style(header)
        yield header.page_id, templates.child.render(
            title=f"Chronology: {header.name} ({header.child_id})",
            policy=policy([style, print_style], templates.child_script),
            style=style, print_style=print_style, script=templates.child_script,
            child=header, run=run, rows=rows[i], entries=last - first,
            key_events=[GlanceEvent(when_text, title, anchor)
                        for _, when_text, title, anchor in keys],
            new_entries=_new_entries(int(new[i])),
            categories=sorted(set(categories[first:last])),
            timeline=svg(picture, _timeline_text(picture, own_periods, len(keys))),
            periods=[p.text for p in own_periods])


def _new_entries(new: int) -> str:
    if not new:
        return ""
    return f"{new} {'entry' if new == 1 else 'entries'} new since the previous run."


def _slices(child_ids: pd.Series, wanted: np.ndarray) -> np.ndarray:
    """Where each wanted child's rows start in a frame sorted by child id, and where the
    last one's end: child i's rows are [at[i], at[i+1]) when the wanted ids are sorted."""
    values = child_ids.astype("str").to_numpy()
    if (wanted[1:] < wanted[:-1]).any():
        raise PageError("children must be sorted by id")
    starts = np.searchsorted(values, wanted, side="left")
    ends = np.searchsorted(values, wanted, side="right")
    # Rows of children not in `wanted` would fall between two slices: refuse them.
    if (starts[1:] != ends[:-1]).any() or (len(values) and (starts[0] != 0
                                                             or ends[-1] != len(values))):
        raise PageError("rows of children without a header: refusing to render pages")
    return np.r_[starts, ends[-1:]] if len(wanted) else np.array([0])


def _is_new(entries: pd.DataFrame, run: RunInfo) -> np.ndarray:
    first_seen = entries["first_seen_run"].astype("str").to_numpy()
    return (first_seen == run.run_id) & run.marks_new


def _entry_rows(entries: pd.DataFrame, members: pd.DataFrame, rules: Rules, run: RunInfo,
                row: RowTemplate) -> pa.Array:
    """The table row (HTML) of each entry, in the frame's order."""
    is_summary = entries["is_summary"].to_numpy(dtype=bool)
    is_gap = entries["is_gap"].to_numpy(dtype=bool)
    level = entries["level"].astype("str").to_numpy()
    start = entries["event_date"].to_numpy().astype("datetime64[D]")
    end = entries["end_date"].to_numpy().astype("datetime64[D]")
    lasting = ~is_summary & ~is_gap & ~np.isnat(end) & (end != start)
    css = np.where(is_gap, level + " gap", np.where(is_summary, level + " summary", level))
    level_text = np.where(is_gap, "Gap", np.where(is_summary, "Summary",
                                                  pd.Series(level).map(LEVEL_WORDS).fillna("")))
    count = entries["merged_count"].astype("str").to_numpy()
    members_html = _members(entries, is_summary, members, rules)
    sources_html = _html_lists(_lists(entries["sources"]),
                               lambda source: ["<li>", _escaped(source), "</li>"])
    return row.fill(
        text={
            "seq": _strings(entries["seq"].astype("str")),
            "css": _strings(css),
            "level": _strings(level),
            "category": _strings(entries["category"]),
            "date_iso": _strings(pd.Series(start.astype(str)).where(~np.isnat(start), "")),
            "date_text": _strings(long_dates(start)),
            "age": _strings(entries["age_at_event"]),
            "level_text": _strings(level_text),
            "title": _strings(entries["title"]),
        },
        html={
            "until": _wrapped(_strings(np.where(lasting, "until " + long_dates(end), "")),
                              '<p class="until">', "</p>"),
            "new": pa.array(np.where(_is_new(entries, run), '<span class="new">New</span>', ""),
                            pa.string()),
            "detail": _wrapped(_strings(entries["detail"]), '<p class="detail">', "</p>"),
            "outcome": _wrapped(_strings(entries["outcome"]), '<p class="outcome">', "</p>"),
            "members": pc.if_else(
                pa.array(is_summary),
                pc.binary_join_element_wise(
                    '<details class="members"><summary>The ', _strings(count),
                    " records counted</summary><ul>\n", members_html, "</ul></details>", ""),
                ""),
            "sources": pc.if_else(
                pa.array(is_summary),
                pc.binary_join_element_wise(_strings(count), " records, listed under the entry",
                                            ""),
                pc.binary_join_element_wise("<ul>", sources_html, "</ul>", "")),
            "reasons": _reason_items(_lists(entries["reasons"])),
        })


def _lists(values: pd.Series) -> pa.ListArray:
    """A list-of-text column as one Arrow list array (an empty shard's may be untyped)."""
    listed = pa.array(values, pa.list_(pa.string()))
    return _one_array(listed)


def _one_array(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """A table column or a result computed from one, as a single array."""
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def _strings(values) -> pa.Array:
    """Text as an Arrow string array, missing values as empty strings."""
    array = pa.array(np.asarray(values, dtype=object), pa.string(), from_pandas=True)
    return pc.fill_null(array, "")


def _wrapped(text: pa.Array, before: str, after: str) -> pa.Array:
    """`before` + escaped text + `after`, or nothing where the text is empty."""
    return pc.if_else(pc.equal(text, ""), "",
                      pc.binary_join_element_wise(before, _escaped(text), after, ""))


def _per_child(rows: pa.Array, at: np.ndarray) -> list[Markup]:
    """The rows of each child joined into one piece of HTML: child i's are [at[i], at[i+1])."""
    offsets = pa.array(at - at[0], pa.int32())
    return [Markup(html) for html in
            pc.binary_join(pa.ListArray.from_arrays(offsets, rows), "").to_pylist()]


def _html_lists(listed: pa.ListArray, item: Callable[[pa.Array], list]) -> pa.Array:
    """Each list of `listed` as HTML: `item` gives the pieces of every element's HTML
    (Arrow arrays and literal strings), which are joined and then joined per list.
    Built for a whole shard at once in Arrow: millions of elements, no Python loop."""
    pieces = item(pc.cast(pc.list_flatten(listed), pa.string()))
    html = pc.binary_join_element_wise(*pieces, "")
    offsets = pa.array(listed.offsets.to_numpy() - listed.offsets[0].as_py(), pa.int32())
    return pc.binary_join(pa.ListArray.from_arrays(offsets, html), "")


def _reason_items(reasons: pa.ListArray) -> pa.Array:
    """Each reason "rule id: sentence" as the sentence, then the rule id in brackets."""
    def item(reason: pa.Array) -> list:
        # "rule id: sentence"; a reason without a rule id gets an empty one.
        has_rule = pc.match_substring(reason, ": ")
        parts = pc.split_pattern(
            pc.if_else(has_rule, reason, pc.binary_join_element_wise(": ", reason, "")), ": ",
            max_splits=1)
        rule = pc.list_element(parts, 0)
        sentence = pc.list_element(parts, 1)
        return ["<li>", _escaped(sentence),
                _wrapped(rule, ' <span class="rule">(', ")</span>"), "</li>"]

    return _html_lists(reasons, item)


def _members(entries: pd.DataFrame, is_summary: np.ndarray, members: pd.DataFrame,
             rules: Rules) -> pa.Array:
    """For each summary entry, the HTML list items of the records it counts, in time
    order ("12 Jun 2024: Child protection visit, seen alone (ssd_cp_visits:CPV1)");
    nothing for other entries."""
    where = np.flatnonzero(is_summary)
    if not len(where):
        return pa.repeat(pa.scalar("", pa.string()), len(entries))
    listed = _lists(entries["event_ids"].iloc[where])
    records = pa.table({**{column: pa.array(members[column]) for column in (
        "event_id", "event_date", "event_type", "seen", "seen_alone", "source_table",
        "source_id")}, "detail": pa.array(event_details(members, rules))})
    # Each counted id's row in `members`: a hash look-up in Arrow (a shard counts a million).
    at = pc.index_in(pc.cast(pc.list_flatten(listed), pa.string()),
                     value_set=pc.cast(records["event_id"], pa.string()))
    if at.null_count:
        raise PageError(f"{at.null_count} events counted in summaries are missing")
    # One string type throughout: Parquet and pandas give string or large_string.
    rows = records.take(at).combine_chunks()
    rows = rows.cast(pa.schema([pa.field(f.name, pa.string())
                                if pa.types.is_large_string(f.type) else f
                                for f in rows.schema]))
    kind = rows["event_type"]
    titles = pa.array([rules.event_types[t].title if t in rules.event_types else t
                       for t in pc.unique(kind).to_pylist()], pa.string())
    visit = pc.is_in(kind, value_set=pa.array(VISIT_TYPES))
    seen = pc.fill_null(rows["seen"], "")
    alone = pc.fill_null(rows["seen_alone"], "")
    seen_words = pc.case_when(
        pc.make_struct(pc.and_(visit, pc.equal(seen, "N")),
                       pc.and_(visit, pc.and_(pc.equal(seen, "Y"), pc.equal(alone, "Y"))),
                       pc.and_(visit, pc.and_(pc.equal(seen, "Y"), pc.equal(alone, "N"))),
                       pc.and_(visit, pc.equal(seen, "Y"))),
        ", not seen", ", seen alone", ", seen, not alone", ", seen", "")
    detail = _escaped(pc.fill_null(rows["detail"], ""))
    # The date and the seen words are our own text; all that comes from the record is
    # escaped. (Escaping the pieces, not the joined item, spares scanning our own text.)
    items = pc.binary_join_element_wise(
        "<li>", pa.array(long_dates(rows["event_date"].to_numpy()), pa.string()), ": ",
        pc.take(_escaped(titles), pc.index_in(kind, value_set=pc.unique(kind))), seen_words,
        pc.if_else(pc.equal(detail, ""), "", pc.binary_join_element_wise(": ", detail, "")),
        " (", _escaped(rows["source_table"]), ":", _escaped(rows["source_id"]), ")</li>\n",
        "")
    # Each summary's items joined in the order of its ids; other entries get none.
    lengths = np.zeros(len(entries), dtype=np.int32)
    lengths[where] = np.diff(listed.offsets.to_numpy())
    offsets = pa.array(np.r_[0, np.cumsum(lengths)], pa.int32())
    return pc.binary_join(pa.ListArray.from_arrays(offsets, _one_array(items)), "")


def _escaped(text: pa.Array) -> pa.Array:
    """HTML-escape like markupsafe.escape, in Arrow: & first, then the other four.
    Only the values holding one of the five characters are rewritten (most hold none),
    which halves the cost on a shard's million records."""
    text = _one_array(text)
    special = pc.fill_null(pc.match_substring_regex(text, _HTML_SPECIAL), False)
    if not pc.any(special).as_py():
        return text
    escaped = text.filter(special)
    for plain, entity in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ('"', "&#34;"),
                          ("'", "&#39;")):
        escaped = pc.replace_substring(escaped, plain, entity)
    return pc.replace_with_mask(text, special, escaped)


def _key_rows(entries: pd.DataFrame) -> list[tuple | None]:
    """(date, date as text, title, anchor) of each key entry that is not a summary; None
    for others."""
    key = (entries["level"].eq("key").to_numpy(dtype=bool)
           & ~entries["is_summary"].to_numpy(dtype=bool)
           & entries["event_date"].notna().to_numpy(dtype=bool))
    dates = entries["event_date"].dt.date.tolist()
    texts = long_dates(entries["event_date"]).tolist()
    titles = entries["title"].astype("str").fillna("").tolist()
    seqs = entries["seq"].tolist()
    return [(dates[i], texts[i], titles[i], f"e-{seqs[i]}") if key[i] else None
            for i in range(len(entries))]


def _period_rows(periods: pd.DataFrame) -> list[Period]:
    """Each period, with its text for the timeline's title and list."""
    start_text = long_dates(periods["start_date"])
    end_text = long_dates(periods["end_date"], missing="open")
    rows: list[Period] = []
    for i, (kind, label, start, end) in enumerate(zip(
            periods["kind"].astype("str"), periods["label"].astype("str").fillna(""),
            periods["start_date"].dt.date.tolist(), periods["end_date"].dt.date.tolist(),
            strict=True)):
        text = f"{PERIOD_NAMES[kind]}, {start_text[i]} – {end_text[i]}"
        rows.append(Period(kind=kind, start=start, end=None if end is pd.NaT else end,
                           text=f"{text}: {label}" if label else text))
    return rows


def _timeline_text(picture, own_periods: list[Period], keys: int) -> str:
    counts = Counter(p.kind for p in own_periods)
    parts = [plural(n, PERIOD_NAMES[kind].lower()) for kind, n in counts.items()]
    listed = "; ".join(parts) if parts else "no periods of involvement"
    return (f"Timeline from {long_date(picture.start)} to {long_date(picture.end)}: "
            f"{listed}; {plural(keys, 'key event')}, numbered as in the list above.")


def _print_style(header: Header) -> Markup:
    """The printed page's running head: the child's name, birth and id on every page,
    as a CSS string escaped so that no character of a name can end it."""
    head = f"{header.name}, born {header.born_text} ({header.child_id})"
    quoted = _CSS_UNSAFE.sub(lambda found: f"\\{ord(found[0]):06x}", head)
    return Markup('@media print{@page{@top-left{content:"' + quoted +
                  '";font:9pt system-ui,sans-serif}}}')


# ----------------------------------------------------------------------- header facts

def _headers(children: pd.DataFrame, run: RunInfo) -> list[Header]:
    """The header and "at a glance" values of each child, in the frame's order."""
    frame = children.reset_index(drop=True)
    born = frame["birth_date"]
    expected = frame["expected_birth_date"]
    _, age_words = ages(pd.DataFrame({"child_id": frame["child_id"],
                                "event_date": pd.Series(run.as_of.normalize(), index=frame.index)}),
                  pd.Series(born.fillna(expected).to_numpy(), index=frame["child_id"]))
    age = age_words.fillna("").tolist()
    born_text = long_dates(born)
    expected_text = long_dates(expected)
    died_text = long_dates(frame["death_date"])
    seen_text = long_dates(frame["last_seen"])
    alone_text = long_dates(frame["last_seen_alone"])
    text = {c: frame[c].astype("str").fillna("").tolist()
            for c in ("child_id", "forename", "surname", "sex", "ethnicity", "disabilities",
                      "current_status", "legal_status", "placement", "worker", "team")}
    counts = {c: frame[c].tolist() for c, _, _ in _COUNTS}
    uasc = frame["uasc"].tolist()
    has_person = frame["has_person_record"].tolist()
    pages = _pages_of(frame)
    headers = []
    for i in range(len(frame)):
        name = (f"{text['forename'][i]} {text['surname'][i]}".strip()
                or ("Name not recorded" if has_person[i] else f"Child {text['child_id'][i]}"))
        if born_text[i]:
            birth = f"{born_text[i]} ({age[i]})" if age[i] else born_text[i]
            facts = [("Date of birth", birth)]
        elif expected_text[i]:
            facts = [("Expected date of birth", expected_text[i])]
        else:
            facts = [("Date of birth", "not recorded")]
        if died_text[i]:
            facts.append(("Died", died_text[i]))
        worker = text["worker"][i]
        team = text["team"][i]
        facts += [
            ("Sex", SEX_WORDS.get(text["sex"][i], text["sex"][i]) or "not recorded"),
            ("Ethnicity", text["ethnicity"][i] or "not recorded"),
            ("Disability", text["disabilities"][i] or "none recorded"),
            ("Unaccompanied asylum-seeking child", "yes" if uasc[i] else "no"),
            ("Status", text["current_status"][i]),
            ("Legal status", text["legal_status"][i] or "none"),
            ("Placement", text["placement"][i] or "none"),
            ("Allocated worker", f"{worker} ({team})" if worker and team
             else worker or team or "none allocated"),
        ]
        headers.append(Header(
            child_id=text["child_id"][i], page_id=pages[i], name=name,
            born_text=born_text[i] or expected_text[i] or "date not recorded",
            facts=facts,
            seen=(f"Last seen: {seen_text[i]}." if seen_text[i]
                  else "Not recorded as seen at a visit or assessment."),
            seen_alone=(f"Last seen alone: {alone_text[i]}." if alone_text[i]
                        else "Not recorded as seen alone."),
            counts=[(one if counts[c][i] == 1 else several, counts[c][i])
                    for c, one, several in _COUNTS],
            warning="" if has_person[i] else (
                "This child's person record was rejected by validation, so their name, date "
                "of birth and other details are not shown; the run's rejects say why. The "
                "chronology below is from the rest of their record."),
        ))
    return headers


# ----------------------------------------------------------------------- index

def index_page(children: pd.DataFrame, templates: Templates, run: RunInfo) -> str:
    """The list of every child in `children`, by name, each linked to its page. Its rows
    are filled in Arrow like a page's: a large council's index has 100,000 of them."""
    ordered = children.sort_values(["surname", "forename", "child_id"], kind="stable",
                                   ignore_index=True)
    ids = ordered["child_id"].astype("str")
    name = (ordered["forename"].astype("str").fillna("") + " "
            + ordered["surname"].astype("str").fillna("")).str.strip()
    name = name.where(name.ne(""), np.where(ordered["has_person_record"].to_numpy(bool),
                                            "Name not recorded", "Child " + ids))
    born = pd.Series(long_dates(ordered["birth_date"]), dtype="str")
    expected = pd.Series(long_dates(ordered["expected_birth_date"]), dtype="str")
    born = born.where(born.ne(""), ("expected " + expected).where(expected.ne(""),
                                                                  "not recorded"))
    rows = templates.index_row.fill(
        text={"page_id": _strings(_pages_of(ordered)), "name": _strings(name),
              "child_id": _strings(ids), "born": _strings(born),
              "status": _strings(ordered["current_status"]),
              "worker": _strings(ordered["worker"]), "team": _strings(ordered["team"]),
              "key_entries": _strings(ordered["key_entries"].astype("str"))},
        html={})
    return templates.index.render(
        title="Children's chronologies", policy=policy([templates.style],
                                                        templates.index_script),
        style=templates.style, print_style=None, script=templates.index_script, run=run,
        count=f"{len(ordered):,}", rows=Markup("".join(rows.to_pylist())))
