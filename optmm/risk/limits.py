"""Risk limits: what the risk controller compares the book's exposures with.

A :class:`LimitSet` is read from a TOML file (``scenarios/limits/*.toml``; the format is described in
``docs/controller.md``, section "Limit sets") with :meth:`LimitSet.load`, or built from a dictionary of
the same shape with :meth:`LimitSet.from_dict`. Each :class:`Limit` bounds one :class:`Metric` in one
:class:`Scope` (a contract, an underlying, or the whole book) with a **hard** level and a lower **soft**
level, both absolute and positive, in the trader units of :func:`optmm.risk.exposures`:

==========================  ===========================================  ===========================
metric (the TOML key)       what is bounded                              scopes
==========================  ===========================================  ===========================
``position``                \\|contracts\\| held in one contract            contract
``delta_shares``            \\|delta\\| in shares of the underlying         underlying
``delta_dollars``           \\|delta\\| x spot, in currency                 underlying, book
``gamma_dollars_1pct``      \\|change of delta_dollars for a 1% move\\|     underlying, book
``vega_per_vol_point``      \\|value change for +1 vol point\\|             underlying, book
``worst_scenario_loss``     loss in the worst cell of the scenario grid  underlying, book
``daily_loss``              loss of the day's P&L (a positive number)    book
``drawdown``                fall of the day's P&L from its high-water    book
``var``                     historical VaR of the book at ``level``      book
==========================  ===========================================  ===========================

Limits bound absolute values (\\|delta\\| <= limit) except the four P&L limits, which bound losses
(a positive number). A ``var`` limit also names its confidence level
(``var = { hard = H, level = 0.99 }``, default :data:`DEFAULT_VAR_LEVEL`); the scenarios it is
measured on are the controller's (:meth:`optmm.risk.RiskController.set_var_scenarios`). Shares do
not add across underlyings, hence no book ``delta_shares``; a book level for every other Greek is
the sum over underlyings. A per-underlying limit may exceed the book
limit of the same metric (underlyings net out in the book); no consistency between scopes is
required.

Every refusal is a :class:`LimitError` (a ``ValueError``) whose message names the file, the table and
the field, ``"<file>: [table] field 'x': problem"``; a limit set is built whole or not at all.
"""

from __future__ import annotations

import enum
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from optmm._config import Config, is_finite, is_real_number, read_toml, setting

__all__ = [
    "DEFAULT_SCENARIO_AFTER_FILL_VEGA",
    "DEFAULT_SCENARIO_EVERY_S",
    "DEFAULT_SCENARIO_SPOT",
    "DEFAULT_SCENARIO_VOL",
    "DEFAULT_SOFT_FRACTION",
    "DEFAULT_SOFT_SIZE_FACTOR",
    "DEFAULT_SOFT_SPREAD_FACTOR",
    "DEFAULT_STALE_AFTER_MS",
    "DEFAULT_VAR_LEVEL",
    "MAX_SCENARIO_CELLS",
    "Limit",
    "LimitError",
    "LimitSet",
    "Metric",
    "Scope",
]

DEFAULT_SOFT_FRACTION = 0.8
DEFAULT_SOFT_SPREAD_FACTOR = 1.5
DEFAULT_SOFT_SIZE_FACTOR = 0.5
DEFAULT_SCENARIO_SPOT: tuple[float, ...] = (-0.10, -0.05, 0.0, 0.05, 0.10)
DEFAULT_SCENARIO_VOL: tuple[float, ...] = (-0.05, 0.0, 0.05)
DEFAULT_SCENARIO_EVERY_S = 60.0
DEFAULT_SCENARIO_AFTER_FILL_VEGA = math.inf
DEFAULT_STALE_AFTER_MS = 1000.0
DEFAULT_VAR_LEVEL = 0.99
MAX_SCENARIO_CELLS = 2_500
"""The most cells (spot x vol shocks) of a limit set's scenario grid: every contract is revalued on
every cell each ``every_s`` seconds, in the controller and in every simulation step that recomputes."""

_TOP = "top level"


