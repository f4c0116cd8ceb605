"""Prepare whole source tables for validation: what can only be settled table-wide."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from transforms.conform import (
    births,
    conform_table,
    existence_checks,
    mark_exact_copies,
    number_rows,
    resolve_owners,
)
from transforms.rejects import concat_rejects
from transforms.ssd import PERSON_TABLE, TABLES_BY_NAME


@dataclass(frozen=True)
class Prepared:
    """Whole source tables ready to validate, with what their suites need to know."""

    frames: dict[str, pd.DataFrame]
    rejects: pd.DataFrame
    known: dict[tuple[str, str], pa.Array]
    births: pd.DataFrame

    def largest_first(self) -> list[str]:
        """Table names, most rows first: the order in which to hand tables to workers,
        so that the largest does not start last and run on alone."""
        return sorted(self.frames, key=lambda name: -len(self.frames[name]))


def known_ids(raw: dict[str, pa.Table]) -> dict[tuple[str, str], pa.Array]:
    """Ids that person, parent and owner columns may point at, by (table, key).

    Taken from the whole of what the run read (every row, in a run over the whole
    source, even of children it does not rebuild), so that a parent row in another shard
    (because its own person id is wrong, say) or of a child taken from the published
    output still counts as existing and its dependants are not lost.
    """
    wanted = {(target, key) for name in raw
              for _, target, key in existence_checks(TABLES_BY_NAME[name])}
    return {(target, key): pc.unique(pc.drop_null(raw[target][key]).cast(pa.string()))
            if target in raw else pa.array([], pa.string())
            for target, key in sorted(wanted)}


def prepare(raw: dict[str, pd.DataFrame], known: dict[tuple[str, str], pa.Array],
            map_tables: Callable = map) -> Prepared:
    """Number rows, mark exact copies and find each row's child.

    Duplicate keys and the existence of parents are questions about the whole table (two
    children may hold the same key): `known` holds the ids of the whole source
    (`known_ids`). `map_tables` runs the per-table work; pass a thread pool's `map` to
    run tables side by side.
    """
    # Owners first, so that a rejected copy of a row names its child like any reject.
    owned = resolve_owners({name: number_rows(frame) for name, frame in raw.items()},
                           TABLES_BY_NAME)
    checked = dict(zip(owned, map_tables(
        lambda item: mark_exact_copies(TABLES_BY_NAME[item[0]], item[1]), owned.items()),
        strict=True))
    frames = {name: result.frame for name, result in checked.items()}
    rejects = concat_rejects([result.rejects for result in checked.values()])
    person = conform_table(TABLES_BY_NAME[PERSON_TABLE], frames[PERSON_TABLE]).frame
    return Prepared(frames, rejects, known, births(person))
