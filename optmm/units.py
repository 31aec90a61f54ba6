"""Time units and the trader-unit conversions of the Greeks, each written once.

Time is ACT/365 calendar time: a year is :data:`DAYS_PER_YEAR` days of :data:`SECONDS_PER_DAY` seconds.

The conversions scale plain per-unit Greeks (per 1.00 of spot, vol, rate, per year of time) of ``qm``
units of the underlying (quantity x multiplier) into the units a trader reads (the columns of
:func:`optmm.risk.exposures`). Each is a plain-Python function ``f_py`` (numpy arrays or floats) with its
compiled form ``f`` for the kernels, as in :mod:`optmm.greeks`. The operations are written in the order
every caller used, so the figures are the same to the bit.
"""

from __future__ import annotations

from numba import njit

__all__ = [
    "DAYS_PER_YEAR",
    "SECONDS_PER_DAY",
    "SECONDS_PER_YEAR",
    "gamma_dollars_1pct",
    "gamma_dollars_1pct_py",
    "gamma_per_share",
    "gamma_per_share_py",
    "rho_per_pct",
    "rho_per_pct_py",
    "theta_per_day",
    "theta_per_day_py",
    "vanna_per_vol_point",
    "vanna_per_vol_point_py",
    "vega_per_unit_vol",
    "vega_per_unit_vol_py",
    "vega_per_vol_point",
    "vega_per_vol_point_py",
    "volga_per_vol_point2",
    "volga_per_vol_point2_py",
]

SECONDS_PER_DAY = 86400.0
DAYS_PER_YEAR = 365.0
"""ACT/365: years = calendar days / 365."""
SECONDS_PER_YEAR = DAYS_PER_YEAR * SECONDS_PER_DAY
"""31 536 000 (exact in float64)."""


def gamma_dollars_1pct_py(qm, gamma, spot):
    """Dollar gamma per 1% spot move: the change of delta dollars for +1%, ``qm · Γ · S² / 100``."""
    return qm * gamma * spot * spot / 100.0


def gamma_per_share_py(gamma_dollars, spot):
    """The inverse of :func:`gamma_dollars_1pct_py` for ``qm`` = 1: ``Γ = 100 · gamma_dollars / S²``
    (shares per unit of spot)."""
    return 100.0 * gamma_dollars / (spot * spot)


def vega_per_vol_point_py(qm, vega):
    """Value change for +1 vol point (0.01 of vol): ``qm · ν / 100``."""
    return qm * vega / 100.0


def vega_per_unit_vol_py(vega_points):
    """The inverse of :func:`vega_per_vol_point_py`: vega per 1.00 of vol, ``100 · vega_points``."""
    return 100.0 * vega_points


def theta_per_day_py(qm, theta):
    """Value change for one calendar day passing: ``qm · θ / 365`` (θ per year)."""
    return qm * theta / DAYS_PER_YEAR


def rho_per_pct_py(qm, rho):
    """Value change for +1% (0.01) of rate: ``qm · ρ / 100``."""
    return qm * rho / 100.0


def vanna_per_vol_point_py(qm, vanna):
    """Change of delta (shares) for +1 vol point: ``qm · vanna / 100``."""
    return qm * vanna / 100.0


def volga_per_vol_point2_py(qm, volga):
    """Change of the vega per vol point for +1 vol point: ``qm · volga / 10000``."""
    return qm * volga / 10000.0


_jit = njit(cache=True, inline="always", error_model="numpy")
gamma_dollars_1pct = _jit(gamma_dollars_1pct_py)
gamma_per_share = _jit(gamma_per_share_py)
vega_per_vol_point = _jit(vega_per_vol_point_py)
vega_per_unit_vol = _jit(vega_per_unit_vol_py)
theta_per_day = _jit(theta_per_day_py)
rho_per_pct = _jit(rho_per_pct_py)
vanna_per_vol_point = _jit(vanna_per_vol_point_py)
volga_per_vol_point2 = _jit(volga_per_vol_point2_py)

COMPILED = {
    "gamma_dollars_1pct_py": gamma_dollars_1pct,
    "gamma_per_share_py": gamma_per_share,
    "vega_per_vol_point_py": vega_per_vol_point,
    "vega_per_unit_vol_py": vega_per_unit_vol,
    "theta_per_day_py": theta_per_day,
    "rho_per_pct_py": rho_per_pct,
    "vanna_per_vol_point_py": vanna_per_vol_point,
    "volga_per_vol_point2_py": volga_per_vol_point2,
}
"""Each conversion's Python name -> its compiled form (for :func:`optmm.quoting._kernels.twin`)."""
