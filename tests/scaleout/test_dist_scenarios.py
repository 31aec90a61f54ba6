"""Scenario P&L of a book partitioned over a Dask LocalCluster (optmm.scaleout.scenarios,
optmm.scaleout.cluster).

The reference is the local engine (optmm.risk.scenarios) on the whole book. Partitioning changes
only the order of the final sums, so every figure must agree to 1e-9 of the book's gross value
(sum of |position value|), on a multi-underlying book with flat, table and SVI surfaces, stock,
vol overrides and an expired option, under sticky moneyness (the vols move with spot), for both
partitionings.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from distributed import Client

from optmm.book import Book, BookError
from optmm.market import Market, Sticky
from optmm.risk import Shock, exposures, load_stress, run_stress, scenario_grid, scenario_pnl
from optmm.scaleout import DistributedBook, client_for, parse_spec, partition_book
from optmm.scaleout import run_stress as dist_run_stress
from optmm.scaleout import scenario_grid as dist_grid
from optmm.scaleout import scenario_pnl as dist_pnl

ROOT = Path(__file__).resolve().parents[2]
STRESS_FILES = sorted((ROOT / "scenarios" / "stress").glob("*.toml"))
SPOTS = [-0.2, -0.05, 0.0, 0.05, 0.2]
VOLS = [-0.05, 0.0, 0.1]


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with client_for("local:2") as c:
        yield c


@pytest.fixture(scope="module")
def market() -> Market:
    return dataclasses.replace(
        Market.load(ROOT / "scenarios" / "examples" / "market.toml"), sticky=Sticky.MONEYNESS
    )


@pytest.fixture(scope="module")
def book(market: Market) -> Book:
    """600 seeded positions over the four example underlyings, with stock, overrides, an expired option."""
    rng = np.random.default_rng(20260707)
    n = 600
    unds = rng.choice(sorted(market.spot), n, p=[0.1, 0.2, 0.6, 0.1])  # one big underlying
    spot = np.array([market.spot[u] for u in unds])
    kind = rng.choice(["call", "put", "stock"], n, p=[0.45, 0.45, 0.1])
    strike = np.round(spot * rng.uniform(0.7, 1.3, n) / 5.0) * 5.0
    days = rng.choice([7, 28, 56, 119, 210, 392], n)
    expiry = (market.valuation + days.astype("timedelta64[D]")).astype(str)
    frame = pd.DataFrame(
        {
            "underlying": unds,
            "kind": kind,
            "strike": np.where(kind == "stock", np.nan, strike),
            "expiry": np.where(kind == "stock", "", expiry),
            "quantity": rng.integers(-40, 41, n).astype(float),
            "vol": np.where(
                (kind != "stock") & (rng.uniform(size=n) < 0.1), rng.uniform(0.1, 0.6, n), np.nan
            ),
        }
    )
    frame.loc[frame.index[kind != "stock"][0], "expiry"] = str(market.valuation - np.timedelta64(3, "D"))
    return Book.from_frame(frame, source="random")


@pytest.fixture(scope="module")
def tol(book: Book, market: Market) -> float:
    return 1e-9 * float(np.abs(exposures(book, market).positions["value"]).sum())


# --------------------------------------------------------------------------------------------------
# Partitioning (no cluster)


@pytest.mark.parametrize(
    ("by", "n"), [("underlying", None), ("underlying", 2), ("contracts", 1), ("contracts", 7)]
)
def test_partitions_cover_every_position_once(book: Book, by: str, n: int | None) -> None:
    parts = partition_book(book, by=by, n=n)  # type: ignore[arg-type]
    assert 1 <= len(parts) <= (n or len(book.underlyings()))
    ids = np.concatenate([p.id for p in parts])
    assert sorted(ids.tolist()) == sorted(book.id.tolist())
    assert all(len(p) for p in parts)
    # rows are the book's own: every field of every position travels with it
    row = {pid: i for i, pid in enumerate(book.id)}
    for p in parts:
        idx = np.array([row[i] for i in p.id])
        assert np.all(np.diff(idx) > 0)  # book order within a partition
        for name in ("underlying", "kind", "strike", "quantity", "multiplier"):
            np.testing.assert_array_equal(getattr(p, name), getattr(book, name)[idx])
        np.testing.assert_array_equal(p.expiry, book.expiry[idx])
        np.testing.assert_array_equal(p.vol, book.vol[idx])


def test_partition_by_underlying_keeps_underlyings_whole_and_balanced(book: Book) -> None:
    parts = partition_book(book, n=2)
    seen = [set(p.underlyings()) for p in parts]
    assert not seen[0] & seen[1]
    assert set().union(*seen) == set(book.underlyings())
    # the big underlying alone, the three others together
    counts = pd.Series(book.underlying).value_counts()
    assert sorted(len(p) for p in parts) == sorted([counts.iloc[0], counts.iloc[1:].sum()])


def test_partition_by_contracts_never_splits_a_contract(book: Book) -> None:
    parts = partition_book(book, by="contracts", n=7)
    assert len(parts) > 3
    owner: dict[tuple, int] = {}
    for i, p in enumerate(parts):
        f = p.to_frame()
        for key in zip(f["underlying"], f["kind"], f["strike"].fillna(0), f["expiry"].astype(str),
                       f["vol"].fillna(-1), strict=True):  # fmt: skip
            assert owner.setdefault(key, i) == i, key
    sizes = [len(p) for p in parts]
    assert max(sizes) < 2 * len(book) / 7  # roughly equal ranges


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [({"by": "expiry"}, "by: expected"), ({"n": 0}, "n: the number"), ({"by": "contracts"}, "is needed")],
)
def test_partition_book_refuses_bad_arguments(book: Book, kwargs: dict, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        partition_book(book, **kwargs)


# --------------------------------------------------------------------------------------------------
# Cluster specs


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("local", (os.cpu_count(), None)),
        ("local:3", (3, None)),
        ("tcp://10.1.2.3:8786", (None, "tcp://10.1.2.3:8786")),
        ("scheduler.example.com:8786", (None, "tcp://scheduler.example.com:8786")),
        ("tls://[::1]:8786", (None, "tls://[::1]:8786")),
    ],
)
def test_parse_spec(spec: str, expected: tuple) -> None:
    assert tuple(parse_spec(spec)) == expected


@pytest.mark.parametrize(
    "spec", ["", "local:0", "local:two", "remote", "tcp://host", "http://h:1", "h:99999"]
)
def test_bad_specs_are_refused_naming_them(spec: str) -> None:
    with pytest.raises(ValueError, match=f"cluster spec '{spec}'"):
        with client_for(spec):
            pass  # pragma: no cover - never reached


def test_unreachable_scheduler_is_a_connection_error() -> None:
    with pytest.raises(ConnectionError, match=r"no scheduler answers at tcp://127\.0\.0\.1:9"):
        with client_for("tcp://127.0.0.1:9", timeout=0.5):
            pass  # pragma: no cover - never reached


def test_local_cluster_shape(client: Client) -> None:
    assert sorted(client.nthreads().values()) == [1, 1]
    pids = client.run(os.getpid)
    assert len(set(pids.values())) == 2 and os.getpid() not in pids.values()  # processes, not threads
    expected = max(1, (os.cpu_count() or 1) // 2)
    assert set(client.run(lambda: os.environ.get("NUMBA_NUM_THREADS")).values()) == {str(expected)}
    assert client.submit(_task_numba_threads, pure=False).result() == expected


def _task_numba_threads() -> int:
    """What a partition's revaluation runs with, in a worker's task thread."""
    import numba

    from optmm.scaleout.cluster import limit_numba_threads

    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)  # as if numba came before the environment
    limit_numba_threads()
    return int(numba.get_num_threads())


# --------------------------------------------------------------------------------------------------
# Equal to the local engine


GRIDS = [
    {},
    {"days": 7.0, "underlying": "TSLA"},
    {"beta_weighted": True},
]


@pytest.mark.parametrize("by", ["underlying", "contracts"])
@pytest.mark.parametrize("kwargs", GRIDS, ids=["plain", "days_one_underlying", "beta_weighted"])
def test_grid_equals_local_engine(
    client: Client, book: Book, market: Market, tol: float, by: str, kwargs: dict
) -> None:
    ref = scenario_grid(book, market, spot_shocks=SPOTS, vol_shocks=VOLS, **kwargs)
    got = dist_grid(
        book, market, client=client, spot_shocks=SPOTS, vol_shocks=VOLS, by=by, n_partitions=5, **kwargs
    )  # type: ignore[arg-type]
    assert got.underlyings == ref.underlyings == tuple(book.underlyings())
    assert (got.spot_shocks, got.vol_shocks, got.days) == (ref.spot_shocks, ref.vol_shocks, ref.days)
    assert (got.underlying, got.beta_weighted) == (ref.underlying, ref.beta_weighted)
    assert np.abs(ref.matrix().to_numpy()).max() > 1e4 * tol  # the comparison is not of zeros
    for u in (None, *ref.underlyings):
        pd.testing.assert_frame_equal(got.matrix(u), ref.matrix(u), rtol=0, atol=tol)
        pd.testing.assert_frame_equal(got.taylor_matrix(u), ref.taylor_matrix(u), rtol=0, atol=tol)
    pd.testing.assert_frame_equal(got.pnl, ref.pnl, rtol=0, atol=tol)
    assert got.worst().driver == ref.worst().driver
    assert got.worst()[:2] == ref.worst()[:2]
    assert got.worst().pnl == pytest.approx(ref.worst().pnl, rel=0, abs=tol)


def test_partitioning_moves_only_the_last_digits(client: Client, book: Book, market: Market) -> None:
    """Each partition computes its contracts' cells exactly as the whole book does."""
    ref = scenario_grid(book, market, spot_shocks=SPOTS, vol_shocks=VOLS)
    got = dist_grid(book, market, client=client, spot_shocks=SPOTS, vol_shocks=VOLS)
    for u in ref.underlyings:  # one partition per underlying: the same sums in the same order
        np.testing.assert_array_equal(got.matrix(u).to_numpy(), ref.matrix(u).to_numpy())


