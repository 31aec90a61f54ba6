"""Toxicity detector: config round trip, markout signs, components by hand, window expiry and bounded
memory, the min_fills guard, informed vs balanced flow (seeded), the latch's cool-down, and the
controller hook (a fake, and the real RiskController on the example book)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest

from optmm.book import Book
from optmm.market import Market
from optmm.quoting.toxicity import ToxicityConfig, ToxicityDetector
from optmm.risk.audit import Layer
from optmm.risk.controller import QuoteRequest, RiskController
from optmm.risk.limits import LimitSet

ROOT = Path(__file__).resolve().parents[2]
TOML = ROOT / "scenarios/quoting/toxicity.toml"


class FakeController:
    """Records every set_toxicity call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bool, float, float]] = []

    def set_toxicity(self, underlying: str, toxic: bool, *, score: float, threshold: float) -> None:
        self.calls.append((underlying, toxic, score, threshold))


def simulate(det, u, rng, *, informed: bool, t0: float = 0.0, t1: float = 300.0, mid: float = 100.0):
    """Feed one underlying 4 mids a second, prints, and a fill every ~3 s (Poisson).

    Balanced: our side and the print aggressors are fair coins, the mid a driftless random walk
    (0.5 bp a step); we earn a 2 bp half-spread. Informed: 80% of the fills are with a trader who sells
    to us before the mid falls 8 bps (the rest as balanced), and 70% of the prints are seller-initiated.
    Returns [(t, score)] after every step, and the final mid.
    """
    half = 2e-4
    out = []
    t = t0
    next_fill = t0 + rng.exponential(3.0)
    impact = 0.0
    while t < t1:
        t = round(t + 0.25, 10)
        mid *= math.exp(rng.normal(0.0, 0.5e-4)) * (1.0 + impact)
        impact = 0.0
        det.on_mid(u, t, mid)
        if rng.random() < 0.5:
            sell_p = 0.7 if informed else 0.5
            det.on_trade(u, t, float(rng.integers(1, 10)), -1 if rng.random() < sell_p else 1)
        if t >= next_fill:
            next_fill = t + rng.exponential(3.0)
            if informed and rng.random() < 0.8:
                side, impact = 1, -8e-4  # they sell to us; the mid then falls 8 bps
            else:
                side = 1 if rng.random() < 0.5 else -1
            det.on_fill(u, t, side, float(rng.integers(1, 5)), mid * (1.0 - side * half), mid)
        out.append((t, det.score(u, t).score))
    return out, mid


# --------------------------------------------------------------------------------------------------
# config


def test_config_defaults_round_trip_and_hash():
    cfg = ToxicityConfig()
    assert ToxicityConfig.from_dict(cfg.to_dict()) == cfg
    assert ToxicityConfig.from_dict(cfg.to_dict()).content_hash == cfg.content_hash
    assert len(cfg.content_hash) == 64
    other = dataclasses.replace(cfg, threshold=0.61)
    assert other.content_hash != cfg.content_hash
    loaded = ToxicityConfig.load(TOML)
    assert loaded.markout_horizons_s == (1.0, 5.0, 30.0) and loaded.min_fills == 5
    assert sum(loaded.weights.values()) == pytest.approx(1.0)
    # horizons given as a list come back as a tuple of floats
    assert ToxicityConfig(markout_horizons_s=[1, 2]).markout_horizons_s == (1.0, 2.0)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"window_s": 0.0}, "window_s"),
        ({"window_s": math.inf}, "window_s"),
        ({"markout_horizons_s": ()}, "markout_horizons_s"),
        ({"markout_horizons_s": (5.0, 1.0)}, "markout_horizons_s"),
        ({"markout_horizons_s": (1.0, 60.0)}, "markout_horizons_s"),  # not < window_s
        ({"markout_horizons_s": (-1.0,)}, "markout_horizons_s"),
        ({"adverse_threshold_bps": -1.0}, "adverse_threshold_bps"),
        ({"markout_scale_bps": 0.0}, "markout_scale_bps"),
        ({"weight_flow": -0.1}, "weight_flow"),
        (
            {"weight_one_sided": 0.0, "weight_adverse": 0.0, "weight_markout": 0.0, "weight_flow": 0.0},
            "weight_*",
        ),
        ({"threshold": 0.0}, "threshold"),
        ({"threshold": 1.5}, "threshold"),
        ({"threshold": math.nan}, "threshold"),
        ({"cooldown_s": -1.0}, "cooldown_s"),
        ({"min_fills": 0}, "min_fills"),
        ({"min_fills": 2.5}, "min_fills"),
        ({"min_fills": True}, "min_fills"),
        ({"capacity": 8}, "capacity"),
    ],
)
def test_config_refuses(kwargs, field):
    with pytest.raises(ValueError, match=rf"ToxicityConfig\.{field.replace('*', '[*]')}(\[\d+\])?:"):
        ToxicityConfig(**kwargs)


