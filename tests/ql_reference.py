"""QuantLib as the independent reference of the dividend and American tests (one option at a time).

Times are whole days on Actual/365 Fixed from a fixed valuation date, so that QuantLib's year
fractions equal the ``days / 365`` the tests pass to optmm exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

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
