"""Fair value of the underlying (each term switchable and reported) and of its options."""

from __future__ import annotations

import math

import numpy as np
import pytest
from builders import one_name_market, with_cash_dividends

from optmm import pricing
from optmm.greeks import american_greeks, bsm_greeks
from optmm.quoting import FairValueConfig, decay_flow, fair_underlying, option_fair_values

MARKET = one_name_market()

ALL_ON = FairValueConfig(imbalance_weight=0.5, flow_weight=0.002, lead_beta=1.2)
ARGS = dict(flow_signal=3.0, lead_return=0.001, half_spread=0.02)


def test_terms_are_reported_and_add_up_to_the_price():
    fu = fair_underlying(100.0, 300.0, 100.0, **ARGS, config=ALL_ON)
    # hand values: 0.5 * 0.02 * (300 - 100) / 400; 0.002 * 3; 100 * 1.2 * 0.001
    assert fu.mid == 100.0
    assert fu.imbalance_adj == pytest.approx(0.005, rel=1e-15)
    assert fu.flow_adj == pytest.approx(0.006, rel=1e-15)
    assert fu.lead_adj == pytest.approx(0.12, rel=1e-15)
    assert fu.price == pytest.approx(100.0 + 0.005 + 0.006 + 0.12, rel=1e-15)


@pytest.mark.parametrize("switch", ["use_imbalance", "use_flow", "use_lead"])
def test_each_term_can_be_switched_off_alone(switch):
    term = {"use_imbalance": "imbalance_adj", "use_flow": "flow_adj", "use_lead": "lead_adj"}
    on = fair_underlying(100.0, 300.0, 100.0, **ARGS, config=ALL_ON)
    cfg = FairValueConfig.from_dict({**ALL_ON.to_dict(), switch: False})
    off = fair_underlying(100.0, 300.0, 100.0, **ARGS, config=cfg)
    assert getattr(off, term[switch]) == 0.0
    for other in set(term.values()) - {term[switch]}:
        assert getattr(off, other) == getattr(on, other) != 0.0
    assert off.price == pytest.approx(on.price - getattr(on, term[switch]), rel=1e-15)


def test_imbalance_sign_bounds_and_empty_book():
    cfg = FairValueConfig(imbalance_weight=1.0, use_flow=False, use_lead=False)
    fu = fair_underlying(50.0, [10.0, 0.0, 5.0, 0.0], [0.0, 10.0, 5.0, 0.0], half_spread=0.04, config=cfg)
    np.testing.assert_array_equal(fu.imbalance_adj, [0.04, -0.04, 0.0, 0.0])
    np.testing.assert_array_equal(fu.price, [50.04, 49.96, 50.0, 50.0])


def test_half_spread_is_required_for_the_imbalance_term_only():
    with pytest.raises(ValueError, match="half_spread"):
        fair_underlying(100.0, 1.0, 2.0, config=FairValueConfig())
    off = FairValueConfig(use_imbalance=False)
    assert fair_underlying(100.0, 1.0, 2.0, config=off).price == 100.0


@pytest.mark.parametrize(
    "kwargs", [dict(mid=0.0), dict(mid=math.nan), dict(bid_size=-1.0), dict(half_spread=-0.01)]
)
def test_bad_input_is_refused(kwargs):
    args = dict(mid=100.0, bid_size=1.0, ask_size=1.0, half_spread=0.01) | kwargs
    with pytest.raises(ValueError):
        fair_underlying(args.pop("mid"), args.pop("bid_size"), args.pop("ask_size"), **args, config=ALL_ON)


def test_decay_flow_halves_per_half_life():
    cfg = FairValueConfig(flow_halflife_s=2.0)
    assert decay_flow(80.0, 2.0, config=cfg) == 40.0
    assert decay_flow(80.0, 4.0, 5.0, config=cfg) == 25.0
    assert decay_flow(80.0, 0.0, config=cfg) == 80.0
    with pytest.raises(ValueError):
        decay_flow(1.0, -1.0, config=cfg)