def test_scenario_pnl_and_stresses_equal_local_engine(
    client: Client, book: Book, market: Market, tol: float
) -> None:
    shocks = [
        Shock(-0.1, 0.05),
        Shock(0.03, -0.02, days=2.0, underlying="AAPL"),
        Shock(-0.05, 0.0, beta_weighted=True),
    ]
    pd.testing.assert_frame_equal(
        dist_pnl(book, market, shocks, client=client, by="contracts", n_partitions=4),
        scenario_pnl(book, market, shocks),
        rtol=0,
        atol=tol,
    )
    with DistributedBook.scatter(client, book, market, by="contracts", n_partitions=3) as dbook:
        assert dbook.n_partitions == 3 and dbook.n_positions == len(book)
        for path in STRESS_FILES:
            got, ref = dbook.run_stress(load_stress(path)), run_stress(book, market, path)
            pd.testing.assert_frame_equal(got.table, ref.table, rtol=0, atol=tol)
            pd.testing.assert_frame_equal(got.legs, ref.legs, rtol=0, atol=tol)
            assert (got.name, got.worst_leg, got.driver) == (ref.name, ref.worst_leg, ref.driver)
            assert got.pnl == pytest.approx(ref.pnl, rel=0, abs=tol)
    one = dist_run_stress(book, market, STRESS_FILES[0], client=client)
    assert one.pnl == pytest.approx(run_stress(book, market, STRESS_FILES[0]).pnl, rel=0, abs=tol)