def test_config_unknown_key_and_bad_file(tmp_path):
    with pytest.raises(ValueError, match="unknown key"):
        ToxicityConfig.from_dict({"window": 10.0})
    bad = tmp_path / "bad.toml"
    bad.write_text("threshold = 2.0\n")
    with pytest.raises(ValueError, match=r"bad\.toml: ToxicityConfig\.threshold"):
        ToxicityConfig.load(bad)


# --------------------------------------------------------------------------------------------------
# markouts and components by hand


def test_markout_sign_conventions():
    cfg = ToxicityConfig(markout_horizons_s=(1.0,), min_fills=1)
    det = ToxicityDetector(cfg, ["UP", "DOWN"])
    # we buy at 100 and sell at 100 on each; UP's mid then rises 10 bps, DOWN's falls 10 bps
    for u, new_mid in (("UP", 100.1), ("DOWN", 99.9)):
        det.on_fill(u, 0.0, +1, 1.0, 100.0, 100.0)
        det.on_fill(u, 0.0, -1, 3.0, 100.0, 100.0)
        det.on_mid(u, 0.5, new_mid)
    up, down = ToxicityDetector(cfg, ["U"]), ToxicityDetector(cfg, ["U"])
    up.on_fill("U", 0.0, +1, 1.0, 100.0, 100.0)  # bought, mid up: +10 bps (good)
    up.on_mid("U", 0.5, 100.1)
    down.on_fill("U", 0.0, +1, 1.0, 100.0, 100.0)  # bought, mid down: -10 bps (adverse)
    down.on_mid("U", 0.5, 99.9)
    assert up.score("U", 1.0).markouts[1.0] == pytest.approx(10.0, rel=1e-12)
    assert up.score("U", 1.0).adverse_frac == 0.0
    assert down.score("U", 1.0).markouts[1.0] == pytest.approx(-10.0, rel=1e-12)
    assert down.score("U", 1.0).adverse_frac == 1.0
    # sold 3 and bought 1 at 100, mid up 10 bps: size-weighted (1 x 10 + 3 x -10) / 4 = -5 bps
    s = det.score("UP", 1.0)
    assert s.markouts[1.0] == pytest.approx(-5.0, rel=1e-12)
    assert s.adverse_frac == 0.5  # the sell is adverse, the buy is not
    assert det.score("DOWN", 1.0).markouts[1.0] == pytest.approx(5.0, rel=1e-12)
    # markout is relative to the fill price, not the mid at the fill: bought at 99.98, mid 100 -> 100
    d = ToxicityDetector(cfg, ["U"])
    d.on_fill("U", 0.0, +1, 1.0, 99.98, 100.0)
    assert d.score("U", 1.0).markouts[1.0] == pytest.approx(0.02 / 99.98 * 1e4, rel=1e-12)


