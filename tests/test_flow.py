"""The flow end to end under the Prefect test harness, on a generated database."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from pathlib import Path

import pandas as pd
import pyarrow.dataset as ds
import pytest

from fixtures.generator import generate_database
from flows import build as build_module
from flows import site as site_module
from flows.build import RunFailed, build_chronologies
from flows.source import SourceSchemaError
from tests.conftest import assert_same_outputs, pad_one_child
from transforms import prepare as prepare_module
from transforms import shards as shards_module
from transforms.rules import DEFAULT_RULES, load_rules
from transforms.shards import shard_of
from transforms.stage import EVENT_COLUMNS

AS_OF = "2026-03-31"

# The rule that must reject each kind of bad record the generator injects.
RULES = {
    "missing_person_id": {"person.present", "owner.present"},
    "unknown_person_id": {"person.exists"},
    "orphan_foreign_key": {"parent.exists", "owner.exists"},
    "duplicate_primary_key": {"key.unique", "conform.exact_copy"},
    "end_before_start": {"dates.end_after_start"},
    "future_date": {"dates.not_future"},
    "date_before_birth": {"dates.not_before_birth"},
    "unknown_code": {"codes.known"},
    "malformed_json": {"json.valid"},
}


@pytest.fixture(autouse=True)
def prefect(prefect_harness):
    yield


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    path = tmp_path_factory.mktemp("flow") / "ssd.sqlite"
    report = generate_database(path, children=300, seed=11, bad_rate=0.01)
    return path, report


@pytest.fixture(scope="module")
def run(generated, tmp_path_factory):
    path, report = generated
    out = tmp_path_factory.mktemp("out")
    manifest = build_chronologies(source=str(path), out=str(out), shards=3, as_of=AS_OF)
    return out, manifest, report


def test_run_is_published_with_its_outputs(run):
    out, manifest, _ = run
    current = out / "current"
    assert current.resolve() == (out / "versions" / manifest["run_id"]).resolve()
    for name in ("manifest.json", "rejects.parquet", "findings.parquet", "people.parquet",
                 "children.parquet", "periods.parquet", "validation/results.json"):
        assert (current / name).exists(), name
    assert json.loads((current / "manifest.json").read_text())["status"] == "succeeded"


def test_every_source_row_is_staged_or_rejected(run, generated):
    _, manifest, report = run
    tables = {row["table"]: row for row in manifest["tables"]}
    for name, rows in report.rows.items():
        assert tables[name]["rows_in"] == rows, name
        assert tables[name]["rows_staged"] + tables[name]["rows_rejected"] == rows, name
        assert tables[name]["balanced"]


def test_each_injected_bad_record_is_rejected_with_its_reason(run):
    out, _, report = run
    rejects = pd.read_parquet(out / "current" / "rejects.parquet")
    injected = report.injected[report.injected["kind"] != "markup_in_text"]
    assert set(injected["kind"]) == set(RULES), "every kind should be injected at this rate"
    for bad in injected.itertuples():
        found = rejects[(rejects["table"] == bad.table) & (rejects["record_id"] == bad.record_id)]
        assert not found.empty, (bad.kind, bad.table, bad.record_id)
        said = set(found["rule"]) | {r for rules in found["also_failed"] for r in rules}
        assert said & RULES[bad.kind], (bad.kind, bad.table, bad.record_id, said)
        assert found["reason"].str.len().min() > 0


def test_markup_in_text_is_kept_as_a_finding(run):
    out, _, report = run
    markup = report.injected[report.injected["kind"] == "markup_in_text"]
    assert not markup.empty
    findings = pd.read_parquet(out / "current" / "findings.parquet")
    assert set(markup["record_id"]) <= set(findings["record_id"])
    rejects = pd.read_parquet(out / "current" / "rejects.parquet")
    notes = rejects[rejects["table"] == "ext_case_notes"]
    assert not set(markup["record_id"]) & set(notes["record_id"])


def test_every_child_has_a_page_and_the_index_links_them_all(run):
    out, manifest, _ = run
    site = out / "current" / "site"
    children = pd.read_parquet(out / "current" / "children.parquet")
    pages = {path.stem for path in (site / "children").glob("*.html")}
    assert pages == set(children["page_id"]) and children["page_id"].is_unique
    assert manifest["site"]["pages"] == len(children) == manifest["children"]
    index = (site / "index.html").read_text(encoding="utf-8")
    assert {f'href="children/{page}.html"' for page in pages} <= set(
        re.findall(r'href="children/[^"]+\.html"', index))


def test_markup_in_case_notes_reaches_pages_as_text(run):
    out, _, report = run
    # The generator appends <script> or <img onerror=...> to some text columns; where a
    # page shows such a text it shows it as words, and its only script is its own. (A
    # record left out by the rules is not on the page at all.)
    markup = report.injected[report.injected["kind"] == "markup_in_text"]
    notes = pd.read_parquet(out / "current" / "events", columns=["child_id", "source_id"])
    children = pd.read_parquet(out / "current" / "children.parquet").set_index("child_id")
    owners = set(notes.loc[notes["source_id"].isin(markup["record_id"]), "child_id"])
    shown = 0
    for child in owners:
        page = (out / "current" / "site" / "children" /
                f"{children.loc[child, 'page_id']}.html").read_text(encoding="utf-8")
        assert page.count("<script") == 1 and "<img" not in page, child
        shown += ("&lt;script&gt;alert(1)&lt;/script&gt;" in page
                  or "&lt;img src=x onerror=alert(1)&gt;" in page)
    assert shown >= len(owners) // 2, (shown, len(owners))


def test_events_round_trip_with_their_types(run):
    out, manifest, _ = run
    events = ds.dataset(out / "current" / "events", partitioning="hive").to_table().to_pandas()
    assert len(events) == manifest["events"]
    assert events["event_id"].is_unique
    for column, dtype in EVENT_COLUMNS.items():
        if dtype.startswith("datetime"):
            assert pd.api.types.is_datetime64_any_dtype(events[column]), column
    one_child = ds.dataset(out / "current" / "events", partitioning="hive").to_table(
        filter=ds.field("child_id") == "EX0000002").to_pandas()
    assert not one_child.empty and (one_child["child_id"] == "EX0000002").all()


# The chronology columns ARCHITECTURE.md fixes as a contract.
CHRONOLOGY_COLUMNS = ["child_id", "entry_id", "seq", "event_date", "end_date", "age_at_event",
                      "event_type", "category", "title", "detail", "outcome", "score", "level",
                      "reasons", "sources", "merged_count", "is_summary", "is_gap",
                      "first_seen_run"]


def test_chronology_round_trips_with_the_contract_columns(run):
    out, manifest, _ = run
    dataset = ds.dataset(out / "current" / "chronology", partitioning="hive")
    entries = dataset.to_table().to_pandas()
    assert set(CHRONOLOGY_COLUMNS) <= set(entries.columns)
    assert len(entries) == manifest["chronology"]["entries"]
    assert entries["entry_id"].is_unique
    assert (entries["reasons"].map(len) > 0).all()
    assert (entries["first_seen_run"] == manifest["run_id"]).all()  # the first run
    children = pd.read_parquet(out / "current" / "children.parquet")
    assert len(children) == manifest["children"] and children["child_id"].is_unique
    periods = pd.read_parquet(out / "current" / "periods.parquet")
    assert set(periods["child_id"]) <= set(children["child_id"])


def test_every_event_is_accounted_for_in_the_chronology(run):
    _, manifest, _ = run
    made = manifest["chronology"]
    for row in made["events"]:
        assert row["balanced"], row
        assert row["events"] == row["entry"] + row["merged"] + row["collapsed"] + row["filtered"]
    assert sum(r["events"] for r in made["events"]) == manifest["events"]
    assert made["events_in_entries"] == sum(r["entry"] + r["merged"] + r["collapsed"]
                                            for r in made["events"])
    quality = manifest["quality"]
    assert quality["entries_with_no_reason"] == 0
    assert quality["key_events_collapsed_or_left_out"] == 0
    assert 0 < quality["default_view_share_of_raw_rows_median"] < 1
    assert manifest["rules"]["hash"] == load_rules().digest


def test_a_second_run_keeps_when_entries_were_first_seen(generated, tmp_path):
    path, _ = generated
    first = build_chronologies(source=str(path), out=str(tmp_path), shards=2, as_of=AS_OF,
                               children=None)
    rules = tmp_path / "rules.yml"
    rules.write_text(DEFAULT_RULES.read_text().replace("min_run: 2", "min_run: 3"))
    second = build_chronologies(source=str(path), out=str(tmp_path), shards=3, as_of=AS_OF,
                                rules=str(rules))
    assert second["rules"]["hash"] != first["rules"]["hash"]
    entries = ds.dataset(Path(second["version"]) / "chronology", partitioning="hive"
                         ).to_table().to_pandas()
    seen = entries.set_index("entry_id")["first_seen_run"]
    # Entries both runs made keep the first run's id, even cut into other shards; the
    # summaries the new rules made are new.
    old = ds.dataset(Path(first["version"]) / "chronology", partitioning="hive"
                     ).to_table().to_pandas()["entry_id"]
    both = seen.index.intersection(old)
    assert len(both) > 0 and (seen[both] == first["run_id"]).all()
    assert (seen.drop(both) == second["run_id"]).all()


def test_rebuilding_some_children_reads_only_them(generated, tmp_path):
    path, _ = generated
    manifest = build_chronologies(source=str(path), out=str(tmp_path), shards=2, as_of=AS_OF,
                                  children=["EX0000002", "EX0000003", "NOBODY"])
    assert manifest["children"] == 2
    assert manifest["children_not_found"] == ["NOBODY"]
    # With no published output to add them to, a partial run is not published.
    assert not manifest["published"] and not (tmp_path / "current").exists()
    people = pd.read_parquet(Path(manifest["version"]) / "people.parquet")
    assert sorted(people["child_id"]) == ["EX0000002", "EX0000003"]


def _files(version: Path) -> dict[str, tuple[int, bytes]]:
    return {str(p.relative_to(version)): (p.stat().st_ino, p.read_bytes())
            for p in sorted((version / "site" / "children").iterdir())}


def _rows(version: Path, dataset: str, wanted: set[str]) -> pd.DataFrame:
    if dataset.endswith(".parquet"):
        frame = pd.read_parquet(version / dataset)
    else:
        frame = ds.dataset(version / dataset, partitioning="hive").to_table().to_pandas()
    frame = frame[frame["child_id"].isin(wanted)].drop(columns="shard", errors="ignore")
    return frame.sort_values(list(frame.columns[:3]), ignore_index=True).astype("str")


def test_rebuilding_some_children_changes_only_theirs_and_publishes(generated, run,
                                                                      tmp_path):
    path, _ = generated
    source = tmp_path / "ssd.sqlite"
    source.write_bytes(path.read_bytes())
    out = tmp_path / "out"
    shutil.copytree(run[0], out, symlinks=True)  # the module's whole run, published
    first = run[1]
    old = out / "versions" / first["run_id"]
    everyone = set(pd.read_parquet(old / "children.parquet")["child_id"])
    # One child with rows rejected, whose rejects are replaced too.
    rejected = set(pd.read_parquet(old / "rejects.parquet")["child_id"].dropna())
    changed, also = sorted(everyone)[0], sorted(everyone & rejected)[0]
    with sqlite3.connect(source) as conn:  # the record changes for one child
        conn.execute("UPDATE ssd_person SET pers_forename = 'Renamed' WHERE pers_person_id = ?",
                     (changed,))

    second = build_chronologies(source=str(source), out=str(out), shards=3, as_of=AS_OF,
                                children=[changed, also])
    new = Path(second["version"])
    assert second["published"] and (out / "current").resolve() == new.resolve()
    assert second["carried_over"] == {"from_run": first["run_id"],
                                      "children": len(everyone) - 2}
    assert second["site"]["pages"] == 2
    others = everyone - {changed, also}
    # Every other child: the same page file (a hard link, not a copy) and the same rows.
    pages = pd.read_parquet(new / "children.parquet").set_index("child_id")["page_id"]
    before, after = _files(old), _files(new)
    assert set(before) == set(after)
    for child in others:
        name = f"site/children/{pages[child]}.html"
        assert after[name] == before[name], child
    for dataset in ("chronology", "events", "people.parquet", "children.parquet",
                    "periods.parquet", "rejects.parquet"):
        pd.testing.assert_frame_equal(_rows(new, dataset, others), _rows(old, dataset, others),
                                      obj=dataset)
    # Nothing twice: the rebuilt children's old rows are gone, not kept beside the new.
    for dataset, key in (("chronology", "entry_id"), ("events", "event_id")):
        ids = ds.dataset(new / dataset, partitioning="hive").to_table(columns=[key])[key]
        assert len(ids) == len(set(ids.to_pylist())), dataset
    rejects = pd.read_parquet(new / "rejects.parquet").astype("str")
    assert not rejects.duplicated().any()
    assert len(rejects) == len(pd.read_parquet(old / "rejects.parquet"))
    # The rebuilt children are rebuilt: the new name is on the page and in the index.
    assert "Renamed" in after[f"site/children/{pages[changed]}.html"][1].decode()
    assert "Renamed" in (new / "site" / "index.html").read_text()
    assert (len(pd.read_parquet(new / "children.parquet"))
            == len(pd.read_parquet(old / "children.parquet")))


def test_a_run_for_a_child_whose_ids_are_padded_takes_what_a_full_run_gives_it(tmp_path):
    # CHAR columns come padded: " P1 " is P1, in a run for P1 as in a run for everyone,
    # and nothing of P1's is rejected for it (the source has no bad rows).
    source = tmp_path / "padded.sqlite"
    generate_database(source, children=30, seed=3, bad_rate=0)
    child, assessment = pad_one_child(source)
    whole = build_chronologies(source=str(source), out=str(tmp_path / "out"), shards=2,
                               as_of=AS_OF)
    some = build_chronologies(source=str(source), out=str(tmp_path / "out"), shards=2,
                              as_of=AS_OF, children=[f" {child}\t"])
    assert some["children_requested"] == [child] and some["children"] == 1
    rows = {}
    for manifest in (whole, some):
        events = ds.dataset(Path(manifest["version"]) / "events", partitioning="hive"
                            ).to_table(filter=ds.field("child_id") == child).to_pandas()
        rejects = pd.read_parquet(Path(manifest["version"]) / "rejects.parquet")
        assert not rejects["child_id"].isin([child, f"{child} ", f" {child}   "]).any()
        assert not rejects["record_id"].str.contains(assessment, regex=False).any()
        factors = events[(events["source_table"] == "ssd_assessment_factors")
                         & (events["episode_id"] == assessment)]
        assert len(factors), "the padded assessment's factors are the child's"
        rows[manifest["run_id"]] = sorted(zip(events["source_table"], events["source_id"],
                                              strict=True))
    assert rows[some["run_id"]] == rows[whole["run_id"]]
    assert {"ssd_person", "ssd_cin_assessments", "ssd_contacts"} <= {
        table for table, _ in rows[whole["run_id"]]}


def test_asking_only_for_unknown_children_fails(generated, tmp_path):
    path, _ = generated
    with pytest.raises(RunFailed, match="none of the 1 children"):
        build_chronologies(source=str(path), out=str(tmp_path), shards=1, as_of=AS_OF,
                           children=["NOBODY"])


def test_too_many_rejects_fail_the_run_and_publish_nothing(generated, tmp_path):
    path, _ = generated
    with pytest.raises(RunFailed, match="nothing was published"):
        build_chronologies(source=str(path), out=str(tmp_path), shards=2, as_of=AS_OF,
                           max_reject_share=0.0001)
    assert not (tmp_path / "current").exists()
    manifests = list(tmp_path.glob("versions/*/manifest.json"))
    assert json.loads(manifests[0].read_text())["status"] == "failed"


def test_a_missing_table_fails_at_once_without_retrying(generated, tmp_path, monkeypatch):
    path, _ = generated
    calls = []

    def missing(*args, **kwargs):
        calls.append(1)
        raise SourceSchemaError("table ssd_cp_plans is missing")

    monkeypatch.setattr(build_module, "read_source_parts", missing)
    with pytest.raises(SourceSchemaError, match="ssd_cp_plans"):
        build_chronologies(source=str(path), out=str(tmp_path / "out"))
    assert len(calls) == 1


def test_a_transient_read_error_is_retried(generated, tmp_path, monkeypatch):
    path, _ = generated
    real = build_module.read_source_parts
    calls = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("server closed the connection unexpectedly")
        return real(*args, **kwargs)

    monkeypatch.setattr(build_module, "read_source_parts", flaky)
    manifest = build_chronologies(source=str(path), out=str(tmp_path), shards=1, as_of=AS_OF,
                                  children=["EX0000001"])
    assert len(calls) == 2 and manifest["status"] == "succeeded"
    assert manifest["children"] == 1


def test_the_run_is_recorded_in_prefect_as_artifacts(run):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    out, manifest, _ = run
    with get_client(sync_client=True) as client:
        found = {key: [a for a in client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=[key])))] for key in ("chronology-run",
                                                             "chronology-pages")}
    (record,) = [a for a in found["chronology-run"] if manifest["run_id"] in a.data]
    assert f"| children built | {manifest['children']:,} |" in record.data
    assert f"| rows rejected | {manifest['rows_rejected']:,}" in record.data
    assert "| render |" in record.data
    # Counts only: no child's name reaches Prefect's database.
    people = pd.read_parquet(out / "current" / "people.parquet")
    names = {n for n in pd.concat([people["forename"], people["surname"]]).dropna() if n}
    assert not any(name in record.data for name in names)
    index = (Path(manifest["version"]) / "site" / "index.html").resolve().as_uri()
    assert any(f"]({index})" in a.data for a in found["chronology-pages"])


def test_a_run_in_passes_writes_what_a_run_in_one_pass_writes(generated, tmp_path,
                                                             monkeypatch):
    path, _ = generated
    source = tmp_path / "ssd.sqlite"
    shutil.copy(path, source)
    # Keys held by two children of different passes, which only the whole table shows:
    # a contact, and an assessment whose factors then belong to no one.
    with sqlite3.connect(source) as db:
        people = [row[0] for row in db.execute("SELECT pers_person_id FROM ssd_person")]
        passes = dict(zip(people, shard_of(pd.Series(people, dtype="str"), 4) % 2,
                          strict=True))
        for table, key, person in (("ssd_contacts", "cont_contact_id", "cont_person_id"),
                                   ("ssd_cin_assessments", "cina_assessment_id",
                                    "cina_person_id")):
            columns = [row[1] for row in db.execute(f"PRAGMA table_info({table})")]
            row = dict(zip(columns, db.execute(
                f"SELECT * FROM {table} WHERE {key} IN (SELECT cinf_assessment_id FROM "
                f"ssd_assessment_factors) OR '{table}' = 'ssd_contacts' LIMIT 1").fetchone(),
                strict=True))
            row[person] = next(p for p in people if passes[p] != passes[row[person]])
            db.execute(f"INSERT INTO {table} VALUES ({', '.join('?' * len(row))})",
                       list(row.values()))
    one = build_chronologies(source=str(source), out=str(tmp_path / "one"), shards=4,
                             as_of=AS_OF)
    # Four passes; tables of more than 1,000 rows are checked pass by pass, the others
    # whole.
    monkeypatch.setattr(shards_module, "CHILDREN_PER_PASS", 100)
    monkeypatch.setattr(prepare_module, "WHOLE_TABLE_ROWS", 1000)
    monkeypatch.setattr(site_module, "PAGES_AT_ONCE", 7)  # and pages a few at a time
    assert len(shards_module.build_passes(4, one["children"])) == 4
    checked = json.loads((Path(one["version"]) / "validation" / "results.json").read_text())
    rows = [table["rows"] for table in checked["rows"]]
    assert max(rows) > 1000 >= min(rows)
    in_passes = build_chronologies(source=str(source), out=str(tmp_path / "passes"),
                                   shards=4, as_of=AS_OF)

    assert one["status"] == in_passes["status"] == "succeeded"
    rejects = pd.read_parquet(Path(one["version"]) / "rejects.parquet")
    shared = rejects[rejects["rule"].eq("key.unique")]
    assert {"ssd_contacts", "ssd_cin_assessments"} <= set(shared["table"])
    assert "owner.one_child" in set(rejects.loc[rejects["table"].eq("ssd_assessment_factors"),
                                              "rule"])
    for counts in ("rows_in", "rows_rejected", "events", "children", "validation"):
        assert in_passes.get(counts) == one.get(counts), counts
    assert_same_outputs(one, in_passes)
