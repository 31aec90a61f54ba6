"""The controller-simulator contract: the rules that the controller and the simulator's loop both run
(:mod:`optmm.risk._controller_kernels`: the underlying gate, the P&L kill, the layer refresh) and the
stock-only controller (:meth:`RiskController.for_underlyings`).

References: the gate's and the P&L kill's documented rules written out here in plain Python; the
stock-only controller against one built by hand from a book of zero stock positions.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from builders import make_book
from numba.core.registry import CPUDispatcher

from optmm.book import Kind
from optmm.market import Market, Sticky
from optmm.risk import AuditTrail, Layer, LimitSet
from optmm.risk import _controller_kernels as ck
from optmm.risk.controller import RiskController
from optmm.surface import FlatSurface

VALUATION = np.datetime64("2026-01-02")
EXPIRY = "2026-04-17"


def market() -> Market:
    return Market(
        valuation=VALUATION,
        spot={"AAA": 100.0, "BBB": 50.0, "CCC": 20.0},
        rate={"AAA": 0.03, "BBB": 0.03, "CCC": 0.02},
        div_yield={"AAA": 0.01, "BBB": 0.0, "CCC": 0.0},
        surface={"AAA": FlatSurface(0.25), "BBB": FlatSurface(0.40), "CCC": FlatSurface(0.30)},
        sticky=Sticky.STRIKE,
        source="test",
    )


def limits() -> LimitSet:
    return LimitSet.from_dict(
        {
            "name": "contract",
            "stale_after_ms": 500,
            "soft_fraction": 0.8,
            "soft_size_factor": 0.5,
            "soft_spread_factor": 1.5,
            "contract": {"position": 200},
            "underlying": {"delta_shares": 1_000, "gamma_dollars_1pct": 50_000, "BBB": {"delta_shares": 300}},
            "book": {"daily_loss": 1_000, "drawdown": 1_500},
            "scenario": {"spot": [-0.1, 0.0, 0.1], "vol": [-0.05, 0.0, 0.05], "every_s": 60},
        }
    )


def hand_built(names: list[str], **kw) -> RiskController:
    """A stock-only controller as the simulator built it before: a book of zero stock rows."""
    book = make_book([(n, Kind.STOCK, math.nan, None, 0.0) for n in names])
    return RiskController(book, market(), limits(), clock=lambda: 0.0, market_ts=0.0, **kw)


def assert_same_state(a: RiskController, b: RiskController, rows: list[int] | None = None) -> None:
    """The kernel states equal bit for bit (NaN and the sign of 0 included); ``rows``: ``b``'s
    underlying rows in ``a``'s order."""
    ours, theirs = list(a.kernel_state()), [x.copy() for x in b.kernel_state()]
    if rows is not None:  # (contracts, underlyings + book, parameters, cells + book, stock cells)
        cf = theirs[0]
        cf[:, ck.CU] = [rows.index(int(u)) for u in cf[:, ck.CU]]
        theirs[1] = theirs[1][[*rows, len(rows)]]
        theirs[3] = theirs[3][[*rows, len(rows)]]
        theirs[4] = theirs[4][rows]
    for x, y in zip(ours, theirs, strict=True):
        assert x.shape == y.shape and x.tobytes() == y.tobytes()


def test_stock_only_controller_is_the_hand_built_one_bit_for_bit() -> None:
    names = ["AAA", "BBB"]
    a = RiskController.for_underlyings(names, market(), limits(), clock=lambda: 0.0, market_ts=0.0)
    b = hand_built(names)
    assert a.underlyings == b.underlyings == ("AAA", "BBB")
    assert_same_state(a, b)
    for ctl in (a, b):  # and after the contracts the simulator adds
        ctl.add_contracts("BBB", ["call", "put"], [45.0, 55.0], EXPIRY)
        ctl.add_contracts("AAA", "call", [90.0, 100.0, 110.0], EXPIRY)
        ctl.on_fill(1, 3.0, price=1.0)
    assert_same_state(a, b)


