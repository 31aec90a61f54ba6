"""The risk controller prices contracts on their terms (optmm.pricing): per-contract Greeks and the
scenario grid's cells of American options and of options on underlyings with cash dividends, against
direct calls of the engines (american_greeks / american_price, bsm_greeks / bsm_price with
``dividends=``); plain contracts exactly as the Black-Scholes-Merton formula gives them.

The market of today gives every contract plain terms, so the terms are made up here by replacing
``optmm.pricing.carry``, ``american_flags`` and ``option_times``.
"""

from __future__ import annotations

import numpy as np
import pytest
from builders import flat_market, make_book, with_cash_dividends

from optmm import pricing
from optmm.book import Kind
from optmm.greeks import american_greeks, american_price, bsm_greeks, bsm_price
from optmm.market import Market
from optmm.risk import LimitSet
from optmm.risk import _controller_kernels as ck
from optmm.risk.controller import RiskController

EXPIRY = "2026-04-17"
EXPIRY2 = "2026-07-17"
RATE, Q = {"AAA": 0.03, "BBB": 0.03}, {"AAA": 0.01, "BBB": 0.0}
VOL = {"AAA": 0.25, "BBB": 0.40}
SPOT = {"AAA": 100.0, "BBB": 50.0}
DIVS = (np.array([0.05, 0.30]), np.array([0.6, 0.6]))  # AAA's cash dividends: years from valuation, amounts
SPOTS, VOLS = (-0.1, 0.0, 0.1), (-0.05, 0.0, 0.05)

_REAL_TIMES = pricing.option_times


def make_market() -> Market:
    return flat_market(SPOT, RATE, Q, VOL)


def limits() -> LimitSet:
    return LimitSet.from_dict(
        {"contract": {"position": 1e12}, "scenario": {"spot": list(SPOTS), "vol": list(VOLS)}}
    )


fake_carry = with_cash_dividends(pricing.carry, {"AAA": DIVS})


def fake_flags(market, underlying, style=None):
    """AAA's options American by default, BBB's European; a style given decides."""
    default = np.asarray(underlying, dtype=object) == "AAA"
    if style is None:
        return default
    st = np.asarray(style, dtype=object)
    return np.where(st == "", default, st == "american")


def fake_times(market, underlying, expiry, settlement=None):
    """AM settlement 6.5 hours before PM (the default)."""
    t = _REAL_TIMES(market, underlying, expiry)
    if settlement is None:
        return t
    return t - np.where(np.asarray(settlement, dtype=object) == "AM", 6.5 / 24.0 / 365.0, 0.0)


@pytest.fixture
def terms(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pricing, "carry", fake_carry)
    monkeypatch.setattr(pricing, "american_flags", fake_flags)
    monkeypatch.setattr(pricing, "option_times", fake_times)


ROWS = [
    ("AAA", Kind.CALL, 100.0, EXPIRY, 10.0),
    ("AAA", Kind.PUT, 95.0, EXPIRY2, -5.0),
    ("BBB", Kind.CALL, 50.0, EXPIRY, -8.0),
    ("BBB", Kind.PUT, 45.0, EXPIRY2, 4.0),
    ("AAA", Kind.STOCK, 0.0, None, -300.0),
]


def reference(u: str, kind: str, strike: float, t: float, american: bool, spot=None, vol=None):
    """Greeks of one option from the engine its terms call for (AAA: cash dividends)."""
    s = SPOT[u] if spot is None else spot
    v = VOL[u] if vol is None else vol
    divs = DIVS if u == "AAA" else None
    fn = american_greeks if american else bsm_greeks
    return fn(s, strike, t, RATE[u], Q[u], v, kind == "call", dividends=divs)


def reference_price(u: str, kind: str, strike: float, t: float, american: bool, spot, vol):
    divs = DIVS if u == "AAA" else None
    fn = american_price if american else bsm_price
    return fn(spot, strike, t, RATE[u], Q[u], vol, kind == "call", dividends=divs)


