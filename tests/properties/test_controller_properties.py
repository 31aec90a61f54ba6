"""Property-based tests (hypothesis) of the risk controller's pre-trade check.

Profile: see tests/conftest.py (HYPOTHESIS_PROFILE, default "ci").

Domain: one or two underlyings (spots 100 and 40, flat vols), two to five contracts on them
(calls and puts, 1-6 months) held from the start in -40..40 contracts or not at all (so the book
may start beyond a limit: the reduce-only path), small limit sets drawn so that limits are hit
often (position 2-30 contracts; a few hundred shares of delta, a few hundred dollars of vega ...),
and sequences of up
to 25 steps, each either a quote request followed by fills of at most the allowed size on one or
both sides, or a spot move of up to +-8% (which may push dollar delta past a limit on its own).

Property: no fill of ours ever leaves a position or a pre-trade Greek (the underlying's
delta_shares, delta_dollars, gamma_dollars_1pct, vega_per_vol_point; the book's delta_dollars,
gamma_dollars_1pct, vega_per_vol_point) or a worst scenario loss (the underlying's, the book's)
beyond its hard limit, unless it was already beyond it before the fill, in which case the fill does
not increase its absolute value. Exactly: the check confirms every size in the fill's own
arithmetic. Only a loss re-measured by a revaluation after the fill (``after_fill_vega``) may differ
from the incremental one it was checked against: by the rounding of the cells' sums (1e-9 relative),
and, when the spot moved since the grid was last revalued, by that market move, which the fill's
revaluation is the first to measure (the loss is then not checked for that fill: the check saw the
grid the controller had, at the old spot).
"""

from __future__ import annotations

import math

import numpy as np
from builders import Clock, make_book
from hypothesis import event, example, given, note
from hypothesis import strategies as st

from optmm.book import Kind
from optmm.market import Market, Sticky
from optmm.risk import Layer, Limit, LimitSet, Metric, Scope
from optmm.risk.controller import QuoteRequest, RiskController
from optmm.surface import FlatSurface

SPOTS = {"AAA": 100.0, "BBB": 40.0}
EXPIRIES = ("2026-02-20", "2026-04-17", "2026-07-17")
METRIC_COLUMNS = (
    "delta_shares",
    "delta_dollars",
    "gamma_dollars_1pct",
    "vega_per_vol_point",
    "worst_scenario_loss",
)
BOOK_COLUMNS = ("delta_dollars", "gamma_dollars_1pct", "vega_per_vol_point", "worst_scenario_loss")
RTOL_REVALUED = 1e-9  # a loss re-measured by a revaluation (the cells summed in another order)


def market() -> Market:
    return Market(
        valuation=np.datetime64("2026-01-02"),
        spot=dict(SPOTS),
        rate={"AAA": 0.03, "BBB": 0.02},
        div_yield={"AAA": 0.0, "BBB": 0.01},
        surface={"AAA": FlatSurface(0.3), "BBB": FlatSurface(0.5)},
        sticky=Sticky.STRIKE,
        source="property",
    )


def maybe(values):
    return st.one_of(st.none(), st.sampled_from(values))


