"""Small builders shared by the tests (importable because pytest puts tests/ on sys.path)."""

from __future__ import annotations

import numpy as np

from optmm.book import Book, Kind


def make_book(rows: list[tuple], source: str = "test") -> Book:
    """Rows of (underlying, kind, strike, expiry, quantity[, multiplier[, vol]])."""
    und, kind, strike, expiry, qty, mult, vol = [], [], [], [], [], [], []
    for r in rows:
        u, k, s, e, q = r[:5]
        und.append(u)
        kind.append(int(k))
        strike.append(s)
        expiry.append(e if e is not None else "NaT")
        qty.append(q)
        mult.append(r[5] if len(r) > 5 else (1.0 if k == Kind.STOCK else 100.0))
        vol.append(r[6] if len(r) > 6 else np.nan)
    n = len(rows)
    return Book(
        id=np.array([f"p{i}" for i in range(n)], dtype=object),
        underlying=np.array(und, dtype=object),
        kind=np.array(kind, dtype=np.int8),
        strike=np.array(strike, dtype=np.float64),
        expiry=np.array(expiry, dtype="datetime64[D]"),
        quantity=np.array(qty, dtype=np.float64),
        multiplier=np.array(mult, dtype=np.float64),
        vol=np.array(vol, dtype=np.float64),
        source=source,
    )
