"""Short reprs that say what the object is (a repr of thousands of characters, or one naming only a
memory address, helps nobody at a prompt or in a log)."""

from __future__ import annotations

from pathlib import Path

from optmm import Book, Market
from optmm.quoting import (
    DeltaHedger,
    FairValueConfig,
    HedgerConfig,
    Quoter,
    QuoterConfig,
    ToxicityConfig,
    ToxicityDetector,
)
from optmm.risk import AuditTrail, LimitSet, RiskController

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 300


def test_reprs_are_short_and_say_what_the_object_is() -> None:
    limits = LimitSet.load(ROOT / "scenarios" / "limits" / "desk.toml")
    ctl = RiskController(
        Book.load(ROOT / "scenarios" / "examples" / "book.csv"),
        Market.load(ROOT / "scenarios" / "examples" / "market.toml"),
        limits,
        audit=AuditTrail(),
    )
    quoter_cfg = QuoterConfig.load(ROOT / "scenarios" / "quoting" / "quoter.toml")
    hedger_cfg = HedgerConfig.load(ROOT / "scenarios" / "quoting" / "hedger.toml")
    tox_cfg = ToxicityConfig.load(ROOT / "scenarios" / "quoting" / "toxicity.toml")
    detector = ToxicityDetector(tox_cfg, ["SPY", "AAPL"])
    want = {
        "RiskController(4 underlyings (AAPL, MSFT, SPY, TSLA), 49 contracts, limits 'desk' ": ctl,
        "LimitSet('desk', 17 limits, grid 7x3, hash ": limits,
        "AuditTrail(':memory:', batch_size=256, pending=0)": ctl._audit,
        "QuoterConfig(vol_widen=1.0, toxicity_widen=0.5, hash=": quoter_cfg,
        "Quoter(QuoterConfig(": Quoter(quoter_cfg, FairValueConfig()),
        "HedgerConfig(mode='whalley_wilmott', min_trade_shares=100.0, lot_size=100, hash=": hedger_cfg,
        "DeltaHedger(mode=whalley_wilmott, target=band_edge, lot_size=100, 0 fills, config ": DeltaHedger(
            hedger_cfg
        ),
        "ToxicityDetector(2 underlyings, window ": detector,
    }
    for start, obj in want.items():
        text = repr(obj)
        assert text.startswith(start) and len(text) < LIMIT, text
    assert f"limits 'desk' {limits.content_hash[:8]}, SPY SOFT, audit ':memory:')" in repr(ctl)
    assert repr(quoter_cfg).endswith(f"hash={quoter_cfg.content_hash[:8]})")
    assert repr(QuoterConfig()) == f"QuoterConfig(hash={QuoterConfig().content_hash[:8]})"  # all defaults
    ctl.kill("test", by="person")
    assert "KILLED" in repr(ctl)
    ctl.set_toxicity("SPY", True)
    for t in range(5):  # five buys, each followed by the mid 20 bps lower: toxic
        detector.on_fill("SPY", float(t), +1, 1.0, 100.0, 100.0)
        detector.on_mid("SPY", t + 0.5, 99.8)
    assert [u for u, toxic, _ in detector.update(6.0)] == ["SPY"]
    assert "toxic: SPY," in repr(detector)


def test_a_long_config_repr_is_cut() -> None:
    cfg = HedgerConfig(
        mode="fixed_band", band_shares=123.0, min_trade_shares=7.0, lot_size=1, slippage_bps=3.0
    )
    assert len(cfg.short_repr(limit=30)) < 30 + 60
    assert cfg.short_repr(limit=30).endswith(f", ..., hash={cfg.content_hash[:8]})")