def test_markout_as_of_mid_and_unmatured_horizons():
    cfg = ToxicityConfig(window_s=60.0, markout_horizons_s=(1.0, 10.0), min_fills=1)
    det = ToxicityDetector(cfg, ["U"])
    det.on_mid("U", 0.0, 50.0)  # before the fill: not used for its markouts
    det.on_fill("U", 1.0, -1, 2.0, 100.0, 100.0)
    det.on_mid("U", 1.5, 101.0)  # within the first horizon
    det.on_mid("U", 5.0, 98.0)  # within the second
    det.on_mid("U", 11.5, 90.0)  # after both horizons: never used
    s = det.score("U", 1.9)  # first horizon not reached yet
    assert s.n_matured == {1.0: 0, 10.0: 0}
    assert math.isnan(s.markouts[1.0]) and math.isnan(s.adverse_frac)
    assert s.components["adverse"] == 0.0 and s.components["markout"] == 0.0
    s = det.score("U", 2.0)  # exactly at t + h: matured
    assert s.markouts[1.0] == pytest.approx(-100.0, rel=1e-12)  # sold at 100, mid 101
    assert math.isnan(s.markouts[10.0])
    s = det.score("U", 12.0)
    assert s.markouts[1.0] == pytest.approx(-100.0, rel=1e-12)
    assert s.markouts[10.0] == pytest.approx(200.0, rel=1e-12)  # sold at 100, mid 98 at t + 10
    # no on_mid after the fill: the fill's own mid stands in
    d = ToxicityDetector(cfg, ["U"])
    d.on_mid("U", 0.0, 50.0)
    d.on_fill("U", 1.0, +1, 1.0, 100.0, 100.5)
    assert d.score("U", 3.0).markouts[1.0] == pytest.approx(50.0, rel=1e-12)


def test_components_and_score_by_hand():
    cfg = ToxicityConfig(
        window_s=30.0,
        markout_horizons_s=(1.0, 5.0),
        adverse_threshold_bps=2.0,
        markout_scale_bps=10.0,
        weight_one_sided=1.0,
        weight_adverse=2.0,
        weight_markout=3.0,
        weight_flow=4.0,
        threshold=0.5,
        min_fills=4,
    )
    det = ToxicityDetector(cfg, ["U"])
    det.on_mid("U", 0.0, 100.0)
    for t in (0.0, 0.1, 0.2):
        det.on_fill("U", t, +1, 1.0, 100.0, 100.0)  # three buys at 100
    det.on_fill("U", 0.3, -1, 1.0, 100.0, 100.0)  # one sell at 100
    det.on_mid("U", 0.9, 99.96)  # -4 bps for the buys, +4 for the sell at 1 s
    det.on_mid("U", 4.5, 99.94)  # -6 / +6 at 5 s
    det.on_trade("U", 1.0, 3.0, +1)
    det.on_trade("U", 2.0, 1.0, -1)
    s = det.score("U", 6.0)
    assert s.n_fills == 4 and s.n_trades == 2 and s.enough_fills
    assert s.one_sided == 0.5  # |3 - 1| / 4
    assert s.markouts[1.0] == pytest.approx((3 * -4.0 + 4.0) / 4, rel=1e-9)  # -2 bps
    assert s.markouts[5.0] == pytest.approx((3 * -6.0 + 6.0) / 4, rel=1e-9)  # -3 bps
    assert s.adverse_frac == 0.75  # the three buys are below -2 bps
    assert s.flow_imbalance == 0.5  # (3 - 1) / 4
    expected = {"one_sided": 0.5, "adverse": 0.75, "markout": 0.3, "flow": 0.5}
    assert s.components == pytest.approx(expected, rel=1e-9)
    assert s.score == pytest.approx((0.5 + 2 * 0.75 + 3 * 0.3 + 4 * 0.5) / 10.0, rel=1e-9)
    assert s.toxic is (s.score >= 0.5)
    # prints only the other way: the flow component is |imbalance|, whichever the side
    det.on_trade("U", 3.0, 4.0, -1)
    assert det.score("U", 6.0).flow_imbalance == pytest.approx(-0.25)
    assert det.score("U", 6.0).components["flow"] == pytest.approx(0.25)


