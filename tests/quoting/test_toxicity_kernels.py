"""The toxicity detector's rules (optmm.quoting._toxicity_kernels, which ToxicityDetector runs) against a
vectorised numpy reference of the score written here from the module docstring's definitions.

Seeded random event streams on several configurations (a ring small enough to drop events, one to six
horizons, off-grid times, min_fills from 1 to 6, cool-downs from 0 to 10 s), compared after every update
call: score, components, markouts per horizon, counts, the raw and latched flags, the changes and the
dropped count. Then the layouts, cases computed by hand, and the kernels driven from a user's @njit loop.

Tolerance: counts, flags, changes, the one-sided rate, the adverse fraction and the flow imbalance (integer
sizes) must be equal. The mean markouts, the markout component and the score are sums that the reference
forms with numpy's pairwise summation and the kernel term by term, so they may differ in the last bits:
they must agree to 1e-12 relative, measured against max(1, |value|) (a markout mean near 0 bps is the
difference of terms of ~10-100 bps, where "relative" alone would ask for more than either side rounds to).
The kernel's Python form (``score_rule_py``) and its compilation must agree to the bit.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pytest
from numba import njit

from optmm.quoting import _toxicity_kernels as tk
from optmm.quoting.toxicity import ToxicityConfig, ToxicityDetector, ToxicityScore

RTOL = 1e-12

CONFIGS = {
    # the scenario's shape with a shorter window, so that fills come and go
    "three-horizons": ToxicityConfig(
        window_s=20.0, markout_horizons_s=(1.0, 5.0, 15.0), min_fills=3, cooldown_s=5.0, capacity=256,
        threshold=0.5,
    ),
    # capacity 16 with bursts of fills and prints: the rings overflow and drop
    "small-capacity": ToxicityConfig(
        window_s=10.0, markout_horizons_s=(0.5, 2.0), min_fills=2, cooldown_s=3.0, capacity=16,
        threshold=0.45, adverse_threshold_bps=1.0, markout_scale_bps=5.0,
    ),
    # off the 0.25 s grid of the event times, no cool-down, one horizon, a zero weight
    "off-grid": ToxicityConfig(
        window_s=7.3, markout_horizons_s=(0.7,), min_fills=1, cooldown_s=0.0, capacity=32,
        threshold=0.7, adverse_threshold_bps=0.0, weight_flow=0.0,
    ),
    # six horizons, the last just inside the window, a long cool-down
    "six-horizons": ToxicityConfig(
        window_s=30.0, markout_horizons_s=(0.25, 1.0, 2.5, 5.0, 12.0, 29.75), min_fills=6,
        cooldown_s=10.0, capacity=64, threshold=0.55, weight_one_sided=1.0, weight_adverse=0.5,
        weight_markout=2.0, weight_flow=0.7,
    ),
}  # fmt: skip

NAMES = ("A", "B", "C")


# --------------------------------------------------------------------------------------------------
# helpers


def close(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= RTOL * max(1.0, abs(a), abs(b))


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def ring(st: tk.ToxicityState, which: int, u: int) -> np.ndarray:
    """The events of ring ``which`` (0 fills, 1 mids, 2 prints) of row ``u``, oldest first."""
    buf = st[which]
    head, n = int(st.ist[u, 2 * which]), int(st.ist[u, 2 * which + 1])
    return buf[u, (head + np.arange(n)) % buf.shape[1]]


def reference(st: tk.ToxicityState, u: int, now: float, cfg: ToxicityConfig) -> dict[str, Any]:
    """The score of underlying ``u`` at ``now`` from the events in its rings, with numpy's array
    operations (searchsorted for the mid at each horizon), from the definitions of
    :mod:`optmm.quoting.toxicity`."""
    lo = now - cfg.window_s
    hs = np.asarray(cfg.markout_horizons_s)
    f = ring(st, 0, u)
    f = f[(f[:, tk.FL_TS] > lo) & (f[:, tk.FL_TS] <= now)]
    n = f.shape[0]
    ts, side, size, price = f[:, tk.FL_TS], f[:, tk.FL_SIDE], f[:, tk.FL_SIZE], f[:, tk.FL_PRICE]
    one_sided = abs(float(side.sum())) / n if n else 0.0
    m = ring(st, 1, u)
    m = m[m[:, tk.MD_TS] <= now]
    m_ts, m_mid = m[:, tk.MD_TS], m[:, tk.MD_MID]
    t_h = ts[None, :] + hs[:, None]  # (H, n): when each fill reaches each horizon
    idx = np.searchsorted(m_ts, t_h, side="right") - 1
    safe = np.clip(idx, 0, None)
    have = (idx >= 0) & (m_ts[safe] >= ts[None, :]) if m_ts.size else np.zeros(t_h.shape, dtype=bool)
    mid_h = np.where(have, m_mid[safe] if m_ts.size else 0.0, f[:, tk.FL_MID][None, :])
    markout = side[None, :] * (mid_h - price[None, :]) / price[None, :] * 1e4
    matured = t_h <= now
    w = np.where(matured, size[None, :], 0.0)
    wsum = w.sum(axis=1)
    means = np.full(hs.size, np.nan)
    np.divide((w * markout).sum(axis=1), wsum, out=means, where=wsum > 0.0)
    n_mat = matured.sum(axis=1)
    adverse_frac = math.nan
    if n_mat[0] > 0:
        adverse_frac = float(((markout[0] < -cfg.adverse_threshold_bps) & matured[0]).sum()) / float(n_mat[0])
    finite = means[np.isfinite(means)]
    c_markout = float(np.clip(-finite.min() / cfg.markout_scale_bps, 0.0, 1.0)) if finite.size else 0.0
    tr = ring(st, 2, u)
    tr = tr[(tr[:, tk.TR_TS] > lo) & (tr[:, tk.TR_TS] <= now)]
    total = float(tr[:, tk.TR_SIZE].sum())
    flow = float((tr[:, tk.TR_SIZE] * tr[:, tk.TR_SIDE]).sum()) / total if total > 0.0 else 0.0
    c = {"one_sided": one_sided, "adverse": 0.0 if math.isnan(adverse_frac) else adverse_frac,
         "markout": c_markout, "flow": abs(flow)}  # fmt: skip
    enough = n >= cfg.min_fills
    w_ = cfg.weights
    score = min(max(sum(w_[k] * c[k] for k in w_) / sum(w_.values()), 0.0), 1.0) if enough else 0.0
    return {
        "score": score, "raw": enough and score >= cfg.threshold, "n_fills": n, "n_trades": tr.shape[0],
        "enough": enough, "one_sided": one_sided, "adverse_frac": adverse_frac, "flow_imbalance": flow,
        "components": c, "markouts": dict(zip(cfg.markout_horizons_s, means.tolist(), strict=True)),
        "n_matured": dict(zip(cfg.markout_horizons_s, n_mat.tolist(), strict=True)),
    }  # fmt: skip


def assert_matches(sc: ToxicityScore, ref: dict[str, Any], where: str) -> None:
    """The detector's score and the reference agree (exact where exact, else to RTOL)."""
    exact = {
        "n_fills": (sc.n_fills, ref["n_fills"]),
        "n_trades": (sc.n_trades, ref["n_trades"]),
        "enough": (sc.enough_fills, ref["enough"]),
        "raw": (sc.toxic, ref["raw"]),
        "one_sided": (sc.one_sided, ref["one_sided"]),
        "adverse_frac": (sc.adverse_frac, ref["adverse_frac"]),
        "flow_imbalance": (sc.flow_imbalance, ref["flow_imbalance"]),
        **{f"c_{k}": (sc.components[k], ref["components"][k]) for k in ("one_sided", "adverse", "flow")},
        **{f"n_matured[{h}]": (sc.n_matured[h], k) for h, k in ref["n_matured"].items()},
    }
    for name, (a, b) in exact.items():
        assert same(float(a), float(b)), f"{where}: {name} detector {a!r} reference {b!r}"
    approx = {
        "score": (sc.score, ref["score"]),
        "c_markout": (sc.components["markout"], ref["components"]["markout"]),
        **{f"markouts[{h}]": (sc.markouts[h], v) for h, v in ref["markouts"].items()},
    }
    for name, (a, b) in approx.items():
        assert close(float(a), float(b)), f"{where}: {name} detector {a!r} reference {b!r}"