def test_config_round_trip_hash_and_validation(tmp_path):
    d = ALL_ON.to_dict()
    assert FairValueConfig.from_dict(d) == ALL_ON
    assert FairValueConfig.from_dict(d).content_hash == ALL_ON.content_hash
    assert FairValueConfig(imbalance_weight=0.4).content_hash != FairValueConfig().content_hash
    path = tmp_path / "fv.toml"
    path.write_text("imbalance_weight = 0.5\nflow_weight = 0.002\nlead_beta = 1.2\n")
    assert FairValueConfig.load(path) == ALL_ON
    with pytest.raises(ValueError, match="unknown key 'imbalance'"):
        FairValueConfig.from_dict({"imbalance": 0.5})
    with pytest.raises(ValueError, match=r"FairValueConfig\.imbalance_weight"):
        FairValueConfig(imbalance_weight=1.5)
    with pytest.raises(ValueError, match=r"FairValueConfig\.flow_halflife_s"):
        FairValueConfig(flow_halflife_s=0.0)
    with pytest.raises(ValueError, match=r"FairValueConfig\.use_flow"):
        FairValueConfig(use_flow="yes")
    with pytest.raises(TypeError):
        FairValueConfig(0.5)  # keyword-only


def test_option_fair_values_price_at_the_fair_spot():
    k = np.array([90.0, 100.0, 110.0, 100.0])
    t = np.array([0.25, 0.25, 0.5, 0.5])
    call = np.array([True, True, True, False])
    price, g = option_fair_values(MARKET, "AAA", k, t, call, 101.0)
    ref = bsm_greeks(101.0, k, t, 0.03, 0.01, 0.25, call)
    np.testing.assert_array_equal(price, ref.price)
    np.testing.assert_array_equal(g.vega, ref.vega)
    assert price.shape == (4,)
    up, _ = option_fair_values(MARKET, "AAA", k, t, call, 101.5)
    assert np.all(up[:3] > price[:3]) and up[3] < price[3]
    with pytest.raises(ValueError, match="fair_spot"):
        option_fair_values(MARKET, "AAA", k, t, call, 0.0)


# --------------------------------------------------------------------------------------------------
# fair values on the contracts' terms (optmm.pricing): cash dividends and American style

_DIVS = (np.array([0.1, 0.35]), np.array([0.5, 0.5]))  # years from the valuation, amounts


def test_option_fair_values_on_cash_dividends_and_american_style(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pricing, "carry", with_cash_dividends(pricing.carry, {"AAA": _DIVS}))
    k = np.array([90.0, 100.0, 110.0, 100.0])
    t = np.array([0.25, 0.25, 0.5, 0.5])
    call = np.array([True, True, False, False])
    price, g = option_fair_values(MARKET, "AAA", k, t, call, 101.0)  # the default style: European
    ref = bsm_greeks(101.0, k, t, 0.03, 0.01, 0.25, call, dividends=_DIVS)
    for name in ("price", "delta", "gamma", "vega"):
        np.testing.assert_allclose(getattr(g, name), getattr(ref, name), rtol=1e-13, atol=1e-15, err_msg=name)
    np.testing.assert_array_equal(price, g.price)
    american = np.array([False, True, True, False])
    price, g = option_fair_values(MARKET, "AAA", k, t, call, 101.0, american=american)
    am = american_greeks(101.0, k[1:3], t[1:3], 0.03, 0.01, 0.25, call[1:3], dividends=_DIVS)
    np.testing.assert_allclose(price[1:3], am.price, rtol=1e-13)
    np.testing.assert_allclose(g.delta[1:3], am.delta, rtol=1e-12)
    np.testing.assert_allclose(price[[0, 3]], ref.price[[0, 3]], rtol=1e-13)
    assert price[2] > ref.price[2]  # early exercise of a deep put is worth something


def test_option_fair_values_default_style_is_the_underlyings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        pricing, "american_flags", lambda market, u, style=None: np.ones(np.shape(u), dtype=bool)
    )
    price, _ = option_fair_values(MARKET, "AAA", 110.0, 0.5, False, 101.0)
    assert price.shape == ()
    assert float(price) == pytest.approx(
        float(american_greeks(101.0, 110.0, 0.5, 0.03, 0.01, 0.25, False).price)
    )
    with pytest.raises(ValueError, match="american has shape"):
        option_fair_values(MARKET, "AAA", [100.0, 110.0], 0.5, False, 101.0, american=[True, False, True])