def test_greeks_and_cells_on_the_contracts_terms(terms: None) -> None:
    ctl = RiskController(make_book(ROWS), make_market(), limits(), clock=lambda: 0.0)
    extra = ctl.add_contracts("AAA", "call", 105.0, EXPIRY, style="european")  # European on dividends
    table = ctl.contracts()
    assert table["american"].tolist() == [True, True, False, False, False]
    assert int(extra[0]) == 4
    for c, row in table.iterrows():
        ref = reference(row.underlying, row.kind, row.strike, row.t, bool(row.american))
        s, m = SPOT[row.underlying], row.multiplier
        assert row.delta_shares == pytest.approx(m * float(ref.delta), rel=1e-12, abs=1e-12)
        assert row.gamma_dollars_1pct == pytest.approx(m * float(ref.gamma) * s * s / 100.0, rel=1e-12)
        assert row.vega_per_vol_point == pytest.approx(m * float(ref.vega) / 100.0, rel=1e-12)
        # the grid: one contract's P&L in each cell, spot shocked, vol shifted
        base = float(reference(row.underlying, row.kind, row.strike, row.t, bool(row.american)).price)
        expected = [
            m * (float(reference_price(row.underlying, row.kind, row.strike, row.t, bool(row.american),
                                       s * (1.0 + ds), max(VOL[row.underlying] + dv, 0.0))) - base)
            for ds in SPOTS
            for dv in VOLS
        ]  # fmt: skip
        np.testing.assert_allclose(ctl._cf[c, ck.CCELL :], expected, rtol=1e-12, atol=1e-9 * m * s)
    # each contract's bound of a cell's move (the clear-of-limits shortcut) follows its cells
    np.testing.assert_array_equal(ctl._cf[:, ck.CBOUND], np.abs(ctl._cf[:, ck.CCELL :]).max(axis=1))
    assert (ctl._cf[:, ck.CBOUND] > 0.0).all()
    # the worst scenario loss follows the cells: positions x cells, summed
    pos = table["position"].to_numpy()
    cells = (pos[:, None] * ctl._cf[:, ck.CCELL :]).sum(axis=0) - 300.0 * 100.0 * np.repeat(SPOTS, 3)
    assert ctl.state().loc["book", "worst_scenario_loss"] == pytest.approx(-cells.min(), rel=1e-12)


def test_plain_contracts_are_priced_bit_for_bit_as_before(terms: None) -> None:
    """BBB is plain (European, no cash dividends) with or without made-up terms for AAA; its Greeks
    and cells are those of the Black-Scholes-Merton formula, to the bit."""
    ctl = RiskController(make_book(ROWS), make_market(), limits(), clock=lambda: 0.0)
    table = ctl.contracts()
    for _, row in table[table["underlying"] == "BBB"].iterrows():
        g = bsm_greeks(50.0, row.strike, row.t, 0.03, 0.0, 0.40, row.kind == "call")
        assert row.delta_shares == 100.0 * g.delta
        assert row.gamma_dollars_1pct == 100.0 * g.gamma * 50.0 * 50.0 / 100.0
        assert row.vega_per_vol_point == 100.0 * g.vega / 100.0
    plain_ctl = RiskController(make_book(ROWS[2:4]), make_market(), limits(), clock=lambda: 0.0)
    np.testing.assert_array_equal(plain_ctl._cf[:, ck.CDELTA :], ctl._cf[2:4, ck.CDELTA :])


def test_style_and_settlement_are_part_of_the_contract(terms: None) -> None:
    ctl = RiskController(make_book(ROWS[:1]), make_market(), limits(), clock=lambda: 0.0)
    am = ctl.contract_index("AAA", "call", 100.0, EXPIRY)  # the book's: AAA's default, American
    eu = int(ctl.add_contracts("AAA", "call", 100.0, EXPIRY, style="European")[0])
    early = int(ctl.add_contracts("AAA", "call", 100.0, EXPIRY, settlement="am")[0])
    assert len({am, eu, early}) == 3
    assert ctl.contract_index("AAA", "call", 100.0, EXPIRY, style="european") == eu
    assert ctl.contract_index("AAA", "call", 100.0, EXPIRY, settlement="AM") == early
    assert ctl.is_american([am, eu, early]).tolist() == [True, False, True]
    t = ctl.contracts()["t"]
    assert t[early] == pytest.approx(t[am] - 6.5 / 24.0 / 365.0, rel=1e-15)
    # the same request again finds the same contracts
    again = ctl.add_contracts("AAA", "call", [100.0, 100.0], EXPIRY, style=["european", None])
    assert again.tolist() == [eu, am]
    with pytest.raises(ValueError, match="style: expected one of 'american', 'european'"):
        ctl.add_contracts("AAA", "call", 100.0, EXPIRY, style="bermudan")
    with pytest.raises(ValueError, match="settlement: expected one of 'AM', 'PM'"):
        ctl.add_contracts("AAA", "call", 100.0, EXPIRY, settlement=3)
    assert ctl.n_contracts == 3


def test_terms_of_todays_market_change_nothing() -> None:
    """Without made-up terms every contract is plain: the explicit default style and settlement
    find the contracts the book made."""
    ctl = RiskController(make_book(ROWS), make_market(), limits(), clock=lambda: 0.0)
    assert not ctl.is_american(np.arange(ctl.n_contracts)).any()
    c = ctl.contract_index("AAA", "call", 100.0, EXPIRY)
    assert int(ctl.add_contracts("AAA", "call", 100.0, EXPIRY, style="", settlement=None)[0]) == c
    assert ctl.contracts()["t"][c] == make_market().year_fraction(np.datetime64(EXPIRY))
