"""The slow engines' figures reused (:class:`optmm.pricing.Reuse`): the same bits as pricing afresh.

The example book's American options and options on cash dividends are priced by the American and
escrowed engines, a group per underlying and style. A group whose inputs are those of the last call
in the same slot is taken as kept; any input that differs prices the group again. The checks: the
figures equal a fresh call's bit for bit, in :func:`optmm.pricing.contract_greeks` and
:func:`~optmm.pricing.contract_price` and in a risk controller driven through fills, market moves,
recomputes, new contracts and VaR scenarios; and the engine is called again exactly when an input
changed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from builders import Clock

from optmm import pricing
from optmm.book import Book, Kind
from optmm.market import Market
from optmm.pricing import Reuse
from optmm.risk import LimitSet, QuoteRequest
from optmm.risk.controller import RiskController

ROOT = Path(__file__).resolve().parents[2]


def example() -> tuple[Book, Market]:
    return (
        Book.load(ROOT / "scenarios" / "examples" / "book.csv"),
        Market.load(ROOT / "scenarios" / "examples" / "market.toml"),
    )


def options_terms() -> tuple[pricing.Carry, tuple[np.ndarray, ...]]:
    """The example book's options as the arguments of ``contract_greeks`` after the carry."""
    book, market = example()
    opt = np.flatnonzero(book.is_option)
    names, codes = book.underlying_index()
    carry = pricing.carry(market, names)
    t, american = pricing.book_terms(book, market, codes)
    u = codes[opt]
    spot = np.array([market.spot[n] for n in names])[u]
    vol = np.full(opt.size, 0.3) + 0.01 * np.arange(opt.size) / opt.size
    call = np.asarray(book.kind[opt] == Kind.CALL)
    return carry, (u, spot, book.strike[opt], t[opt], vol, call, american[opt])


def same_bits(a: Any, b: Any) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


def test_reused_greeks_and_prices_are_a_fresh_calls_and_a_changed_group_is_priced_again() -> None:
    carry, terms = options_terms()
    assert (~pricing.plain(carry, terms[0], terms[6])).sum() > 10  # American and cash-dividend rows
    fresh = pricing.contract_greeks(carry, *terms)
    reuse = pricing.Reuse()
    first = pricing.contract_greeks(carry, *terms, reuse=(reuse, "greeks"))
    groups = reuse.calls
    assert groups >= 4 and reuse.reused == 0
    again = pricing.contract_greeks(carry, *terms, reuse=(reuse, "greeks"))
    assert reuse.calls == groups and reuse.reused == groups  # no engine call
    for name in fresh.to_dict():
        assert same_bits(getattr(first, name), getattr(fresh, name)), name
        assert same_bits(getattr(again, name), getattr(fresh, name)), name
    nothing = pricing.Reuse(keep=False)  # keeps nothing: every call prices every group
    for _ in range(2):
        kept_none = pricing.contract_greeks(carry, *terms, reuse=(nothing, "greeks"))
    assert nothing.calls == 2 * groups and nothing.reused == 0
    assert same_bits(kept_none.price, fresh.price)

    # one underlying's spot moves by one unit in the last place: its groups alone are priced again
    u, spot = terms[0], terms[1].copy()
    moved = int(u[~pricing.plain(carry, u, terms[6])][0])
    spot[u == moved] = np.nextafter(spot[u == moved], np.inf)
    changed = (terms[0], spot, *terms[2:])
    n_moved = len({(int(j), bool(a)) for j, a in zip(u, terms[6], strict=True) if j == moved}
                  - {(int(j), False) for j in np.flatnonzero(~carry.has_dividends)})  # fmt: skip
    got = pricing.contract_greeks(carry, *changed, reuse=(reuse, "greeks"))
    assert reuse.calls == groups + n_moved and reuse.reused == 2 * groups - n_moved
    want = pricing.contract_greeks(carry, *changed)
    for name in want.to_dict():
        assert same_bits(getattr(got, name), getattr(want, name)), name

    # prices in a slot of their own, with time passing (the dividends seen later): a fresh call's bits
    elapsed = 5.0 / 365.0
    args = (terms[0], terms[1], terms[2], terms[3] - elapsed, *terms[4:])
    p1 = pricing.contract_price(carry, *args, elapsed=elapsed, reuse=(reuse, "scenario"))
    p2 = pricing.contract_price(carry, *args, elapsed=elapsed, reuse=(reuse, "scenario"))
    p0 = pricing.contract_price(carry, *args, elapsed=elapsed)
    assert same_bits(p1, p0) and same_bits(p2, p0)
    # the other slot's figures are still kept: the Greeks again take no engine call
    calls = reuse.calls
    pricing.contract_greeks(carry, *changed, reuse=(reuse, "greeks"))
    assert reuse.calls == calls


