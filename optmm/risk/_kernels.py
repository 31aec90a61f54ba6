"""Numba kernels of the scenario engine: full revaluation of contracts x scenario points.

One kernel, ``reval_cells``, prices every (contract, point) cell with the same vectorised
Black-Scholes-Merton scalar core as :func:`optmm.greeks.bsm_price` and writes the P&L of the cell
(units x (shocked price - base price)). Contract constants are read once per contract and the
inner loop runs over the points of the grid, contiguous in memory, so LLVM vectorises it; nothing
of shape (contracts, points) is materialised but the vols going in and the P&L coming out.
"""

from __future__ import annotations

from numba import njit, prange

from optmm.greeks._bsm import bsm_price_scalar


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def _contract_row(s0, k, t, r, q, is_call, units, base, shift, vol, dt, out):  # pragma: no cover
    for g in range(out.shape[0]):
        price = bsm_price_scalar(s0 * (1.0 + shift[g]), k, t - dt[g], r, q, vol[g], is_call)
        out[g] = units * (price - base)


@njit(cache=True, parallel=True)
def reval_cells(
    spot_u, rate_u, div_u, u, strike, t, is_call, units, base, shift_ug, vol_cg, dt_g, out_cg
):  # pragma: no cover
    """``out_cg[c, g]`` = P&L of contract ``c`` at point ``g``.

    ``spot_u``, ``rate_u``, ``div_u``: per underlying; ``u``: each contract's underlying index;
    ``shift_ug[u, g]``: relative spot shock of underlying ``u`` at point ``g``; ``vol_cg[c, g]``:
    the contract's vol at the point (shift applied, floored at 0); ``dt_g``: years forward.
    """
    for c in prange(out_cg.shape[0]):
        j = u[c]
        _contract_row(
            spot_u[j], strike[c], t[c], rate_u[j], div_u[j], is_call[c], units[c], base[c],
            shift_ug[j], vol_cg[c], dt_g, out_cg[c],
        )  # fmt: skip
