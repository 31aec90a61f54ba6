"""The distributed engine (optmm.scaleout) refuses what the local one refuses, with the same message:
a stress leg the market cannot price (named by file and leg), a P&L that is not finite (named by
underlying and cell or leg); and it carries the grid's valuation date for the heatmap's title."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from builders import make_book

from optmm.book import Kind
from optmm.market import Market
from optmm.risk import Stress, run_stress, scenario_grid
from optmm.risk.scenarios import Shock
from optmm.scaleout import DistributedBook, client_for

ROOT = Path(__file__).resolve().parents[2]
MARKET = Market.load(ROOT / "scenarios" / "examples" / "market.toml")


@pytest.fixture(scope="module")
def client() -> Iterator[object]:
    with client_for("local:1") as c:
        yield c


def test_unpriceable_leg_is_named_alike(client, tmp_path: Path) -> None:
    book = make_book(
        [("SPY", Kind.PUT, 560.0, "2026-12-18", 10), ("TSLA", Kind.CALL, 350.0, "2026-12-18", -5)]
    )
    path = tmp_path / "s.toml"
    path.write_text('name = "s"\n[[legs]]\nlabel = "x"\nspot_pct = -5\nunderlying = "NVDA"\n')
    with pytest.raises(ValueError) as local:
        run_stress(book, MARKET, path)
    with DistributedBook.scatter(client, book, MARKET) as dbook, pytest.raises(ValueError) as dist:
        dbook.run_stress(path)
    assert str(dist.value) == str(local.value)
    assert str(local.value).startswith(f"{path}: leg 1 ('x'), field 'underlying': 'NVDA'")


def test_non_finite_pnl_is_named_alike(client) -> None:
    # the book refuses 1e306 shares at its boundary; its arrays changed behind its back must still give
    # the same named error locally and on the cluster
    book = make_book([("SPY", Kind.STOCK, 0.0, None, 1.0), ("TSLA", Kind.STOCK, 0.0, None, 1.0)])
    book.quantity[:] = 1e306
    stress = Stress("big", "", (Shock(-0.1, 0.0),), ("down",))
    with DistributedBook.scatter(client, book, MARKET) as dbook:
        for local_call, dist_call in (
            (lambda: scenario_grid(book, MARKET, spot_shocks=[-0.1], vol_shocks=[0.0]),
             lambda: dbook.scenario_grid(spot_shocks=[-0.1], vol_shocks=[0.0])),
            (lambda: run_stress(book, MARKET, stress), lambda: dbook.run_stress(stress)),
        ):  # fmt: skip
            with pytest.raises(ValueError) as local:
                local_call()
            with pytest.raises(ValueError) as dist:
                dist_call()
            assert str(dist.value) == str(local.value)
            assert "not a finite number" in str(local.value)


def test_grid_carries_the_valuation_date(client) -> None:
    book = make_book([("SPY", Kind.PUT, 560.0, "2026-12-18", 10)])
    with DistributedBook.scatter(client, book, MARKET) as dbook:
        grid = dbook.scenario_grid(spot_shocks=[-0.1, 0.0], vol_shocks=[0.0])
    assert grid.valuation == MARKET.valuation
    np.testing.assert_allclose(
        grid.matrix().to_numpy(),
        scenario_grid(book, MARKET, spot_shocks=[-0.1, 0.0], vol_shocks=[0.0]).matrix().to_numpy(),
        rtol=1e-12,
    )
