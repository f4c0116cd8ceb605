"""Great Expectations suites: one file per source table, one for the events and one for
the chronology entries.

The raw suites in ``raw/`` are generated from the source contract in
``transforms/ssd.py`` by ``python -m expectations.generate`` so that the contract and the
checks cannot drift apart; ``events.json`` and ``chronology.json`` are written by hand.
Every expectation carries ``meta.rule`` (a short id), ``meta.reason`` (the plain-English
sentence a failure gets) and ``meta.severity``: ``reject`` removes the row, ``warning``
keeps it and records a finding, ``fault`` (the chronology, which the pipeline makes
itself) fails the run.
"""

from __future__ import annotations

import json
from pathlib import Path

SUITES = Path(__file__).parent
EVENTS_SUITE = "events"
CHRONOLOGY_SUITE = "chronology"


def suite_path(name: str) -> Path:
    if name in (EVENTS_SUITE, CHRONOLOGY_SUITE):
        return SUITES / f"{name}.json"
    return SUITES / "raw" / f"{name}.json"


def load_suite(name: str) -> dict:
    """The suite as a plain dict, in the shape ``gx.ExpectationSuite(**suite)`` takes."""
    return json.loads(suite_path(name).read_text(encoding="utf-8"))
