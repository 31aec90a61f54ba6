"""The pre-trade check at the edge: a fill of exactly the allowed size never takes a metric past its
hard limit, not by one ulp, and the worst-scenario loss is checked before the trade like the others.

Kernel-level edge trials place each limit exactly where k whole contracts land (as the linear formula
``v + g k`` rounds it, as the fill itself rounds it, and one ulp either side) and check that the
allowed size, filled, leaves the underlying out of HARD, and that one contract more would breach
(the check is not needlessly conservative). A fuzz through the public API (the example book, the desk
limits) checks that the controller's own allowed fills never breach any hard limit, the worst
scenario loss included; and the clear-of-limits shortcut answers what the full check answers.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from optmm import Book, Market
from optmm.risk import AuditTrail, LimitSet
from optmm.risk import _controller_kernels as ck
from optmm.risk.controller import QuoteRequest, RiskController

ROOT = Path(__file__).resolve().parents[2]
NOW = 1000.0
G = 6  # scenario cells
N_METRIC_SLOTS = ck.N_PRETRADE + 2  # the pre-trade metrics, then the underlying's and the book's loss


def random_state(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One contract on underlying 0 of three, no limits (all inf), fresh market data."""
    nu = 3
    cf = np.zeros((1, ck.CCELL + G))
    cf[0, ck.CU] = 0
    cf[0, ck.CMULT] = 100.0
    cf[0, ck.CDELTA] = rng.uniform(-100.0, 100.0)
    cf[0, ck.CGAMMA] = rng.uniform(-300.0, 300.0)
    cf[0, ck.CVEGA] = rng.uniform(-30.0, 30.0)
    cf[0, ck.CPOS] = float(rng.integers(-50, 50))
    cf[0, ck.CCELL :] = rng.uniform(-2_000.0, 2_000.0, G) * rng.uniform(0.01, 1.0)
    ck.cell_bounds(cf)
    ust = np.zeros((nu + 1, ck.NUS))
    ust[:nu, ck.USPOT] = rng.uniform(20.0, 700.0, nu)
    for col, scale in ((ck.UDELTA, 5e3), (ck.UGAMMA, 3e4), (ck.UVEGA, 3e3)):
        ust[:nu, col] = rng.uniform(-scale, scale, nu)
    ust[:nu, ck.ULAST] = NOW
    ust[:nu, ck.ULAYER] = ck.NORMAL
    ust[:, ck.UHARD : ck.UHARD + ck.N_METRICS] = np.inf
    ust[:, ck.USOFT : ck.USOFT + ck.N_METRICS] = np.inf
    cells = np.zeros((nu + 1, G))
    cells[:nu] = rng.uniform(-60_000.0, 60_000.0, (nu, G))
    cells[nu] = cells[:nu].sum(axis=0)
    ck.worst_rows(cells, ust)
    prm = np.zeros(ck.NPRM)
    prm[ck.P_STALE_S] = 1e9
    prm[ck.P_SOFT_SIZE] = 0.5
    prm[ck.P_SOFT_SPREAD] = 1.5
    return cf, ust, cells, prm


def landing(slot: int, s: float, k: float, how: str, cf, ust, cells) -> float:
    """Where metric ``slot`` lands after k contracts on side s: by the linear formula or the fill."""
    x = s * k
    if slot < ck.N_PRETRADE:
        if how == "formula":
            v = ck.pretrade_values(cf[0, ck.CPOS], 0, ust)[slot]
            g = ck.pretrade_changes(0, 0, cf, ust)[slot]
            return abs(v + s * g * k)
        return abs(ck.pretrade_after(x, 0, 0, cf, ust)[slot])
    row = 0 if slot == ck.N_PRETRADE else ust.shape[0] - 1
    if how == "formula":
        return max(-(cells[row] + s * cf[0, ck.CCELL :] * k).min(), 0.0)
    return float(ck._loss_after(x, 0, row, cf, cells))


def set_limit(slot: int, h: float, ust: np.ndarray) -> None:
    if slot < ck.N_PRETRADE:
        code = ck.PRETRADE_CODES[slot]
        row, m = (ust.shape[0] - 1, code - ck.BOOK) if code >= ck.BOOK else (0, code)
        ust[row, ck.UHARD + m] = h
        if code == ck.M_POSITION:  # the position limit is repeated on every row
            ust[:, ck.UHARD + m] = h
    else:
        row = 0 if slot == ck.N_PRETRADE else ust.shape[0] - 1
        ust[row, ck.UHARD + ck.M_WSL] = h


