"""Toxicity (adverse-selection) detector: when our fills on an underlying look informed, pull its quotes.

A :class:`ToxicityDetector` keeps, per underlying, a sliding window of ``window_s`` seconds of three
event streams: our **fills** (:meth:`~ToxicityDetector.on_fill`), the **mid** of the instrument the fills
are marked against (:meth:`~ToxicityDetector.on_mid`) and the market's **prints** with their aggressor side
(:meth:`~ToxicityDetector.on_trade`). :meth:`~ToxicityDetector.score` turns the window into a score in
[0, 1]; :meth:`~ToxicityDetector.update` latches it into a toxic / not-toxic flag with a cool-down and tells
the risk controller (:meth:`optmm.risk.RiskController.set_toxicity`) on every change, and only then.

Conventions
-----------
side
    Of one of our fills: +1 we bought (our bid was hit), -1 we sold (our offer was lifted).
aggressor side
    Of a market print: +1 the buyer crossed the spread (buyer-initiated), -1 the seller did.
window
    An event at ``ts`` is in the window at time ``now`` when ``now - window_s < ts <= now``.

Components (each computed over the fills / prints in the window)
----------------------------------------------------------------
markout at horizon h (bps)
    For a fill at time ``t``, price ``p`` and side ``s``: ``m_h = s * (mid(t + h) - p) / p * 1e4``, where
    ``mid(t + h)`` is the last mid known at ``t + h``: the last :meth:`on_mid` value with
    ``t <= ts <= t + h``, else the mid passed with the fill. **Negative = adverse** (we bought and the mid
    fell below our price, or sold and it rose). A fill whose horizon has not elapsed (``t + h > now``) is
    left out of that horizon. ``markouts[h]`` is the size-weighted mean over the fills it covers, NaN when
    it covers none.
one-sided fill rate
    ``one_sided = |n_buys - n_sells| / n_fills`` (fill counts): 0 for balanced fills, 1 when every fill is
    on the same side.
adverse fraction
    ``adverse_frac`` = the share of the fills matured at the **first** horizon whose markout there is
    below ``-adverse_threshold_bps``; NaN when none has matured.
markout component
    ``clip(-min_h markouts[h] / markout_scale_bps, 0, 1)`` over the horizons with a value (0 when none):
    the worst mean markout, 0 when no horizon loses on average, 1 from a mean loss of
    ``markout_scale_bps`` on.
order-flow imbalance of prints
    ``flow_imbalance = (buy-aggressor size - sell-aggressor size) / total size`` in [-1, 1] (0 without
    prints); its component is ``|flow_imbalance|``: one-sided aggression, whichever the side.

Score
-----
With the components ``c = (one_sided, adverse_frac or 0, markout component, |flow_imbalance|)``, all in
[0, 1], and the weights ``w = (weight_one_sided, weight_adverse, weight_markout, weight_flow) >= 0``::

    score = sum(w * c) / sum(w)        in [0, 1]

With fewer than ``min_fills`` fills in the window the score is 0 (too little evidence to judge). The raw
signal is ``score >= threshold``.

Latch and cool-down
-------------------
:meth:`~ToxicityDetector.update` turns an underlying toxic as soon as its raw signal fires. A toxic
underlying stays toxic until its score has stayed below ``threshold`` for ``cooldown_s`` seconds, as seen
by successive ``update`` calls: the first call that sees it below starts the clock, a call that sees it at
or above the threshold again resets it, and the first call at least ``cooldown_s`` after the start clears
the flag. Each change (and only a change) calls ``controller.set_toxicity(u, toxic, score=, threshold=)``.

The detector validates its inputs and runs the compiled rules of :mod:`optmm.quoting._toxicity_kernels`
on its state (the simulator runs the same ones in its loop): the events, the score and the latch are
each written once.

Memory is bounded: each stream is a numpy ring buffer of ``capacity`` events per underlying, trimmed to the
window as events arrive (when it is full the oldest event is dropped and counted in
:attr:`ToxicityDetector.dropped`). Timestamps of each stream must not decrease; ``now`` is expected not to
be before the last event. Everything is deterministic: no clock is read, time is what the caller passes.

For option fills, mark them against the underlying (a delta-adjusted markout): pass the sign of the delta
acquired as ``side`` (bought calls or sold puts: +1), the underlying's price at the fill as ``price`` and
``mid``, and the underlying's mids to :meth:`on_mid`; a fill then loses when the underlying moves against
the delta it gave us.

Examples
--------
>>> det = ToxicityDetector(ToxicityConfig(min_fills=1), ["AAA"])
>>> det.on_fill("AAA", 0.0, +1, 1.0, 100.0, 100.0)   # we bought at 100.00
>>> det.on_mid("AAA", 0.5, 99.9)                     # the mid falls by 10 bps
>>> s = det.score("AAA", 1.0)
>>> round(s.markouts[1.0], 6), s.adverse_frac
(-10.0, 1.0)
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

from optmm._config import Config, bad_value, is_real_number, setting
from optmm.quoting._toxicity_kernels import (
    I_F_DROPPED,
    I_M_DROPPED,
    I_T_DROPPED,
    I_TOXIC,
    O_ADVERSE_FRAC,
    O_C_ADVERSE,
    O_C_FLOW,
    O_C_MARKOUT,
    O_ENOUGH,
    O_FLOW_IMBALANCE,
    O_MARKOUTS,
    O_N_FILLS,
    O_N_TRADES,
    O_ONE_SIDED,
    O_RAW,
    O_SCORE,
    new_score_out,
    new_toxicity_state,
    pack_toxicity,
    tox_on_fill,
    tox_on_mid,
    tox_on_trade,
    tox_score_into,
    tox_update_into,
)

__all__ = ["ToxicityConfig", "ToxicityDetector", "ToxicityScore"]


@dataclass(frozen=True, kw_only=True)
class ToxicityConfig(Config):
    """Settings of the toxicity detector (see the module docstring for the definitions).

    Parameters
    ----------
    window_s : float
        Length of the sliding window, seconds (> 0).
    markout_horizons_s : tuple of float
        Markout horizons, seconds: > 0, strictly increasing, the last < ``window_s`` (a fill must be able
        to mature inside the window). The first one is the adverse fraction's horizon.
    adverse_threshold_bps : float
        A fill is adverse when its first-horizon markout is below ``-adverse_threshold_bps`` (bps, >= 0).
    markout_scale_bps : float
        Mean markout loss (bps, > 0) at which the markout component reaches 1.
    weight_one_sided, weight_adverse, weight_markout, weight_flow : float
        Weights of the four components (>= 0, not all 0); the score divides by their sum.
    threshold : float
        Score at or above which the raw signal fires, in (0, 1].
    cooldown_s : float
        Seconds (>= 0) a toxic underlying's score must stay below ``threshold`` before it is cleared.
    min_fills : int
        Fewest fills in the window (>= 1) for a nonzero score.
    capacity : int
        Events kept per stream and underlying (>= 16); bounds the memory.
    """

    window_s: float = setting(60.0, gt=0, unit="s")
    markout_horizons_s: tuple[float, ...] = setting((1.0, 5.0, 30.0), gt=0, unit="s")
    adverse_threshold_bps: float = setting(2.0, ge=0, unit="bps")
    markout_scale_bps: float = setting(10.0, gt=0, unit="bps")
    weight_one_sided: float = setting(0.25, ge=0)
    weight_adverse: float = setting(0.35, ge=0)
    weight_markout: float = setting(0.25, ge=0)
    weight_flow: float = setting(0.15, ge=0)
    threshold: float = setting(0.6, gt=0, le=1)
    cooldown_s: float = setting(30.0, ge=0, unit="s")
    min_fills: int = setting(5, ge=1)
    capacity: int = setting(4096, ge=16)

    def check(self) -> None:
        if self.weight_one_sided + self.weight_adverse + self.weight_markout + self.weight_flow <= 0.0:
            raise ValueError("ToxicityConfig.weight_*: the weights must not all be 0")
        hs = self.markout_horizons_s
        if any(b <= a for a, b in itertools.pairwise(hs)):
            raise bad_value("ToxicityConfig.markout_horizons_s", "strictly increasing", hs)
        if hs[-1] >= self.window_s:
            raise bad_value("ToxicityConfig.markout_horizons_s", f"below window_s {self.window_s:g}", hs)

    @property
    def weights(self) -> dict[str, float]:
        """The component weights by component name (``one_sided``, ``adverse``, ``markout``, ``flow``)."""
        return {
            "one_sided": self.weight_one_sided,
            "adverse": self.weight_adverse,
            "markout": self.weight_markout,
            "flow": self.weight_flow,
        }


@dataclass(frozen=True)
class ToxicityScore:
    """The toxicity of one underlying at one time (see the module docstring for the definitions).

    Attributes
    ----------
    underlying : str
    now : float
        Time of the evaluation, seconds.
    score : float
        Weighted combination of ``components``, in [0, 1]; 0 when ``n_fills < min_fills``.
    toxic : bool
        The raw signal, ``score >= threshold`` (the latched flag with its cool-down is
        :meth:`ToxicityDetector.is_toxic`).
    threshold : float
    n_fills, n_trades : int
        Fills and prints in the window.
    enough_fills : bool
        ``n_fills >= min_fills``.
    one_sided : float
        ``|n_buys - n_sells| / n_fills`` (0 without fills).
    markouts : dict of float to float
        Size-weighted mean markout (bps, negative = adverse) per horizon (seconds) over the matured fills;
        NaN for a horizon no fill has reached.
    n_matured : dict of float to int
        Fills covered per horizon.
    adverse_frac : float
        Share of first-horizon-matured fills with markout < ``-adverse_threshold_bps`` (NaN if none).
    flow_imbalance : float
        Signed order-flow imbalance of the prints, in [-1, 1] (0 without prints).
    components : dict of str to float
        ``one_sided``, ``adverse``, ``markout``, ``flow``: the [0, 1] inputs of the score.
    """

    underlying: str
    now: float
    score: float
    toxic: bool
    threshold: float
    n_fills: int
    n_trades: int
    enough_fills: bool
    one_sided: float
    markouts: dict[float, float]
    n_matured: dict[float, int]
    adverse_frac: float
    flow_imbalance: float
    components: dict[str, float]


class _Controller(Protocol):
    def set_toxicity(self, underlying: str, toxic: bool, *, score: float, threshold: float) -> None: ...


class ToxicityDetector:
    """Per-underlying toxicity score over a sliding window, latched with a cool-down.

    Parameters
    ----------
    config : ToxicityConfig
    underlyings : iterable of str
        The underlyings watched (an event for any other raises ``KeyError``).
    """

    def __init__(self, config: ToxicityConfig, underlyings: Iterable[str]) -> None:
        if not isinstance(config, ToxicityConfig):
            raise TypeError(f"ToxicityDetector: config must be a ToxicityConfig, got {type(config).__name__}")
        self.config = config
        names = [str(u) for u in underlyings]
        if len(set(names)) != len(names):
            raise ValueError(f"ToxicityDetector: duplicate underlyings in {names}")
        self._names = tuple(names)
        self._index = {u: i for i, u in enumerate(names)}
        # the rings of fills, mids and prints, the latched flags and cool-down clocks: the simulator's
        # state and rules (optmm.quoting._toxicity_kernels)
        self._st = new_toxicity_state(config, max(len(names), 1))
        self._params = pack_toxicity(config)
        self._out = new_score_out(config)

    def __repr__(self) -> str:
        toxic = [u for u in self._names if self.is_toxic(u)]
        shown = ", ".join(toxic[:5]) + (", ..." if len(toxic) > 5 else "") if toxic else "none"
        c = self.config
        return (
            f"ToxicityDetector({len(self._names)} underlyings, window {c.window_s:g} s, threshold "
            f"{c.threshold:g}, toxic: {shown}, config {c.content_hash[:8]})"
        )

    @property
    def underlyings(self) -> tuple[str, ...]:
        return self._names

    @property
    def dropped(self) -> int:
        """Events dropped because a ring buffer was full (0 unless ``capacity`` is too small)."""
        return int(self._st.ist[:, [I_F_DROPPED, I_M_DROPPED, I_T_DROPPED]].sum())

    def _u(self, underlying: str) -> int:
        try:
            return self._index[underlying]
        except KeyError:
            raise KeyError(f"ToxicityDetector: unknown underlying {underlying!r}") from None

    def _ring(self, u: int, which: int) -> np.ndarray:
        """The events of ring ``which`` (0 fills, 1 mids, 2 prints) of row ``u``, oldest first (a copy
        when they wrap around)."""
        buf = self._st[which]
        head, n = int(self._st.ist[u, 2 * which]), int(self._st.ist[u, 2 * which + 1])
        end = head + n
        cap = buf.shape[1]
        if end <= cap:
            return buf[u, head:end]
        return np.concatenate((buf[u, head:], buf[u, : end - cap]))

    def _check_ts(self, where: str, u: int, which: int, ts: float) -> float:
        t = float(ts)
        if not math.isfinite(t):
            raise ValueError(f"{where}: ts must be finite, got {ts!r}")
        ring = self._ring(u, which)
        last = float(ring[-1, 0]) if len(ring) else -math.inf
        if t < last:
            raise ValueError(f"{where}: ts {t!r} is before the stream's last event {last!r}")
        return t

    # ----------------------------------------------------------------------------------------------
    # events

    def on_fill(self, underlying: str, ts: float, side: int, size: float, price: float, mid: float) -> None:
        """One of our fills: ``side`` +1 we bought / -1 we sold, ``size`` > 0, ``price`` and the ``mid`` at
        the fill > 0 (same instrument as the mids of :meth:`on_mid`)."""
        u = self._u(underlying)
        t = self._check_ts("on_fill", u, 0, ts)
        if side not in (1, -1) or isinstance(side, bool):
            raise ValueError(f"on_fill: side must be +1 (we bought) or -1 (we sold), got {side!r}")
        for name, v in (("size", size), ("price", price), ("mid", mid)):
            if not (is_real_number(v) and math.isfinite(v) and v > 0.0):
                raise ValueError(f"on_fill: {name} must be a finite number > 0, got {v!r}")
        tox_on_fill(*self._st, u, t, float(side), float(size), float(price), float(mid))

    def on_mid(self, underlying: str, ts: float, mid: float) -> None:
        """The mid (> 0) of the instrument the fills are marked against, at ``ts``."""
        u = self._u(underlying)
        t = self._check_ts("on_mid", u, 1, ts)
        if not (is_real_number(mid) and math.isfinite(mid) and mid > 0.0):
            raise ValueError(f"on_mid: mid must be a finite number > 0, got {mid!r}")
        tox_on_mid(*self._st, u, t, float(mid))

    def on_trade(self, underlying: str, ts: float, size: float, aggressor_side: int) -> None:
        """A market print of ``size`` > 0; ``aggressor_side`` +1 buyer-initiated, -1 seller-initiated."""
        u = self._u(underlying)
        t = self._check_ts("on_trade", u, 2, ts)
        if aggressor_side not in (1, -1) or isinstance(aggressor_side, bool):
            raise ValueError(f"on_trade: aggressor_side must be +1 or -1, got {aggressor_side!r}")
        if not (is_real_number(size) and math.isfinite(size) and size > 0.0):
            raise ValueError(f"on_trade: size must be a finite number > 0, got {size!r}")
        tox_on_trade(*self._st, u, t, float(size), float(aggressor_side))

    # ----------------------------------------------------------------------------------------------
    # scoring

    def score(self, underlying: str, now: float) -> ToxicityScore:
        """The toxicity of ``underlying`` at ``now`` (seconds) from the events in the window.

        Does not change the detector's state (events outside the window are ignored, not dropped).
        """
        u = self._u(underlying)
        now = float(now)
        if not math.isfinite(now):
            raise ValueError(f"score: now must be finite, got {now!r}")
        tox_score_into(*self._st, self._params, u, now, self._out)
        return self._result(underlying, now)

    def _result(self, underlying: str, now: float) -> ToxicityScore:
        """The :class:`ToxicityScore` of the kernel's output of the last score."""
        out = self._out
        hs = self.config.markout_horizons_s
        nh = len(hs)
        one_sided = float(out[O_ONE_SIDED])
        return ToxicityScore(
            underlying=underlying,
            now=now,
            score=float(out[O_SCORE]),
            toxic=bool(out[O_RAW]),
            threshold=self.config.threshold,
            n_fills=int(out[O_N_FILLS]),
            n_trades=int(out[O_N_TRADES]),
            enough_fills=bool(out[O_ENOUGH]),
            one_sided=one_sided,
            markouts={h: float(out[O_MARKOUTS + i]) for i, h in enumerate(hs)},
            n_matured={h: int(out[O_MARKOUTS + nh + i]) for i, h in enumerate(hs)},
            adverse_frac=float(out[O_ADVERSE_FRAC]),
            flow_imbalance=float(out[O_FLOW_IMBALANCE]),
            components={
                "one_sided": one_sided,
                "adverse": float(out[O_C_ADVERSE]),
                "markout": float(out[O_C_MARKOUT]),
                "flow": float(out[O_C_FLOW]),
            },
        )

    # ----------------------------------------------------------------------------------------------
    # latch

    def is_toxic(self, underlying: str) -> bool:
        """The latched flag (as of the last :meth:`update`)."""
        return bool(self._st.ist[self._u(underlying), I_TOXIC])

    def update(
        self, now: float, controller: _Controller | None = None
    ) -> list[tuple[str, bool, ToxicityScore]]:
        """Score every underlying at ``now``, apply the latch and cool-down, report the changes.

        Parameters
        ----------
        now : float
            Seconds; should not decrease between calls (the cool-down is measured between them).
        controller : object with ``set_toxicity(underlying, toxic, *, score, threshold)``, optional
            E.g. :class:`optmm.risk.RiskController`; called once per change of an underlying's flag.

        Returns
        -------
        list of (underlying, toxic, ToxicityScore)
            The underlyings whose flag changed, in the detector's order.
        """
        now = float(now)
        if not math.isfinite(now):
            raise ValueError(f"update: now must be finite, got {now!r}")
        changes: list[tuple[str, bool, ToxicityScore]] = []
        for i, u in enumerate(self._names):
            toxic, changed, _ = tox_update_into(*self._st, self._params, i, now, self._out)
            if changed:
                changes.append((u, bool(toxic), self._result(u, now)))
        if controller is not None:
            for u, toxic, sc in changes:
                controller.set_toxicity(u, toxic, score=sc.score, threshold=sc.threshold)
        return changes

    def state(self, now: float) -> pd.DataFrame:
        """One row per underlying: the latched flag, the score and its components at ``now``."""
        rows = []
        for u in self._names:
            sc = self.score(u, now)
            d = {"underlying": u, "toxic": self.is_toxic(u), "score": sc.score, "n_fills": sc.n_fills}
            d.update({f"c_{k}": v for k, v in sc.components.items()})
            d.update({"adverse_frac": sc.adverse_frac, "flow_imbalance": sc.flow_imbalance})
            d.update({f"markout_{h:g}s_bps": v for h, v in sc.markouts.items()})
            rows.append(d)
        return pd.DataFrame(rows).set_index("underlying")
