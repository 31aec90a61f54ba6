"""Settings of a simulation (:class:`SimConfig`), read from TOML (format: docs/simulation.md).

A configuration file has the tables ``[sim]`` (steps, step length, paths, seed, what to record),
``[chain]`` (what we quote), ``[flow]`` (the order flow), ``[strategy]`` (how we quote and whether we
hedge and pull), ``[quoter]``, ``[hedger]``, ``[toxicity]`` (the settings of
:class:`~optmm.quoting.QuoterConfig`, :class:`~optmm.quoting.HedgerConfig`,
:class:`~optmm.quoting.ToxicityConfig`), ``[limits]`` (a limit set, inline as in a limit file, or
``file = "path"``), one ``[[underlying]]`` table per underlying (its dynamics and vol surface, with
optional ``[[underlying.shock]]`` scheduled moves) and an optional ``correlation`` matrix.

Everything is validated when the configuration is built; an error names the table and the field
(``"sim.toml: [flow] arrival_k: must be > 0 (got -1)"``). :attr:`SimConfig.content_hash` is the SHA-256
of the canonical JSON of :meth:`SimConfig.to_dict`, written into every run's summary.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from optmm._config import (
    MAX_SEED,
    ConfigIO,
    canonical_hash,
    check_bool,
    check_number,
    is_real_number,
    read_toml,
)
from optmm.quoting.hedger import HedgerConfig
from optmm.quoting.quoter import QuoterConfig
from optmm.quoting.toxicity import ToxicityConfig
from optmm.risk.limits import LimitSet
from optmm.units import SECONDS_PER_YEAR as SECONDS_PER_YEAR  # the simulator's engine imports it from here

__all__ = [
    "ChainSettings",
    "FlowSettings",
    "RunSettings",
    "Shock",
    "SimConfig",
    "StrategySettings",
    "UnderlyingModel",
]

TRADING_DAY_S = 23_400.0
"""One trading session (6.5 hours): the unit of "per day" figures."""

MAX_DT_S = 2.0 * TRADING_DAY_S
"""``[sim] dt_s`` must be below this: a trading day must round to at least one step (per-day figures)."""
MAX_STEP_COUNT = 2**53
"""Durations in the configuration are below this many steps (they are counted in steps, exactly)."""
MAX_INSTRUMENTS = 100_000
"""The most instruments a run quotes (underlyings x expiries x strikes x kinds, at most)."""
MAX_STEP_INSTRUMENTS = 50_000_000
"""The most steps x instruments of one path (its order-flow draws: 24 bytes each)."""
MAX_PATH_CELLS = 20_000_000
"""The most steps x paths x (underlyings + 1) of a run (its market paths and result tables: a few
hundred bytes each)."""

QUOTING_MODES = ("quoter", "avellaneda_stoikov", "symmetric")
INSTRUMENTS = ("options", "underlying")
FILL_MODELS = ("poisson", "linear")


def _fail(table: str, name: str, problem: str, value: Any) -> ValueError:
    return ValueError(f"[{table}] {name}: {problem} (got {value!r})")


def _number(obj: Any, table: str, name: str, **bounds: Any) -> None:
    check_number(obj, name, where=f"[{table}] {name}", **bounds)


def _integer(obj: Any, table: str, name: str, *, low: int, high: int | None = None) -> None:
    value = getattr(obj, name)
    whole = isinstance(value, int | np.integer) and is_real_number(value)  # any size: no float overflow
    whole = whole or (isinstance(value, float | np.floating) and math.isfinite(value) and value.is_integer())
    if not (whole and value >= low and (high is None or value <= high)):
        bound = f">= {low}" if high is None else f">= {low} and <= {high}"
        raise _fail(table, name, f"must be a whole number {bound}", value)
    object.__setattr__(obj, name, int(value))


def _boolean(obj: Any, table: str, name: str) -> None:
    check_bool(obj, name, where=f"[{table}] {name}")


def _choice(obj: Any, table: str, name: str, allowed: tuple[str, ...]) -> None:
    value = getattr(obj, name)
    if value not in allowed:
        raise _fail(table, name, f"must be one of {', '.join(allowed)}", value)


def _floats(obj: Any, table: str, name: str, *, low: float, low_open: bool, nonempty: bool = True) -> None:
    value = getattr(obj, name)
    if not isinstance(value, list | tuple) or (nonempty and not value):
        raise _fail(table, name, "must be a non-empty list of numbers", value)
    out = []
    for i, x in enumerate(value):
        try:
            finite = is_real_number(x) and math.isfinite(x)
        except OverflowError:  # an int too large for a float
            finite = False
        if not finite or x < low or (low_open and x == low):
            bound = f"> {low:g}" if low_open else f">= {low:g}"
            raise _fail(table, f"{name}[{i}]", f"must be a finite number {bound}", x)
        out.append(float(x))
    object.__setattr__(obj, name, tuple(out))


@dataclass(frozen=True, kw_only=True)
class RunSettings(ConfigIO):
    """``[sim]``: the clock, the paths and what is recorded.

    Parameters
    ----------
    steps : int
        Number of steps, >= 1 (23,400 one-second steps = a 6.5-hour trading day).
    dt_s : float
        Step length in seconds, > 0 and < 46,800 (:data:`MAX_DT_S`: a 23,400-s trading day is at
        least one step).
    paths : int
        Independent paths, >= 1 (default 1).
    seed : int
        Seed of the ``numpy.random.Generator`` (PCG64) that draws everything, >= 0 and < 2**63
        (default 0).
    markout_s : float
        Horizon of the fills' markouts, seconds, >= 0 (default 5).
    quotes_from_s, quotes_window_s : float
        The zoom window of path 0 whose quotes are recorded: start and length in seconds (default
        the first 600 s).
    """

    steps: int
    dt_s: float
    paths: int = 1
    seed: int = 0
    markout_s: float = 5.0
    quotes_from_s: float = 0.0
    quotes_window_s: float = 600.0

    def __post_init__(self) -> None:
        _integer(self, "sim", "steps", low=1)
        _number(self, "sim", "dt_s", low=0.0, low_open=True)
        if self.dt_s >= MAX_DT_S:
            raise _fail(
                "sim",
                "dt_s",
                f"must be < {MAX_DT_S:,.0f} s (a {TRADING_DAY_S:,.0f}-s trading day is at least one step)",
                self.dt_s,
            )
        _integer(self, "sim", "paths", low=1)
        _integer(self, "sim", "seed", low=0, high=MAX_SEED)
        for name in ("markout_s", "quotes_from_s", "quotes_window_s"):
            _number(self, "sim", name, low=0.0)


@dataclass(frozen=True, kw_only=True)
class ChainSettings(ConfigIO):
    """``[chain]``: the instruments quoted on every underlying.

    Parameters
    ----------
    instrument : str
        ``"options"`` (a chain of calls and puts) or ``"underlying"`` (the underlying itself: one
        quoted instrument per underlying, as in Avellaneda–Stoikov).
    expiries_days : list of float
        Days to expiry at the start, > 0 (options).
    moneyness : list of float
        Strikes as fractions of the starting spot, > 0; rounded to ``strike_step`` (duplicates
        dropped).
    strike_step : float
        Strike grid, > 0 (default 1).
    calls, puts : bool
        Which kinds to quote (default both).
    multiplier : float
        Units of the underlying per contract, > 0 (default 100; 1 for the underlying itself).
    """

    instrument: str = "options"
    expiries_days: tuple[float, ...] = (30.0,)
    moneyness: tuple[float, ...] = (0.9, 0.95, 1.0, 1.05, 1.1)
    strike_step: float = 1.0
    calls: bool = True
    puts: bool = True
    multiplier: float = 100.0

    def __post_init__(self) -> None:
        _choice(self, "chain", "instrument", INSTRUMENTS)
        _floats(self, "chain", "expiries_days", low=0.0, low_open=True)
        _floats(self, "chain", "moneyness", low=0.0, low_open=True)
        _number(self, "chain", "strike_step", low=0.0, low_open=True)
        _boolean(self, "chain", "calls")
        _boolean(self, "chain", "puts")
        _number(self, "chain", "multiplier", low=0.0, low_open=True)
        if self.instrument == "options" and not (self.calls or self.puts):
            raise _fail("chain", "calls", "calls and puts are both false: nothing to quote", self.calls)


@dataclass(frozen=True, kw_only=True)
class FlowSettings(ConfigIO):
    """``[flow]``: market orders that reach our quotes.

    Parameters
    ----------
    arrival_a : float
        A: intensity of uninformed market orders per instrument and side at distance 0 from fair
        value, per second, >= 0 (0: no uninformed flow).
    arrival_k : float
        k: decay of the intensity with our distance δ from fair value, ``λ(δ) = A·exp(−k·δ)``, per unit
        of price, > 0.
    fill_model : str
        ``"poisson"``: a quote is reached within a step with probability ``1 − exp(−λ·dt)``;
        ``"linear"``: with ``min(λ·dt, 1)`` (Avellaneda–Stoikov's discretisation).
    order_size_mean : float
        Mean size of an uninformed order, contracts (or shares), >= 1: ``1 + Poisson(mean − 1)``;
        a fill is the smaller of the order and our quote's size (partial fills).
    informed_rate : float
        Informed orders per second per underlying, >= 0.
    informed_horizon_s : float
        An informed trader knows fair value this far ahead and lifts our ask if it will be above it,
        hits our bid if below, seconds, > 0.
    informed_size : float
        Size of an informed order, > 0.
    latency_steps : int
        Our quotes reach the market this many steps late, >= 0 (stale quotes can be picked off).
    imbalance : float
        One-sided uninformed flow, in [−1, 1]: orders that hit our bids arrive with intensity
        ``A·(1 + imbalance)``, orders that lift our offers with ``A·(1 − imbalance)`` (default 0).
    """

    arrival_a: float = 0.05
    arrival_k: float = 20.0
    fill_model: str = "poisson"
    order_size_mean: float = 1.0
    informed_rate: float = 0.0
    informed_horizon_s: float = 30.0
    informed_size: float = 5.0
    latency_steps: int = 0
    imbalance: float = 0.0

    def __post_init__(self) -> None:
        _number(self, "flow", "arrival_a", low=0.0)
        _number(self, "flow", "arrival_k", low=0.0, low_open=True)
        _choice(self, "flow", "fill_model", FILL_MODELS)
        _number(self, "flow", "order_size_mean", low=1.0)
        _number(self, "flow", "informed_rate", low=0.0)
        _number(self, "flow", "informed_horizon_s", low=0.0, low_open=True)
        _number(self, "flow", "informed_size", low=0.0, low_open=True)
        _integer(self, "flow", "latency_steps", low=0)
        _number(self, "flow", "imbalance", low=-1.0, high=1.0)


@dataclass(frozen=True, kw_only=True)
class StrategySettings(ConfigIO):
    """``[strategy]``: how we quote, and whether we hedge and let toxicity pull quotes.

    Parameters
    ----------
    name : str
        A label for tables and summaries (default ``"base"``).
    quoting : str
        ``"quoter"``: the options quoter (``[quoter]``: its skew mode, spreads, sizes);
        ``"avellaneda_stoikov"``: reservation price ``r = s − q γ σ² (T − t)`` and total spread
        ``γ σ² (T − t) + (2/γ) ln(1 + γ/k)`` (Avellaneda & Stoikov 2008, with σ the underlying's
        arithmetic vol per √second, T − t in seconds, k = ``flow.arrival_k``);
        ``"symmetric"``: ``s ± spread / 2`` around the fair value, ``spread`` fixed.
    hedge : bool
        Delta-hedge with the hedger (default true). Without it the hedger still executes the
        controller's orders: flatten on KILL, hedge on HARD.
    toxicity_pull : bool
        Let the toxicity detector pull an underlying's quotes (default true). Its score widens
        spreads either way (``quoter.toxicity_widen``).
    as_gamma : float
        γ of ``"avellaneda_stoikov"``, > 0.
    spread : float or None
        Total spread of ``"symmetric"``, > 0; None: the time average of the Avellaneda–Stoikov spread
        with ``as_gamma`` (the paper's comparison).
    quote_size : float
        Size of each side for ``"avellaneda_stoikov"`` and ``"symmetric"``, > 0 (default 1).
    """

    name: str = "base"
    quoting: str = "quoter"
    hedge: bool = True
    toxicity_pull: bool = True
    as_gamma: float = 0.1
    spread: float | None = None
    quote_size: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise _fail("strategy", "name", "must be a non-empty string", self.name)
        _choice(self, "strategy", "quoting", QUOTING_MODES)
        _boolean(self, "strategy", "hedge")
        _boolean(self, "strategy", "toxicity_pull")
        _number(self, "strategy", "as_gamma", low=0.0, low_open=True)
        if self.spread is not None:
            _number(self, "strategy", "spread", low=0.0, low_open=True)
        _number(self, "strategy", "quote_size", low=0.0, low_open=True)


@dataclass(frozen=True, kw_only=True)
class Shock(ConfigIO):
    """``[[underlying.shock]]``: a scheduled move (a flash crash and its rebound are two shocks).

    Parameters
    ----------
    at_s : float
        When, seconds from the start (the move happens over the step that ends there), > 0.
    spot : float
        Log move of the spot (-0.05 ≈ −5%); for arithmetic dynamics, a move in price units.
    vol : float
        Absolute move of the instantaneous vol (0.10 = +10 points); it then mean-reverts.
    """

    at_s: float
    spot: float = 0.0
    vol: float = 0.0

    def __post_init__(self) -> None:
        _number(self, "underlying.shock", "at_s", low=0.0, low_open=True)
        _number(self, "underlying.shock", "spot")
        _number(self, "underlying.shock", "vol")


@dataclass(frozen=True, kw_only=True)
class UnderlyingModel(ConfigIO):
    """``[[underlying]]``: one underlying's dynamics, rates and implied-vol surface.

    Parameters
    ----------
    name : str
    spot : float
        Starting spot, > 0.
    rate, div_yield : float
        Continuous rate and dividend yield (decimals).
    vol : float
        Starting instantaneous vol, decimal per √year, > 0: the spot's diffusion vol and the ATM level
        of the implied surface.
    drift : float
        μ, per year (geometric), or price units per year (arithmetic).
    jump_intensity, jump_mean, jump_std : float
        Merton jumps: per year (>= 0); mean and standard deviation of the log jump.
    vol_kappa, vol_theta, vol_of_vol, vol_spot_corr : float
        Log-OU stochastic vol: mean reversion per year (>= 0), long-run vol (> 0; default ``vol``), vol
        of log vol per √year (>= 0), correlation of vol and spot shocks in [−1, 1] (negative: vol
        rises as spot falls). Zero κ and ξ: constant vol.
    arith_vol_per_sqrt_s : float
        > 0: arithmetic Brownian spot with this vol in price units per √second (Avellaneda–Stoikov);
        0 (default): geometric.
    smile_slope, smile_curvature : float
        The implied vol of strike K: ``vol_t + slope·x + curvature·x²``, ``x = ln(K / S_t)``, floored
        at 1 vol point; ``vol_t`` the instantaneous vol, so the surface moves with it and with spot
        (sticky moneyness).
    half_spread : float
        The underlying's half-spread, price units, >= 0 (hedges pay it).
    shock : list of Shock
        Scheduled moves.
    """

    name: str
    spot: float = 100.0
    rate: float = 0.0
    div_yield: float = 0.0
    vol: float = 0.2
    drift: float = 0.0
    jump_intensity: float = 0.0
    jump_mean: float = 0.0
    jump_std: float = 0.0
    vol_kappa: float = 0.0
    vol_theta: float | None = None
    vol_of_vol: float = 0.0
    vol_spot_corr: float = 0.0
    arith_vol_per_sqrt_s: float = 0.0
    smile_slope: float = 0.0
    smile_curvature: float = 0.0
    half_spread: float = 0.01
    shock: tuple[Shock, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise _fail("underlying", "name", "must be a non-empty string", self.name)
        t = f"underlying {self.name}"
        _number(self, t, "spot", low=0.0, low_open=True)
        for name in ("rate", "div_yield", "drift", "jump_mean", "smile_slope", "smile_curvature"):
            _number(self, t, name)
        _number(self, t, "vol", low=0.0, low_open=True)
        for name in ("jump_intensity", "jump_std", "vol_kappa", "vol_of_vol", "arith_vol_per_sqrt_s"):
            _number(self, t, name, low=0.0)
        _number(self, t, "half_spread", low=0.0)
        _number(self, t, "vol_spot_corr", low=-1.0, high=1.0)
        if self.vol_theta is None:
            object.__setattr__(self, "vol_theta", self.vol)
        _number(self, t, "vol_theta", low=0.0, low_open=True)
        if not isinstance(self.shock, list | tuple):
            raise _fail(
                t, "shock", "must be a list of tables ([[underlying.shock]] at_s, spot, vol)", self.shock
            )
        shocks = []
        for i, s in enumerate(self.shock):
            if isinstance(s, Shock):
                shocks.append(s)
                continue
            try:
                shocks.append(Shock.from_dict(s))
            except ValueError as exc:
                raise ValueError(f"[underlying {self.name}] shock[{i}]: {exc}") from None
        object.__setattr__(self, "shock", tuple(shocks))
        if self.arith_vol_per_sqrt_s > 0.0 and self.jump_intensity > 0.0:
            raise _fail(
                t,
                "jump_intensity",
                "jumps need geometric dynamics (arith_vol_per_sqrt_s = 0)",
                self.jump_intensity,
            )

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["shock"] = [s.to_dict() for s in self.shock]
        return d


_SECTIONS: dict[str, type[ConfigIO]] = {
    "sim": RunSettings,
    "chain": ChainSettings,
    "flow": FlowSettings,
    "strategy": StrategySettings,
    "quoter": QuoterConfig,
    "hedger": HedgerConfig,
    "toxicity": ToxicityConfig,
}


@dataclass(frozen=True, kw_only=True, repr=False)
class SimConfig:
    """A whole simulation's settings (module docstring; docs/simulation.md).

    Build with :meth:`load` or :meth:`from_dict`; :meth:`with_overrides` changes fields by dotted
    name (``"quoter.gamma_risk_aversion"``) for strategies and sweeps.
    """

    sim: RunSettings
    underlying: tuple[UnderlyingModel, ...]
    chain: ChainSettings = field(default_factory=ChainSettings)
    flow: FlowSettings = field(default_factory=FlowSettings)
    strategy: StrategySettings = field(default_factory=StrategySettings)
    quoter: QuoterConfig = field(default_factory=QuoterConfig)
    hedger: HedgerConfig = field(default_factory=HedgerConfig)
    toxicity: ToxicityConfig = field(default_factory=ToxicityConfig)
    limits: LimitSet | None = None
    correlation: tuple[tuple[float, ...], ...] | None = None
    source: str = field(default="<dict>", compare=False)

    def __post_init__(self) -> None:
        names = [u.name for u in self.underlying]
        if not names:
            raise ValueError("[[underlying]]: at least one underlying is needed")
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"[[underlying]] name: duplicate {dup[0]!r}")
        n = len(names)
        if self.correlation is not None:
            c = np.asarray(self.correlation, dtype=np.float64)
            if c.shape != (n, n):
                raise ValueError(
                    f"correlation: expected a {n}x{n} matrix (one row per underlying), got shape {c.shape}"
                )
            if not (
                np.all(np.isfinite(c))
                and np.allclose(c, c.T, atol=1e-12)
                and np.allclose(np.diag(c), 1.0)
                and np.all(np.abs(c) <= 1.0)
            ):
                raise ValueError("correlation: must be symmetric with a unit diagonal and entries in [-1, 1]")
            if np.linalg.eigvalsh(c).min() < -1e-10:
                raise ValueError("correlation: not positive semi-definite")
        arith = [u.arith_vol_per_sqrt_s > 0.0 for u in self.underlying]
        if any(arith) and self.chain.instrument == "options":
            raise ValueError("[chain] instrument: options need geometric dynamics (arith_vol_per_sqrt_s = 0)")
        if self.strategy.quoting == "avellaneda_stoikov" and not all(arith):
            raise ValueError(
                "[strategy] quoting: avellaneda_stoikov needs arithmetic dynamics "
                "(arith_vol_per_sqrt_s > 0 on every underlying)"
            )
        if self.strategy.quoting != "quoter" and self.chain.instrument != "underlying":
            raise ValueError(
                f"[strategy] quoting: {self.strategy.quoting!r} quotes the underlying itself "
                '([chain] instrument = "underlying")'
            )
        for u in self.underlying:  # the strikes are counted in strike steps: a whole number of them
            if (
                self.chain.instrument == "options"
                and u.spot * max(self.chain.moneyness) / self.chain.strike_step >= MAX_STEP_COUNT
            ):
                raise _fail(
                    "chain",
                    "strike_step",
                    f"too small: {u.name}'s strikes would be more than {MAX_STEP_COUNT:.4g} strike steps",
                    self.chain.strike_step,
                )
        if self.flow.latency_steps > self.sim.steps:
            raise _fail(
                "flow",
                "latency_steps",
                f"must be <= [sim] steps ({self.sim.steps}): no quote would reach the market",
                self.flow.latency_steps,
            )
        self.check_size()
        dt = self.sim.dt_s
        durations = [
            ("sim", name, getattr(self.sim, name))
            for name in ("markout_s", "quotes_from_s", "quotes_window_s")
        ]
        durations.append(("flow", "informed_horizon_s", self.flow.informed_horizon_s))
        if self.limits is not None:
            durations.append(("limits", "scenario every_s", self.limits.scenario_every_s))
        for table, name, seconds in durations:  # counted in steps by the run: a whole number of them
            if seconds / dt >= MAX_STEP_COUNT:
                raise _fail(
                    table, name, f"must be less than {MAX_STEP_COUNT:.4g} steps of dt_s = {dt:g} s", seconds
                )
        horizon = self.sim.steps * self.sim.dt_s
        for u in self.underlying:
            for s in u.shock:
                if s.at_s > horizon:
                    raise ValueError(
                        f"[underlying {u.name}] shock at_s: {s.at_s:g} s is after the end of the "
                        f"run ({horizon:g} s)"
                    )

    def __repr__(self) -> str:
        """One line: source, hash, run shape, underlyings, chain size, strategy (:meth:`to_toml` has
        every setting)."""
        ch = self.chain
        kinds = "/".join(k for k, on in (("calls", ch.calls), ("puts", ch.puts)) if on)
        chain = (
            "quoting the underlying"
            if ch.instrument == "underlying"
            else f"{kinds} at {len(ch.expiries_days)} expiries x {len(ch.moneyness)} moneyness points"
        )
        return (
            f"SimConfig({self.source!r}, hash {self.content_hash[:12]}: {self.sim.paths} path(s) x "
            f"{self.sim.steps} steps of {self.sim.dt_s:g} s, seed {self.sim.seed}; underlyings "
            f"{', '.join(self.names)}; {chain}; strategy {self.strategy.name!r} ({self.strategy.quoting}, "
            f"hedge {self.strategy.hedge}); limits {self.limits.name if self.limits is not None else None!r})"
        )

    # -- construction ------------------------------------------------------------------------------

    @classmethod
    def from_dict(
        cls, d: Mapping[str, Any], *, source: str = "<dict>", base_dir: str | None = None
    ) -> SimConfig:
        """Build from a dictionary shaped like the TOML file (or like :meth:`to_dict`).

        ``[limits] file = "..."`` is read relative to ``base_dir`` (default: the working directory).
        """
        if not isinstance(d, Mapping):
            raise ValueError(f"{source}: expected a table, got {type(d).__name__}")
        allowed = {*_SECTIONS, "underlying", "limits", "correlation", "name"}
        for key in d:
            if key not in allowed:
                raise ValueError(f"{source}: unknown table {key!r} (allowed: {', '.join(sorted(allowed))})")
        if "sim" not in d:
            raise ValueError(f"{source}: [sim]: missing (steps and dt_s are required)")
        kwargs: dict[str, Any] = {"source": source}
        for key, klass in _SECTIONS.items():
            if key in d:
                try:
                    kwargs[key] = klass.from_dict(d[key])
                except ValueError as exc:
                    raise ValueError(f"{source}: [{key}] {_strip(str(exc), key)}") from None
                except ArithmeticError as exc:  # a value so extreme that checking it overflows
                    raise ValueError(f"{source}: [{key}] a value is out of range ({exc})") from None
        if "name" in d:  # a top-level name labels the strategy unless [strategy] names it
            st = dict(d.get("strategy", {}))
            st.setdefault("name", d["name"])
            try:
                kwargs["strategy"] = StrategySettings.from_dict(st)
            except ValueError as exc:
                raise ValueError(f"{source}: {exc}") from None
        rows = d.get("underlying", [])
        if not isinstance(rows, list):
            raise ValueError(f"{source}: [[underlying]]: expected an array of tables")
        und = []
        for i, row in enumerate(rows):
            try:
                und.append(UnderlyingModel.from_dict(row))
            except ValueError as exc:
                raise ValueError(f"{source}: [[underlying]] #{i + 1}: {exc}") from None
        kwargs["underlying"] = tuple(und)
        if "limits" in d:
            kwargs["limits"] = _limits(d["limits"], source, base_dir)
        if "correlation" in d:
            kwargs["correlation"] = _correlation_rows(d["correlation"], source)
        try:
            return cls(**kwargs)
        except ValueError as exc:
            raise ValueError(f"{source}: {exc}") from None

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SimConfig:
        """Read a configuration file (errors name the file, the table and the field)."""
        where = os.fspath(path)
        doc = read_toml(where, "configuration")
        return cls.from_dict(doc, source=where, base_dir=str(Path(where).parent))

    # -- output ------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain values, shaped like the file (limits inline); :meth:`from_dict` reads it back."""
        d: dict[str, Any] = {key: getattr(self, key).to_dict() for key in _SECTIONS}
        d["underlying"] = [u.to_dict() for u in self.underlying]
        if self.limits is not None:
            d["limits"] = self.limits.to_dict()
        if self.correlation is not None:
            d["correlation"] = [list(r) for r in self.correlation]
        return d

    def to_toml(self) -> str:
        """The configuration as TOML text (limits inline)."""
        return _to_toml(self.to_dict())

    @property
    def content_hash(self) -> str:
        """SHA-256 (hex) of the canonical JSON of :meth:`to_dict`."""
        return canonical_hash(self.to_dict())

    def with_overrides(self, overrides: Mapping[str, Any]) -> SimConfig:
        """A copy with fields changed by dotted name: ``{"quoter.skew": "none", "sim.paths": 4}``.

        ``underlying.<field>`` changes that field on every underlying; ``underlying.<NAME>.<field>``
        on one. Unknown names raise ValueError naming them.
        """
        d = self.to_dict()
        for key, value in overrides.items():
            parts = str(key).split(".")
            if parts[0] in _SECTIONS and len(parts) == 2:
                klass = _SECTIONS[parts[0]]
                names = {f.name for f in dataclasses.fields(klass)}  # type: ignore[arg-type]
                if parts[1] not in names:
                    raise ValueError(f"override {key!r}: [{parts[0]}] has no field {parts[1]!r}")
                d[parts[0]][parts[1]] = value
            elif parts[0] == "underlying" and len(parts) in (2, 3):
                fname = parts[-1]
                if fname not in {f.name for f in dataclasses.fields(UnderlyingModel)}:
                    raise ValueError(f"override {key!r}: [[underlying]] has no field {fname!r}")
                targets = [u for u in d["underlying"] if len(parts) == 2 or u["name"] == parts[1]]
                if not targets:
                    raise ValueError(f"override {key!r}: no underlying named {parts[1]!r}")
                for u in targets:
                    u[fname] = value
            else:
                raise ValueError(
                    f"override {key!r}: expected '<table>.<field>' with a table among "
                    f"{', '.join([*_SECTIONS, 'underlying'])}"
                )
        return SimConfig.from_dict(d, source=f"{self.source} (with overrides)")

    def check_size(self, paths: int | None = None) -> None:
        """Refuse a run too large for memory before it starts (``paths``: default ``[sim] paths``).

        Bounds: at most :data:`MAX_INSTRUMENTS` instruments (underlyings x expiries x strikes x
        kinds, counting every moneyness), :data:`MAX_STEP_INSTRUMENTS` steps x instruments (one
        path's order-flow draws) and :data:`MAX_PATH_CELLS` steps x paths x (underlyings + 1) (the
        market paths and result tables). Raises ValueError naming the settings and the bound.
        """
        n_paths = self.sim.paths if paths is None else paths
        steps, nu = self.sim.steps, len(self.underlying)
        ch = self.chain
        kinds = int(ch.calls) + int(ch.puts)
        n_inst = (
            nu if ch.instrument == "underlying" else nu * len(ch.expiries_days) * len(ch.moneyness) * kinds
        )
        checks = (
            (
                n_inst,
                MAX_INSTRUMENTS,
                f"[chain] {n_inst:,} instruments (underlyings x expiries x moneyness x kinds)",
            ),
            (
                steps * n_inst,
                MAX_STEP_INSTRUMENTS,
                f"[sim] steps x [chain] instruments = {steps:,} x {n_inst:,}",
            ),
            (
                steps * n_paths * (nu + 1),
                MAX_PATH_CELLS,
                f"[sim] steps x paths x (underlyings + 1) = {steps:,} x {n_paths:,} x {nu + 1}",
            ),
        )
        for size, bound, what in checks:
            if size > bound:
                raise ValueError(f"{what}: more than the bound of {bound:,} (memory); make the run smaller")

    # -- derived -----------------------------------------------------------------------------------

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(u.name for u in self.underlying)

    @property
    def horizon_s(self) -> float:
        return self.sim.steps * self.sim.dt_s

    def correlation_matrix(self) -> np.ndarray:
        n = len(self.underlying)
        return np.eye(n) if self.correlation is None else np.asarray(self.correlation, dtype=np.float64)


def _strip(message: str, table: str) -> str:
    """A section class's message without its class prefix (the caller names the table)."""
    for prefix in (
        "RunSettings.",
        "ChainSettings.",
        "FlowSettings.",
        "StrategySettings.",
        "QuoterConfig.",
        "HedgerConfig.",
        "ToxicityConfig.",
        f"[{table}] ",
    ):
        if message.startswith(prefix):
            return message[len(prefix) :]
    return message


def _correlation_rows(corr: Any, source: str) -> tuple[tuple[float, ...], ...]:
    """The ``correlation`` matrix as rows of floats; anything but a number (true, text, a table) is
    refused naming its row and column (1-based)."""
    if not (isinstance(corr, list | tuple) and all(isinstance(r, list | tuple) for r in corr)):
        raise ValueError(f"{source}: correlation: expected a list of rows of numbers (got {corr!r})")
    for i, row in enumerate(corr):
        for j, x in enumerate(row):
            if not is_real_number(x):
                raise ValueError(
                    f"{source}: correlation: row {i + 1}, column {j + 1}: must be a number (got {x!r})"
                )
    return tuple(tuple(float(x) for x in r) for r in corr)


def _limits(value: Any, source: str, base_dir: str | None) -> LimitSet:
    if not isinstance(value, Mapping):
        raise ValueError(f"{source}: [limits]: expected a table")
    if "file" in value:
        if set(value) != {"file"}:
            raise ValueError(f"{source}: [limits]: 'file' cannot be combined with inline limits")
        path = Path(str(value["file"]))
        if not path.is_absolute() and base_dir is not None:
            path = Path(base_dir) / path
        try:
            return LimitSet.load(path)
        except ValueError as exc:
            raise ValueError(f"{source}: [limits] file: {exc}") from None
    try:
        return LimitSet.from_dict(copy.deepcopy(dict(value)), source=f"{source} [limits]")
    except ValueError as exc:
        raise ValueError(f"{source}: {exc}") from None


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {v!r} to TOML")


def _key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else json.dumps(k)


def _table(prefix: str, d: Mapping[str, Any], out: list[str]) -> None:
    scalars = {k: v for k, v in d.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in d.items() if isinstance(v, dict)}
    if prefix:
        out.append(f"\n[{prefix}]")
    out.extend(f"{_key(k)} = {_toml_value(v)}" for k, v in scalars.items())
    for k, v in tables.items():
        _table(f"{prefix}.{_key(k)}" if prefix else _key(k), v, out)


def _to_toml(d: Mapping[str, Any]) -> str:
    out: list[str] = []
    top = {k: v for k, v in d.items() if not isinstance(v, dict | list) or k == "correlation"}
    out.extend(f"{_key(k)} = {_toml_value(v)}" for k, v in top.items())
    for k, v in d.items():
        if isinstance(v, dict):
            _table(k, v, out)
    for u in d.get("underlying", []):
        out.append("\n[[underlying]]")
        out.extend(f"{_key(k)} = {_toml_value(v)}" for k, v in u.items() if k != "shock")
        for s in u.get("shock", []):
            out.append("\n[[underlying.shock]]")
            out.extend(f"{_key(k)} = {_toml_value(v)}" for k, v in s.items())
    return "\n".join(out) + "\n"