# --------------------------------------------------------------------------------------------------
# window, memory, guard


def _adverse_fills(det, u, times, *, mid=100.0, side=+1):
    """A fill at each time, the mid then 20 bps against us 0.5 s later (fills first, then mids)."""
    for t in times:
        det.on_fill(u, t, side, 1.0, mid, mid)
    for t in times:
        det.on_mid(u, t + 0.5, mid * (1.0 - side * 20e-4))


def test_window_expiry():
    cfg = ToxicityConfig(window_s=10.0, markout_horizons_s=(1.0,), min_fills=3)
    det = ToxicityDetector(cfg, ["U"])
    _adverse_fills(det, "U", [0.0, 1.0, 2.0])
    det.on_trade("U", 2.0, 5.0, -1)
    s = det.score("U", 5.0)
    assert s.n_fills == 3 and s.n_trades == 1 and s.score > 0.9
    # window (now - 10, now]: the fill at 0 leaves at now = 10 exactly
    assert det.score("U", 9.999).n_fills == 3
    assert det.score("U", 10.0).n_fills == 2
    s = det.score("U", 12.5)
    assert (s.n_fills, s.n_trades, s.score, s.flow_imbalance) == (0, 0, 0.0, 0.0)
    assert math.isnan(s.markouts[1.0])
    # score() only reads: the events are still there for an earlier time
    assert det.score("U", 5.0).n_fills == 3


def test_buffers_trimmed_to_window_and_bounded():
    cfg = ToxicityConfig(window_s=5.0, markout_horizons_s=(1.0,), min_fills=1, capacity=64)
    det = ToxicityDetector(cfg, ["U"])
    for k in range(2_000):  # 2,000 s of one event of each kind per second
        t = float(k)
        det.on_fill("U", t, 1 if k % 2 else -1, 1.0, 100.0, 100.0)
        det.on_mid("U", t, 100.0)
        det.on_trade("U", t, 1.0, 1)
    assert [len(det._ring(0, k)) for k in range(3)] == [5, 5, 5]  # fills, mids, prints: ts in (1994, 1999]
    assert det.dropped == 0
    # a burst larger than the capacity keeps the newest events and counts the rest
    small = ToxicityDetector(dataclasses.replace(cfg, capacity=16), ["U"])
    for k in range(40):
        small.on_fill("U", 0.01 * k, +1, 1.0, 100.0, 100.0)
    assert small.score("U", 1.0).n_fills == 16 and small.dropped == 24
    assert small._ring(0, 0)[0, 0] == pytest.approx(0.24)


def test_min_fills_guard():
    cfg = ToxicityConfig(window_s=30.0, markout_horizons_s=(1.0,), min_fills=5)
    det = ToxicityDetector(cfg, ["U"])
    _adverse_fills(det, "U", [0.0, 0.1, 0.2, 0.3])
    s = det.score("U", 5.0)
    assert s.n_fills == 4 and not s.enough_fills
    assert s.components["adverse"] == 1.0  # the evidence is there ...
    assert s.score == 0.0 and not s.toxic  # ... but too little of it
    assert det.update(5.0) == [] and not det.is_toxic("U")
    det.on_fill("U", 5.0, +1, 1.0, 100.0, 100.0)
    det.on_mid("U", 5.5, 99.8)
    s = det.score("U", 6.0)
    assert s.enough_fills and s.score > cfg.threshold and s.toxic


def test_event_validation():
    det = ToxicityDetector(ToxicityConfig(), ["U"])
    with pytest.raises(KeyError, match="unknown underlying"):
        det.on_mid("V", 0.0, 100.0)
    with pytest.raises(ValueError, match="side"):
        det.on_fill("U", 0.0, 0, 1.0, 100.0, 100.0)
    with pytest.raises(ValueError, match="side"):
        det.on_fill("U", 0.0, True, 1.0, 100.0, 100.0)
    with pytest.raises(ValueError, match="price"):
        det.on_fill("U", 0.0, 1, 1.0, -1.0, 100.0)
    with pytest.raises(ValueError, match="aggressor_side"):
        det.on_trade("U", 0.0, 1.0, 2)
    det.on_mid("U", 5.0, 100.0)
    with pytest.raises(ValueError, match="before the stream's last event"):
        det.on_mid("U", 4.0, 100.0)
    with pytest.raises(ValueError, match="duplicate"):
        ToxicityDetector(ToxicityConfig(), ["U", "U"])