def filled_layer(x: float, cf, ust, cells, prm) -> tuple[int, int]:
    """The underlying's layer after a fill of x (on copies), and the contract's position breach."""
    cf2, ust2, cells2 = cf.copy(), ust.copy(), cells.copy()
    ck.apply_fill(0, x, cf2, ust2, cells2)
    lay = ck.underlying_layer(0, NOW, ust2, prm)[0]
    pos_breach = int(abs(cf2[0, ck.CPOS]) > ust2[0, ck.UHARD + ck.M_POSITION])
    return lay, pos_breach


@pytest.mark.parametrize("slot", range(N_METRIC_SLOTS))
def test_a_fill_of_the_allowed_size_never_lands_past_the_limit(slot: int) -> None:
    rng = np.random.default_rng(100 + slot)
    trials = differ = cut = 0
    for _ in range(300):
        cf, ust, cells, prm = random_state(rng)
        s = float(rng.choice([1.0, -1.0]))
        # the side must move the metric away from 0 (towards the limit it is placed at)
        if slot < ck.N_PRETRADE:
            v = ck.pretrade_values(cf[0, ck.CPOS], 0, ust)[slot]
            g = ck.pretrade_changes(0, 0, cf, ust)[slot]
            if v * s * g <= 0.0:
                continue
        else:
            row = 0 if slot == ck.N_PRETRADE else ust.shape[0] - 1
            worst = int(ust[row, ck.UWORST])
            if not (ust[row, ck.UWSL] > 0.0 and s * cf[0, ck.CCELL + worst] < 0.0):
                continue
        k = float(rng.integers(1, 40))
        formula = landing(slot, s, k, "formula", cf, ust, cells)
        exact = landing(slot, s, k, "fill", cf, ust, cells)
        differ += formula != exact
        for h in (formula, exact, np.nextafter(formula, 0.0), np.nextafter(formula, np.inf)):
            if not h > 0.0:
                continue
            set_limit(slot, h, ust)
            if ck.underlying_layer(0, NOW, ust, prm)[0] == ck.HARD:
                continue  # (the loss limit below the loss now: not an edge trial)
            trials += 1
            asked = k + 5.0
            bid, ask = (asked, 0.0) if s > 0 else (0.0, asked)
            aux = np.zeros(ck.NAUX)
            r = ck.decide_one(0, bid, ask, NOW, cf, ust, cells, prm, aux)
            allowed = r[1] if s > 0 else r[2]
            assert r[0] != ck.HARD
            if allowed >= 1.0:
                assert filled_layer(s * allowed, cf, ust, cells, prm) == (ck.NORMAL, 0), (slot, h, allowed)
            if allowed < asked:
                cut += 1
                # one more contract would breach: the check is exact, not conservative
                lay, pos_breach = filled_layer(s * (allowed + 1.0), cf, ust, cells, prm)
                assert lay == ck.HARD or pos_breach, (slot, h, allowed)
        set_limit(slot, np.inf, ust)
    assert trials > 200 and cut > 100
    if slot in (2, 5, 6, 7):  # dollar delta, the book's sums: the formula and the fill round differently
        assert differ > 0  # here, and the trials met such edges


def side_trial(rng: np.random.Generator, offsetting: bool, q_lo: int, q_hi: int) -> tuple[Any, ...]:
    """A random state (offsetting underlyings if asked), a side s and a size q in [q_lo, q_hi), the
    contract's pre-trade metrics loaded: ``(cf, ust, cells, prm, s, q)``."""
    cf, ust, cells, prm = random_state(rng)
    if offsetting:
        offset_underlyings(rng, ust)
    s = float(rng.choice([1.0, -1.0]))
    q = float(rng.integers(q_lo, q_hi))
    ck.load_pretrade(0, 0, cf, ust, prm)
    return cf, ust, cells, prm, s, q


def offset_underlyings(rng: np.random.Generator, ust: np.ndarray) -> None:
    """Underlyings 0 and 1 offsetting, with terms up to 1e16: the book's sums then round by far more
    than their size (and than 1e-9 of a limit)."""
    for col in (ck.UDELTA, ck.UGAMMA, ck.UVEGA):
        big = 10.0 ** rng.uniform(11.0, 16.0)
        scale = ust[0, ck.USPOT] / ust[1, ck.USPOT] if col == ck.UDELTA else 1.0
        ust[0, col] = big
        ust[1, col] = -big * scale * (1.0 + rng.uniform(-1e-12, 1e-12))


def largest_whole_fill(s: float, q: float, cf, ust, cells, prm) -> float:
    """The largest whole size up to q whose fill on side s the fill's own arithmetic passes (_breach
    asked of every size, from q down), 0 if none: what _side computes by its closed form."""
    for a in range(int(q), 0, -1):
        if ck._breach(s, s * a, 0, 0, cf, ust, cells, prm) < 0:
            return float(a)
    return 0.0


