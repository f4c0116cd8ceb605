"""Which children a run over the whole source can take unchanged from the published output.

A child's outputs are reused when nothing they are made from has changed since the run
that built them:
- their source rows and the whole-source facts about those rows (their fingerprint,
  `transforms/fingerprint.py`);
- the rules, chronology's own code and the number of shards (else nobody is reused);
- the "as of" date, within the time their outputs stay right (`transforms/freshness.py`);
and when their page marks no entry as new (the marks must go at the next run). A child
whose key another child holds too is always rebuilt, with the children it shares it
with: only a run that sees both rows rejects them alike. `--since DATE` rebuilds every
child with a record dated on or after DATE as well; `--full` rebuilds everyone.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from flows import sinks

# What a child's outputs are made from, besides their records: a change to any of these
# files rebuilds everyone.
CODE_FOLDERS = ("transforms", "expectations", "flows")
CODE_SUFFIXES = {".py", ".json", ".yml", ".yaml", ".html", ".css", ".js", ".txt"}


def code_digest(root: Path = Path(__file__).resolve().parent.parent) -> str:
    """A digest of chronology's code, templates and suites, as installed."""
    digest = hashlib.blake2b(digest_size=8)
    for folder in CODE_FOLDERS:
        for path in sorted((root / folder).rglob("*")):
            if path.suffix in CODE_SUFFIXES and "__pycache__" not in path.parts:
                digest.update(path.relative_to(root).as_posix().encode() + b"\0")
                digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


@dataclass(frozen=True)
class Reuse:
    """The children to take from the published output `previous`, and why the others
    are rebuilt (reason: children)."""

    previous: Path | None
    children: frozenset[str]
    rebuilt_because: dict[str, int] = field(default_factory=dict)


def nothing_reused(reason: str, everyone: int) -> Reuse:
    return Reuse(None, frozenset(), {reason: everyone} if everyone else {})


def plan_reuse(out: Path, facts: pd.DataFrame, as_of: pd.Timestamp, rules_hash: str,
               code: str, shards: int, full: bool) -> Reuse:
    """Which children of the source to reuse. `facts` is indexed by child id, with their
    `fingerprint`, whether they `shares_keys` and whether `since` asks for them."""
    current = out / sinks.CURRENT
    manifest_path = current / "manifest.json"
    if full:
        return nothing_reused("--full", len(facts))
    if not manifest_path.exists():
        return nothing_reused("no published output", len(facts))
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    for reason, now, then in (
            ("other rules", rules_hash, manifest.get("rules", {}).get("hash")),
            ("other chronology code", code, manifest.get("code")),
            ("other number of shards", shards, manifest.get("shards"))):
        if now != then:
            return nothing_reused(reason, len(facts))
    columns = ["child_id", "source_fingerprint", "built_as_of", "stale_on", "new_entries"]
    try:
        built = pd.read_parquet(current / "children.parquet", columns=columns)
    except (OSError, ValueError, pa.ArrowInvalid):
        return nothing_reused("published output has no fingerprints", len(facts))
    built = built.set_index(built["child_id"].astype("str"))
    then = built.reindex(facts.index)
    day = as_of.normalize()
    reasons = {
        "not in the published output": then["child_id"].isna(),
        "records changed": then["source_fingerprint"].ne(facts["fingerprint"]),
        "shares a key with another child": facts["shares_keys"],
        "asked for by --since": facts["since"],
        "page marks new entries": then["new_entries"].fillna(0).gt(0),
        "as-of date out of range": ~((then["built_as_of"] <= day)
                                     & (day < then["stale_on"])).fillna(False),
    }
    rebuild = pd.Series(False, index=facts.index)
    because = {}
    for reason, hit in reasons.items():
        hit = hit.fillna(True).to_numpy(bool) & ~rebuild.to_numpy()
        if hit.any():
            because[reason] = int(hit.sum())
        rebuild |= hit
    return Reuse(current.resolve(), frozenset(facts.index[~rebuild.to_numpy()]), because)


def without_children(raw: dict[str, pa.Table], children_of_rows: dict[str, pa.Array],
                     reused: frozenset[str]) -> dict[str, pa.Table]:
    """The source rows that are not of a reused child (rows naming no child stay)."""
    if not reused:
        return raw
    value_set = pa.array(sorted(reused), pa.string())
    return {name: table.filter(pc.invert(pc.fill_null(
        pc.is_in(children_of_rows[name], value_set=value_set), False)))
        for name, table in raw.items()}


def stamped(children: pd.DataFrame, facts: pd.DataFrame, as_of: pd.Timestamp
            ) -> pd.DataFrame:
    """The children table with what the next run compares: each child's source
    fingerprint, the as-of date they were built for, and the date their outputs go
    stale (`transforms.freshness.stale_on`, or earlier, when a record dated after the
    as-of date comes due)."""
    ids = children["child_id"].astype("str")
    facts = facts.astype({"fingerprint": "Int64"}).reindex(ids)
    due = facts["next_record"].to_numpy(dtype="datetime64[ns]")
    stale = children["stale_on"].to_numpy(dtype="datetime64[ns]")
    return children.assign(
        source_fingerprint=facts["fingerprint"].to_numpy(),
        built_as_of=as_of.normalize(),
        stale_on=np.where(~np.isnat(due) & (due < stale), due, stale))
