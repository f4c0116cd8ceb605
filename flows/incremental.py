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
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from flows import sinks
from flows.carry import Taken
from transforms.fingerprint import UNNAMED
from transforms.freshness import NEVER

# The file of a version that holds `stamps`: one row per child id of the source.
FINGERPRINTS = "fingerprints.parquet"

# What a child's outputs are made from, besides their records: a change to any of these
# files rebuilds everyone.
CODE_FOLDERS = ("transforms", "expectations", "flows")
# And the libraries that read, validate, shape and render.
LIBRARIES = ("pandas", "pyarrow", "numpy", "great-expectations", "jinja2", "markupsafe")


ROOT = Path(__file__).resolve().parent.parent


def code_digest(root: Path = ROOT) -> str:
    """A digest of chronology's code, templates and suites as installed, and of the
    versions of the libraries it builds with."""
    from importlib.metadata import PackageNotFoundError, version

    digest = hashlib.blake2b(digest_size=8)
    for folder in CODE_FOLDERS:
        for path in sorted((root / folder).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(path.relative_to(root).as_posix().encode() + b"\0")
                digest.update(path.read_bytes() + b"\0")
    for library in LIBRARIES:
        try:
            digest.update(f"{library}=={version(library)}\0".encode())
        except PackageNotFoundError:
            digest.update(f"{library} absent\0".encode())
    return digest.hexdigest()


def requested_children(children: Iterable[str] | None) -> list[str] | None:
    """The child ids a run was asked for, trimmed as the build reads ids (" P1" is P1),
    each once, blanks left out; a ValueError if none is left."""
    if children is None:
        return None
    ids = list(dict.fromkeys(child.strip() for child in children if child.strip()))
    if not ids:
        raise ValueError("give at least one child id, e.g. P0000001,P0000002")
    return ids


def check_choice(children: list[str] | None, full: bool, since: str | None) -> None:
    """A run for some children rebuilds just them: `full` and `since` choose among all."""
    if children is not None and (full or since):
        raise ValueError("a run for some children (children) rebuilds just them: leave out "
                         "full and since")


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
    try:
        built = pd.read_parquet(current / FINGERPRINTS, columns=[
            "child_id", "source_fingerprint", "built_as_of", "stale_on", "new_entries"])
    except (OSError, ValueError, pa.ArrowInvalid):
        return nothing_reused("published output has no fingerprints", len(facts))
    built = built.set_index(built["child_id"].astype("str").fillna(UNNAMED))
    if not built.index.is_unique:
        return nothing_reused("published fingerprints repeat a child", len(facts))
    then = built.reindex(facts.index)
    day = as_of.normalize()
    reasons = {
        "new in the source": then["source_fingerprint"].isna(),
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


def rows_to_build(children_of_rows: dict[str, pa.DictionaryArray],
                  reused: frozenset[str]) -> dict[str, np.ndarray] | None:
    """By table, which rows read are not of a `reused` child (`UNNAMED`: the rows that
    name none); None when every row is to be built."""
    if not reused:
        return None
    # Each child is looked up once, not each row, and every table's children in one
    # lookup: Arrow builds its set of the taken ids anew for each (29 lookups of 100,000
    # taken ids took 0.57 s).
    dictionaries = [child.dictionary for child in children_of_rows.values()]
    built = ~Taken(taken=reused).arrow_rows(pa.chunked_array(dictionaries, pa.string())
                                            ).to_numpy()
    starts = np.cumsum([0, *map(len, dictionaries)])[:-1]
    # Each row's by its child's (NumPy gathers bytes; Arrow's take gathers bits).
    return {name: built[start:start + len(child.dictionary)][
                child.indices.to_numpy(zero_copy_only=False)]
            for (name, child), start in zip(children_of_rows.items(), starts, strict=True)}


def stamps(facts: pd.DataFrame, reused: frozenset[str], freshness: pd.DataFrame,
           as_of: pd.Timestamp) -> pd.DataFrame:
    """What the next run compares, for every child id whose rows this run read (all but
    the `reused`), with or without outputs: the fingerprint of their rows, the as-of date
    they were built for, the date their outputs go stale (`stale_on` from the build of
    their chronology in `freshness`, or earlier when a record dated ahead comes due) and
    the entries their page marks new. The rows that name no child are one more row,
    with no child id."""
    read = facts[~Taken(taken=reused).rows(facts.index.to_series())]
    built = freshness.set_index(freshness["child_id"].astype("str"))
    stale = built["stale_on"].reindex(read.index).to_numpy(dtype="datetime64[ns]")
    due = read["next_record"].to_numpy(dtype="datetime64[ns]")
    stale = np.where(np.isnat(stale), np.datetime64(NEVER), stale)  # ids with no outputs
    stale = np.where(~np.isnat(due) & (due < stale), due, stale)
    ids = read.index.to_series()
    return pd.DataFrame({
        "child_id": ids.where(ids != UNNAMED).to_numpy(),
        "source_fingerprint": read["fingerprint"].to_numpy(dtype="int64"),
        "built_as_of": as_of.normalize(),
        "stale_on": stale,
        "new_entries": built["new_entries"].reindex(read.index).fillna(0)
        .to_numpy(dtype="int32"),
    }).astype({"child_id": "str", "stale_on": "datetime64[ns]"})
