"""How dates and counts read on a page and in entries: "14 Jun 2025", "3 visits"."""

from __future__ import annotations

import numpy as np
import pandas as pd

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def long_date(iso: str) -> str:
    """'2025-06-14' → '14 Jun 2025'."""
    return f"{int(iso[8:10])} {MONTHS[int(iso[5:7]) - 1]} {iso[:4]}"


def long_dates(values: pd.Series | np.ndarray, missing: str = "") -> np.ndarray:
    """Each date as '14 Jun 2025' (`missing` where there is none), formatted once per
    distinct day: a shard has millions of dates but only thousands of days."""
    days = np.asarray(values).astype("datetime64[D]")
    distinct, inverse = np.unique(days, return_inverse=True)
    texts = np.array([missing if np.isnat(d) else long_date(str(d)) for d in distinct]
                     + [missing], dtype=object)
    return texts[inverse.reshape(-1)] if len(days) else np.array([], dtype=object)


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"