def test_a_size_no_limit_binds_is_the_size_the_fill_itself_allows() -> None:
    """_side allows the whole size without confirming it in the fill's arithmetic when every metric,
    and every scenario cell, stays clearly inside its limit by the closed form; the book's sums are
    clearly inside only by more than the rounding of their terms. Against brute force (every size
    from q down asked of _breach), with limits placed clear of, near and at where the full fill
    lands, and books whose sums cancel terms up to 1e16 (rounding far above 1e-9 of the limit)."""
    rng = np.random.default_rng(23)
    whole = tight = 0
    for trial in range(3000):
        cf, ust, cells, prm, s, q = side_trial(rng, trial % 2 == 1, 1, 30)
        for slot in range(N_METRIC_SLOTS):
            if slot < ck.N_PRETRADE:
                land = abs(prm[ck.P_V + slot] + s * prm[ck.P_G + slot] * q)
            else:
                land = landing(slot, s, q, "formula", cf, ust, cells)
            near = land * (1.0 + rng.choice([0.0, 1e-15, 1e-12, 1e-9, 1e-6]))
            near += rng.choice([0.0, 1e-6, 1e-4, 1e-2])
            if trial % 2 and slot == 5:  # between where the formula and the fill land (rounding)
                after = abs(ck.pretrade_after(s * q, 0, 0, cf, ust)[5])
                near = land + rng.uniform(0.1, 0.9) * (after - land) if after > land else near
            set_limit(slot, rng.choice([np.inf, land * 1.5 + 1.0, near], p=[0.4, 0.3, 0.3]), ust)
        if ck.underlying_layer(0, NOW, ust, prm)[0] == ck.HARD:
            continue
        ck.load_pretrade(0, 0, cf, ust, prm)
        got = ck._side(s, q, False, 0, 0, cf, ust, cells, prm, np.zeros(ck.NAUX))
        assert got == largest_whole_fill(s, q, cf, ust, cells, prm), trial
        whole += got == q
        # the book's delta dollars: inside by the closed form's margin without the terms' rounding,
        # past its limit in the fill's arithmetic
        v, d, h = prm[ck.P_V + 5], s * prm[ck.P_G + 5], prm[ck.P_H + 5]
        room = h - v if d > 0 else h + v
        after = ck.pretrade_after(s * q, 0, 0, cf, ust)[5]
        if room - abs(d) * q > 1e-9 * (h + abs(v) + abs(d) * q) and abs(after) > h:
            tight += 1
    assert whole > 500 and tight > 20, (whole, tight)


def test_a_cut_size_is_the_largest_whole_size_the_fill_itself_allows() -> None:
    """Where a limit binds, _side answers from its closed form alone when the quotients are clear of
    an integer by more than the fill's arithmetic can differ, and asks _breach otherwise: either way
    the largest whole size the fill passes (brute force). Limits are placed where t = N + f contracts
    land, by the formula or by the fill, with f at, within rounding of, and clear of an integer; a
    second limit near the first sometimes; books whose sums cancel terms up to 1e16."""
    rng = np.random.default_rng(31)
    cut = dropped = 0
    fractions = [0.0, 1e-15, 1e-12, 1e-9, 0.5, -1e-15, -1e-12, -1e-9]
    for trial in range(4000):
        cf, ust, cells, prm, s, q = side_trial(rng, trial % 2 == 1, 2, 40)
        for _ in range(int(rng.integers(1, 3))):
            slot = int(rng.integers(0, N_METRIC_SLOTS))
            if slot < ck.N_PRETRADE and prm[ck.P_V + slot] * s * prm[ck.P_G + slot] <= 0.0:
                continue  # (the side must move the metric away from 0, towards its limit)
            t = float(rng.integers(0, int(q))) + 1.0 + float(rng.choice([*fractions, rng.uniform(-1, 0)]))
            h = landing(slot, s, t, str(rng.choice(["formula", "fill"])), cf, ust, cells)
            if h > 0.0:
                set_limit(slot, h, ust)
        if ck.underlying_layer(0, NOW, ust, prm)[0] == ck.HARD:
            continue
        ck.load_pretrade(0, 0, cf, ust, prm)
        got = ck._side(s, q, False, 0, 0, cf, ust, cells, prm, np.zeros(ck.NAUX))
        assert got == largest_whole_fill(s, q, cf, ust, cells, prm), trial
        cut += 0.0 < got < q
        dropped += got == 0.0
    assert cut > 1000 and dropped > 50, (cut, dropped)


