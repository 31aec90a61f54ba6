"""Settings of a simulation (:class:`SimConfig`), read from TOML (format: docs/simulation.md).

A configuration file has the tables ``[sim]`` (steps, step length, paths, seed, what to record),
``[chain]`` (what we quote), ``[flow]`` (the order flow), ``[strategy]`` (how we quote and whether we
hedge and pull), ``[quoter]``, ``[hedger]``, ``[toxicity]`` (the settings of
:class:`~optmm.quoting.QuoterConfig`, :class:`~optmm.quoting.HedgerConfig`,
:class:`~optmm.quoting.ToxicityConfig`), ``[limits]`` (a limit set, inline as in a limit file, or
``file = "path"``), one ``[[underlying]]`` table per underlying (its dynamics and vol surface, with
optional ``[[underlying.shock]]`` scheduled moves) and an optional ``correlation`` matrix.

Everything is validated when the configuration is built; an error names the table and the field
(``"sim.toml: [flow] arrival_k: must be a finite number > 0 (got -1)"``); the bounds are declared on
the fields (:func:`optmm._config.setting`). :attr:`SimConfig.content_hash` is the SHA-256 of the
canonical JSON of :meth:`SimConfig.to_dict`, written into every run's summary.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from optmm._config import (
    MAX_SEED,
    Config,
    is_real_number,
    read_toml,
    setting,
)
from optmm.codes import BOOK_LABEL
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


class Quoting(enum.StrEnum):
    """``[strategy] quoting``: who sets the quotes (:class:`StrategySettings`)."""

    QUOTER = "quoter"
    AVELLANEDA_STOIKOV = "avellaneda_stoikov"
    SYMMETRIC = "symmetric"


class Instrument(enum.StrEnum):
    """``[chain] instrument``: what is quoted (:class:`ChainSettings`)."""

    OPTIONS = "options"
    UNDERLYING = "underlying"


class FillModel(enum.StrEnum):
    """``[flow] fill_model``: how an order reaches a quote within a step (:class:`FlowSettings`)."""

    POISSON = "poisson"
    LINEAR = "linear"


def _fail(table: str, name: str, problem: str, value: Any) -> ValueError:
    return ValueError(f"[{table}] {name}: {problem} (got {value!r})")


@dataclass(frozen=True, kw_only=True)
class RunSettings(Config):
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

    _table: ClassVar[str | None] = "sim"

    steps: int = setting(ge=1)
    dt_s: float = setting(gt=0, unit="s")
    paths: int = setting(1, ge=1)
    seed: int = setting(0, ge=0, le=MAX_SEED)
    markout_s: float = setting(5.0, ge=0, unit="s")
    quotes_from_s: float = setting(0.0, ge=0, unit="s")
    quotes_window_s: float = setting(600.0, ge=0, unit="s")

    def check(self) -> None:
        if self.dt_s >= MAX_DT_S:
            raise _fail(
                "sim",
                "dt_s",
                f"must be < {MAX_DT_S:,.0f} s (a {TRADING_DAY_S:,.0f}-s trading day is at least one step)",
                self.dt_s,
            )


@dataclass(frozen=True, kw_only=True)
class ChainSettings(Config):
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

    _table: ClassVar[str | None] = "chain"

    instrument: Instrument = Instrument.OPTIONS
    expiries_days: tuple[float, ...] = setting((30.0,), gt=0, unit="days")
    moneyness: tuple[float, ...] = setting((0.9, 0.95, 1.0, 1.05, 1.1), gt=0)
    strike_step: float = setting(1.0, gt=0)
    calls: bool = True
    puts: bool = True
    multiplier: float = setting(100.0, gt=0)

    def check(self) -> None:
        if self.instrument == "options" and not (self.calls or self.puts):
            raise _fail("chain", "calls", "calls and puts are both false: nothing to quote", self.calls)


@dataclass(frozen=True, kw_only=True)
class FlowSettings(Config):
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
    informed_leak : float
        Price discovery, a fraction in [0, 1]: in a step in which an informed order fills on an
        underlying, the hedger's trades in that underlying execute around a mid moved this share of the
        way from the step's spot to the spot ``informed_horizon_s`` ahead (what the informed orders
        know reaches the stock before our hedge does); the hedge decides on the step's spot and its
        cost is counted against it. 0 (default): the hedge trades at the step's spot.
    latency_steps : int
        Our quotes reach the market this many steps late, >= 0 (stale quotes can be picked off).
    imbalance : float
        One-sided uninformed flow, in [−1, 1]: orders that hit our bids arrive with intensity
        ``A·(1 + imbalance)``, orders that lift our offers with ``A·(1 − imbalance)`` (default 0).
    """

    _table: ClassVar[str | None] = "flow"

    arrival_a: float = setting(0.05, ge=0)
    arrival_k: float = setting(20.0, gt=0)
    fill_model: FillModel = FillModel.POISSON
    order_size_mean: float = setting(1.0, ge=1)
    informed_rate: float = setting(0.0, ge=0)
    informed_horizon_s: float = setting(30.0, gt=0, unit="s")
    informed_size: float = setting(5.0, gt=0)
    informed_leak: float = setting(0.0, ge=0, le=1)
    latency_steps: int = setting(0, ge=0)
    imbalance: float = setting(0.0, ge=-1, le=1)


