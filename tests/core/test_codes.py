"""The integer codes: every kernel's constants equal the enums of optmm.codes, and no enum repeats a value."""

from __future__ import annotations

import enum
import inspect

import pytest

from optmm import codes, units
from optmm.book import Book, Kind
from optmm.quoting import HedgeMode, HedgeReason, HedgeTarget, SkewMode
from optmm.quoting import _kernels as qk
from optmm.risk import _controller_kernels as ck
from optmm.risk.audit import Layer
from optmm.risk.limits import Metric
from optmm.sim import _groups as sg
from optmm.sim import records as rec
from optmm.sim.config import SECONDS_PER_YEAR, Quoting

CODE_ENUMS = [getattr(codes, n) for n in codes.__all__ if isinstance(getattr(codes, n), enum.EnumMeta)]


def _pairs(module, prefix: str, enum_cls, names: dict[str, str] | None = None) -> list[tuple[str, int, int]]:
    """``(constant, its value, the enum member's value)`` for every member of ``enum_cls``: the constant
    ``prefix + name`` (or ``names[member]``) of ``module``."""
    out = []
    for m in enum_cls:
        const = (names or {}).get(m.name, prefix + m.name)
        out.append((const, getattr(module, const), int(m)))
    return out


def test_every_code_enum_has_distinct_values():
    assert len(CODE_ENUMS) >= 10
    for cls in CODE_ENUMS:
        values = [int(m) for m in cls.__members__.values()]
        assert len(values) == len(set(values)), f"{cls.__name__} repeats a value: {values}"


def test_the_public_enums_are_the_codes_enums():
    assert Layer is codes.Layer
    assert Kind is codes.Kind
    assert Book.__module__ == "optmm.book"


@pytest.mark.parametrize(
    ("public", "coded"),
    [
        (SkewMode, codes.SkewCode),
        (HedgeMode, codes.HedgeModeCode),
        (HedgeTarget, codes.HedgeTargetCode),
        (Metric, codes.MetricCode),
    ],
)
def test_string_enums_and_their_codes_match_by_name(public, coded):
    assert [m.name for m in public] == [m.name for m in coded]


def test_hedge_reasons_and_their_codes():
    # NONE is "no order"; the simulator reads a hedge's reason as the position in HedgeReason
    named = [c for c in codes.HedgeReasonCode if c is not codes.HedgeReasonCode.NONE]
    assert [c.name for c in named] == [r.name for r in HedgeReason]
    assert [int(c) for c in named] == list(range(len(HedgeReason)))


def test_metric_trigger_codes_do_not_collide():
    metric = [int(c) for c in codes.MetricCode if c < codes.BOOK_SCOPE]
    book = [c + codes.BOOK_SCOPE for c in metric]
    signals = [int(s) for s in codes.TriggerSignal]
    every = metric + book + signals + [int(codes.MetricCode.VAR)]
    assert len(every) == len(set(every))
    assert max(metric) < codes.BOOK_SCOPE <= min(book)
    assert max(book) < min(s for s in signals if s >= 0) and max(signals) < codes.MetricCode.VAR


def test_controller_kernel_constants():
    pairs = _pairs(ck, "", codes.Layer)
    pairs += _pairs(
        ck, "M_", codes.MetricCode,
        {"GAMMA_DOLLARS_1PCT": "M_GAMMA", "VEGA_PER_VOL_POINT": "M_VEGA", "WORST_SCENARIO_LOSS": "M_WSL",
         "DAILY_LOSS": "M_DAILY", "VAR": "VAR"},
    )  # fmt: skip
    pairs += _pairs(ck, "T_", codes.TriggerSignal)
    pairs += _pairs(ck, "EV_", codes.EventCode)
    pairs += _pairs(ck, "S_", codes.SideStatus)
    pairs += _pairs(ck, "F_", codes.DecisionFlag)
    pairs += [("BOOK", ck.BOOK, codes.BOOK_SCOPE), ("N_METRICS", ck.N_METRICS, codes.BOOK_SCOPE)]
    for const, value, expected in pairs:
        assert value == expected and type(value) is int, const


def test_quoting_kernel_constants():
    pairs = _pairs(qk, "", codes.Layer)
    pairs += _pairs(qk, "SKEW_", codes.SkewCode)
    pairs += _pairs(qk, "MODE_", codes.HedgeModeCode)
    pairs += _pairs(qk, "TARGET_", codes.HedgeTargetCode)
    pairs += _pairs(qk, "REASON_", codes.HedgeReasonCode)
    for const, value, expected in pairs:
        assert value == expected and type(value) is int, const


def test_simulator_kernel_constants():
    # the simulator's own kind codes: put 0, call 1, the reverse of Kind's (call 0, put 1)
    pairs = _pairs(sg, "K_", codes.SimKind)
    pairs += _pairs(sg, "Q_", codes.QuotingCode, {"AVELLANEDA_STOIKOV": "Q_AS"})
    pairs += _pairs(rec, "E_", codes.EventCode)
    for const, value, expected in pairs:
        assert value == expected, const
    assert rec.NE == ck.NEV
    assert int(codes.SimKind.CALL) != int(Kind.CALL) and int(codes.SimKind.PUT) != int(Kind.PUT)


def test_quoting_codes_are_the_simulator_config_spellings():
    assert [m.name for m in Quoting] == [c.name for c in codes.QuotingCode]


def test_time_units():
    assert units.SECONDS_PER_DAY == 86_400.0 and units.DAYS_PER_YEAR == 365.0
    assert units.SECONDS_PER_YEAR == 31_536_000.0 == SECONDS_PER_YEAR


def test_trader_units_against_hand_figures():
    # a call of 100 shares: gamma 0.02 at S 200, vega 40, theta -36.5 per year, rho 10, vanna 0.5, volga 30
    assert units.gamma_dollars_1pct_py(100.0, 0.02, 200.0) == pytest.approx(800.0, rel=1e-15)
    assert units.gamma_per_share_py(8.0, 200.0) == pytest.approx(0.02, rel=1e-15)
    assert units.vega_per_vol_point_py(100.0, 40.0) == 40.0
    assert units.vega_per_unit_vol_py(0.4) == pytest.approx(40.0, rel=1e-15)
    assert units.theta_per_day_py(100.0, -36.5) == pytest.approx(-10.0, rel=1e-15)
    assert units.rho_per_pct_py(100.0, 10.0) == 10.0
    assert units.vanna_per_vol_point_py(100.0, 0.5) == 0.5
    assert units.volga_per_vol_point2_py(100.0, 30.0) == pytest.approx(0.3, rel=1e-15)
    args = (100.0, 0.0123, 187.3)
    for name, compiled in units.COMPILED.items():
        py = getattr(units, name)
        n = len(inspect.signature(py).parameters)
        assert compiled(*args[:n]) == py(*args[:n]), name
