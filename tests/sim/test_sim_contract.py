"""The simulator's side of the controller-simulator contract: its controller is the stock-only one
(:meth:`optmm.risk.RiskController.for_underlyings`) with the loop's underlying ``j`` in row ``j``, and
the loop runs the controller's own kernels for the layer refresh, the P&L kill and the underlying gate
(no copies of its own)."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest

from optmm.risk import _controller_kernels as ck
from optmm.risk.limits import Metric
from optmm.sim import SimConfig
from optmm.sim import _kernels as sk
from optmm.sim.engine import _chain, _controller

UNDERLYING: dict[str, Any] = {"rate": 0.03, "div_yield": 0.0, "vol": 0.3, "vol_kappa": 5.0, "vol_of_vol": 1.0}
BASE: dict[str, Any] = {
    "sim": {"steps": 60, "dt_s": 1.0, "seed": 3},
    "chain": {"expiries_days": [30], "moneyness": [0.9, 1.0, 1.1], "strike_step": 1.0},
    "limits": {
        "name": "two",
        "contract": {"position": 100},
        "underlying": {"delta_shares": 2_000, "AAA": {"delta_shares": 700}},
        "book": {"daily_loss": 50_000},
    },
    # listed out of alphabetical order: the controller's rows must follow this order, not a sorted one
    "underlying": [{"name": "BBB", "spot": 50.0, **UNDERLYING}, {"name": "AAA", "spot": 100.0, **UNDERLYING}],
}


def config(**tables: Any) -> SimConfig:
    d = copy.deepcopy(BASE)
    d.update(tables)
    return SimConfig.from_dict(d, source="test")


@pytest.mark.parametrize("instrument", ["options", "underlying"])
def test_the_controllers_rows_are_the_loops_underlyings_in_the_configurations_order(instrument: str) -> None:
    cfg = config(chain={**BASE["chain"], "instrument": instrument})
    chain = _chain(cfg)
    ctl = _controller(cfg, chain, None)
    assert ctl.underlyings == cfg.names == ("BBB", "AAA")
    cf, ust, *_ = ctl.kernel_state()
    for j, und in enumerate(cfg.underlying):
        assert ust[j, ck.USPOT] == und.spot
        limit = cfg.limits.for_underlying(Metric.DELTA_SHARES, und.name)
        assert ust[j, ck.UHARD + ck.M_DELTA_SHARES] == limit.hard
    has = chain.contract >= 0
    assert has.any() == (instrument == "options")
    # each contract the loop quotes is booked under the loop's underlying
    assert np.array_equal(cf[chain.contract[has], ck.CU], chain.u[has].astype(np.float64))
    assert ust[:2, ck.USTOCK].tolist() == [0.0, 0.0] and ust[:2, ck.ULAYER].tolist() == [ck.NORMAL] * 2


def test_the_loop_has_no_copies_of_the_controllers_rules() -> None:
    assert not hasattr(sk, "_gate_underlying")
    assert sk.ck is ck  # the kernels it calls: ck.layers_all, ck.mark_pnl, ck.gate_underlying
    # the loop's layer rows are the layer refresh's
    assert ck.N_LAYER_OUT == 5 and (ck.L_LAYER, ck.L_TRIG, ck.L_MEAS, ck.L_THR) == (0, 1, 2, 3)