@dataclass(frozen=True, kw_only=True)
class StrategySettings(Config):
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

    _table: ClassVar[str | None] = "strategy"

    name: str = "base"
    quoting: Quoting = Quoting.QUOTER
    hedge: bool = True
    toxicity_pull: bool = True
    as_gamma: float = setting(0.1, gt=0)
    spread: float | None = setting(None, gt=0)
    quote_size: float = setting(1.0, gt=0)


@dataclass(frozen=True, kw_only=True)
class Shock(Config):
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

    _table: ClassVar[str | None] = "underlying.shock"

    at_s: float = setting(gt=0, unit="s")
    spot: float = 0.0
    vol: float = 0.0


@dataclass(frozen=True, kw_only=True)
class UnderlyingModel(Config):
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
    spot: float = setting(100.0, gt=0)
    rate: float = 0.0
    div_yield: float = 0.0
    vol: float = setting(0.2, gt=0)
    drift: float = 0.0
    jump_intensity: float = setting(0.0, ge=0)
    jump_mean: float = 0.0
    jump_std: float = setting(0.0, ge=0)
    vol_kappa: float = setting(0.0, ge=0)
    vol_theta: float | None = setting(None, gt=0)
    vol_of_vol: float = setting(0.0, ge=0)
    vol_spot_corr: float = setting(0.0, ge=-1, le=1)
    arith_vol_per_sqrt_s: float = setting(0.0, ge=0)
    smile_slope: float = 0.0
    smile_curvature: float = 0.0
    half_spread: float = setting(0.01, ge=0)
    shock: tuple[Shock, ...] = ()

    def where(self, name: str) -> str:
        named = isinstance(self.name, str) and self.name.strip()
        return f"[underlying {self.name}] {name}" if named else f"[underlying] {name}"

    def check(self) -> None:
        t = f"underlying {self.name}"
        if self.vol_theta is None:
            object.__setattr__(self, "vol_theta", self.vol)
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


_SECTIONS: dict[str, type[Config]] = {
    "sim": RunSettings,
    "chain": ChainSettings,
    "flow": FlowSettings,
    "strategy": StrategySettings,
    "quoter": QuoterConfig,
    "hedger": HedgerConfig,
    "toxicity": ToxicityConfig,
}


@dataclass(frozen=True, kw_only=True, repr=False)
class SimConfig(Config):
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

    def check(self) -> None:
        names = [u.name for u in self.underlying]
        if not names:
            raise ValueError("[[underlying]]: at least one underlying is needed")
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"[[underlying]] name: duplicate {dup[0]!r}")
        if BOOK_LABEL in names:
            raise ValueError(
                f"[[underlying]] name: {BOOK_LABEL!r} is the name of the whole book's row in risk tables;"
                " rename the underlying"
            )
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
                f"[strategy] quoting: {self.strategy.quoting.value!r} quotes the underlying itself "
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
    """A section's message without its own prefix (``QuoterConfig.``, ``[sim] ``): the caller names
    the table."""
    name = _SECTIONS[table].__name__
    for prefix in (f"{name}.", f"{name}: ", f"[{table}] "):
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