@st.composite
def limit_sets(draw) -> LimitSet:
    lims = [Limit(metric=Metric.POSITION, scope=Scope.CONTRACT, hard=draw(st.sampled_from([2, 5, 12, 30])),
                  soft=1.0)]  # fmt: skip
    levels = {
        (Metric.DELTA_SHARES, Scope.UNDERLYING): [150.0, 600.0, 2_500.0],
        (Metric.DELTA_DOLLARS, Scope.UNDERLYING): [10_000.0, 60_000.0],
        (Metric.GAMMA_DOLLARS_1PCT, Scope.UNDERLYING): [300.0, 2_000.0],
        (Metric.VEGA_PER_VOL_POINT, Scope.UNDERLYING): [40.0, 250.0],
        (Metric.DELTA_DOLLARS, Scope.BOOK): [15_000.0, 80_000.0],
        (Metric.GAMMA_DOLLARS_1PCT, Scope.BOOK): [500.0, 3_000.0],
        (Metric.VEGA_PER_VOL_POINT, Scope.BOOK): [60.0, 400.0],
        (Metric.WORST_SCENARIO_LOSS, Scope.UNDERLYING): [1_500.0, 8_000.0],
        (Metric.WORST_SCENARIO_LOSS, Scope.BOOK): [2_000.0, 12_000.0],
    }
    for (metric, scope), values in levels.items():
        hard = draw(maybe(values))
        if hard is not None:
            frac = draw(st.sampled_from([0.5, 0.8, 0.95]))
            lims.append(Limit(metric=metric, scope=scope, hard=hard, soft=frac * hard))
    return LimitSet(
        name="property",
        limits=tuple(lims),
        soft_size_factor=draw(st.sampled_from([0.25, 0.5, 1.0])),
        scenario_spot=(-0.1, 0.0, 0.1),
        scenario_vol=(-0.05, 0.05),
        scenario_after_fill_vega=draw(st.sampled_from([math.inf, 50.0])),
    )


contracts = st.lists(
    st.tuples(
        st.sampled_from(list(SPOTS)),
        st.sampled_from(["call", "put"]),
        st.sampled_from([0.8, 0.9, 1.0, 1.1, 1.25]),
        st.sampled_from(EXPIRIES),
    ),
    min_size=2,
    max_size=5,
    unique=True,
)
# initial positions: often none, else anything (possibly beyond the limits: the reduce-only path)
initial = st.lists(st.one_of(st.just(0), st.just(0), st.integers(-40, 40)), min_size=5, max_size=5)

quote_step = st.tuples(
    st.just("quote"),
    st.integers(0, 10_000),  # contract (mod the table size)
    st.floats(0.0, 50.0),  # bid size asked
    st.floats(0.0, 50.0),  # ask size asked
    st.floats(0.0, 1.0),  # fraction of the allowed bid that fills
    st.floats(0.0, 1.0),  # fraction of the allowed ask that fills
)
spot_step = st.tuples(st.just("spot"), st.sampled_from(list(SPOTS)), st.floats(-0.08, 0.08))
steps = st.lists(st.one_of(quote_step, quote_step, quote_step, spot_step), min_size=1, max_size=25)


def measured(ctl: RiskController) -> dict[tuple[str, str], tuple[float, float]]:
    """|value| and hard limit of every pre-trade metric: per contract, per underlying, the book."""
    state = ctl.state()
    out: dict[tuple[str, str], tuple[float, float]] = {}
    table = ctl.contracts()
    hard = float(state["position_hard"].iloc[0])
    for i, pos in enumerate(table["position"].to_numpy()):
        out[(f"contract {i}", "position")] = (abs(pos), hard)
    for u in ctl.underlyings:
        for col in METRIC_COLUMNS:
            out[(u, col)] = (abs(float(state.loc[u, col])), float(state.loc[u, f"{col}_hard"]))
    for col in BOOK_COLUMNS:
        out[("book", col)] = (abs(float(state.loc["book", col])), float(state.loc["book", f"{col}_hard"]))
    return out


def check_fill(before, after, what: str, revalued: bool, moved: bool) -> None:
    for key, (v1, h) in after.items():
        v0 = before.get(key, (0.0, h))[0]
        bound = max(h, v0)
        if revalued and key[1] == "worst_scenario_loss":
            if moved:
                continue  # the revaluation measured the spot's move, not the fill's
            bound *= 1.0 + RTOL_REVALUED
        assert v1 <= bound, f"{what}: {key} went to {v1!r} (hard {h!r}, before {v0!r})"