def test_an_input_changed_in_place_is_seen() -> None:
    """The kept inputs are copies: an array the caller changes in place after the call, then passes
    again, is priced again."""
    carry, terms = options_terms()
    reuse = pricing.Reuse()
    vol = terms[4].copy()
    args = (*terms[:4], vol, *terms[5:])
    pricing.contract_price(carry, *args, reuse=(reuse, "p"))
    calls = reuse.calls
    vol *= 1.1
    got = pricing.contract_price(carry, *args, reuse=(reuse, "p"))
    assert reuse.calls == 2 * calls
    assert same_bits(got, pricing.contract_price(carry, *args))


def limits() -> LimitSet:
    desk = LimitSet.load(ROOT / "scenarios" / "limits" / "desk.toml").to_dict()
    desk["book"] = {**desk.get("book", {}), "var": {"hard": 1e12, "level": 0.95}}
    return LimitSet.from_dict(desk, source="<desk with a VaR limit>")


def drive(reuse_on: bool, monkeypatch: pytest.MonkeyPatch) -> tuple[RiskController, int]:
    """The example book's controller through fills, market moves (within and past the scenario
    cadence), new contracts and VaR scenarios; with the engines' figures reused or not. Returns the
    controller and the number of American engine calls."""
    calls = [0]
    american = pricing.american_price

    def counted(*args: Any, **kw: Any) -> Any:
        calls[0] += 1
        return american(*args, **kw)

    with monkeypatch.context() as m:
        m.setattr(pricing, "american_price", counted)
        if not reuse_on:
            m.setattr(pricing, "Reuse", lambda: Reuse(keep=False))  # the controller's keeps nothing
        book, market = example()
        names = book.underlyings()
        rng = np.random.default_rng(11)
        index = pd.date_range("2025-01-01", periods=40, freq="B")
        var_spot = pd.DataFrame(rng.normal(0.0, 0.02, (40, len(names))), index=index, columns=names)
        var_vol = pd.DataFrame(rng.normal(0.0, 0.01, (40, len(names))), index=index, columns=names)
        clock = Clock()
        ctl = RiskController(
            book, market, limits(), clock=clock, var_spot_shift=var_spot, var_vol_shift=var_vol
        )
        ids: list[int] = []
        for u in ctl.underlyings:
            strikes = np.round(market.spot[u] * np.array([0.9, 1.0, 1.1]))
            ids += list(ctl.add_contracts(u, "put", strikes, "2027-06-17", style="american"))
        for i in range(60):
            c = int(rng.choice(ids))
            d = ctl.decide(QuoteRequest(c, 40.0, 40.0))
            if d.bid_size >= 1.0:
                ctl.on_fill(c, d.bid_size, 1.0)  # large enough to revalue (desk: after_fill_vega)
            if i == 20:
                ctl.on_market_data("AAPL", market.spot["AAPL"] * 1.01)  # within the cadence
            if i == 40:
                clock.t += 61.0
                ctl.on_market_data("MSFT", market.spot["MSFT"] * 0.99)  # past it: a recompute
        ctl.recompute()
    return ctl, calls[0]


def test_a_controller_reusing_figures_keeps_the_same_state_bit_for_bit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fresh, fresh_calls = drive(False, monkeypatch)
    reused, reused_calls = drive(True, monkeypatch)
    for a, b in zip(reused.kernel_state(), fresh.kernel_state(), strict=True):
        assert same_bits(a, b)
    pd.testing.assert_frame_equal(reused.state(), fresh.state(), check_exact=True)
    pd.testing.assert_frame_equal(reused.contracts(), fresh.contracts(), check_exact=True)
    assert reused.state().loc["book", "var"] > 0.0
    assert reused_calls < fresh_calls / 3  # most revaluations after a fill priced nothing again
