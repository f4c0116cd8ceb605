"""Small frame helpers shared by the transforms."""

from __future__ import annotations

import pandas as pd


def lookup(keys: pd.Series, table: pd.Series) -> pd.Series:
    """`table[key]` for every key (missing where absent), keeping `table`'s dtype.

    `Series.map` with an empty mapping casts it to float, which fails for dates; and it
    would hide a non-unique mapping. `table` must have a unique index.
    """
    values = table.reindex(keys.to_numpy()).to_numpy()
    return pd.Series(values, index=keys.index, dtype=table.dtype)