# --------------------------------------------------------------------------------------------------
# informed vs balanced flow


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fires_on_informed_flow(seed):
    cfg = ToxicityConfig.load(TOML)
    det = ToxicityDetector(cfg, ["X"])
    rng = np.random.default_rng(seed)
    _, mid = simulate(det, "X", rng, informed=False, t1=120.0)  # a calm start ...
    assert det.update(120.0) == []
    path, _ = simulate(det, "X", rng, informed=True, t0=120.0, t1=240.0, mid=mid)  # ... then informed
    changes = det.update(240.0)
    s = det.score("X", 240.0)
    assert [(u, toxic) for u, toxic, _ in changes] == [("X", True)]
    assert s.score >= cfg.threshold
    assert s.markouts[1.0] < -cfg.adverse_threshold_bps and s.adverse_frac > 0.5
    assert s.one_sided > 0.3 and s.flow_imbalance < 0.0  # we keep buying, the prints keep selling
    # it fires within the first window of informed flow
    first = next(t for t, score in path if score >= cfg.threshold)
    assert first < 120.0 + cfg.window_s


@pytest.mark.parametrize("seed", [11, 12, 13, 14, 15])
def test_quiet_on_balanced_random_flow(seed):
    cfg = ToxicityConfig.load(TOML)
    det = ToxicityDetector(cfg, ["X"])
    ctl = FakeController()
    rng = np.random.default_rng(seed)
    path, _ = simulate(det, "X", rng, informed=False, t1=600.0)
    det.update(600.0, ctl)
    worst = max(score for _, score in path)
    assert worst < cfg.threshold
    assert ctl.calls == [] and not det.is_toxic("X")
    assert det.score("X", 600.0).n_fills >= cfg.min_fills  # judged, not merely guarded


def test_deterministic():
    cfg = ToxicityConfig.load(TOML)
    runs = []
    for _ in range(2):
        det = ToxicityDetector(cfg, ["X"])
        path, _ = simulate(det, "X", np.random.default_rng(7), informed=True, t1=100.0)
        runs.append(path)
    assert runs[0] == runs[1]


# --------------------------------------------------------------------------------------------------
# latch, cool-down, controller hook


def _toxic_detector(cooldown_s: float = 20.0) -> tuple[ToxicityDetector, ToxicityConfig]:
    cfg = ToxicityConfig(window_s=10.0, markout_horizons_s=(1.0,), min_fills=3, cooldown_s=cooldown_s)
    det = ToxicityDetector(cfg, ["A", "B"])
    _adverse_fills(det, "A", [0.0, 1.0, 2.0])  # A: informed; its fills leave the window at 10, 11, 12
    for k in range(5):  # B: balanced, harmless
        det.on_fill("B", float(k), 1 if k % 2 else -1, 1.0, 100.0, 100.0)
    return det, cfg


def test_cooldown_timing():
    det, _ = _toxic_detector(cooldown_s=20.0)
    assert [(u, t) for u, t, _ in det.update(5.0)] == [("A", True)]
    assert det.update(9.0) == [] and det.is_toxic("A")
    # at 10 the first fill leaves: 2 fills < min_fills, the score drops to 0 and the clock starts
    assert det.score("A", 10.0).score == 0.0
    assert det.update(10.0) == [] and det.is_toxic("A")
    assert det.update(29.999) == [] and det.is_toxic("A")  # below for 19.999 s
    changes = det.update(30.0)  # below for 20 s
    assert [(u, t) for u, t, _ in changes] == [("A", False)] and not det.is_toxic("A")
    assert changes[0][2].score == 0.0
    assert det.update(31.0) == []