class Stream:
    """A seeded stream of events for several underlyings: mids (a random walk), prints and our fills,
    with an informed regime that switches on and off per underlying (we keep buying, the mid then falls,
    the prints are mostly seller-initiated). Times on a 0.25 s grid, often equal across streams; bursts
    of fills and prints; now and then a long quiet gap that empties the window."""

    def __init__(self, rng: np.random.Generator, n_u: int) -> None:
        self.rng = rng
        self.mid = np.full(n_u, 100.0)
        self.informed = np.zeros(n_u, dtype=bool)
        self.impact = np.zeros(n_u)
        self.t = 0.0

    def step(self) -> tuple[float, list[tuple]]:
        """Advance the clock; return the new time and the events at it, in a random stream order."""
        rng = self.rng
        gap = rng.choice([0.0, 0.25, 0.5, 1.0, 2.0, 40.0], p=[0.1, 0.45, 0.2, 0.15, 0.08, 0.02])
        self.t = round(self.t + gap, 10)
        events: list[tuple] = []
        for u in range(self.mid.size):
            if rng.random() < 0.03:
                self.informed[u] = not self.informed[u]
            inf = self.informed[u]
            if rng.random() < 0.8:
                self.mid[u] *= math.exp(rng.normal(0.0, 1e-4)) * (1.0 + self.impact[u])
                self.impact[u] = 0.0
                events.append(("mid", u, self.t, float(self.mid[u])))
            for _ in range(rng.choice([0, 1, 2, 12], p=[0.5, 0.3, 0.17, 0.03])):
                agg = -1 if rng.random() < (0.85 if inf else 0.5) else 1
                events.append(("trade", u, self.t, float(rng.integers(1, 20)), agg))
            for _ in range(rng.choice([0, 1, 3, 20], p=[0.6, 0.3, 0.08, 0.02])):
                if inf and rng.random() < 0.9:
                    side = 1
                    self.impact[u] = -rng.uniform(3e-4, 12e-4)
                else:
                    side = 1 if rng.random() < 0.5 else -1
                half = 0.0 if rng.random() < 0.2 else rng.uniform(0.0, 3e-4)  # at mid: markouts of 0
                m = float(self.mid[u])
                fill_mid = m if rng.random() < 0.8 else m * (1.0 + rng.normal(0.0, 2e-4))
                events.append(
                    ("fill", u, self.t, side, float(rng.integers(1, 6)), m * (1.0 - side * half), fill_mid)
                )
        order = rng.permutation(len(events))
        return self.t, [events[i] for i in order]


