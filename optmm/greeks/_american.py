"""American options with continuous carry: the Andersen-Lake-Offengeld fixed-point engine.

Method (Andersen, Lake, Offengeld, "High performance American option pricing", J. Comp. Finance
2016; the same construction as QuantLib's ``QdFpAmericanEngine``, written afresh here):

1. Calls become puts by put-call symmetry, ``C(S, K, r, q) = P(K, S, q, r)``. A put is exercised
   early only if ``r > 0`` or ``q < r < 0``; with ``r <= 0`` and ``q >= r`` it is European. The
   case ``q < r < 0`` has two exercise boundaries, which this engine does not solve: it reports
   ``DOUBLE_BOUNDARY`` and the API refuses the option.
2. The put's exercise boundary ``B(tau)`` (``tau`` = time to expiry) is represented by
   ``H = ln(B / X)^2`` on the Chebyshev-Lobatto nodes of ``zeta = 2 sqrt(tau / T) - 1``, with
   ``X = K min(1, r / q)`` its limit at expiry. In those variables ``H`` is smooth, so a dozen
   nodes carry the boundary to many digits.
3. First guess: Li's QD+ approximation at each node (one Halley solve per node).
4. Refinement: the boundary solves ``B = K exp(-(r - q) tau) N(tau, B) / D(tau, B)`` with ``N``,
   ``D`` integrals over the boundary at earlier times (ALO's system, in its form with the normal
   densities or with the normal CDFs, chosen per option: ``solve_boundary_py``). One
   Jacobi-Newton step, then plain fixed-point steps, every integral by a fixed quadrature rule.
5. Price: European value plus the early-exercise premium, an integral over the boundary in
   ``z = sqrt(t)``. Delta and gamma are that integral differentiated under the sign (the boundary
   does not depend on the spot); theta comes from the Black-Scholes equation, which the price
   satisfies off the boundary. Vega, volga, vanna and rho are central differences of the engine,
   which is a smooth function of its inputs (fixed nodes, fixed iteration counts, Halley run to
   convergence), so its differences are as accurate as its prices allow.

Every input of a kernel is an array of length 1 (broadcast) or n; the scheme (node counts and
quadrature rules) is one ``Scheme`` named tuple.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit, prange

from optmm._jit import sized_kernel
from optmm.greeks import _iv
from optmm.greeks._bsm import bsm_all, inputs_ok
from optmm.greeks._simd import vexp, vlog, vnorm_cdf, vnorm_cdf_pdf
from optmm.greeks._special import INV_SQRT_2PI

# Status of a price (the API refuses DOUBLE_BOUNDARY, naming the option).
OK = 0
DOUBLE_BOUNDARY = 1
# ... and of an implied vol: DOUBLE_BOUNDARY_IV beside the codes of optmm.greeks._iv and NO_PREMIUM.
DOUBLE_BOUNDARY_IV = 5

_EPS = 2.220446049250313e-16
_HALLEY_MAX = 30
_DENSITY_BELOW = 1.0  # |r - q| / sigma^2 under which the density form of the equation is used


class Scheme(NamedTuple):
    """Settings of the engine: node counts, iteration counts and quadrature rules on ``[-1, 1]``.

    Each rule is given as ``1 + x``, ``1 - x`` (both computed without cancellation, so nodes
    near an end of the interval keep their distance to it) and the weights.
    """

    n_nodes: int  # Chebyshev-Lobatto nodes of the boundary, tau = 0 included
    n_fixed_point: int  # plain fixed-point steps after the one Jacobi-Newton step
    form: int  # the boundary equation's form: 0 by the inputs (use_density), 1 densities, 2 CDFs
    cheb: np.ndarray  # (n_nodes, n_nodes): node values -> Chebyshev coefficients
    fp_xm: np.ndarray  # the boundary equations' rule
    fp_xp: np.ndarray
    fp_w: np.ndarray
    pr_xm: np.ndarray  # the premium integral's rule
    pr_xp: np.ndarray
    pr_w: np.ndarray


def gauss_legendre(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gauss-Legendre rule of ``n`` nodes as ``(1 + x, 1 - x, w)``."""
    x, w = np.polynomial.legendre.leggauss(n)
    return 1.0 + x, 1.0 - x, w


