"""Tests of optmm.surface: flat, table (nodes, total-variance interpolation, wings) and raw SVI."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from optmm.surface import FlatSurface, SurfaceError, SVISurface, TableSurface, VolSurface

EXPIRIES = np.array([30.0, 91.0, 273.0]) / 365.0
STRIKES = np.array([80.0, 90.0, 100.0, 110.0, 120.0])
VOLS = np.array(
    [
        [0.32, 0.27, 0.23, 0.21, 0.22],
        [0.30, 0.26, 0.235, 0.22, 0.215],
        [0.28, 0.255, 0.24, 0.23, 0.225],
    ]
)
TABLE = TableSurface(EXPIRIES, STRIKES, VOLS)

SVI_T = np.array([0.1, 0.5, 1.0])
SVI = SVISurface(
    SVI_T,
    a=np.array([0.002, 0.012, 0.03]),
    b=np.array([0.05, 0.1, 0.15]),
    rho=np.array([-0.7, -0.6, -0.5]),
    m=np.array([0.0, 0.02, 0.05]),
    sigma=np.array([0.1, 0.15, 0.2]),
)


def svi_w(i: int, k: np.ndarray) -> np.ndarray:
    a, b, rho, m, sigma = SVI.a[i], SVI.b[i], SVI.rho[i], SVI.m[i], SVI.sigma[i]
    return a + b * (rho * (k - m) + np.sqrt((k - m) ** 2 + sigma**2))


# ------------------------------------------------------------------------------------------------
# flat


def test_flat_surface() -> None:
    s = FlatSurface(0.25)
    assert isinstance(s, VolSurface)
    out = s.vol(np.array([[50.0], [150.0]]), np.array([0.0, 0.1, 3.0]), 100.0)
    assert out.shape == (2, 3) and (out == 0.25).all()
    assert s.vol == 0.25 and float(s.vol) == 0.25  # the field is also a float
    assert s == FlatSurface(0.25) and s != FlatSurface(0.3)
    assert pickle.loads(pickle.dumps(s)).vol(100.0, 1.0, 100.0) == 0.25


@pytest.mark.parametrize("bad", [0.0, -0.1, np.nan, np.inf])
def test_flat_refuses_bad_vol(bad: float) -> None:
    with pytest.raises(SurfaceError, match="field 'vol'"):
        FlatSurface(bad)


# ------------------------------------------------------------------------------------------------
# table


def test_table_reproduces_nodes_exactly() -> None:
    assert isinstance(TABLE, VolSurface)
    out = TABLE.vol(STRIKES[None, :], EXPIRIES[:, None], 100.0)
    assert out.shape == VOLS.shape
    np.testing.assert_array_equal(out, VOLS)  # bit for bit


def test_table_linear_in_strike_within_an_expiry() -> None:
    k = np.array([85.0, 95.0, 104.0, 117.5])
    for i, t in enumerate(EXPIRIES):
        np.testing.assert_allclose(TABLE.vol(k, t, 100.0), np.interp(k, STRIKES, VOLS[i]), rtol=0, atol=1e-15)


def test_table_flat_beyond_the_wings() -> None:
    for i, t in enumerate(EXPIRIES):
        out = TABLE.vol(np.array([1.0, 50.0, 79.999, 80.001, 119.999, 120.001, 200.0, 1e6]), t, 100.0)
        np.testing.assert_array_equal(out[:3], [VOLS[i, 0]] * 3)
        np.testing.assert_array_equal(out[-3:], [VOLS[i, -1]] * 3)
        # just inside the first and last strikes the vol still moves
        assert 0 < abs(out[3] - VOLS[i, 0]) < 1e-4 and 0 < abs(out[4] - VOLS[i, -1]) < 1e-4


@pytest.mark.parametrize("strike", [80.0, 95.0, 100.0, 113.0, 130.0])
@pytest.mark.parametrize("frac", [0.1, 0.5, 0.93])
def test_table_total_variance_interpolation(strike: float, frac: float) -> None:
    for j in range(EXPIRIES.size - 1):
        t1, t2 = EXPIRIES[j], EXPIRIES[j + 1]
        t = t1 + frac * (t2 - t1)
        v1 = float(np.interp(strike, STRIKES, VOLS[j]))
        v2 = float(np.interp(strike, STRIKES, VOLS[j + 1]))
        w1, w2 = v1 * v1 * t1, v2 * v2 * t2
        expected = np.sqrt((w1 + (w2 - w1) * (t - t1) / (t2 - t1)) / t)
        np.testing.assert_allclose(TABLE.vol(strike, t, 100.0), expected, rtol=1e-13)
        # and not linear in vol (the two differ for this table)
        assert abs(expected - (v1 + frac * (v2 - v1))) > 1e-6 or v1 == v2


def test_table_constant_vol_outside_the_expiries() -> None:
    k = np.array([85.0, 100.0, 125.0])
    first, last = TABLE.vol(k, EXPIRIES[0], 100.0), TABLE.vol(k, EXPIRIES[-1], 100.0)
    for t in (-0.5, 0.0, 1e-9, EXPIRIES[0] / 2):
        np.testing.assert_array_equal(TABLE.vol(k, t, 100.0), first)
    for t in (EXPIRIES[-1] + 1e-9, 2.0, 30.0):
        np.testing.assert_array_equal(TABLE.vol(k, t, 100.0), last)


def test_table_ignores_forward_and_broadcasts() -> None:
    k = np.linspace(70, 130, 7)
    a = TABLE.vol(k[:, None], np.array([0.05, 0.4, 1.0]), 100.0)
    b = TABLE.vol(k[:, None], np.array([0.05, 0.4, 1.0]), np.full((7, 3), 250.0))
    assert a.shape == (7, 3)
    np.testing.assert_array_equal(a, b)
    assert (a > 0).all() and np.isfinite(a).all()


def test_table_single_strike_and_single_expiry() -> None:
    one = TableSurface([0.5], [100.0], [[0.2]])
    np.testing.assert_array_equal(one.vol([50.0, 100.0, 200.0], [0.1, 0.5, 2.0], 100.0), [0.2, 0.2, 0.2])
    row = TableSurface([0.5], [90.0, 110.0], [[0.3, 0.2]])
    np.testing.assert_allclose(row.vol(100.0, [0.01, 0.5, 5.0], 100.0), 0.25, rtol=1e-15)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"vols": VOLS[:2]}, "vols"),  # shape mismatch
        ({"vols": VOLS[:, :4]}, "vols"),
        ({"vols": np.where(VOLS == 0.23, -0.1, VOLS)}, "vols"),
        ({"vols": np.where(VOLS == 0.23, 0.0, VOLS)}, "vols"),
        ({"vols": np.where(VOLS == 0.23, np.nan, VOLS)}, "vols"),
        ({"strikes": STRIKES[::-1]}, "strikes"),
        ({"strikes": np.array([80.0, 90.0, 90.0, 110.0, 120.0])}, "strikes"),
        ({"strikes": np.array([-80.0, 90.0, 100.0, 110.0, 120.0])}, "strikes"),
        ({"expiries": EXPIRIES[::-1]}, "expiries"),
        ({"expiries": np.array([0.0, 0.25, 0.75])}, "expiries"),
        ({"expiries": np.array([0.1, np.inf, 0.75])}, "expiries"),
    ],
)
def test_table_refuses_bad_input(kwargs: dict[str, np.ndarray], field: str) -> None:
    args = {"expiries": EXPIRIES, "strikes": STRIKES, "vols": VOLS, **kwargs}
    with pytest.raises(SurfaceError, match=f"field '{field}'") as info:
        TableSurface(**args)
    assert info.value.field == field


def test_table_copies_its_input() -> None:
    vols = VOLS.copy()
    s = TableSurface(EXPIRIES, STRIKES, vols)
    vols[0, 0] = 9.0
    assert s.vol(80.0, EXPIRIES[0], 100.0) == VOLS[0, 0]
    assert s == TABLE and hash(s) == hash(TABLE)


def test_query_validation() -> None:
    with pytest.raises(ValueError, match="strike: invalid value nan at index 1"):
        TABLE.vol(np.array([100.0, np.nan]), 0.5, 100.0)
    with pytest.raises(ValueError, match="shapes do not broadcast"):
        TABLE.vol(np.ones(3), np.ones(4), 100.0)


# ------------------------------------------------------------------------------------------------
# SVI


@pytest.mark.parametrize("forward", [80.0, 100.0, 131.0])
def test_svi_closed_form_at_nodes(forward: float) -> None:
    strikes = np.array([40.0, 70.0, 95.0, 100.0, 105.0, 140.0, 250.0])
    k = np.log(strikes / forward)
    for i, t in enumerate(SVI_T):
        expected = np.sqrt(svi_w(i, k) / t)
        np.testing.assert_allclose(SVI.vol(strikes, t, forward), expected, rtol=1e-14)


def test_svi_total_variance_interpolation_and_extrapolation() -> None:
    strikes, forward = np.array([60.0, 100.0, 150.0]), 100.0
    k = np.log(strikes / forward)
    for j in range(SVI_T.size - 1):
        t1, t2 = SVI_T[j], SVI_T[j + 1]
        t = t1 + 0.37 * (t2 - t1)
        w1, w2 = svi_w(j, k), svi_w(j + 1, k)
        expected = np.sqrt((w1 + (w2 - w1) * (t - t1) / (t2 - t1)) / t)
        np.testing.assert_allclose(SVI.vol(strikes, t, forward), expected, rtol=1e-13)
    np.testing.assert_allclose(SVI.vol(strikes, 0.01, forward), np.sqrt(svi_w(0, k) / SVI_T[0]), rtol=1e-14)
    np.testing.assert_allclose(SVI.vol(strikes, 5.0, forward), np.sqrt(svi_w(2, k) / SVI_T[2]), rtol=1e-14)


def test_svi_depends_on_moneyness_only() -> None:
    t = np.array([0.05, 0.3, 0.8, 2.0])[:, None]
    k = np.array([50.0, 90.0, 100.0, 120.0])
    np.testing.assert_allclose(SVI.vol(k, t, 100.0), SVI.vol(2.0 * k, t, 200.0), rtol=1e-14)


def test_svi_total_variance_is_non_negative() -> None:
    # minimum exactly at zero: a = -b sigma sqrt(1 - rho^2)
    b, rho, sigma = 0.2, -0.8, 0.1
    s = SVISurface([0.5], a=[-b * sigma * np.sqrt(1 - rho**2)], b=[b], rho=[rho], m=[0.1], sigma=[sigma])
    k = np.linspace(-3, 3, 20001)
    w = s.total_variance(k, 0)
    assert (w >= 0).all() and w.min() < 1e-6
    vols = s.vol(100.0 * np.exp(k), np.array([0.1, 0.5, 1.0])[:, None], 100.0)
    assert np.isfinite(vols).all() and (vols >= 0).all()
    assert (SVI.total_variance(k, np.arange(3)[:, None]) > 0).all()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"b": [0.05, -0.1, 0.15]}, "b"),
        ({"rho": [-0.7, -1.0, -0.5]}, "rho"),
        ({"rho": [-0.7, -0.6, 1.2]}, "rho"),
        ({"sigma": [0.1, 0.0, 0.2]}, "sigma"),
        ({"sigma": [0.1, -0.15, 0.2]}, "sigma"),
        ({"a": [0.002, -0.2, 0.03]}, "a"),  # a + b sigma sqrt(1 - rho^2) < 0
        ({"a": [0.002, 0.012]}, "a"),  # wrong length
        ({"m": [0.0, np.nan, 0.05]}, "m"),
        ({"expiries": [0.1, 0.1, 1.0]}, "expiries"),
        ({"expiries": [-0.1, 0.5, 1.0]}, "expiries"),
    ],
)
def test_svi_refuses_invalid_parameters(change: dict[str, list[float]], field: str) -> None:
    params = {name: getattr(SVI, name) for name in ("expiries", "a", "b", "rho", "m", "sigma")}
    with pytest.raises(SurfaceError, match=f"field '{field}'"):
        SVISurface(**{**params, **{k: np.array(v) for k, v in change.items()}})


def test_svi_refuses_non_positive_strike_or_forward() -> None:
    with pytest.raises(ValueError, match="strike"):
        SVI.vol(np.array([100.0, 0.0]), 0.5, 100.0)
    with pytest.raises(ValueError, match="forward"):
        SVI.vol(100.0, 0.5, -1.0)