def feed(det: ToxicityDetector, st: tk.ToxicityState, ev: tuple) -> None:
    kind, u = ev[0], ev[1]
    if kind == "mid":
        det.on_mid(NAMES[u], ev[2], ev[3])
        tk.tox_on_mid(*st, u, ev[2], ev[3])
    elif kind == "trade":
        det.on_trade(NAMES[u], ev[2], ev[3], ev[4])
        tk.tox_on_trade(*st, u, ev[2], ev[3], float(ev[4]))
    else:
        det.on_fill(NAMES[u], *ev[2:])
        tk.tox_on_fill(*st, u, ev[2], float(ev[3]), ev[4], ev[5], ev[6])


# --------------------------------------------------------------------------------------------------
# the detector (the kernels) against the reference on random streams


@pytest.mark.parametrize(("name", "seed"), [(n, s) for s in (1, 2) for n in CONFIGS])
def test_detector_against_the_reference_on_random_streams(name: str, seed: int) -> None:
    cfg = CONFIGS[name]
    n_u = len(NAMES)
    det = ToxicityDetector(cfg, NAMES)
    params = tk.pack_toxicity(cfg)
    params.flags.writeable = False  # the kernels only read the settings
    st = tk.new_toxicity_state(cfg, n_u)  # the same events on the kernels, driven directly
    out = tk.new_score_out(cfg)
    py_out = tk.new_score_out(cfg)
    latched = [(False, math.nan)] * n_u  # the latch's Python form on the reference's raw signal
    stream = Stream(np.random.default_rng([seed, *map(ord, name)]), n_u)
    seen = {"on": 0, "off": 0, "raw_at_update": 0, "not_enough": 0, "nan_adverse": 0, "partial": 0}
    for k in range(700):
        now, events = stream.step()
        for ev in events:
            feed(det, st, ev)
        changes = {NAMES.index(u): (toxic, sc) for u, toxic, sc in det.update(now)}
        for u in range(n_u):
            where = f"{name} seed {seed} step {k} t={now} u={u}"
            ref = reference(st, u, now, cfg)
            toxic_ref, since, changed_ref = tk.latch_py(*latched[u], now, ref["raw"], cfg.cooldown_s)
            latched[u] = (toxic_ref, since)
            assert (u in changes, det.is_toxic(NAMES[u])) == (changed_ref, toxic_ref), where
            if u in changes:
                assert changes[u][0] is toxic_ref, where
                assert_matches(changes[u][1], ref, where)
            sc = det.score(NAMES[u], now)
            assert_matches(sc, ref, where)
            toxic, changed, score = tk.tox_update_into(*st, params, u, now, out)
            assert (toxic, changed, score) == (toxic_ref, changed_ref, sc.score), where
            assert tk.tox_is_toxic(st.ist, u) is toxic and tk.tox_score(*st, params, u, now) == sc.score
            seen["on" if changed and toxic else "off"] += changed
            seen["raw_at_update"] += sc.toxic
            seen["not_enough"] += sc.n_fills > 0 and not sc.enough_fills
            seen["nan_adverse"] += sc.n_fills > 0 and math.isnan(sc.adverse_frac)
            seen["partial"] += 0 < sc.n_matured[cfg.markout_horizons_s[-1]] < sc.n_fills
            # read-only scores at other times (earlier than some events, later than all) agree too, and
            # the rule's Python form equals its compilation to the bit
            if k % 7 == 0:
                for t in (now - 0.6 * cfg.window_s, now - 0.25, now + 1.3):
                    assert_matches(det.score(NAMES[u], t), reference(st, u, t, cfg), f"{where} probe t={t}")
                    s_nb = tk.tox_score_into(*st, params, u, t, out)
                    s_py, _ = tk.score_rule_py(
                        st.fills, st.mids, st.trades, st.ist, params, u, t, py_out, True
                    )
                    assert s_py == s_nb and np.array_equal(py_out, out, equal_nan=True), where
        assert tk.tox_dropped(st.ist) == det.dropped
    # the streams exercised what they are meant to
    assert seen["on"] >= 3 and seen["off"] >= 2, seen
    assert seen["raw_at_update"] > 0 and seen["partial"] > 0 and seen["nan_adverse"] > 0, seen
    if cfg.min_fills > 1:
        assert seen["not_enough"] > 0, seen
    if name == "small-capacity":
        assert det.dropped > 0