class LimitError(ValueError):
    """A limit set that cannot be used: ``"<file>: [table] field 'x': problem"``."""


class Scope(enum.Enum):
    """Where a limit applies: one contract, one underlying (or every underlying), the whole book."""

    CONTRACT = "contract"
    UNDERLYING = "underlying"
    BOOK = "book"


class Metric(enum.Enum):
    """A bounded quantity; the value is the TOML key. Units are those of :func:`optmm.risk.exposures`."""

    POSITION = "position"
    DELTA_SHARES = "delta_shares"
    DELTA_DOLLARS = "delta_dollars"
    GAMMA_DOLLARS_1PCT = "gamma_dollars_1pct"
    VEGA_PER_VOL_POINT = "vega_per_vol_point"
    WORST_SCENARIO_LOSS = "worst_scenario_loss"
    DAILY_LOSS = "daily_loss"
    DRAWDOWN = "drawdown"
    VAR = "var"

    @property
    def scopes(self) -> frozenset[Scope]:
        """The scopes this metric may be limited in."""
        return _SCOPES[self]

    @property
    def is_loss(self) -> bool:
        """True for the P&L limits, which bound a loss (a positive number) rather than an absolute value."""
        return self in (Metric.WORST_SCENARIO_LOSS, Metric.DAILY_LOSS, Metric.DRAWDOWN, Metric.VAR)

    @property
    def unit(self) -> str:
        """The unit of the metric and of its limits, in words."""
        return _UNITS[self]


_SCOPES: dict[Metric, frozenset[Scope]] = {
    Metric.POSITION: frozenset({Scope.CONTRACT}),
    Metric.DELTA_SHARES: frozenset({Scope.UNDERLYING}),
    Metric.DELTA_DOLLARS: frozenset({Scope.UNDERLYING, Scope.BOOK}),
    Metric.GAMMA_DOLLARS_1PCT: frozenset({Scope.UNDERLYING, Scope.BOOK}),
    Metric.VEGA_PER_VOL_POINT: frozenset({Scope.UNDERLYING, Scope.BOOK}),
    Metric.WORST_SCENARIO_LOSS: frozenset({Scope.UNDERLYING, Scope.BOOK}),
    Metric.DAILY_LOSS: frozenset({Scope.BOOK}),
    Metric.DRAWDOWN: frozenset({Scope.BOOK}),
    Metric.VAR: frozenset({Scope.BOOK}),
}
_UNITS: dict[Metric, str] = {
    Metric.POSITION: "contracts",
    Metric.DELTA_SHARES: "shares of the underlying",
    Metric.DELTA_DOLLARS: "currency (delta x spot)",
    Metric.GAMMA_DOLLARS_1PCT: "currency of delta_dollars per 1% spot move",
    Metric.VEGA_PER_VOL_POINT: "currency per vol point",
    Metric.WORST_SCENARIO_LOSS: "currency (loss, positive)",
    Metric.DAILY_LOSS: "currency (loss, positive)",
    Metric.DRAWDOWN: "currency (loss from the high-water mark, positive)",
    Metric.VAR: "currency (historical VaR of the book's P&L, loss, positive)",
}
_METRIC_ORDER = {m: i for i, m in enumerate(Metric)}
_SCOPE_ORDER = {s: i for i, s in enumerate(Scope)}
_METRIC_BY_KEY = {m.value: m for m in Metric}

_TOP_NUMBERS = ("soft_fraction", "soft_spread_factor", "soft_size_factor", "stale_after_ms")
_TABLES = ("contract", "underlying", "book", "soft", "scenario")
_TOP_KEYS = ("name", *_TOP_NUMBERS, *_TABLES)
_SCENARIO_KEYS = ("spot", "vol", "every_s", "after_fill_vega")
_LEVEL_KEYS = ("hard", "soft")
_VAR_KEYS = (*_LEVEL_KEYS, "level")


def _table_name(scope: Scope, underlying: str | None) -> str:
    if scope is Scope.UNDERLYING and underlying is not None:
        return f"underlying.{underlying}"
    return scope.value