# a fill whose revaluation also measures a spot move made since the grid was last revalued
MOVED_THEN_REVALUED = {
    "limits": LimitSet(
        name="property",
        limits=(
            Limit(metric=Metric.POSITION, scope=Scope.CONTRACT, hard=2.0, soft=1.0),
            Limit(metric=Metric.WORST_SCENARIO_LOSS, scope=Scope.BOOK, hard=2000.0, soft=1000.0),
        ),
        soft_size_factor=0.25,
        scenario_spot=(-0.1, 0.0, 0.1),
        scenario_vol=(-0.05, 0.05),
        scenario_after_fill_vega=50.0,
    ),
    "table": [
        ("AAA", "call", 0.8, "2026-02-20"),
        ("AAA", "call", 0.8, "2026-04-17"),
        ("AAA", "call", 0.9, "2026-02-20"),
        ("AAA", "put", 0.9, "2026-02-20"),
    ],
    "positions": [0, 0, 0, 16, 0],
    "script": [("spot", "AAA", -0.0625), ("quote", 0, 0.0, 12.0, 0.0, 0.5)],
}


@example(**MOVED_THEN_REVALUED)
@given(limits=limit_sets(), table=contracts, positions=initial, script=steps)
def test_own_fills_never_breach_a_hard_limit(limits, table, positions, script):
    clock = Clock()
    kinds = {"call": Kind.CALL, "put": Kind.PUT}
    rows = [
        (u, kinds[kind], SPOTS[u] * moneyness, expiry, float(q))
        for (u, kind, moneyness, expiry), q in zip(table, positions, strict=False)
        if q
    ]
    ctl = RiskController(make_book(rows), market(), limits, clock=clock)
    for u, kind, moneyness, expiry in table:  # the contracts not in the book, at position 0
        ctl.add_contracts(u, kind, SPOTS[u] * moneyness, expiry)
    spots = dict(SPOTS)
    moved = False
    for step in script:
        note(repr(step))
        if step[0] == "spot":
            _, u, move = step
            if u in ctl.underlyings:
                spots[u] *= 1.0 + move
                moved = True  # the grid is at the old spot until the next revaluation
                ctl.on_market_data(u, spots[u])
            continue
        _, c, bid, ask, f_bid, f_ask = step
        c %= ctl.n_contracts
        many = ctl.decide_many([c], [bid], [ask])
        d = ctl.decide(QuoteRequest(c, bid, ask))
        assert (int(many[0][0]), many[1][0], many[2][0], many[3][0]) == (
            int(d.layer), d.bid_size, d.ask_size, d.spread_factor,
        )  # fmt: skip
        for size, asked in ((d.bid_size, bid), (d.ask_size, ask)):
            assert size >= 0.0 and size == math.floor(size) and size <= asked
        if d.layer <= Layer.STALE:
            assert d.bid_size == d.ask_size == 0.0
        event(f"layer {d.layer.name}")
        if d.bid_size < math.floor(bid * (limits.soft_size_factor if d.layer == Layer.SOFT else 1.0)):
            event("bid cut or dropped")
        q_bid, q_ask = math.floor(f_bid * d.bid_size), math.floor(f_ask * d.ask_size)
        if not (q_bid or q_ask):
            continue
        before = measured(ctl)
        # both sides may fill before the next requote; each was checked from the same state, so any
        # combination stays within the limits (the values move along one line between the two)
        vega = abs(float(ctl.contracts().at[c, "vega_per_vol_point"]))
        revalued = False  # a fill of |vega| >= after_fill_vega revalues the grid
        if q_bid:
            ctl.on_fill(c, float(q_bid), 1.0)
            revalued = q_bid * vega >= limits.scenario_after_fill_vega
            check_fill(before, measured(ctl), f"bid fill {q_bid} of contract {c} ({d})", revalued, moved)
        if q_ask:
            ctl.on_fill(c, -float(q_ask), 1.0)
            revalued = revalued or q_ask * vega >= limits.scenario_after_fill_vega
            check_fill(before, measured(ctl), f"ask fill {q_ask} of contract {c} ({d})", revalued, moved)
        moved = moved and not revalued