def test_partitions_loaded_by_the_workers(
    client: Client, book: Book, market: Market, tol: float, tmp_path: Path
) -> None:
    """Any split is exact, even one underlying over several files; the files are read by the workers."""
    frame = book.to_frame()
    paths = []
    for i, rows in enumerate(np.array_split(np.arange(len(frame)), 3)):
        paths.append(tmp_path / f"book-{i}.parquet")
        frame.iloc[rows].to_parquet(paths[-1], index=False)
    with DistributedBook.from_files(client, paths, market) as dbook:
        assert (dbook.n_partitions, dbook.n_positions, dbook.underlyings) == (
            3,
            len(book),
            tuple(book.underlyings()),
        )
        got = dbook.scenario_grid(spot_shocks=SPOTS, vol_shocks=VOLS, days=1.0)
    ref = scenario_grid(book, market, spot_shocks=SPOTS, vol_shocks=VOLS, days=1.0)
    pd.testing.assert_frame_equal(got.pnl, ref.pnl, rtol=0, atol=tol)


def test_errors_are_raised_as_the_local_engine_raises_them(
    client: Client, book: Book, market: Market
) -> None:
    with DistributedBook.scatter(client, book, market) as dbook:
        with pytest.raises(ValueError, match="spot_shocks: duplicated"):  # checked before any task
            dbook.scenario_grid(spot_shocks=[0.1, 0.1], vol_shocks=[0.0])
        with pytest.raises(ValueError, match="no market data"):
            dbook.scenario_pnl([Shock(0.1, 0.0, underlying="NOPE")])
        with pytest.raises(ValueError, match="a spot at or below 0"):
            dbook.scenario_grid(spot_shocks=[-0.9], vol_shocks=[0.0], beta_weighted=True)
        # an error on a worker is re-raised here as it was raised there
        bad = client.submit(lambda: [], pure=False)  # a partition that is not a book
        dbook._parts.append(bad)
        with pytest.raises(AttributeError):
            dbook.scenario_grid(spot_shocks=[0.1], vol_shocks=[0.0])
    no_beta = dataclasses.replace(market, beta={"SPY": 1.0})
    with pytest.raises(ValueError, match="no beta to the index 'SPY'"):
        dist_grid(book, no_beta, client=client, spot_shocks=[0.1], vol_shocks=[0.0], beta_weighted=True)
    no_tsla = dataclasses.replace(
        market,
        spot={u: s for u, s in market.spot.items() if u != "TSLA"},
        surface={u: s for u, s in market.surface.items() if u != "TSLA"},
        beta={u: b for u, b in market.beta.items() if u != "TSLA"},
        **{
            name: {u: v for u, v in getattr(market, name).items() if u != "TSLA"}
            for name in ("dividends", "borrow", "settlement", "style", "asset")
        },
    )
    with pytest.raises(BookError, match="'TSLA'"):
        DistributedBook.scatter(client, book, no_tsla)
    with pytest.raises(ValueError, match=r"nowhere\.csv"):
        DistributedBook.from_files(client, ["/nowhere.csv"], market)


def test_empty_book(client: Client, book: Book, market: Market) -> None:
    empty = Book.from_frame(book.to_frame().iloc[:0], source="empty")
    got = dist_grid(empty, market, client=client, spot_shocks=SPOTS, vol_shocks=VOLS)
    assert got.underlyings == () and got.pnl.empty
    assert np.all(got.matrix().to_numpy() == 0.0) and got.worst().driver is None