def tanh_sinh(h: float, k_max: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tanh-sinh rule of step ``h`` and nodes ``|k| <= k_max``, as ``(1 + x, 1 - x, w)``.

    Exponentially convergent for integrands analytic inside the interval, whatever their
    (integrable, algebraic) behaviour at its ends: the boundary's square-root behaviour at expiry.
    """
    k = np.arange(-k_max, k_max + 1, dtype=np.float64)
    a = 0.5 * np.pi * np.sinh(k * h)
    # 1 - tanh(a) = 2 / (1 + e^{2a}) and 1 + tanh(a) = 2 / (1 + e^{-2a}), without cancellation
    xp = 2.0 / (1.0 + np.exp(2.0 * a))
    xm = 2.0 / (1.0 + np.exp(-2.0 * a))
    w = h * 0.5 * np.pi * np.cosh(k * h) / np.cosh(a) ** 2
    keep = (xp > 0.0) & (xm > 0.0) & (w > 0.0)
    return xm[keep], xp[keep], w[keep]


def chebyshev_matrix(n: int) -> np.ndarray:
    """Coefficients ``c = M @ y`` of the interpolant through ``y`` at ``zeta_j = -cos(j pi / (n - 1))``.

    The interpolant is ``sum_k c_k T_k(zeta)`` (ends of the sum already halved).
    """
    j = np.arange(n)
    k = j[:, None]
    m = (2.0 / (n - 1)) * np.cos(k * (np.pi - j[None, :] * np.pi / (n - 1)))
    m[:, 0] *= 0.5
    m[:, -1] *= 0.5
    m[0, :] *= 0.5
    m[-1, :] *= 0.5
    return m


def make_scheme(n_nodes: int, n_fixed_point: int, fp_rule: tuple, pr_rule: tuple, form: int = 0) -> Scheme:
    return Scheme(n_nodes, n_fixed_point, form, chebyshev_matrix(n_nodes), *fp_rule, *pr_rule)


def _nodes_zeta(n: int) -> np.ndarray:
    return -np.cos(np.arange(n) * np.pi / (n - 1))


# ----------------------------------------------------------------------------------------------
# Scalar uses of the larger helpers: compiled once, then called
# ----------------------------------------------------------------------------------------------
# numba inlines an ``inline="always"`` function by copying, transforming and typing its whole IR
# again at every call site; at the sites below (outside the vectorised loops) a call costs a few
# nanoseconds, while inlining them made up much of the engine's compile time.


def norm_cdf_pdf_py(x: float) -> tuple[float, float]:
    """``(Phi(x), phi(x))``: ``vnorm_cdf_pdf`` as a plain call."""
    return vnorm_cdf_pdf(x)


norm_cdf_pdf = njit(cache=True, error_model="numpy")(norm_cdf_pdf_py)


def norm_cdf_py(x: float) -> float:
    """``Phi(x)``: ``vnorm_cdf`` as a plain call."""
    return vnorm_cdf(x)


norm_cdf = njit(cache=True, error_model="numpy")(norm_cdf_py)


def exp_py(x: float) -> float:
    """``exp(x)``: ``vexp`` as a plain call."""
    return vexp(x)


exp = njit(cache=True, error_model="numpy")(exp_py)


def log_py(x: float) -> float:
    """``ln(x)``: ``vlog`` as a plain call."""
    return vlog(x)


log = njit(cache=True, error_model="numpy")(log_py)


def european_py(
    s: float, k: float, t: float, r: float, q: float, sigma: float, is_call: bool
) -> tuple[float, float, float, float, float, float, float, float]:
    """Black-Scholes-Merton price and Greeks: ``bsm_all`` as a plain call."""
    return bsm_all(s, k, t, r, q, sigma, is_call)


european = njit(cache=True, error_model="numpy")(european_py)


# ----------------------------------------------------------------------------------------------
# The boundary as a Chebyshev interpolant
# ----------------------------------------------------------------------------------------------


def clenshaw_py(c: np.ndarray, z: float) -> float:
    """``sum_k c_k T_k(z)``."""
    b1 = 0.0
    b2 = 0.0
    for k in range(c.shape[0] - 1, 0, -1):
        b1, b2 = c[k] + 2.0 * z * b1 - b2, b1
    return c[0] + z * b1 - b2


clenshaw = njit(cache=True, inline="always", error_model="numpy")(clenshaw_py)


def boundary_py(c: np.ndarray, x_max: float, tau: float, big_t: float) -> float:
    """The put's exercise boundary ``B(tau)`` from the coefficients of ``H = ln(B / X)^2``."""
    z = min(2.0 * math.sqrt(max(tau, 0.0) / big_t) - 1.0, 1.0)
    return x_max * exp(-math.sqrt(max(clenshaw(c, z), 0.0)))


boundary = njit(cache=True, error_model="numpy")(boundary_py)


# ----------------------------------------------------------------------------------------------
# QD+ (Li 2009): the first guess of the boundary at one tau
# ----------------------------------------------------------------------------------------------


def qd_plus_py(k: float, r: float, q: float, sigma: float, tau: float, x_max: float) -> float:
    """Li's QD+ exercise boundary of a put at time to expiry ``tau`` (requires ``r > 0``).

    The boundary ``S`` solves ``(1 - e^{-q tau} N(-d1)) S - beta (K - S - p) + alpha theta / (r
    e^{-r tau}) = 0`` with ``p``, ``theta`` the European put and its time derivative at ``S``;
    Halley's method from ``X``, kept inside ``[x_min, X]``.
    """
    sigma2 = sigma * sigma
    v = sigma * math.sqrt(tau)
    dr = exp(-r * tau)
    dq = exp(-q * tau)
    h = -math.expm1(-r * tau)  # 1 - e^{-r tau}, without cancellation at short tau
    omega = 2.0 * (r - q) / sigma2
    root = math.sqrt((omega - 1.0) ** 2 + 8.0 * r / (sigma2 * h))
    lam = 0.5 * (-(omega - 1.0) - root)
    lam_prime = 2.0 * r / (sigma2 * h * h * root)
    alpha = 2.0 * dr * r / (sigma2 * (2.0 * lam + omega - 1.0))
    beta = alpha * (1.0 / h + lam_prime / (2.0 * lam + omega - 1.0)) - lam
    x_min = 1e4 * _EPS * x_max
    x = x_max
    for _ in range(_HALLEY_MAX):
        dp = log(x * dq / (k * dr)) / v + 0.5 * v
        dm = dp - v
        cdf_mdp, pdf_dp = norm_cdf_pdf(-dp)
        cdf_mdm = norm_cdf(-dm)
        npv = dr * k * cdf_mdm - x * dq * cdf_mdp
        theta = r * k * dr * cdf_mdm - q * x * dq * cdf_mdp - sigma2 * x / (2.0 * v) * dq * pdf_dp
        charm = -dq * (pdf_dp * ((r - q) / v - dm / (2.0 * tau)) + q * cdf_mdp)
        f = (1.0 - dq * cdf_mdp) * x - beta * (k - x - npv) + alpha * theta / (dr * r)
        f1 = 1.0 - dq * cdf_mdp + dq / v * pdf_dp + beta * (1.0 - dq * cdf_mdp) + alpha / (r * dr) * charm
        gamma = pdf_dp * dq / (v * x)
        colour = gamma * (q + (r - q) * dp / v + (1.0 - dp * dm) / (2.0 * tau))
        f2 = dq * (pdf_dp / (x * v) - pdf_dp * dp / (x * v * v)) + beta * gamma + alpha / (r * dr) * colour
        step = f / f1 / (1.0 - 0.5 * f * f2 / (f1 * f1))
        x_new = min(max(x - step, x_min), x_max)
        if abs(x_new - x) <= 1e-13 * x_max:
            return x_new
        x = x_new
    return x


qd_plus = njit(cache=True, inline="always", error_model="numpy")(qd_plus_py)


# ----------------------------------------------------------------------------------------------
# The fixed-point equation of the boundary
# ----------------------------------------------------------------------------------------------


def cheb_coeffs_py(m: np.ndarray, y: np.ndarray, c: np.ndarray) -> None:
    """``c = m @ y``, written out (a BLAS call costs more than this small product)."""
    n = y.shape[0]
    for i in range(n):
        acc = 0.0
        for j in range(n):
            acc += m[i, j] * y[j]
        c[i] = acc


cheb_coeffs = njit(cache=True, error_model="numpy")(cheb_coeffs_py)


def sqrt_h_py(c: np.ndarray, z: np.ndarray, b1: np.ndarray, b2: np.ndarray, out: np.ndarray) -> None:
    """``out_j = sqrt(max(H(z_j), 0)) = -ln(B / X)`` at many points: Clenshaw, points innermost.

    With the points in the inner loop each step is a vectorisable pass over them.
    """
    b1[:] = 0.0
    b2[:] = 0.0
    for k in range(c.shape[0] - 1, 0, -1):
        ck = c[k]
        for j in range(z.shape[0]):
            t = ck + 2.0 * z[j] * b1[j] - b2[j]
            b2[j] = b1[j]
            b1[j] = t
    c0 = c[0]
    for j in range(z.shape[0]):
        out[j] = math.sqrt(max(c0 + z[j] * b1[j] - b2[j], 0.0))


sqrt_h = njit(cache=True, inline="always", error_model="numpy")(sqrt_h_py)


def use_density_py(r: float, q: float, sigma: float, form: int) -> bool:
    """Which form of the boundary equation: 1 densities, 2 normal CDFs, 0 chosen by the inputs."""
    if form != 0:
        return form == 1
    return abs(r - q) < _DENSITY_BELOW * sigma * sigma


use_density = njit(cache=True, inline="always")(use_density_py)


def solve_boundary_py(
    k: float, r: float, q: float, sigma: float, big_t: float, x_max: float, sch: Scheme
) -> np.ndarray:
    """Chebyshev coefficients of ``H = ln(B / X)^2`` of a put's boundary over ``[0, T]``.

    The boundary's equation is ALO's form with the normal densities (QuantLib's ``FP_A``): at a
    node ``tau`` with ``b = B(tau)``, ``b = K e^{-(r-q) tau} N / D``,

        N = phi(d2(tau, b/K)) / v + r int_0^tau e^{r (tau-m)} phi(d2(m, z)) / (sigma sqrt m) dm
        D = phi(d1) / v + Phi(d1) + q int_0^tau e^{q (tau-m)} [phi(d1(m, z)) / (sigma sqrt m)
                                                                + Phi(d1(m, z))] dm

    where ``z = b / B(tau - m)``,

    with ``m = tau (1 + y)^2 / 4``, ``y`` on the scheme's rule; or ALO's form with the normal CDFs
    (``N = Phi(d2) + r int e^{r u} Phi(d2(tau - u, b / B(u))) du``, ``D`` likewise with ``q`` and
    ``d1``). Measured against QuantLib's high-precision scheme, the density form converges in
    fewer steps where ``|r - q| < sigma^2``, and fails to converge at low vols with ``r >> q``
    (where the CDF form is sound): ``use_density`` chooses by that rule. Everything that does not
    move with the boundary (times, discount factors, the Chebyshev abscissae of ``tau - m``) is set up once.
    """
    n = sch.n_nodes
    nq = sch.fp_w.shape[0]
    xm, xp, w = sch.fp_xm, sch.fp_xp, sch.fp_w
    zeta = np.empty(n)
    tau = np.empty(n)
    for i in range(n):
        zeta[i] = -math.cos(i * math.pi / (n - 1))
        tau[i] = 0.25 * big_t * (1.0 + zeta[i]) * (1.0 + zeta[i])
    # per (node, point): Chebyshev abscissa of tau - m, sigma sqrt(m), and weights with discounting
    zc = np.empty((n, nq))
    vm = np.empty((n, nq))
    wq = np.empty((n, nq))
    wr = np.empty((n, nq))
    aq = np.empty((n, nq))
    drift = (r - q) / (sigma * sigma) + 0.5
    density = use_density(r, q, sigma, sch.form)
    for i in range(1, n):
        sqt = math.sqrt(tau[i])
        stv = sqt / sigma
        for j in range(nq):
            if density:
                frac = 0.25 * xp[j] * (2.0 + xm[j])  # (tau - m) / tau, without cancellation
                zc[i, j] = (1.0 + zeta[i]) * math.sqrt(frac) - 1.0
                vm[i, j] = sigma * sqt * 0.5 * xm[j]
                wq[i, j] = w[j] * vexp(q * tau[i] * frac)
                wr[i, j] = w[j] * stv * vexp(r * tau[i] * frac)
                aq[i, j] = 0.5 * tau[i] * xm[j]
            else:  # u = tau (1 + x) / 2 is the earlier point's time to expiry, tau - u the time since
                zc[i, j] = (1.0 + zeta[i]) * math.sqrt(0.5 * xm[j]) - 1.0
                vm[i, j] = sigma * sqt * math.sqrt(0.5 * xp[j])
                wq[i, j] = 0.5 * tau[i] * w[j] * vexp(q * 0.5 * tau[i] * xm[j])
                wr[i, j] = 0.5 * tau[i] * w[j] * vexp(r * 0.5 * tau[i] * xm[j])
    y = np.zeros(n)
    for i in range(1, n):
        y[i] = log(qd_plus(k, r, q, sigma, tau[i], x_max) / x_max) ** 2
    c = np.empty(n)
    cheb_coeffs(sch.cheb, y, c)
    y_new = np.zeros(n)
    sq = np.empty(nq)
    b1 = np.empty(nq)
    b2 = np.empty(nq)
    ln_k = log(k / x_max)
    b_min = 1e4 * _EPS * x_max
    for it in range(1 + sch.n_fixed_point):
        for i in range(1, n):
            ti = tau[i]
            v = sigma * math.sqrt(ti)
            lnbx = -math.sqrt(y[i])  # ln(b / X) at the node
            b = x_max * exp(lnbx)
            stv = math.sqrt(ti) / sigma
            sqrt_h(c, zc[i], b1, b2, sq)
            d1 = (lnbx - ln_k + (r - q) * ti) / v + 0.5 * v
            d2 = d1 - v
            cdf1, pdf1 = norm_cdf_pdf(d1)
            cdf2, pdf2 = norm_cdf_pdf(d2)
            k12 = 0.0
            k3 = 0.0
            if density:
                for j in range(nq):  # vectorised
                    vj = vm[i, j]
                    dp = (lnbx + sq[j]) / vj + vj * drift
                    cdf_p, pdf_p = vnorm_cdf_pdf(dp)
                    dm = dp - vj
                    pdf_m = INV_SQRT_2PI * vexp(-0.5 * dm * dm)
                    k12 += wq[i, j] * (aq[i, j] * cdf_p + stv * pdf_p)
                    k3 += wr[i, j] * pdf_m
                num = pdf2 / v + r * k3
                den = pdf1 / v + cdf1 + q * k12
                num_d = -pdf2 * d2 / (b * v * v)
                den_d = -pdf1 * d1 / (b * v * v) + pdf1 / (b * v)
            else:
                for j in range(nq):  # vectorised
                    vj = vm[i, j]
                    dp = (lnbx + sq[j]) / vj + vj * drift
                    k12 += wq[i, j] * vnorm_cdf(dp)
                    k3 += wr[i, j] * vnorm_cdf(dp - vj)
                num = cdf2 + r * k3
                den = cdf1 + q * k12
                num_d = pdf2 / (b * v)
                den_d = pdf1 / (b * v)
            alpha = k * exp(-(r - q) * ti)
            fv = alpha * num / den
            if it == 0:  # Jacobi-Newton: b - (f(b) - b) / (f'(b) - 1)
                fd = alpha * (num_d / den - den_d * num / (den * den))
                fv = b - (fv - b) / (fd - 1.0)
            fv = min(max(fv, b_min), x_max)  # a boundary lies in (0, X]
            y_new[i] = log(fv / x_max) ** 2
        for i in range(1, n):
            y[i] = y_new[i]
        cheb_coeffs(sch.cheb, y, c)
    return c


solve_boundary = njit(cache=True, error_model="numpy")(solve_boundary_py)


# ----------------------------------------------------------------------------------------------
# The put: European value plus the early-exercise premium, with its spot derivatives
# ----------------------------------------------------------------------------------------------


def put_core_py(
    s: float, k: float, r: float, q: float, sigma: float, big_t: float, sch: Scheme
) -> tuple[float, float, float, bool]:
    """``(price, delta, gamma, exercised)`` of an American put with an early-exercise premium.

    Requires ``r > 0`` or ``q < r`` (some early exercise), ``sigma > 0``, ``T > 0``, and not the
    double-boundary case. ``exercised``: the spot is at or below the boundary (exercise now).
    """
    x_max = k * min(1.0, r / q) if q > 0.0 else k
    c = solve_boundary(k, r, q, sigma, big_t, x_max, sch)
    if s <= boundary(c, x_max, big_t, big_t):
        return k - s, -1.0, 0.0, True
    prem = 0.0
    d_prem = 0.0
    g_prem = 0.0
    half = 0.5 * math.sqrt(big_t)
    for j in range(sch.pr_w.shape[0]):
        z = half * sch.pr_xm[j]
        t = z * z
        tau = 0.25 * big_t * sch.pr_xp[j] * (2.0 + sch.pr_xm[j])  # T - t, without cancellation
        if t <= 0.0:
            continue
        bt = boundary(c, x_max, tau, big_t)
        v = sigma * z
        dp = (log(s / bt) + (r - q) * t) / v + 0.5 * v
        dm = dp - v
        cdf_p, pdf_p = norm_cdf_pdf(-dp)
        cdf_m, pdf_m = norm_cdf_pdf(-dm)
        er = exp(-r * t)
        eq = exp(-q * t)
        w = sch.pr_w[j] * half
        prem += w * 2.0 * z * (r * k * er * cdf_m - q * s * eq * cdf_p)
        kink = 2.0 * er * pdf_m * (q * bt - r * k) / (s * sigma)
        d_prem += w * (-2.0 * z * q * eq * cdf_p + kink)
        g_prem += w * (2.0 * q * eq * pdf_p / (s * sigma) - kink / s * (1.0 + dm / v))
    # bool(): not the literal False, for which numba would compile european a second time
    eu = european(s, k, big_t, r, q, sigma, bool(False))  # noqa: UP018
    price = max(eu[0] + max(prem, 0.0), k - s)
    return price, eu[1] + d_prem, eu[2] + g_prem, False


put_core = njit(cache=True, inline="always", error_model="numpy")(put_core_py)


# ----------------------------------------------------------------------------------------------
# One option: regimes, the call by symmetry, the Greeks
# ----------------------------------------------------------------------------------------------


def regime_py(r: float, q: float, is_call: bool) -> int:
    """0: European (never exercised early), 1: one boundary (this engine), 2: two boundaries."""
    rp, qp = (q, r) if is_call else (r, q)  # the put of put-call symmetry
    if rp < 0.0 and qp < rp:
        return 2
    if rp <= 0.0 and rp <= qp:
        return 0
    return 1


regime = njit(cache=True, inline="always")(regime_py)


def zero_vol_py(
    s: float, k: float, t: float, r: float, q: float, is_call: bool
) -> tuple[float, float, float, float]:
    """``(price, delta, theta, rho)`` with no volatility: the best deterministic exercise time."""
    phi = 1.0 if is_call else -1.0
    best = max(phi * (s - k), 0.0)
    t_best = 0.0
    # the extremum of phi (S e^{-qt} - K e^{-rt}) over t, where there is one
    t_ext = math.log(r * k / (q * s)) / (r - q) if (r != q and r * q > 0.0) else -1.0
    for tc in (t, t_ext):
        if tc > 0.0 and tc <= t:
            val = phi * (s * exp(-q * tc) - k * exp(-r * tc))
            if val > best:
                best = val
                t_best = tc
    if best <= 0.0:
        return 0.0, 0.0, 0.0, 0.0
    delta = phi * exp(-q * t_best)
    rho = phi * t_best * k * exp(-r * t_best)
    theta = phi * (q * s * exp(-q * t) - r * k * exp(-r * t)) if t_best == t else 0.0
    return best, delta, theta, rho


zero_vol = njit(cache=True, error_model="numpy")(zero_vol_py)


def core_py(
    s: float, k: float, t: float, r: float, q: float, sigma: float, is_call: bool, sch: Scheme
) -> tuple[float, float, float, bool]:
    """``(price, delta, gamma, exercised)`` of one American option in the one-boundary regime."""
    # a call by put-call symmetry; one call site, as numba copies an inlined function into each
    ps, pk, pr, pq = (k, s, q, r) if is_call else (s, k, r, q)
    p, dp, gp, ex = put_core(ps, pk, pr, pq, sigma, t, sch)
    if not is_call:
        return p, dp, gp, ex
    # P is homogeneous of degree 1 in (S', K') = (K, S): dC/dS = dP/dK' = (P - K dP/dS') / S,
    # d2C/dS2 = (K / S)^2 d2P/dS'2.
    return p, (p - k * dp) / s, (k / s) * (k / s) * gp, ex


core = njit(cache=True, error_model="numpy")(core_py)


def price_py(
    s: float, k: float, t: float, r: float, q: float, sigma: float, is_call: bool, sch: Scheme
) -> float:
    """Price of one American option (NaN in the two-boundary regime, which the API refuses)."""
    if t <= 0.0:
        return max((s - k) if is_call else (k - s), 0.0)
    reg = regime(r, q, is_call)
    if reg == 0:
        # the price of european's values (bsm_price_scalar's arithmetic; one function compiled, not two)
        return european(s, k, t, r, q, sigma, is_call)[0]
    if reg == 2:
        return math.nan
    if sigma == 0.0:
        return zero_vol(s, k, t, r, q, is_call)[0]
    return core(s, k, t, r, q, sigma, is_call, sch)[0]


# _nrt=True here and in ``marks``: the boundary's scratch arrays need numba's runtime, which a callee
# compiled from a function without it (the simulator's loop, optmm.sim._kernels) would otherwise lack
price_scalar = njit(cache=True, error_model="numpy", _nrt=True)(price_py)
# rho's two prices in ``marks``: inlined, as price_py is a few branches around calls. A compiled
# function's machine code holds a copy of every function it calls, which LLVM optimises and compiles
# again with it: a called price_scalar cost marks' first compile about half a second more. (Still so
# with optmm._compile_link: price_py is too short to be linked as a declaration, and calling it and
# all_one, below, cost the example book's first compile 0.4 s more.)
_price_inlined = njit(cache=True, inline="always", error_model="numpy")(price_py)

_VOL_BUMP = 1e-4
_RATE_BUMP = 1e-5


def marks_py(
    s: float, k: float, t: float, r: float, q: float, sigma: float, is_call: bool, sch: Scheme, rho: bool
) -> tuple[float, float, float, float, float, float, float, float]:
    """Price and the seven Greeks of one American option, as ``bsm_all`` (NaN: two boundaries); the
    rule of every American figure. ``rho`` False skips rho's two extra solves of the boundary (it is
    then 0 where it would be a difference of the engine): the simulator's loop, which needs the
    price, delta, gamma, vega and theta alone (:func:`optmm.sim._kernels._market_step`)."""
    reg = regime(r, q, is_call)
    if t <= 0.0 or reg == 0:
        return european(s, k, t, r, q, sigma, is_call)
    if reg == 2:
        nan = math.nan
        return (nan, nan, nan, nan, nan, nan, nan, nan)
    if sigma == 0.0:
        p0, d0, th0, rh0 = zero_vol(s, k, t, r, q, is_call)
        return (p0, d0, 0.0, 0.0, th0, rh0, 0.0, 0.0)
    price, delta, gamma, exercised = core(s, k, t, r, q, sigma, is_call, sch)
    if exercised:
        return (price, delta, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    theta = r * price - (r - q) * s * delta - 0.5 * sigma * sigma * s * s * gamma
    h = min(_VOL_BUMP, 0.5 * sigma)
    up = core(s, k, t, r, q, sigma + h, is_call, sch)
    dn = core(s, k, t, r, q, sigma - h, is_call, sch)
    vega = (up[0] - dn[0]) / (2.0 * h)
    volga = (up[0] - 2.0 * price + dn[0]) / (h * h)
    vanna = (up[1] - dn[1]) / (2.0 * h)
    if not rho:
        return (price, delta, gamma, vega, theta, 0.0, vanna, volga)
    # rho: a central difference, one-sided where a bump would cross into another regime
    p_up = _price_inlined(s, k, t, r + _RATE_BUMP, q, sigma, is_call, sch)
    p_dn = _price_inlined(s, k, t, r - _RATE_BUMP, q, sigma, is_call, sch)
    if math.isnan(p_dn):
        rho_ = (p_up - price) / _RATE_BUMP
    elif math.isnan(p_up):
        rho_ = (price - p_dn) / _RATE_BUMP
    else:
        rho_ = (p_up - p_dn) / (2.0 * _RATE_BUMP)
    return (price, delta, gamma, vega, theta, rho_, vanna, volga)


marks = njit(cache=True, error_model="numpy", _nrt=True)(marks_py)


# ----------------------------------------------------------------------------------------------
# Array kernels
# ----------------------------------------------------------------------------------------------


@sized_kernel(256, error_model="numpy")
def greeks_kernel(
    s, k, t, r, q, sigma, is_call, sch, o0, o1, o2, o3, o4, o5, o6, o7, status
):  # pragma: no cover
    """Fill the eight outputs and ``status`` (length n); inputs have length 1 or n.

    Returns the number of options with invalid inputs (the caller raises).
    """
    n = o0.shape[0]
    st = (int(s.shape[0] == n), int(k.shape[0] == n), int(t.shape[0] == n), int(r.shape[0] == n))
    su = (int(q.shape[0] == n), int(sigma.shape[0] == n), int(is_call.shape[0] == n))
    bad = 0
    for i in prange(n):
        a = (s[i * st[0]], k[i * st[1]], t[i * st[2]], r[i * st[3]], q[i * su[0]], sigma[i * su[1]])
        c = is_call[i * su[2]]
        if not inputs_ok(a[0], a[1], a[2], a[3], a[4], a[5]):
            bad += 1
            status[i] = OK
            continue
        # (marks itself, not a wrapper fixing rho: one level of compiled calls fewer; bool(True): a
        # runtime bool, not a literal, see put_core_py)
        res = marks(a[0], a[1], a[2], a[3], a[4], a[5], c, sch, bool(True))  # noqa: UP018
        o0[i], o1[i], o2[i], o3[i], o4[i], o5[i], o6[i], o7[i] = res
        status[i] = DOUBLE_BOUNDARY if a[2] > 0.0 and regime(a[3], a[4], c) == 2 else OK
    return bad


@sized_kernel(2_048, error_model="numpy")
def price_kernel(s, k, t, r, q, sigma, is_call, sch, out, status):  # pragma: no cover - compiled
    """Fill ``out`` and ``status`` (length n) with prices; inputs have length 1 or n."""
    n = out.shape[0]
    st = (int(s.shape[0] == n), int(k.shape[0] == n), int(t.shape[0] == n), int(r.shape[0] == n))
    su = (int(q.shape[0] == n), int(sigma.shape[0] == n), int(is_call.shape[0] == n))
    bad = 0
    for i in prange(n):
        a = (s[i * st[0]], k[i * st[1]], t[i * st[2]], r[i * st[3]], q[i * su[0]], sigma[i * su[1]])
        c = is_call[i * su[2]]
        if not inputs_ok(a[0], a[1], a[2], a[3], a[4], a[5]):
            bad += 1
            status[i] = OK
            continue
        out[i] = price_scalar(a[0], a[1], a[2], a[3], a[4], a[5], c, sch)
        status[i] = DOUBLE_BOUNDARY if a[2] > 0.0 and regime(a[3], a[4], c) == 2 else OK
    return bad


__all__ = [
    "DOUBLE_BOUNDARY",
    "OK",
    "Scheme",
    "chebyshev_matrix",
    "gauss_legendre",
    "greeks_kernel",
    "make_scheme",
    "marks",
    "marks_py",
    "price_kernel",
    "price_py",
    "price_scalar",
    "tanh_sinh",
]


# ----------------------------------------------------------------------------------------------
# Implied vol from an American price
# ----------------------------------------------------------------------------------------------

# Status codes beyond the European solver's (optmm.greeks._iv: OK 0 .. EXPIRED 3).
NO_PREMIUM = 4
_IV_MAX_VOL = 100.0
_IV_MAX_ITER = 100


def implied_vol_py(
    price: float, s: float, k: float, t: float, r: float, q: float, is_call: bool, sch: Scheme
) -> tuple[float, int]:
    """Vol at which the engine prices an American option at ``price``, and a status code.

    Bracketed and solved by the Illinois variant of regula falsi on the engine's price, which is
    continuous and increasing in the vol once above the exercise value. Where early exercise never
    pays (the European regime), the European solver answers, with its codes.
    """
    if t <= 0.0:
        return math.nan, _iv.EXPIRED
    reg = regime(r, q, is_call)
    if reg == 0:
        return _iv.implied_vol_scalar(price, s, k, t, r, q, is_call)
    if reg == 2:
        return math.nan, DOUBLE_BOUNDARY_IV
    intrinsic = max((s - k) if is_call else (k - s), 0.0)
    upper = s if is_call else k
    if price < intrinsic:
        return math.nan, _iv.BELOW_INTRINSIC
    if price >= upper:
        return math.nan, _iv.ABOVE_MAXIMUM
    p0 = zero_vol(s, k, t, r, q, is_call)[0]
    if price < p0:
        return math.nan, _iv.BELOW_INTRINSIC
    if price == p0:
        return (0.0, _iv.OK) if p0 > intrinsic else (math.nan, NO_PREMIUM)
    lo, f_lo = 0.0, p0 - price
    hi = 0.5
    f_hi = price_scalar(s, k, t, r, q, hi, is_call, sch) - price
    while f_hi <= 0.0:
        lo, f_lo = hi, f_hi
        hi *= 2.0
        if hi > _IV_MAX_VOL:
            return math.nan, _iv.ABOVE_MAXIMUM
        f_hi = price_scalar(s, k, t, r, q, hi, is_call, sch) - price
    side = 0
    x = hi
    for _ in range(_IV_MAX_ITER):
        x = (lo * f_hi - hi * f_lo) / (f_hi - f_lo)
        if not (x > lo and x < hi):
            x = 0.5 * (lo + hi)
        fx = price_scalar(s, k, t, r, q, x, is_call, sch) - price
        if fx == 0.0 or hi - lo <= 1e-14 * hi:
            break
        if fx > 0.0:
            hi, f_hi = x, fx
            if side == 1:
                f_lo *= 0.5
            side = 1
        else:
            lo, f_lo = x, fx
            if side == -1:
                f_hi *= 0.5
            side = -1
        if abs(fx) <= 1e-14 * upper:
            break
    return x, _iv.OK


implied_vol_scalar = njit(cache=True, error_model="numpy")(implied_vol_py)


@sized_kernel(256, error_model="numpy")
def iv_kernel(price, s, k, t, r, q, is_call, sch, out, status):  # pragma: no cover - compiled
    """Fill ``out`` and ``status`` (length n); inputs have length 1 or n. Returns the invalid count."""
    n = out.shape[0]
    sp = int(price.shape[0] == n)
    st = (int(s.shape[0] == n), int(k.shape[0] == n), int(t.shape[0] == n), int(r.shape[0] == n))
    su = (int(q.shape[0] == n), int(is_call.shape[0] == n))
    bad = 0
    for i in prange(n):
        p = price[i * sp]
        a = (s[i * st[0]], k[i * st[1]], t[i * st[2]], r[i * st[3]], q[i * su[0]])
        if not (inputs_ok(a[0], a[1], a[2], a[3], a[4], 0.0) and p >= 0.0 and p < math.inf):
            bad += 1
            status[i] = _iv.OK
            continue
        out[i], status[i] = implied_vol_scalar(p, a[0], a[1], a[2], a[3], a[4], is_call[i * su[1]], sch)
    return bad