def _check_levels(hard: Any, soft: Any) -> str | None:
    """The problem with a (hard, soft) pair, or None."""
    if not is_real_number(hard):
        return f"hard level must be a number (got {hard!r})"
    if not is_real_number(soft):
        return f"soft level must be a number (got {soft!r})"
    if not (is_finite(hard) and hard > 0.0):
        return f"the limit must be a finite number > 0 (got {hard!r})"
    if not (is_finite(soft) and 0.0 < soft < hard):
        return f"the soft level must be > 0 and < the hard level {hard!r} (got {soft!r})"
    return None


@dataclass(frozen=True, kw_only=True)
class Limit:
    """One limit: a metric bounded in a scope.

    Attributes
    ----------
    metric : Metric
        What is bounded.
    scope : Scope
        Where: a contract (``POSITION`` only), an underlying, or the book.
    underlying : str or None
        For scope ``UNDERLYING``: the underlying this limit overrides the default for, or ``None`` for
        the default that applies to every underlying without an override. ``None`` in other scopes.
    hard : float
        The hard level, > 0, in the metric's unit (:attr:`Metric.unit`): \\|value\\| (or the loss) must
        not exceed it; beyond it the controller quotes reduce-only.
    soft : float
        The soft level, an absolute level with 0 < soft < hard (the soft fraction times ``hard`` when
        read from a file): beyond it the controller widens and shrinks its quotes.
    """

    metric: Metric
    scope: Scope
    underlying: str | None = None
    hard: float
    soft: float

    def __post_init__(self) -> None:
        try:
            metric = Metric(self.metric)
            scope = Scope(self.scope)
        except ValueError as exc:
            raise LimitError(f"Limit: {exc}") from None
        object.__setattr__(self, "metric", metric)
        object.__setattr__(self, "scope", scope)
        where = f"Limit {metric.value} [{_table_name(scope, self.underlying)}]"
        if scope not in metric.scopes:
            raise LimitError(
                f"{where}: {metric.value} is not a {scope.value} limit "
                f"(allowed in: {', '.join(sorted(s.value for s in metric.scopes))})"
            )
        if self.underlying is not None:
            if scope is not Scope.UNDERLYING:
                raise LimitError(f"{where}: underlying must be None outside scope underlying")
            if not isinstance(self.underlying, str) or not self.underlying:
                raise LimitError(f"{where}: underlying must be a non-empty string or None")
        problem = _check_levels(self.hard, self.soft)
        if problem:
            raise LimitError(f"{where}: {problem}")
        object.__setattr__(self, "hard", float(self.hard))
        object.__setattr__(self, "soft", float(self.soft))

    @property
    def soft_fraction(self) -> float:
        """``soft / hard``."""
        return self.soft / self.hard


def _sort_key(limit: Limit) -> tuple[int, str, int]:
    return (_SCOPE_ORDER[limit.scope], limit.underlying or "", _METRIC_ORDER[limit.metric])