# --------------------------------------------------------------------------------------------------
# layouts


def test_pack_layout_and_state() -> None:
    cfg = CONFIGS["six-horizons"]
    p = tk.pack_toxicity(cfg)
    assert p.dtype == np.float64 and p.shape == (tk.P_HORIZONS + 6,)
    assert p[tk.P_N_HORIZONS] == 6 and tuple(p[tk.P_HORIZONS :]) == cfg.markout_horizons_s
    assert (p[tk.P_WINDOW_S], p[tk.P_THRESHOLD], p[tk.P_COOLDOWN_S]) == (30.0, 0.55, 10.0)
    assert (p[tk.P_MIN_FILLS], p[tk.P_CAPACITY], p[tk.P_SCALE_BPS], p[tk.P_ADVERSE_BPS]) == (6, 64, 10.0, 2.0)
    w = (p[tk.P_W_ONE_SIDED], p[tk.P_W_ADVERSE], p[tk.P_W_MARKOUT], p[tk.P_W_FLOW])
    assert w == (1.0, 0.5, 2.0, 0.7) and p[tk.P_W_SUM] == sum(cfg.weights.values())

    st = tk.new_toxicity_state(cfg, 4)
    assert isinstance(st, tk.ToxicityState) and len(st) == 5
    assert st.fills.shape == (4, 64, 5) and st.mids.shape == (4, 64, 2) and st.trades.shape == (4, 64, 3)
    assert st.ist.shape == (4, tk.NIST) and st.ist.dtype == np.int64 and not st.ist.any()
    assert np.isnan(st.fst[:, tk.S_CALM_SINCE]).all() and (st.fst[:, tk.S_WINDOW_S] == 30.0).all()
    assert tk.new_score_out(cfg).shape == (tk.O_MARKOUTS + 12,)

    with pytest.raises(TypeError, match="pack_toxicity: config must be a ToxicityConfig"):
        tk.pack_toxicity({"window_s": 1.0})  # type: ignore[arg-type]
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="n_underlyings"):
            tk.new_toxicity_state(cfg, bad)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# by hand


