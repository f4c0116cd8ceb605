"""Rendering a run's site from its written outputs, in this process or in workers."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from flows import site as site_module
from flows.site import render_site
from transforms.pages import RunInfo
from transforms.rules import load_rules

RULES = load_rules()
RUN = RunInfo(run_id="R", generated_at=datetime(2026, 4, 1, tzinfo=UTC),
              as_of=pd.Timestamp("2026-03-31"), rules_hash=RULES.digest, marks_new=False)


def _copy_without_site(version: Path, to: Path) -> Path:
    shutil.copytree(version, to, ignore=shutil.ignore_patterns("site"))
    return to


def test_worker_processes_write_the_same_pages(examples_output, tmp_path, monkeypatch):
    # The examples are too few for worker processes to pay; lower the bar so that both
    # ways run, then compare every file byte for byte.
    here = render_site(_copy_without_site(examples_output, tmp_path / "here"), 2, 2, RULES,
                       RUN)
    monkeypatch.setattr(site_module, "PROCESSES_FROM", 0)
    workers = render_site(_copy_without_site(examples_output, tmp_path / "workers"), 2, 2,
                          RULES, RUN)
    assert here.processes == 0 and workers.processes == 2
    assert workers.worker_peak_mb and workers.worker_peak_mb > 10
    made = sorted(p.relative_to(tmp_path / "here") for p in (tmp_path / "here" / "site")
                  .rglob("*.html"))
    assert made == sorted(p.relative_to(tmp_path / "workers") for p in
                          (tmp_path / "workers" / "site").rglob("*.html"))
    assert len(made) == 5  # four children and the index
    for path in made:
        assert (tmp_path / "here" / path).read_bytes() == (tmp_path / "workers" / path
                                                           ).read_bytes(), path
    summary = here.summary()
    assert summary["pages"] == 4 and 0 < summary["median_page_bytes"] < 150 * 1024


def test_pages_made_a_few_children_at_a_time_are_the_pages_made_at_once(
        examples_output, tmp_path, monkeypatch):
    # Each batch reads its own children's rows from the partitions.
    render_site(_copy_without_site(examples_output, tmp_path / "once"), 2, 1, RULES, RUN)
    monkeypatch.setattr(site_module, "PAGES_AT_ONCE", 1)
    render_site(_copy_without_site(examples_output, tmp_path / "batches"), 2, 1, RULES, RUN)
    made = sorted(p.relative_to(tmp_path / "once") for p in (tmp_path / "once" / "site")
                  .rglob("*.html"))
    assert len(made) == 5
    for path in made:
        assert (tmp_path / "once" / path).read_bytes() == (tmp_path / "batches" / path
                                                           ).read_bytes(), path