def test_stock_only_controller_keeps_the_order_of_the_names() -> None:
    a = RiskController.for_underlyings(
        ["CCC", "BBB", "AAA"], market(), limits(), clock=lambda: 0.0, market_ts=0.0
    )
    assert a.underlyings == ("CCC", "BBB", "AAA")
    _cf, ust, *_ = a.kernel_state()
    assert ust[:3, ck.USPOT].tolist() == [20.0, 50.0, 100.0]
    assert ust[:3, ck.UHARD + ck.M_DELTA_SHARES].tolist() == [1_000.0, 300.0, 1_000.0]  # BBB's own limit
    ids = a.add_contracts("AAA", "call", [100.0], EXPIRY)
    assert a.kernel_state()[0][ids[0], ck.CU] == 2.0
    # the same state as the hand-built (sorted) one, rows permuted
    b = hand_built(["AAA", "BBB", "CCC"])
    b.add_contracts("AAA", "call", [100.0], EXPIRY)
    assert_same_state(a, b, rows=[2, 1, 0])


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["AAA", "AAA"], "'AAA' is named twice"),
        (["AAA", "ZZZ"], "'ZZZ' has no spot in the market"),
        (["AAA", 3], "must be a string, got 3"),
    ],
)
def test_stock_only_controller_refuses_bad_names(names: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RiskController.for_underlyings(names, market(), limits())


def gate_reference(layer: int, delta: float, hard: float, factor: float, s: float, q: float) -> float:
    """The underlying gate as documented (:meth:`RiskController.decide_underlying`)."""
    if layer <= int(Layer.STALE) or q <= 0.0:
        return 0.0
    if layer == int(Layer.HARD) and not s * delta < 0.0:
        return 0.0  # reduce-only
    if layer == int(Layer.SOFT):
        q = max(math.floor(q * factor), 1.0) if q >= 1.0 else q * factor
    room = hard - s * delta  # shares this side may still add
    return q if q <= room else (float(math.floor(room)) if room >= 1.0 else 0.0)


def test_decide_underlying_is_the_gate_kernel_on_random_states() -> None:
    rng = np.random.default_rng(5)
    t = [0.0]
    seen, cuts = set(), 0
    for _ in range(300):
        t[0] = 0.0
        ctl = RiskController.for_underlyings(
            ["AAA", "BBB"], market(), limits(), audit=AuditTrail(), clock=lambda: t[0], market_ts=0.0
        )
        name = "AAA" if rng.random() < 0.5 else "BBB"
        u = ctl.underlyings.index(name)
        hard = 1_000.0 if name == "AAA" else 300.0
        ctl.on_hedge(name, float(rng.choice([0.0, 1.0, -1.0]) * rng.uniform(0.0, 1.3 * hard)), price=1.0)
        event = rng.integers(6)
        if event == 0:
            ctl.kill("test")
        elif event == 1:
            ctl.set_toxicity(name, True)
        elif event == 2:
            t[0] = 1.0  # past the stale age
        sizes = [0.0, 0.5, 1.0, rng.integers(1, 1.5 * hard), rng.uniform(0.0, 1.5 * hard)]
        bid, ask = float(rng.choice(sizes)), float(rng.choice(sizes))
        d = ctl.decide_underlying(name, bid, ask)
        _cf, ust, prm, *_ = ctl.kernel_state()
        lay = int(ust[u, ck.ULAYER])
        assert d.layer == Layer(lay) == dict(ctl.check())[name]
        seen.add(d.layer)
        delta = float(ust[u, ck.UDELTA])
        for s, q, got in ((1.0, bid, d.bid_size), (-1.0, ask, d.ask_size)):
            assert got == ck.gate_underlying(u, s, q, ust, prm)  # the rule the loop runs
            assert got == gate_reference(lay, delta, hard, 0.5, s, q)
            soft = d.layer == Layer.SOFT
            layered = (max(math.floor(q * 0.5), 1.0) if q >= 1.0 else q * 0.5) if soft else q
            if got > 0.0:  # a full fill stays inside the hard limit; a cut is to whole shares
                assert got <= layered and s * (delta + s * got) <= hard
                assert got == layered or got == math.floor(got)
                cuts += got < layered
        assert d.spread_factor == (1.5 if d.layer == Layer.SOFT else 1.0)
        assert d.hedge_delta_shares == (delta if d.layer in (Layer.HARD, Layer.KILL) else 0.0)
    assert seen == {Layer.KILL, Layer.TOXIC, Layer.STALE, Layer.HARD, Layer.SOFT, Layer.NORMAL}
    assert cuts > 20


def test_decide_underlying_refuses_bad_sizes() -> None:
    ctl = RiskController.for_underlyings(["AAA"], market(), limits())
    with pytest.raises(ValueError, match="decide_underlying: sizes must be finite and >= 0"):
        ctl.decide_underlying("AAA", -1.0, 1.0)
    with pytest.raises(ValueError, match="sizes must be finite"):
        ctl.decide_underlying("AAA", 1.0, math.nan)
    with pytest.raises(KeyError, match="unknown underlying 'ZZZ'"):
        ctl.decide_underlying("ZZZ", 1.0, 1.0)


def test_mark_pnl_is_the_kernel_and_the_documented_rule_on_random_days() -> None:
    rng = np.random.default_rng(9)
    kills = 0
    for _ in range(40):
        trail = AuditTrail()
        ctl = RiskController.for_underlyings(
            ["AAA", "BBB"], market(), limits(), audit=trail, clock=lambda: 0.0
        )
        ust_k = ctl.kernel_state()[1].copy()  # the kernel run on its own copy, as the loop does
        hwm_k, hwm, killed_at = 0.0, 0.0, None
        pnl = np.cumsum(rng.normal(0.0, 150.0, 30))
        for i, p in enumerate(pnl.tolist()):
            ctl.mark_pnl(p)
            hwm_k, m, value, hard = ck.mark_pnl(p, hwm_k, ust_k)
            ust = ctl.kernel_state()[1]
            # the reference: the high-water mark from 0, the daily loss, the drawdown
            hwm = max(hwm, p)
            assert ust[-1, ck.UDAILY] == max(-p, 0.0) and ust[-1, ck.UDRAWDOWN] == hwm - p
            assert hwm_k == hwm
            breach = -p > 1_000.0 or hwm - p > 1_500.0
            if killed_at is None and breach:
                killed_at = i
                assert m == (ck.M_DAILY if -p > 1_000.0 else ck.M_DRAWDOWN)
                assert (value, hard) == ((-p, 1_000.0) if m == ck.M_DAILY else (hwm - p, 1_500.0))
            else:
                assert m == -1
            assert ctl.killed == (killed_at is not None) == bool(ust_k[0, ck.UKILL])
            assert np.array_equal(ust_k[:, : ck.ULAYER], ust[:, : ck.ULAYER])
            assert np.array_equal(ust_k[:, ck.ULAYER + 1 :], ust[:, ck.ULAYER + 1 :])
        assert len(trail.query(event="kill")) == (killed_at is not None)
        kills += killed_at is not None
    assert 5 < kills < 40  # days that kill and days that do not


def test_layer_refresh_rows_are_the_layers_and_the_old_ones() -> None:
    ctl = RiskController.for_underlyings(["AAA", "BBB"], market(), limits(), clock=lambda: 0.0)
    _cf, ust, prm, *_ = ctl.kernel_state()
    ust = ust.copy()
    ust[1, ck.UDELTA] = 350.0  # BBB past its hard limit (300)
    ust[0, ck.UDELTA] = 900.0  # AAA past its soft level (800)
    out = np.full((2, ck.N_LAYER_OUT), np.nan)
    assert ck.layers_all(0.0, ust, prm, out) == 2
    assert out[:, ck.L_OLD].tolist() == [Layer.NORMAL, Layer.NORMAL]
    assert out[:, ck.L_LAYER].tolist() == [Layer.SOFT, Layer.HARD]
    assert out[:, ck.L_TRIG].tolist() == [ck.M_DELTA_SHARES] * 2
    assert out[:, ck.L_MEAS].tolist() == [900.0, 350.0] and out[:, ck.L_THR].tolist() == [800.0, 300.0]
    for u in range(2):
        assert ck.underlying_layer(u, 0.0, ust, prm) == tuple(out[u, : ck.L_OLD])
    assert ust[:2, ck.ULAYER].tolist() == [Layer.SOFT, Layer.HARD]
    assert ck.layers_all(0.0, ust, prm, out) == 0  # recorded: no change the second time
    assert out[:, ck.L_OLD].tolist() == out[:, ck.L_LAYER].tolist()


def test_the_kernels_compiled_on_their_own_keep_no_reference_counts() -> None:
    """The simulator's loop calls these: compiled with reference counting, how fast the loop ran
    depended on which process had compiled them first (the module docstring)."""
    own = {
        name: f
        for name, f in vars(ck).items()
        if isinstance(f, CPUDispatcher) and f.targetoptions.get("inline", "never") != "always"
    }
    assert {"decide_one", "_side", "layers_all", "apply_fill", "underlying_layer"} <= own.keys()
    counted = sorted(name for name, f in own.items() if f.targetoptions.get("_nrt", True))
    assert not counted, f"compiled with reference counting: {counted}"