def test_cooldown_restarts_when_the_score_comes_back():
    det, _ = _toxic_detector(cooldown_s=20.0)
    det.update(5.0)
    det.update(10.0)  # below: clock starts at 10
    _adverse_fills(det, "A", [20.0, 20.5, 21.0])  # toxic again
    assert det.update(25.0) == [] and det.is_toxic("A")  # back above: the clock is reset
    # at 30 the fill at 20 leaves (two remain): below again, 20 s after 10 but the clock restarts now
    assert det.score("A", 30.0).score == 0.0
    assert det.update(30.0) == [] and det.is_toxic("A")
    assert det.update(49.9) == [] and det.is_toxic("A")
    assert [(u, t) for u, t, _ in det.update(50.0)] == [("A", False)]


def test_zero_cooldown_clears_at_the_first_calm_update():
    det, _ = _toxic_detector(cooldown_s=0.0)
    det.update(5.0)
    assert [(u, t) for u, t, _ in det.update(10.0)] == [("A", False)]


def test_controller_called_exactly_on_transitions():
    det, cfg = _toxic_detector(cooldown_s=20.0)
    ctl = FakeController()
    for now in (0.5, 3.0, 5.0, 7.0, 9.0, 10.0, 20.0, 29.0, 30.0, 31.0, 40.0):
        det.update(now, ctl)
    assert [(u, toxic) for u, toxic, _, _ in ctl.calls] == [("A", True), ("A", False)]
    (_, _, s_on, thr_on), (_, _, s_off, thr_off) = ctl.calls
    assert thr_on == thr_off == cfg.threshold
    assert s_on >= cfg.threshold and s_off < cfg.threshold
    assert s_on == det.score("A", 3.0).score  # the score of the update that fired (at 3.0)
    # update without a controller still latches, and reports the same changes
    det2, _ = _toxic_detector(cooldown_s=20.0)
    seen = [c[:2] for now in (0.5, 3.0, 5.0, 10.0, 30.0) for c in det2.update(now)]
    assert seen == [("A", True), ("A", False)]


def test_real_controller_pulls_quotes_on_toxicity():
    book = Book.load(ROOT / "scenarios/examples/book.csv")
    market = Market.load(ROOT / "scenarios/examples/market.toml")
    limits = LimitSet.load(ROOT / "scenarios/limits/desk.toml")
    ctl = RiskController(book, market, limits, clock=lambda: 0.0)
    table = ctl.contracts()
    spy = int(table.index[table["underlying"] == "SPY"][0])
    aapl = int(table.index[table["underlying"] == "AAPL"][0])
    assert ctl.decide(QuoteRequest(spy, 5, 5)).layer is Layer.SOFT  # the desk set's starting point
    assert ctl.decide(QuoteRequest(aapl, 5, 5)).layer is Layer.NORMAL

    cfg = ToxicityConfig(window_s=10.0, markout_horizons_s=(1.0,), min_fills=3, cooldown_s=20.0)
    det = ToxicityDetector(cfg, ctl.underlyings)
    spot = market.spot["SPY"]
    _adverse_fills(det, "SPY", [0.0, 1.0, 2.0], mid=spot)
    det.update(5.0, ctl)
    d = ctl.decide(QuoteRequest(spy, 5, 5))
    assert (d.layer, d.bid_size, d.ask_size) == (Layer.TOXIC, 0.0, 0.0)
    assert ctl.decide(QuoteRequest(aapl, 5, 5)).layer is Layer.NORMAL
    det.update(10.0, ctl)  # calm from 10 ...
    assert ctl.decide(QuoteRequest(spy, 5, 5)).layer is Layer.TOXIC
    det.update(30.0, ctl)  # ... for 20 s: cleared, back to where the limits put it
    assert ctl.decide(QuoteRequest(spy, 5, 5)).layer is Layer.SOFT
