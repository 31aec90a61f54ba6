"""QuantLib as the independent reference of the dividend and American tests (one option at a time).

Times are whole days on Actual/365 Fixed from a fixed valuation date, so that QuantLib's year
fractions equal the ``days / 365`` the tests pass to optmm exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import QuantLib as ql

TODAY = ql.Date(4, 12, 2026)
_DC = ql.Actual365Fixed()


class Market:
    """A flat Black-Scholes-Merton market whose quotes can be moved; one process for all engines."""

    def __init__(self) -> None:
        ql.Settings.instance().evaluationDate = TODAY
        self.spot = ql.SimpleQuote(100.0)
        self.rate = ql.SimpleQuote(0.0)
        self.div_yield = ql.SimpleQuote(0.0)
        self.vol = ql.SimpleQuote(0.2)
        self.process = ql.BlackScholesMertonProcess(
            ql.QuoteHandle(self.spot),
            ql.YieldTermStructureHandle(ql.FlatForward(TODAY, ql.QuoteHandle(self.div_yield), _DC)),
            ql.YieldTermStructureHandle(ql.FlatForward(TODAY, ql.QuoteHandle(self.rate), _DC)),
            ql.BlackVolTermStructureHandle(
                ql.BlackConstantVol(TODAY, ql.NullCalendar(), ql.QuoteHandle(self.vol), _DC)
            ),
        )

    def set(self, spot: float, rate: float, div_yield: float, vol: float) -> None:
        self.spot.setValue(float(spot))
        self.rate.setValue(float(rate))
        self.div_yield.setValue(float(div_yield))
        self.vol.setValue(float(vol))

    def option(self, strike: float, days: int, is_call: bool, american: bool) -> ql.VanillaOption:
        payoff = ql.PlainVanillaPayoff(ql.Option.Call if is_call else ql.Option.Put, float(strike))
        expiry = TODAY + int(days)
        exercise = ql.AmericanExercise(TODAY, expiry) if american else ql.EuropeanExercise(expiry)
        return ql.VanillaOption(payoff, exercise)


def dividend_vector(ex_days: Sequence[int], amounts: Sequence[float]) -> ql.DividendVector:
    return ql.DividendVector([TODAY + int(d) for d in ex_days], [float(a) for a in amounts])


def random_options(
    n: int,
    seed: int,
    *,
    ex_days: np.ndarray,
    days_high: int,
    strikes: tuple[float, float],
    vol_max: float,
) -> dict[str, np.ndarray]:
    """Spot 100, strikes log-uniform in ``strikes``, whole days in [1, days_high), rates -1%..8%,
    yields 0..4%, vols log-uniform from 5% to ``vol_max``; calls and puts.

    QuantLib counts a dividend going ex on the expiry date; optmm does not (it is paid after the
    option's last moment). The expiries are kept off ``ex_days`` so the two models are the same.
    """
    rng = np.random.default_rng(seed)
    days = rng.integers(1, days_high, n)
    days[np.isin(days, ex_days)] += 1
    return {
        "spot": np.full(n, 100.0),
        "strike": np.exp(rng.uniform(np.log(strikes[0]), np.log(strikes[1]), n)),
        "days": days,
        "t": days / 365.0,
        "rate": rng.uniform(-0.01, 0.08, n),
        "div_yield": rng.uniform(0.0, 0.04, n),
        "vol": np.exp(rng.uniform(np.log(0.05), np.log(vol_max), n)),
        "is_call": rng.random(n) < 0.5,
    }


def option_args(o: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
    """The positional arguments of the pricing functions, from :func:`random_options`."""
    return (o["spot"], o["strike"], o["t"], o["rate"], o["div_yield"], o["vol"], o["is_call"])