def test_docstring_example() -> None:
    cfg = ToxicityConfig(min_fills=1)
    params, st, out = tk.pack_toxicity(cfg), tk.new_toxicity_state(cfg, 1), tk.new_score_out(cfg)
    tk.tox_on_fill(*st, 0, 0.0, 1.0, 1.0, 100.0, 100.0)  # we bought at 100.00
    tk.tox_on_mid(*st, 0, 0.5, 99.9)  # the mid falls by 10 bps
    s = tk.tox_score_into(*st, params, 0, 1.0, out)
    assert out[tk.O_MARKOUTS] == pytest.approx(-10.0, rel=1e-12)  # (99.9 - 100) / 100 * 1e4
    assert np.isnan(out[tk.O_MARKOUTS + 1 : tk.O_MARKOUTS + 3]).all()  # 5 s and 30 s not reached
    assert list(out[tk.O_MARKOUTS + 3 :]) == [1.0, 0.0, 0.0]
    assert (out[tk.O_ADVERSE_FRAC], out[tk.O_ONE_SIDED], out[tk.O_FLOW_IMBALANCE]) == (1.0, 1.0, 0.0)
    # one-sided 1, adverse 1, markout min(10 / 10, 1) = 1, flow 0: (0.25 + 0.35 + 0.25) / 1.0 = 0.85
    assert out[tk.O_C_MARKOUT] == pytest.approx(1.0, rel=1e-12)
    assert s == pytest.approx(0.85, rel=1e-12) and out[tk.O_RAW] == 1.0


