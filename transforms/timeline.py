"""The timeline picture of one child: where its lanes, bars, marks and year ticks go,
drawn as inline SVG.

Horizontal positions are percentages of the picture's width, not user units, so the SVG
stretches to any screen while its text keeps its size in pixels: the picture stays
readable at phone width (375 px) and does not shout on a desktop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

from markupsafe import Markup, escape

# The lanes, top to bottom: the period kinds drawn in each, and the lane's label.
LANES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Early help", ("early_help",)),
    ("Child in need", ("cin_episode", "cin_plan")),
    ("Child protection plan", ("cp_plan",)),
    ("Looked after", ("looked_after", "placement")),
    ("Missing", ("missing",)),
)
# Labels of the period kinds, for titles and the text alternative.
PERIOD_NAMES = {
    "early_help": "Early help", "cin_episode": "Open case (child in need)",
    "cin_plan": "Child in need plan", "cp_plan": "Child protection plan",
    "looked_after": "Looked after", "placement": "Placement", "missing": "Missing episode",
}

# Heights in pixels. A lane is its label above its bars.
_LABEL = 16
_BAR = 12
_SUB_BAR = 8        # a lane's second kind (plans within a case, placements within care)
_LANE_GAP = 8
_MARK_ROW = 22      # a row of numbered key-event marks
_AXIS = 22
# Marks closer than this share of the width go on another row, so that their numbers
# do not overlap on a 340 px wide phone screen (a mark is ~18 px wide).
_MARK_SPACING = 6.0
_MARK_ROWS = 6
_MIN_WIDTH = 0.6    # percent: a one-day missing episode is still visible


@dataclass(frozen=True)
class Bar:
    x: float
    width: float
    y: int
    height: int
    kind: str
    title: str


@dataclass(frozen=True)
class Mark:
    x: float
    y: int
    number: int
    title: str


@dataclass(frozen=True)
class Lane:
    label: str
    y: int


@dataclass(frozen=True)
class Timeline:
    height: int
    lanes: list[Lane] = field(default_factory=list)
    bars: list[Bar] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)
    ticks: list[tuple[float, str]] = field(default_factory=list)
    axis_y: int = 0
    start: str = ""
    end: str = ""


@dataclass(frozen=True)
class Period:
    kind: str
    start: date
    end: date | None
    text: str         # "Child protection plan, 26 Feb 2024 – 22 Nov 2024: neglect"


@dataclass(frozen=True)
class KeyEvent:
    number: int
    when: date
    title: str        # "1. Born, 14 Jun 2025"


def timeline(periods: Sequence[Period], key_events: Sequence[KeyEvent], birth: date | None,
             as_of: date) -> Timeline:
    """Lay out a child's periods in lanes and its key events as numbered marks, from
    birth (or the first thing recorded) to `as_of` while a period is open, else to the
    last thing recorded: the picture of a closed case does not change with the date, so
    its page can be kept until the records change (`transforms/freshness.py`)."""
    dates = [p.start for p in periods] + [k.when for k in key_events]
    if birth is not None:
        dates.append(birth)
    first = min(dates, default=as_of)
    ongoing = any(p.end is None for p in periods) or not dates
    last = max([*([as_of] if ongoing else []),
                *[p.end for p in periods if p.end is not None], *dates])
    span = max((last - first).days, 1)

    def at(day: date) -> float:
        return round(100 * (day - first).days / span, 2)

    marks, rows = _marks(key_events, at)
    y = rows * _MARK_ROW + (4 if rows else 0)
    lanes: list[Lane] = []
    bars: list[Bar] = []
    for label, kinds in LANES:
        drawn = [p for p in periods if p.kind in kinds]
        if not drawn:
            continue
        lanes.append(Lane(label=label, y=y + _LABEL - 4))
        y += _LABEL
        for p in drawn:
            second = p.kind == kinds[-1] and len(kinds) > 1
            x = at(p.start)
            width = max(at(p.end or last) - x, _MIN_WIDTH)
            bars.append(Bar(x=x, width=round(min(width, 100 - x), 2),
                            y=y + (_BAR if second else 0), height=_SUB_BAR if second else _BAR,
                            kind=p.kind, title=p.text))
        y += _BAR + (_SUB_BAR if len(kinds) > 1 and any(p.kind == kinds[-1] for p in drawn)
                     else 0) + _LANE_GAP
    return Timeline(height=y + _AXIS, lanes=lanes, bars=bars, marks=marks,
                    ticks=_ticks(first, last, at), axis_y=y, start=first.isoformat(),
                    end=last.isoformat())


def _marks(key_events: Sequence[KeyEvent], at) -> tuple[list[Mark], int]:
    """Numbered marks, each on the first row where it keeps its distance from the last."""
    last_x = [-100.0] * _MARK_ROWS
    marks = []
    used = 0
    for event in key_events:
        x = min(max(at(event.when), 1.5), 98.5)  # a whole circle, even at either end
        row = next((r for r in range(_MARK_ROWS) if x - last_x[r] >= _MARK_SPACING),
                   min(range(_MARK_ROWS), key=lambda r: last_x[r]))
        last_x[row] = x
        used = max(used, row + 1)
        marks.append(Mark(x=x, y=row * _MARK_ROW + _MARK_ROW // 2, number=event.number,
                          title=event.title))
    return marks, used


def _ticks(first: date, last: date, at) -> list[tuple[float, str]]:
    """Year ticks on 1 January, at most about six of them so their labels fit a phone."""
    years = range(first.year + 1, last.year + 1)
    step = max(1, -(-len(years) // 6))
    return [(at(date(year, 1, 1)), str(year)) for year in years
            if (year - first.year - 1) % step == 0]


def svg(picture: Timeline, title: str) -> Markup:
    """The picture as inline SVG, `title` its text alternative. Drawn here rather than in
    a template because it is a hundred small shapes on each of 100k pages a night; the
    only text in it (labels and titles) is escaped."""
    parts = [f'<svg class="timeline" height="{picture.height}" role="img" '
             f'aria-labelledby="timeline-title">\n'
             f'<title id="timeline-title">{escape(title)}</title>\n']
    for x, year in picture.ticks:
        parts.append(f'<line class="tick" x1="{x}%" x2="{x}%" y1="0" y2="{picture.axis_y}"/>'
                     f'<text class="tick-label" x="{x}%" y="{picture.axis_y + 15}">{year}'
                     '</text>\n')
    for lane in picture.lanes:
        parts.append(f'<text x="0" y="{lane.y}">{escape(lane.label)}</text>\n')
    for bar in picture.bars:
        parts.append(f'<rect class="{bar.kind}" x="{bar.x}%" y="{bar.y}" width="{bar.width}%" '
                     f'height="{bar.height}"><title>{escape(bar.title)}</title></rect>\n')
    for mark in picture.marks:
        parts.append(f'<g class="mark"><title>{escape(mark.title)}</title><circle '
                     f'cx="{mark.x}%" cy="{mark.y}" r="9"/><text x="{mark.x}%" '
                     f'y="{mark.y + 4}">{mark.number}</text></g>\n')
    parts.append("</svg>")
    return Markup("".join(parts))