@dataclass(frozen=True, kw_only=True)
class LimitSet(Config):
    """A named set of limits and the controller's settings that go with them.

    Build one with :meth:`load` (TOML) or :meth:`from_dict`; the constructor validates everything and
    refuses (:class:`LimitError`) a set that :meth:`from_dict` would refuse.

    Attributes
    ----------
    name : str
        The set's name (``name`` in the file; default: the file's stem).
    limits : tuple of Limit
        Every limit, in a canonical order (scope contract, underlying, book; then underlying; then
        metric). At most one limit per (metric, scope, underlying); at least one limit.
    soft_spread_factor : float
        Spread multiplier in the soft layer, >= 1 (default 1.5).
    soft_size_factor : float
        Size multiplier in the soft layer, in (0, 1] (default 0.5).
    scenario_spot : tuple of float
        Relative spot shocks of the grid that measures ``worst_scenario_loss`` (-0.10 = -10%), each
        > -1; at least one (default -10%, -5%, 0, +5%, +10%).
    scenario_vol : tuple of float
        Absolute vol shocks of that grid, in decimals of vol (0.05 = +5 vol points); at least one
        (default -5, 0, +5 points).
    scenario_every_s : float
        How often the worst scenario loss is recomputed, in seconds, > 0 (default 60).
    scenario_after_fill_vega : float
        Also recompute it after a fill whose \\|vega per vol point\\| is at least this, in currency per
        vol point, > 0 (default ``inf``: never).
    stale_after_ms : float
        Market data older than this, in milliseconds, pulls the underlying's quotes, > 0 (default 1000).
    var_level : float
        Confidence level of the book's ``var`` limit, in (0, 1) (default 0.99); only with a ``var``
        limit (``level`` in its table).
    source : str
        Where the set came from (the file path, ``"<dict>"``); not part of the content or of equality.
    content_hash : str
        SHA-256 (hex) of the canonical JSON (sorted keys, non-finite numbers as text) of
        :meth:`to_dict`: equal settings give equal hashes whatever the file's layout.
    """

    _WHERE: ClassVar[dict[str, tuple[str, str]]] = {
        "scenario_spot": ("scenario", "'spot'"),
        "scenario_vol": ("scenario", "'vol'"),
        "scenario_every_s": ("scenario", "'every_s'"),
        "scenario_after_fill_vega": ("scenario", "'after_fill_vega'"),
        "var_level": ("book", "'var' level"),
    }

    name: str
    limits: tuple[Limit, ...]
    soft_spread_factor: float = setting(DEFAULT_SOFT_SPREAD_FACTOR, ge=1)
    soft_size_factor: float = setting(DEFAULT_SOFT_SIZE_FACTOR, gt=0, le=1)
    scenario_spot: tuple[float, ...] = setting(DEFAULT_SCENARIO_SPOT, gt=-1)
    scenario_vol: tuple[float, ...] = DEFAULT_SCENARIO_VOL
    scenario_every_s: float = setting(DEFAULT_SCENARIO_EVERY_S, gt=0, unit="s")
    scenario_after_fill_vega: float = setting(DEFAULT_SCENARIO_AFTER_FILL_VEGA, gt=0, inf_ok=True)
    stale_after_ms: float = setting(DEFAULT_STALE_AFTER_MS, gt=0, unit="ms")
    var_level: float = setting(DEFAULT_VAR_LEVEL, gt=0, lt=1)
    source: str = field(default="<direct>", compare=False)
    _index: dict[tuple[Metric, Scope, str | None], Limit] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def __repr__(self) -> str:
        return (
            f"LimitSet({self.name!r}, {len(self.limits)} limits, grid {len(self.scenario_spot)}x"
            f"{len(self.scenario_vol)}, hash {self.content_hash[:8]}, source {self.source!r})"
        )

    # ----------------------------------------------------------------------------------------------
    # construction and validation

    def where(self, name: str) -> str:
        table, key = self._WHERE.get(name, (_TOP, repr(name)))
        return f"{self.source}: [{table}] field {key}"

    def __post_init__(self) -> None:
        try:
            super().__post_init__()
        except LimitError:
            raise
        except ValueError as exc:
            raise LimitError(str(exc)) from None

    def check(self) -> None:
        src = self.source

        def fail(table: str, key: str, problem: str) -> LimitError:
            return LimitError(f"{src}: [{table}] field {key!r}: {problem}")

        limits = tuple(self.limits) if isinstance(self.limits, Iterable) else self.limits
        if not isinstance(limits, tuple) or not all(isinstance(lim, Limit) for lim in limits):
            raise fail(_TOP, "limits", "must be a sequence of Limit")
        if not limits:
            raise LimitError(f"{src}: no limits: give at least one in [contract], [underlying] or [book]")
        index: dict[tuple[Metric, Scope, str | None], Limit] = {}
        for lim in limits:
            ident = (lim.metric, lim.scope, lim.underlying)
            if ident in index:
                raise fail(_table_name(lim.scope, lim.underlying), lim.metric.value, "defined twice")
            index[ident] = lim
        object.__setattr__(self, "limits", tuple(sorted(limits, key=_sort_key)))
        object.__setattr__(self, "_index", index)
        n_spot, n_vol = len(self.scenario_spot), len(self.scenario_vol)
        if n_spot * n_vol > MAX_SCENARIO_CELLS:
            raise LimitError(
                f"{src}: [scenario] fields 'spot' and 'vol': {n_spot:,} x {n_vol:,} = {n_spot * n_vol:,} "
                f"scenarios, more than the bound of {MAX_SCENARIO_CELLS:,} (every contract is revalued on "
                "each)"
            )
        if self.var_level != DEFAULT_VAR_LEVEL and (Metric.VAR, Scope.BOOK, None) not in index:
            raise fail(_TOP, "var_level", f"{self.var_level!r} is given but there is no var limit in [book]")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> LimitSet:
        """Read a limit set from a TOML file.

        Parameters
        ----------
        path : str or path-like
            The ``.toml`` file (format: ``docs/controller.md``, "Limit sets").

        Returns
        -------
        LimitSet
            With ``source`` the path as given, and ``name`` the file's stem unless the file names it.

        Raises
        ------
        LimitError
            The file cannot be read or is not valid TOML, or anything :meth:`from_dict` refuses; the
            message names the file, the table and the field.
        """
        where = os.fspath(path)
        try:
            doc = read_toml(where, "limit file")
        except ValueError as exc:
            raise LimitError(str(exc)) from None
        return cls.from_dict(doc, source=where, default_name=Path(where).stem)

    @classmethod
    def from_dict(
        cls, d: Mapping[str, Any], *, source: str = "<dict>", default_name: str | None = None
    ) -> LimitSet:
        """Build a limit set from a dictionary shaped like the TOML file (or like :meth:`to_dict`).

        Parameters
        ----------
        d : mapping
            Top-level keys ``name``, ``soft_fraction``, ``soft_spread_factor``, ``soft_size_factor``,
            ``stale_after_ms`` and the tables ``contract``, ``underlying`` (metric keys, and one
            sub-table of overrides per underlying), ``book``, ``soft`` (per-metric soft fractions) and
            ``scenario`` (``spot``, ``vol``, ``every_s``, ``after_fill_vega``). A limit is a number
            (the hard level; soft = its fraction x hard) or a table ``{hard = H, soft = S}`` with an
            absolute soft level; the ``var`` table may also give ``level``, the VaR's confidence
            level in (0, 1) (default 0.99).
        source : str
            Named in error messages and kept as :attr:`LimitSet.source`.
        default_name : str, optional
            The name when ``d`` has none (default ``"limits"``).

        Returns
        -------
        LimitSet

        Raises
        ------
        LimitError
            Unknown table, metric or key; a metric in a scope where it does not belong
            (``delta_shares`` in [book], ``daily_loss`` in [underlying], ``position`` outside
            [contract]); a non-positive or non-finite limit; a soft fraction outside (0, 1) or a soft
            level not in (0, hard); ``soft_spread_factor`` < 1; ``soft_size_factor`` outside (0, 1];
            an empty scenario grid; a value of the wrong type; no limit at all.
        """
        src = source

        def fail(table: str, key: str, problem: str) -> LimitError:
            return LimitError(f"{src}: [{table}] field {key!r}: {problem}")

        def number(table: str, key: str, value: Any, what: str = "a number") -> float:
            if not is_real_number(value):
                raise fail(table, key, f"must be {what} (got {value!r})")
            if not is_finite(value) and isinstance(value, int | np.integer):  # too large for a float
                raise fail(table, key, f"must be a finite number (got {value!r})")
            return float(value)

        if not isinstance(d, Mapping):
            raise LimitError(f"{src}: a limit set must be a table (got {type(d).__name__})")
        for key in d:
            if key not in _TOP_KEYS:
                if isinstance(d[key], Mapping):
                    raise LimitError(f"{src}: [{key}]: unknown table (allowed: {', '.join(_TABLES)})")
                raise fail(_TOP, key, f"unknown key (allowed: {', '.join(_TOP_KEYS)})")
        for key in _TABLES:
            if key in d and not isinstance(d[key], Mapping):
                raise fail(_TOP, key, f"must be a table (got {d[key]!r})")

        name = d.get("name", default_name if default_name is not None else "limits")
        if not isinstance(name, str) or not name.strip():
            raise fail(_TOP, "name", f"must be a non-empty string (got {name!r})")

        # soft fractions: [soft] per metric, else the top-level soft_fraction, else 0.8
        def fraction(table: str, key: str, value: Any) -> float:
            f = number(table, key, value, "a number in (0, 1)")
            if not 0.0 < f < 1.0:
                raise fail(table, key, f"a soft fraction must be in (0, 1) (got {value!r})")
            return f

        default_fraction = DEFAULT_SOFT_FRACTION
        if "soft_fraction" in d:
            default_fraction = fraction(_TOP, "soft_fraction", d["soft_fraction"])
        fractions: dict[Metric, float] = {}
        for key, value in d.get("soft", {}).items():
            if key not in _METRIC_BY_KEY:
                raise fail("soft", key, f"unknown metric (allowed: {', '.join(_METRIC_BY_KEY)})")
            fractions[_METRIC_BY_KEY[key]] = fraction("soft", key, value)

        def limit(scope: Scope, underlying: str | None, key: str, value: Any) -> Limit:
            table = _table_name(scope, underlying)
            metric = _METRIC_BY_KEY.get(key)
            if metric is None:
                raise fail(table, key, f"unknown metric (allowed: {', '.join(_METRIC_BY_KEY)})")
            if scope not in metric.scopes:
                allowed = ", ".join(f"[{s.value}]" for s in Scope if s in metric.scopes)
                raise fail(table, key, f"not allowed in [{scope.value}]; {key} belongs in {allowed}")
            if isinstance(value, Mapping):
                allowed_keys = _VAR_KEYS if metric is Metric.VAR else _LEVEL_KEYS
                for k in value:
                    if k not in allowed_keys:
                        raise fail(
                            table, key, f"unknown key {k!r} in the limit (allowed: {', '.join(allowed_keys)})"
                        )
                if "level" in value:
                    settings["var_level"] = number(table, key, value["level"], "a level in (0, 1)")
                    if not 0.0 < settings["var_level"] < 1.0:
                        raise fail(table, key, f"level must be in (0, 1) (got {value['level']!r})")
                if "hard" not in value:
                    raise fail(table, key, "a limit table needs 'hard'")
                hard = number(table, key, value["hard"])
                soft = (
                    number(table, key, value["soft"])
                    if "soft" in value
                    else fractions.get(metric, default_fraction) * hard
                )
            else:
                hard = number(table, key, value)
                soft = fractions.get(metric, default_fraction) * hard
            problem = _check_levels(hard, soft)
            if problem:
                raise fail(table, key, problem)
            return Limit(metric=metric, scope=scope, underlying=underlying, hard=hard, soft=soft)

        settings: dict[str, Any] = {}
        limits: list[Limit] = []
        for key, value in d.get("contract", {}).items():
            limits.append(limit(Scope.CONTRACT, None, key, value))
        for key, value in d.get("underlying", {}).items():
            if key in _METRIC_BY_KEY or not isinstance(value, Mapping):
                limits.append(limit(Scope.UNDERLYING, None, key, value))
                continue
            if not key.strip():
                raise fail("underlying", key, "an underlying's name must not be empty")
            for metric_key, level in value.items():
                if metric_key not in _METRIC_BY_KEY and isinstance(level, Mapping):
                    raise fail(f"underlying.{key}", metric_key, "nested tables are not allowed here")
                limits.append(limit(Scope.UNDERLYING, key, metric_key, level))
        for key, value in d.get("book", {}).items():
            limits.append(limit(Scope.BOOK, None, key, value))

        for key in _TOP_NUMBERS[1:]:
            if key in d:
                settings[key] = number(_TOP, key, d[key])
        scenario = d.get("scenario", {})
        for key, value in scenario.items():
            if key not in _SCENARIO_KEYS:
                raise fail("scenario", key, f"unknown key (allowed: {', '.join(_SCENARIO_KEYS)})")
            if key in ("spot", "vol"):
                if not isinstance(value, list | tuple):
                    raise fail("scenario", key, f"must be a list of numbers (got {value!r})")
                for v in value:
                    number("scenario", key, v, "a list of numbers")
                settings[f"scenario_{key}"] = tuple(value)
            else:
                settings[f"scenario_{key}"] = number("scenario", key, value)
        return cls(name=name, limits=tuple(limits), source=src, **settings)

    # ----------------------------------------------------------------------------------------------
    # output

    def to_dict(self) -> dict[str, Any]:
        """The settings as a dictionary that :meth:`from_dict` reads back into an equal set.

        Every limit is written as ``{"hard": H, "soft": S}`` with absolute levels (the ``var`` limit
        also with its ``level``), so the dictionary does not depend on how the file expressed the soft
        levels; ``source`` is not included.

        Returns
        -------
        dict
            Plain Python values (``scenario.after_fill_vega`` may be ``inf``).
        """
        out: dict[str, Any] = {
            "name": self.name,
            "soft_spread_factor": self.soft_spread_factor,
            "soft_size_factor": self.soft_size_factor,
            "stale_after_ms": self.stale_after_ms,
        }
        for lim in self.limits:
            table = out.setdefault(lim.scope.value, {})
            if lim.scope is Scope.UNDERLYING and lim.underlying is not None:
                table = table.setdefault(lim.underlying, {})
            table[lim.metric.value] = {"hard": lim.hard, "soft": lim.soft}
            if lim.metric is Metric.VAR:
                table[lim.metric.value]["level"] = self.var_level
        out["scenario"] = {
            "spot": list(self.scenario_spot),
            "vol": list(self.scenario_vol),
            "every_s": self.scenario_every_s,
            "after_fill_vega": self.scenario_after_fill_vega,
        }
        return out

    def to_frame(self) -> pd.DataFrame:
        """One row per limit: scope, underlying ("" = every underlying / n.a.), metric, hard, soft, unit."""
        return pd.DataFrame(
            {
                "scope": [lim.scope.value for lim in self.limits],
                "underlying": [lim.underlying or "" for lim in self.limits],
                "metric": [lim.metric.value for lim in self.limits],
                "hard": [lim.hard for lim in self.limits],
                "soft": [lim.soft for lim in self.limits],
                "unit": [lim.metric.unit for lim in self.limits],
            }
        )

    # ----------------------------------------------------------------------------------------------
    # look-ups

    @property
    def underlyings(self) -> tuple[str, ...]:
        """The underlyings with an override of their own, sorted."""
        return tuple(sorted({lim.underlying for lim in self.limits if lim.underlying is not None}))

    def for_underlying(self, metric: Metric, underlying: str) -> Limit | None:
        """The limit on ``metric`` for ``underlying``: its override, else the default, else None.

        Parameters
        ----------
        metric : Metric
        underlying : str

        Returns
        -------
        Limit or None
            None also for a metric that has no underlying scope (``position``, ``daily_loss``, ...).
        """
        return self._index.get((metric, Scope.UNDERLYING, underlying)) or self._index.get(
            (metric, Scope.UNDERLYING, None)
        )

    def book(self, metric: Metric) -> Limit | None:
        """The book-wide limit on ``metric``, or None."""
        return self._index.get((metric, Scope.BOOK, None))

    def contract(self, metric: Metric = Metric.POSITION) -> Limit | None:
        """The per-contract limit on ``metric`` (only ``position`` has one), or None."""
        return self._index.get((metric, Scope.CONTRACT, None))

    def levels(self, metric: Metric, underlyings: Iterable[str]) -> tuple[np.ndarray, np.ndarray]:
        """Hard and soft levels of ``metric`` for each of ``underlyings`` (``inf`` where no limit).

        Parameters
        ----------
        metric : Metric
        underlyings : iterable of str

        Returns
        -------
        (hard, soft) : tuple of float64 arrays
            Aligned with ``underlyings``, in the metric's unit.
        """
        found = [self.for_underlying(metric, u) for u in underlyings]
        hard = np.array([lim.hard if lim else np.inf for lim in found], dtype=np.float64)
        soft = np.array([lim.soft if lim else np.inf for lim in found], dtype=np.float64)
        return hard, soft