def test_components_and_score_by_hand() -> None:
    """tests/quoting/test_toxicity.py's case computed by hand, on the kernels."""
    cfg = ToxicityConfig(
        window_s=30.0, markout_horizons_s=(1.0, 5.0), adverse_threshold_bps=2.0, markout_scale_bps=10.0,
        weight_one_sided=1.0, weight_adverse=2.0, weight_markout=3.0, weight_flow=4.0, threshold=0.5,
        min_fills=4,
    )  # fmt: skip
    params, st, out = tk.pack_toxicity(cfg), tk.new_toxicity_state(cfg, 2), tk.new_score_out(cfg)
    u = 1  # the other row stays empty
    tk.tox_on_mid(*st, u, 0.0, 100.0)  # before the fills: never their markout mid
    for t in (0.0, 0.1, 0.2):
        tk.tox_on_fill(*st, u, t, 1.0, 1.0, 100.0, 100.0)  # three buys at 100
    tk.tox_on_fill(*st, u, 0.3, -1.0, 1.0, 100.0, 100.0)  # one sell at 100
    tk.tox_on_mid(*st, u, 0.9, 99.96)  # -4 bps for the buys, +4 for the sell at 1 s
    tk.tox_on_mid(*st, u, 4.5, 99.94)  # -6 / +6 at 5 s
    tk.tox_on_trade(*st, u, 1.0, 3.0, 1.0)
    tk.tox_on_trade(*st, u, 2.0, 1.0, -1.0)
    s = tk.tox_score_into(*st, params, u, 6.0, out)
    assert (out[tk.O_N_FILLS], out[tk.O_N_TRADES], out[tk.O_ENOUGH]) == (4, 2, 1)
    assert out[tk.O_ONE_SIDED] == 0.5  # |3 - 1| / 4
    assert out[tk.O_MARKOUTS] == pytest.approx(-2.0, rel=1e-9)  # (3 x -4 + 4) / 4
    assert out[tk.O_MARKOUTS + 1] == pytest.approx(-3.0, rel=1e-9)  # (3 x -6 + 6) / 4
    assert out[tk.O_ADVERSE_FRAC] == 0.75 and out[tk.O_FLOW_IMBALANCE] == 0.5  # (3 - 1) / 4
    assert out[tk.O_C_MARKOUT] == pytest.approx(0.3, rel=1e-9)  # the worst mean, -3 bps, over 10
    assert s == pytest.approx((0.5 + 2 * 0.75 + 3 * 0.3 + 4 * 0.5) / 10.0, rel=1e-9)
    assert tk.tox_score(*st, params, 0, 6.0) == 0.0
    tk.tox_on_trade(*st, u, 3.0, 4.0, -1.0)  # prints the other way: the component is |imbalance|
    tk.tox_score_into(*st, params, u, 6.0, out)
    assert (out[tk.O_FLOW_IMBALANCE], out[tk.O_C_FLOW]) == (-0.25, 0.25)


def test_markout_as_of_mid_and_window_boundary() -> None:
    cfg = ToxicityConfig(window_s=10.0, markout_horizons_s=(1.0, 5.0), min_fills=1)
    params, st, out = tk.pack_toxicity(cfg), tk.new_toxicity_state(cfg, 1), tk.new_score_out(cfg)
    tk.tox_on_mid(*st, 0, 0.0, 50.0)
    tk.tox_on_fill(*st, 0, 1.0, -1.0, 2.0, 100.0, 100.0)
    tk.tox_on_mid(*st, 0, 1.5, 101.0)
    tk.tox_on_mid(*st, 0, 2.0, 99.0)  # exactly at t + 1: this one counts
    tk.tox_on_mid(*st, 0, 6.5, 90.0)  # after t + 5: the 5 s markout uses the mid of 2.0
    tk.tox_score_into(*st, params, 0, 1.999, out)
    assert list(out[tk.O_MARKOUTS + 2 :]) == [0.0, 0.0] and np.isnan(out[tk.O_ADVERSE_FRAC])
    tk.tox_score_into(*st, params, 0, 6.0, out)
    assert out[tk.O_MARKOUTS] == pytest.approx(100.0, rel=1e-12)  # sold at 100, mid 99
    assert out[tk.O_MARKOUTS + 1] == pytest.approx(100.0, rel=1e-12)
    # window (now - 10, now]: the fill at 1 is in at 10.999 and out at 11 exactly
    assert tk.tox_score_into(*st, params, 0, 10.999, out) > 0.0 and out[tk.O_N_FILLS] == 1
    assert tk.tox_score_into(*st, params, 0, 11.0, out) == 0.0 and out[tk.O_N_FILLS] == 0
    # no mid at or after the fill: its own mid stands in
    st2 = tk.new_toxicity_state(cfg, 1)
    tk.tox_on_mid(*st2, 0, 0.0, 50.0)
    tk.tox_on_fill(*st2, 0, 1.0, 1.0, 1.0, 100.0, 100.5)
    tk.tox_score_into(*st2, params, 0, 3.0, out)
    assert out[tk.O_MARKOUTS] == pytest.approx(50.0, rel=1e-12)


