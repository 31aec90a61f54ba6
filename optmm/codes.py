"""The integer codes of optmm, each defined once.

The compiled kernels pass layers, kinds, metrics, modes and reasons as integers. Every such code is an
:class:`enum.IntEnum` here; a kernel module takes its module-level constants from these enums
(``KILL = int(Layer.KILL)``), which numba reads as compile-time constants, and the Python side converts
with the same enums. ``tests/core/test_codes.py`` checks every kernel's constants against them.

The settings that users spell in configuration files are string-valued enums where they are used
(:class:`optmm.quoting.SkewMode`, :class:`optmm.quoting.HedgeMode`, :class:`optmm.quoting.HedgeTarget`,
:class:`optmm.quoting.HedgeReason`, :class:`optmm.risk.Metric`): the value is the spelling. Their
integer code is the member of the same name here (``SkewCode[config.skew.name]``), and the test checks
that the names match one for one.

Two kind codes exist: :class:`Kind` (what a position holds, stored in :attr:`optmm.book.Book.kind`:
call 0, put 1) and :class:`SimKind` (the simulator's instruments: put 0, call 1, the underlying 2). The
option codes are the reverse of each other; convert by name (``Kind[SimKind.CALL.name]``), never by
value.
"""

from __future__ import annotations

import enum

__all__ = [
    "BOOK_SCOPE",
    "DecisionFlag",
    "EventCode",
    "HedgeModeCode",
    "HedgeReasonCode",
    "HedgeTargetCode",
    "Kind",
    "Layer",
    "MetricCode",
    "QuotingCode",
    "SideStatus",
    "SimKind",
    "SkewCode",
    "TriggerSignal",
]


class Layer(enum.IntEnum):
    """The risk controller's layers; a lower value takes precedence (the first that fires decides)."""

    KILL = 0
    TOXIC = 1
    STALE = 2
    HARD = 3
    SOFT = 4
    NORMAL = 5


class Kind(enum.IntEnum):
    """What a position holds; the codes are stored in :attr:`optmm.book.Book.kind` as int8."""

    CALL = 0
    PUT = 1
    STOCK = 2
    """The underlying itself (shares, or a future used as a hedge)."""


class SimKind(enum.IntEnum):
    """The simulator's instrument kinds (``optmm.sim._groups.K_*``); the option codes are the reverse of
    :class:`Kind`'s."""

    PUT = 0
    CALL = 1
    UNDERLYING = 2


class MetricCode(enum.IntEnum):
    """The risk controller's metric codes (the members of :class:`optmm.risk.limits.Metric` of the same
    name). The first eight have a limit column per scope; a book-scope limit's code is the metric's plus
    :data:`BOOK_SCOPE`. ``VAR``, limited in the book scope only, comes after :class:`TriggerSignal`'s
    codes so that the others keep theirs."""

    POSITION = 0
    DELTA_SHARES = 1
    DELTA_DOLLARS = 2
    GAMMA_DOLLARS_1PCT = 3
    VEGA_PER_VOL_POINT = 4
    WORST_SCENARIO_LOSS = 5
    DAILY_LOSS = 6
    DRAWDOWN = 7
    VAR = 19


BOOK_SCOPE = 8
"""Added to a :class:`MetricCode` (below ``VAR``) for the metric's limit in the book scope."""

BOOK_LABEL = "book"
"""The name of the whole book's row or column in risk tables (exposures, scenarios and stresses,
utilisation, the controller's state), beside the underlyings': no underlying may take it."""


class TriggerSignal(enum.IntEnum):
    """The controller's triggers that are not a metric's limit (after the metric codes of both scopes)."""

    NONE = -1
    TOXIC = 16
    STALE = 17
    KILL = 18


class SideStatus(enum.IntEnum):
    """What the controller's decision did to one side of a quote."""

    OK = 0
    CUT = 1
    DROP = 2
    REDUCE = 3


class DecisionFlag(enum.IntFlag):
    """Bits of the controller kernel's returned flags."""

    CHANGED = 1
    BID = 2
    ASK = 4
    INVALID = 8


class EventCode(enum.IntEnum):
    """The type of an event row a compiled loop writes for the controller's audit trail."""

    DECIDE = 1
    LAYER = 2
    TOXIC = 3
    KILL = 4


class SkewCode(enum.IntEnum):
    """The codes of :class:`optmm.quoting.SkewMode` (same names)."""

    GREEKS = 0
    LINEAR = 1
    NONE = 2


class HedgeModeCode(enum.IntEnum):
    """The codes of :class:`optmm.quoting.HedgeMode` (same names)."""

    FIXED_BAND = 0
    WHALLEY_WILMOTT = 1
    TIME = 2


class HedgeTargetCode(enum.IntEnum):
    """The codes of :class:`optmm.quoting.HedgeTarget` (same names)."""

    BAND_EDGE = 0
    ZERO = 1


class HedgeReasonCode(enum.IntEnum):
    """The codes of :class:`optmm.quoting.HedgeReason` (same names); ``NONE``: no order."""

    NONE = -1
    BAND = 0
    SCHEDULE = 1
    HARD = 2
    KILL = 3


class QuotingCode(enum.IntEnum):
    """The simulator's quoting models (``SimConfig.quoting``, the lower-case names)."""

    QUOTER = 0
    AVELLANEDA_STOIKOV = 1
    SYMMETRIC = 2