def test_the_shortcut_answers_what_the_full_check_answers_with_loss_limits() -> None:
    rng = np.random.default_rng(7)
    taken = 0
    for _ in range(3000):
        cf, ust, cells, prm = random_state(rng)
        qb, qa = (float(x) for x in rng.integers(0, 25, 2))
        qm = max(qb, qa)
        # loss limits of the underlying and the book at, around and clear of where a full fill lands
        m = np.abs(cf[0, ck.CCELL :]).max()
        for row in (0, ust.shape[0] - 1):
            edge = ust[row, ck.UWSL] + m * qm
            options = [np.inf, edge * 1.5, edge * 1.0000001, edge * (1 + 1e-12), edge, edge * 0.999]
            ust[row, ck.UHARD + ck.M_WSL] = rng.choice(options, p=[0.3, 0.2, 0.2, 0.1, 0.1, 0.1])
        if ck.underlying_layer(0, NOW, ust, prm)[0] != ck.NORMAL:
            continue
        ck.load_pretrade(0, 0, cf, ust, prm)
        aux_want = np.zeros(ck.NAUX)
        want = (
            ck._side(1.0, qb, False, 0, 0, cf, ust, cells, prm, aux_want),
            ck._side(-1.0, qa, False, 0, 0, cf, ust, cells, prm, aux_want),
        )
        aux = np.full(ck.NAUX, -7.0)
        got = ck.decide_in_layer(
            0, qb, qa, ck.NORMAL, ck.T_NONE, math.nan, math.nan, cf, ust, cells, prm.copy(), aux
        )
        assert (got[1], got[2]) == want
        assert aux[ck.A_BID] == aux_want[ck.A_BID] and aux[ck.A_ASK] == aux_want[ck.A_ASK]
        taken += bool(ck._clear_of_limits(0, 0, qm, cf, ust, cells))
    assert 300 < taken < 2700


# --------------------------------------------------------------------------------------------------
# the public API: the controller's own allowed fills never breach a hard limit


def hard_breaches(ctl: RiskController) -> dict[tuple[str, str], tuple[float, float]]:
    """|value| and hard limit of every metric with a limit (loss limits included), per scope."""
    state = ctl.state()
    out = {}
    for scope in state.index:
        for metric in (
            "delta_shares",
            "delta_dollars",
            "gamma_dollars_1pct",
            "vega_per_vol_point",
            "worst_scenario_loss",
        ):
            h = float(state.at[scope, f"{metric}_hard"])
            v = float(state.at[scope, metric])
            if math.isfinite(h) and not math.isnan(v):
                out[(scope, metric)] = (abs(v), h)
    pos = ctl.contracts()["position"].abs().to_numpy()
    hard = float(state["position_hard"].iloc[0])
    out.update({(f"contract {i}", "position"): (float(p), hard) for i, p in enumerate(pos)})
    return out


@pytest.mark.parametrize("seed", [1, 2])
def test_own_allowed_fills_never_breach_a_hard_limit_worst_loss_included(seed: int) -> None:
    rng = np.random.default_rng(seed)
    market = Market.load(ROOT / "scenarios" / "examples" / "market.toml")
    limits = LimitSet.load(ROOT / "scenarios" / "limits" / "desk.toml")
    trail = AuditTrail()
    book = Book.load(ROOT / "scenarios" / "examples" / "book.csv")
    ctl = RiskController(book, market, limits, clock=lambda: 0.0, audit=trail)
    ids = []
    for u in ctl.underlyings:
        spot = market.spot[u]
        strikes = np.round(spot * np.array([0.8, 0.9, 0.95, 1.0, 1.05, 1.1, 1.2]))
        for kind in ("call", "put"):
            ids += list(ctl.add_contracts(u, kind, strikes, "2026-12-18"))
            ids += list(ctl.add_contracts(u, kind, strikes[::2], "2027-06-17"))
    for _ in range(400):
        c = int(rng.choice(ids))
        bid, ask = (float(x) for x in rng.integers(0, 300, 2))
        d = ctl.decide(QuoteRequest(c, bid, ask))
        for size, sign in ((d.bid_size, 1.0), (d.ask_size, -1.0)):
            if size < 1.0:
                continue
            before = hard_breaches(ctl)
            ctl.on_fill(c, sign * size, 1.0)
            for key, (v, h) in hard_breaches(ctl).items():
                v0 = before.get(key, (0.0, h))[0]
                assert v <= max(h, v0), (
                    f"{key}: {v!r} > hard {h!r} (before {v0!r}) after {sign * size} of {c}"
                )
    cuts = trail.query(event=["cut", "drop"])
    assert (cuts["trigger"] == "worst_scenario_loss").sum() > 0  # the loss limits were met