def test_rings_trimmed_and_bounded() -> None:
    cfg = ToxicityConfig(window_s=5.0, markout_horizons_s=(1.0,), min_fills=1, capacity=64)
    st = tk.new_toxicity_state(cfg, 1)
    for k in range(2_000):
        t = float(k)
        tk.tox_on_fill(*st, 0, t, 1.0 if k % 2 else -1.0, 1.0, 100.0, 100.0)
        tk.tox_on_mid(*st, 0, t, 100.0)
        tk.tox_on_trade(*st, 0, t, 1.0, 1.0)
    assert tuple(st.ist[0, [tk.I_F_N, tk.I_M_N, tk.I_T_N]]) == (5, 5, 5)  # ts in (1994, 1999]
    head = st.ist[0, tk.I_F_HEAD]
    assert st.fills[0, head, tk.FL_TS] == 1995.0 and tk.tox_dropped(st.ist) == 0
    # a burst larger than the ring keeps the newest 16 and counts the 24 others
    small = dataclasses.replace(cfg, capacity=16)
    st = tk.new_toxicity_state(small, 2)
    for k in range(40):
        tk.tox_on_fill(*st, 1, 0.01 * k, 1.0, 1.0, 100.0, 100.0)
    out = tk.new_score_out(small)
    tk.tox_score_into(*st, tk.pack_toxicity(small), 1, 1.0, out)
    assert out[tk.O_N_FILLS] == 16 and tk.tox_dropped(st.ist) == 24 and st.ist[1, tk.I_F_DROPPED] == 24
    assert st.fills[1, st.ist[1, tk.I_F_HEAD], tk.FL_TS] == pytest.approx(0.24)


def test_latch_and_cooldown_by_hand() -> None:
    """Toxic at 5; calm at 10 (the clock starts); toxic again at 12 (the clock resets); calm again from
    21 (the clock restarts); cleared at the first update >= 21 + 20 = 41, once."""
    cfg = ToxicityConfig(window_s=10.0, markout_horizons_s=(1.0,), min_fills=3, cooldown_s=20.0)
    params, st = tk.pack_toxicity(cfg), tk.new_toxicity_state(cfg, 2)

    def adverse(times: list[float]) -> None:
        for t in times:
            tk.tox_on_fill(*st, 0, t, 1.0, 1.0, 100.0, 100.0)
            tk.tox_on_mid(*st, 0, t + 0.5, 99.8)  # 20 bps against us

    adverse([0.0, 1.0, 2.0])
    assert tk.tox_update(*st, params, 1, 5.0) == (False, False, 0.0)  # the other underlying
    toxic, changed, score = tk.tox_update(*st, params, 0, 5.0)
    # one-sided 1, adverse 1, markout min(20 / 10, 1) = 1, no prints: 0.25 + 0.35 + 0.25 = 0.85
    assert (toxic, changed) == (True, True) and score == pytest.approx(0.85, rel=1e-12)
    assert tk.tox_update(*st, params, 0, 5.0)[:2] == (True, False)  # no second change
    assert tk.tox_update(*st, params, 0, 10.0) == (True, False, 0.0)  # the fill at 0 left: 2 < min_fills
    assert st.fst[0, tk.S_CALM_SINCE] == 10.0
    adverse([10.5, 11.0, 11.5])
    assert tk.tox_update(*st, params, 0, 12.0)[:2] == (True, False)
    assert np.isnan(st.fst[0, tk.S_CALM_SINCE])  # the clock was reset
    for now, expected in ((14.0, (True, False)), (21.0, (True, False)), (40.9, (True, False))):
        assert tk.tox_update(*st, params, 0, now)[:2] == expected, now
    assert st.fst[0, tk.S_CALM_SINCE] == 21.0
    assert tk.tox_update(*st, params, 0, 41.0)[:2] == (False, True)
    assert np.isnan(st.fst[0, tk.S_CALM_SINCE])
    assert tk.tox_update(*st, params, 0, 45.0)[:2] == (False, False)
    assert not tk.tox_is_toxic(st.ist, 0) and not tk.tox_is_toxic(st.ist, 1)
    # no cool-down: cleared by the first update that sees the score below the threshold
    det = ToxicityDetector(dataclasses.replace(cfg, cooldown_s=0.0), ["U"])
    st = tk.new_toxicity_state(det.config, 1)
    params = tk.pack_toxicity(det.config)
    adverse([50.0, 51.0, 52.0])
    assert tk.tox_update(*st, params, 0, 55.0)[:2] == (True, True)
    assert tk.tox_update(*st, params, 0, 60.0)[:2] == (False, True)


# --------------------------------------------------------------------------------------------------
# from a user's compiled loop (how the simulator calls them)


@njit(cache=True, error_model="numpy")
def _sim_loop(ev, fills, mids, trades, ist, fst, params, n_u, now_out, score_out, toxic_out, changed_out):
    """Events rows: kind (0 mid, 1 trade, 2 fill), u, ts, then the event's fields; an update of every
    underlying after the last event of each time stamp."""
    k = 0
    n = ev.shape[0]
    steps = 0
    while k < n:
        t = ev[k, 2]
        while k < n and ev[k, 2] == t:
            u = int(ev[k, 1])
            kind = ev[k, 0]
            if kind == 0.0:
                tk.tox_on_mid(fills, mids, trades, ist, fst, u, t, ev[k, 3])
            elif kind == 1.0:
                tk.tox_on_trade(fills, mids, trades, ist, fst, u, t, ev[k, 3], ev[k, 4])
            else:
                tk.tox_on_fill(fills, mids, trades, ist, fst, u, t, ev[k, 3], ev[k, 4], ev[k, 5], ev[k, 6])
            k += 1
        now_out[steps] = t
        for u in range(n_u):
            toxic, changed, s = tk.tox_update(fills, mids, trades, ist, fst, params, u, t)
            score_out[steps, u] = s
            toxic_out[steps, u] = toxic
            changed_out[steps, u] = changed
        steps += 1
    return steps


def test_kernels_inside_a_compiled_loop() -> None:
    cfg = CONFIGS["three-horizons"]
    stream = Stream(np.random.default_rng(77), len(NAMES))
    rows = []
    for _ in range(600):
        t, events = stream.step()
        for e in events:
            code = {"mid": 0.0, "trade": 1.0, "fill": 2.0}[e[0]]
            rows.append([code, e[1], t, *map(float, e[3:])] + [0.0] * (7 - len(e)))
    ev = np.array(rows)
    st = tk.new_toxicity_state(cfg, len(NAMES))
    n_steps = len(np.unique(ev[:, 2]))
    now = np.zeros(n_steps)
    scores = np.zeros((n_steps, len(NAMES)))
    toxic = np.zeros((n_steps, len(NAMES)), dtype=np.bool_)
    changed = np.zeros_like(toxic)
    got = _sim_loop(ev, *st, tk.pack_toxicity(cfg), len(NAMES), now, scores, toxic, changed)
    assert got == n_steps

    det = ToxicityDetector(cfg, NAMES)
    k = 0
    for i in range(n_steps):
        while k < len(rows) and ev[k, 2] == now[i]:
            code, u, t = int(ev[k, 0]), int(ev[k, 1]), float(ev[k, 2])
            if code == 0:
                det.on_mid(NAMES[u], t, float(ev[k, 3]))
            elif code == 1:
                det.on_trade(NAMES[u], t, float(ev[k, 3]), int(ev[k, 4]))
            else:
                det.on_fill(NAMES[u], t, int(ev[k, 3]), *map(float, ev[k, 4:7]))
            k += 1
        flips = {NAMES.index(u) for u, _, _ in det.update(float(now[i]))}
        for u in range(len(NAMES)):
            assert scores[i, u] == det.score(NAMES[u], float(now[i])).score, (i, u)
            assert (bool(changed[i, u]), bool(toxic[i, u])) == (u in flips, det.is_toxic(NAMES[u])), (i, u)
    assert changed.sum() >= 2 and tk.tox_dropped(st.ist) == det.dropped == 0
