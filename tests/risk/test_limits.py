"""Tests of optmm.risk.limits: the limit-set file format, its validation, look-ups and the content hash."""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from optmm.book import Book
from optmm.market import Market
from optmm.risk import Limit, LimitError, LimitSet, Metric, Scope, exposures, scenario_grid

ROOT = Path(__file__).resolve().parents[2]
DESK = ROOT / "scenarios" / "limits" / "desk.toml"
TIGHT = ROOT / "scenarios" / "limits" / "tight.toml"
DOCS = ROOT / "docs" / "controller.md"


def base() -> dict[str, Any]:
    """A small valid limit-set dictionary (TOML shape)."""
    return {
        "name": "t",
        "soft_fraction": 0.8,
        "contract": {"position": 100},
        "underlying": {
            "delta_shares": 1000,
            "vega_per_vol_point": 500,
            "TSLA": {"vega_per_vol_point": 200},
        },
        "book": {"delta_dollars": 1e6, "daily_loss": 5e4, "drawdown": 8e4},
        "soft": {"vega_per_vol_point": 0.5},
        "scenario": {"spot": [-0.1, 0.0, 0.1], "vol": [-0.05, 0.05], "every_s": 30, "after_fill_vega": 100},
    }


# --------------------------------------------------------------------------------------------------
# the enums


def test_metric_values_are_the_toml_keys_and_scopes_follow_the_contract() -> None:
    assert [m.value for m in Metric] == [
        "position",
        "delta_shares",
        "delta_dollars",
        "gamma_dollars_1pct",
        "vega_per_vol_point",
        "worst_scenario_loss",
        "daily_loss",
        "drawdown",
        "var",
    ]
    assert [s.value for s in Scope] == ["contract", "underlying", "book"]
    u, b = Scope.UNDERLYING, Scope.BOOK
    assert Metric.POSITION.scopes == {Scope.CONTRACT}
    assert Metric.DELTA_SHARES.scopes == {u}
    for m in (Metric.DELTA_DOLLARS, Metric.GAMMA_DOLLARS_1PCT, Metric.VEGA_PER_VOL_POINT):
        assert m.scopes == {u, b} and not m.is_loss
    assert Metric.WORST_SCENARIO_LOSS.scopes == {u, b} and Metric.WORST_SCENARIO_LOSS.is_loss
    assert Metric.DAILY_LOSS.scopes == {b} and Metric.DRAWDOWN.scopes == {b}
    assert Metric.DAILY_LOSS.is_loss and Metric.DRAWDOWN.is_loss
    assert Metric.VAR.scopes == {b} and Metric.VAR.is_loss


# --------------------------------------------------------------------------------------------------
# the shipped files


def test_desk_loads_with_its_values() -> None:
    s = LimitSet.load(DESK)
    assert s.name == "desk" and s.source == str(DESK)
    assert s.contract() == Limit(metric=Metric.POSITION, scope=Scope.CONTRACT, hard=250.0, soft=200.0)
    tsla_vega = s.for_underlying(Metric.VEGA_PER_VOL_POINT, "TSLA")
    assert tsla_vega is not None and tsla_vega.underlying == "TSLA"
    assert (tsla_vega.hard, tsla_vega.soft) == (10_000.0, pytest.approx(7_000.0))  # [soft] vega = 0.7
    aapl_vega = s.for_underlying(Metric.VEGA_PER_VOL_POINT, "AAPL")
    assert aapl_vega is not None and aapl_vega.underlying is None and aapl_vega.hard == 25_000.0
    wsl = s.for_underlying(Metric.WORST_SCENARIO_LOSS, "SPY")
    assert wsl is not None and wsl.soft == pytest.approx(0.75 * 400_000)
    daily = s.book(Metric.DAILY_LOSS)
    assert daily is not None and (daily.hard, daily.soft) == (250_000.0, pytest.approx(200_000.0))
    assert s.soft_spread_factor == 1.5 and s.soft_size_factor == 0.5 and s.stale_after_ms == 1000.0
    assert s.scenario_spot == (-0.10, -0.05, -0.02, 0.0, 0.02, 0.05, 0.10)
    assert s.scenario_vol == (-0.05, 0.0, 0.05)
    assert s.scenario_every_s == 60.0 and s.scenario_after_fill_vega == 2_500.0
    assert s.underlyings == ("SPY", "TSLA")
    assert re.fullmatch(r"[0-9a-f]{64}", s.content_hash)


def test_tight_loads_and_is_tighter_than_desk_everywhere() -> None:
    desk, tight = LimitSet.load(DESK), LimitSet.load(TIGHT)
    assert tight.name == "tight"
    for lim in tight.limits:
        if lim.scope is Scope.UNDERLYING:
            other = desk.for_underlying(lim.metric, lim.underlying or "AAPL")
        elif lim.scope is Scope.BOOK:
            other = desk.book(lim.metric)
        else:
            other = desk.contract(lim.metric)
        assert other is not None and lim.hard < other.hard, lim
    assert tight.scenario_every_s < desk.scenario_every_s
    assert tight.content_hash != desk.content_hash


def test_desk_is_sized_for_the_example_book() -> None:
    """As desk.toml says: the example book is inside every hard limit and SPY gamma is past its soft level."""
    book = Book.load(ROOT / "scenarios" / "examples" / "book.csv")
    market = Market.load(ROOT / "scenarios" / "examples" / "market.toml")
    s = LimitSet.load(DESK)
    ex = exposures(book, market)
    grid = scenario_grid(book, market, spot_shocks=s.scenario_spot, vol_shocks=s.scenario_vol)
    position = s.contract()
    assert position is not None
    assert np.abs(book.quantity[book.is_option]).max() <= position.soft
    greeks = (Metric.DELTA_SHARES, Metric.DELTA_DOLLARS, Metric.GAMMA_DOLLARS_1PCT, Metric.VEGA_PER_VOL_POINT)
    soft_breaches = []
    for u, row in ex.by_underlying.iterrows():
        values = {m: abs(row[m.value]) for m in greeks}
        values[Metric.WORST_SCENARIO_LOSS] = max(0.0, -float(grid.matrix(u).to_numpy().min()))
        for m, v in values.items():
            lim = s.for_underlying(m, u)
            assert lim is not None and v < lim.hard, (u, m, v)
            if v > lim.soft:
                soft_breaches.append((u, m))
    assert soft_breaches == [("SPY", Metric.GAMMA_DOLLARS_1PCT)]
    total = ex.total.iloc[0]
    for m in greeks[1:]:
        lim = s.book(m)
        assert lim is not None and abs(total[m.value]) < lim.soft
    wsl = s.book(Metric.WORST_SCENARIO_LOSS)
    assert wsl is not None and -grid.worst().pnl < wsl.soft


def test_the_toml_example_in_the_docs_loads(tmp_path: Path) -> None:
    text = DOCS.read_text(encoding="utf-8")
    blocks = re.findall(r"```toml\n(.*?)```", text, flags=re.S)
    assert blocks
    for i, block in enumerate(blocks):
        path = tmp_path / f"doc{i}.toml"
        path.write_text(block, encoding="utf-8")
        s = LimitSet.load(path)
        lim = s.for_underlying(Metric.DELTA_SHARES, "TSLA")
        assert lim is not None and (lim.hard, lim.soft) == (5_000.0, 3_000.0)


# --------------------------------------------------------------------------------------------------
# look-ups and soft levels


def test_for_underlying_prefers_the_override_then_the_default_then_none() -> None:
    s = LimitSet.from_dict(base())
    tsla = s.for_underlying(Metric.VEGA_PER_VOL_POINT, "TSLA")
    spy = s.for_underlying(Metric.VEGA_PER_VOL_POINT, "SPY")
    assert tsla is not None and tsla.hard == 200.0 and tsla.underlying == "TSLA"
    assert spy is not None and spy.hard == 500.0 and spy.underlying is None
    delta = s.for_underlying(Metric.DELTA_SHARES, "TSLA")  # TSLA has no delta override: the default
    assert delta is not None and delta.hard == 1000.0 and delta.underlying is None
    assert s.for_underlying(Metric.GAMMA_DOLLARS_1PCT, "SPY") is None
    assert s.for_underlying(Metric.DAILY_LOSS, "SPY") is None  # not an underlying metric
    book_dd = s.book(Metric.DELTA_DOLLARS)
    assert book_dd is not None and book_dd.scope is Scope.BOOK and book_dd.hard == 1e6
    assert s.book(Metric.VEGA_PER_VOL_POINT) is None
    assert s.book(Metric.DELTA_SHARES) is None
    pos = s.contract()
    assert pos is not None and pos.hard == 100.0
    assert s.contract(Metric.DELTA_DOLLARS) is None
    hard, soft = s.levels(Metric.VEGA_PER_VOL_POINT, ["SPY", "TSLA", "AAPL"])
    np.testing.assert_array_equal(hard, [500.0, 200.0, 500.0])
    np.testing.assert_allclose(soft, [250.0, 100.0, 250.0])
    hard, soft = s.levels(Metric.GAMMA_DOLLARS_1PCT, ["SPY"])
    assert hard[0] == np.inf and soft[0] == np.inf


def test_soft_level_precedence_explicit_then_soft_table_then_soft_fraction_then_default() -> None:
    d = base()
    d["underlying"]["delta_dollars"] = {"hard": 1000, "soft": 123}
    d["underlying"]["gamma_dollars_1pct"] = 1000
    d["underlying"]["TSLA"]["vega_per_vol_point"] = {"hard": 200}  # a table without soft: the fractions apply
    s = LimitSet.from_dict(d)
    get = s.for_underlying
    assert get(Metric.VEGA_PER_VOL_POINT, "TSLA").soft == pytest.approx(100.0)  # type: ignore[union-attr]
    assert get(Metric.DELTA_DOLLARS, "X").soft == 123.0  # type: ignore[union-attr]
    assert get(Metric.VEGA_PER_VOL_POINT, "X").soft == pytest.approx(250.0)  # type: ignore[union-attr]
    assert get(Metric.GAMMA_DOLLARS_1PCT, "X").soft == pytest.approx(800.0)  # type: ignore[union-attr]
    del d["soft_fraction"]
    d["soft"] = {}
    s = LimitSet.from_dict(d)
    assert s.for_underlying(Metric.GAMMA_DOLLARS_1PCT, "X").soft == pytest.approx(800.0)  # type: ignore[union-attr]
    d["soft_fraction"] = 0.6
    s = LimitSet.from_dict(d)
    assert s.for_underlying(Metric.GAMMA_DOLLARS_1PCT, "X").soft == pytest.approx(600.0)  # type: ignore[union-attr]
    assert s.contract().soft == pytest.approx(60.0)  # type: ignore[union-attr]


def test_defaults_when_the_file_gives_only_limits() -> None:
    s = LimitSet.from_dict({"book": {"daily_loss": 1000}})
    assert s.name == "limits" and s.source == "<dict>"
    assert s.soft_spread_factor == 1.5 and s.soft_size_factor == 0.5
    assert s.scenario_spot == (-0.10, -0.05, 0.0, 0.05, 0.10) and s.scenario_vol == (-0.05, 0.0, 0.05)
    assert s.scenario_every_s == 60.0 and s.scenario_after_fill_vega == math.inf
    assert s.stale_after_ms == 1000.0
    assert s.book(Metric.DAILY_LOSS).soft == pytest.approx(800.0)  # type: ignore[union-attr]


def test_name_defaults_to_the_file_stem(tmp_path: Path) -> None:
    path = tmp_path / "overnight.toml"
    path.write_text("[book]\ndaily_loss = 1000\n", encoding="utf-8")
    assert LimitSet.load(path).name == "overnight"


def test_boundary_values_are_accepted() -> None:
    d = base()
    d.update(soft_spread_factor=1, soft_size_factor=1, stale_after_ms=0.5)
    d["scenario"].update(spot=[-0.99], vol=[0.0], after_fill_vega=math.inf, every_s=0.001)
    d["soft_fraction"] = 0.999
    s = LimitSet.from_dict(d)
    assert s.soft_spread_factor == 1.0 and s.soft_size_factor == 1.0
    assert s.scenario_spot == (-0.99,) and s.scenario_after_fill_vega == math.inf


def test_from_dict_does_not_modify_its_input() -> None:
    d = base()
    before = copy.deepcopy(d)
    LimitSet.from_dict(d)
    assert d == before


# --------------------------------------------------------------------------------------------------
# refusals


def _set(d: dict[str, Any], path: str, value: Any) -> None:
    *tables, key = path.split("/")
    for t in tables:
        d = d.setdefault(t, {})
    d[key] = value


def _del(d: dict[str, Any], path: str) -> None:
    *tables, key = path.split("/")
    for t in tables:
        d = d[t]
    del d[key]


# (change: path -> value, or ("del", path)), expected fragments of the message: table, field, problem
REFUSALS: list[tuple[str, Any, tuple[str, ...]]] = [
    ("limits/delta_shares", 1, ("[limits]", "unknown table")),
    ("foo", 1, ("[top level]", "'foo'", "unknown key")),
    ("underlying/theta_per_day", 1, ("[underlying]", "'theta_per_day'", "unknown metric")),
    ("underlying/TSLA/theta", 1, ("[underlying.TSLA]", "'theta'", "unknown metric")),
    ("book/vanna", 1, ("[book]", "'vanna'", "unknown metric")),
    ("contract/positions", 1, ("[contract]", "'positions'", "unknown metric")),
    ("soft/vegaa", 0.5, ("[soft]", "'vegaa'", "unknown metric")),
    ("scenario/grid", [0.1], ("[scenario]", "'grid'", "unknown key")),
    ("book/delta_shares", 100, ("[book]", "'delta_shares'", "not allowed in [book]")),
    ("underlying/daily_loss", 100, ("[underlying]", "'daily_loss'", "not allowed in [underlying]")),
    ("underlying/TSLA/drawdown", 100, ("[underlying.TSLA]", "'drawdown'", "belongs in [book]")),
    ("underlying/position", 100, ("[underlying]", "'position'", "belongs in [contract]")),
    ("book/position", 100, ("[book]", "'position'", "belongs in [contract]")),
    ("contract/delta_dollars", 100, ("[contract]", "'delta_dollars'", "not allowed in [contract]")),
    ("book/delta_dollars", 0, ("[book]", "'delta_dollars'", "> 0")),
    ("book/delta_dollars", -5, ("[book]", "'delta_dollars'", "> 0")),
    ("underlying/TSLA/vega_per_vol_point", math.inf, ("[underlying.TSLA]", "'vega_per_vol_point'", "finite")),
    ("contract/position", math.nan, ("[contract]", "'position'", "finite")),
    ("soft_fraction", 0, ("[top level]", "'soft_fraction'", "(0, 1)")),
    ("soft_fraction", 1, ("[top level]", "'soft_fraction'", "(0, 1)")),
    ("soft_fraction", 1.2, ("[top level]", "'soft_fraction'", "(0, 1)")),
    ("soft/vega_per_vol_point", 1.0, ("[soft]", "'vega_per_vol_point'", "(0, 1)")),
    ("soft/daily_loss", -0.1, ("[soft]", "'daily_loss'", "(0, 1)")),
    ("book/daily_loss", {"hard": 100, "soft": 100}, ("[book]", "'daily_loss'", "soft level")),
    ("book/daily_loss", {"hard": 100, "soft": 0}, ("[book]", "'daily_loss'", "soft level")),
    ("book/daily_loss", {"hard": 100, "sof": 50}, ("[book]", "'daily_loss'", "unknown key 'sof'")),
    ("book/daily_loss", {"soft": 50}, ("[book]", "'daily_loss'", "needs 'hard'")),
    ("book/daily_loss", {"hard": "100"}, ("[book]", "'daily_loss'", "a number")),
    ("soft_spread_factor", 0.99, ("[top level]", "'soft_spread_factor'", ">= 1")),
    ("soft_size_factor", 0, ("[top level]", "'soft_size_factor'", "> 0 and <= 1")),
    ("soft_size_factor", 1.01, ("[top level]", "'soft_size_factor'", "> 0 and <= 1")),
    ("stale_after_ms", 0, ("[top level]", "'stale_after_ms'", "> 0")),
    ("stale_after_ms", math.inf, ("[top level]", "'stale_after_ms'", "> 0")),
    ("scenario/spot", [], ("[scenario]", "'spot'", "must be a non-empty list")),
    ("scenario/vol", [], ("[scenario]", "'vol'", "must be a non-empty list")),
    ("scenario/spot", [-1.0, 0.0], ("[scenario]", "'spot'", "> -1")),
    ("scenario/vol", [0.0, math.nan], ("[scenario]", "'vol'", "finite")),
    ("scenario/spot", 0.1, ("[scenario]", "'spot'", "list of numbers")),
    ("scenario/vol", ["0.05"], ("[scenario]", "'vol'", "list of numbers")),
    ("scenario/every_s", 0, ("[scenario]", "'every_s'", "> 0")),
    ("scenario/after_fill_vega", 0, ("[scenario]", "'after_fill_vega'", "> 0")),
    ("scenario/after_fill_vega", math.nan, ("[scenario]", "'after_fill_vega'", "> 0")),
    ("contract/position", "500", ("[contract]", "'position'", "must be a number")),
    ("contract/position", True, ("[contract]", "'position'", "must be a number")),
    ("contract/position", [500], ("[contract]", "'position'", "must be a number")),
    ("underlying/TSLA/vega_per_vol_point", None, ("[underlying.TSLA]", "'vega_per_vol_point'", "a number")),
    ("underlying/TSLA/extra", {"hard": 1}, ("[underlying.TSLA]", "'extra'", "nested")),
    ("name", 5, ("[top level]", "'name'", "non-empty string")),
    ("name", " ", ("[top level]", "'name'", "non-empty string")),
    ("book", [1], ("[top level]", "'book'", "must be a table")),
    ("soft_spread_factor", "wide", ("[top level]", "'soft_spread_factor'", "must be a number")),
    ("stale_after_ms", False, ("[top level]", "'stale_after_ms'", "must be a number")),
    ("underlying/var", 100, ("[underlying]", "'var'", "belongs in [book]")),
    ("book/var", {"hard": 100, "level": 1.0}, ("[book]", "'var'", "level must be in (0, 1)")),
    ("book/var", {"hard": 100, "level": 0}, ("[book]", "'var'", "level must be in (0, 1)")),
    ("book/var", {"hard": 100, "level": "0.99"}, ("[book]", "'var'", "a level in (0, 1)")),
    ("book/var", {"hard": 100, "levl": 0.9}, ("[book]", "'var'", "unknown key 'levl'", "hard, soft, level")),
    ("book/daily_loss", {"hard": 100, "level": 0.9}, ("[book]", "'daily_loss'", "unknown key 'level'")),
]


@pytest.mark.parametrize(("path", "value", "fragments"), REFUSALS, ids=[f"{p}={v!r}" for p, v, _ in REFUSALS])
def test_refusals_name_the_source_the_table_and_the_field(
    path: str, value: Any, fragments: tuple[str, ...]
) -> None:
    d = base()
    _set(d, path, value)
    with pytest.raises(LimitError) as info:
        LimitSet.from_dict(d, source="limits/x.toml")
    message = str(info.value)
    assert message.startswith("limits/x.toml: "), message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    assert "\n" not in message


def test_refusals_are_value_errors_and_the_base_is_valid() -> None:
    LimitSet.from_dict(base())  # the base of the refusal cases is itself valid
    assert issubclass(LimitError, ValueError)


def test_a_set_without_any_limit_is_refused() -> None:
    d = base()
    for table in ("contract", "underlying", "book"):
        _del(d, table)
    with pytest.raises(LimitError, match="no limits"):
        LimitSet.from_dict(d, source="s")
    with pytest.raises(LimitError, match="no limits"):
        LimitSet.from_dict({"underlying": {"TSLA": {}}}, source="s")


def test_not_a_table_at_all() -> None:
    with pytest.raises(LimitError, match="must be a table"):
        LimitSet.from_dict([1, 2], source="s")  # type: ignore[arg-type]


def test_load_refusals_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    with pytest.raises(LimitError, match=re.escape(str(missing)) + ": cannot read"):
        LimitSet.load(missing)
    bad = tmp_path / "bad.toml"
    bad.write_text("[book\ndaily_loss = 1\n", encoding="utf-8")
    with pytest.raises(LimitError, match=re.escape(str(bad)) + ": not valid TOML"):
        LimitSet.load(bad)
    wrong = tmp_path / "wrong.toml"
    wrong.write_text('name = "w"\n[book]\ndelta_shares = 5\n', encoding="utf-8")
    with pytest.raises(LimitError) as info:
        LimitSet.load(wrong)
    assert str(info.value).startswith(f"{wrong}: [book] field 'delta_shares': ")


def test_scenario_grid_size_is_bounded_naming_file_field_and_bound(tmp_path: Path) -> None:
    """A 1000 x 1000 grid made every simulated step that recomputes it take seconds: refused at load."""
    from optmm.risk.limits import MAX_SCENARIO_CELLS

    def grid_file(n_spot: int, n_vol: int) -> Path:
        spot = ", ".join(f"{-0.5 + i / n_spot:.6f}" for i in range(n_spot))
        vol = ", ".join(f"{-0.1 + i / (5 * n_vol):.6f}" for i in range(n_vol))
        path = tmp_path / f"grid_{n_spot}_{n_vol}.toml"
        path.write_text(f"[book]\ndaily_loss = 1000\n[scenario]\nspot = [{spot}]\nvol = [{vol}]\n")
        return path

    assert MAX_SCENARIO_CELLS == 2_500
    assert len(LimitSet.load(grid_file(50, 50)).scenario_spot) == 50  # at the bound: accepted
    for n_spot, n_vol in ((1000, 1000), (51, 50), (2501, 1)):
        path = grid_file(n_spot, n_vol)
        with pytest.raises(LimitError) as info:
            LimitSet.load(path)
        assert str(info.value) == (
            f"{path}: [scenario] fields 'spot' and 'vol': {n_spot:,} x {n_vol:,} = {n_spot * n_vol:,} "
            "scenarios, more than the bound of 2,500 (every contract is revalued on each)"
        )


def test_numbers_too_large_for_a_float_are_refused_not_crashed() -> None:
    big = 10**400
    for doc, field in (
        ({"book": {"daily_loss": big}}, "daily_loss"),
        ({"book": {"daily_loss": 1}, "scenario": {"spot": [big]}}, "spot"),
        ({"book": {"daily_loss": 1}, "stale_after_ms": big}, "stale_after_ms"),
    ):
        with pytest.raises(LimitError, match=f"field '{field}'"):
            LimitSet.from_dict(doc)


def test_a_named_pipe_is_refused_not_read(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "limits.toml"
    os.mkfifo(fifo)
    with pytest.raises(
        LimitError, match=re.escape(f"{fifo}: cannot read the limit file (not a regular file)")
    ):
        LimitSet.load(fifo)


# --------------------------------------------------------------------------------------------------
# direct construction


def test_limit_validates_itself() -> None:
    ok = Limit(metric=Metric.VEGA_PER_VOL_POINT, scope=Scope.UNDERLYING, underlying="TSLA", hard=10, soft=5)
    assert isinstance(ok.hard, float) and ok.soft_fraction == 0.5
    assert Limit(metric="daily_loss", scope="book", hard=2, soft=1).metric is Metric.DAILY_LOSS  # type: ignore[arg-type]
    bad: list[dict[str, Any]] = [
        {"metric": Metric.DELTA_SHARES, "scope": Scope.BOOK, "hard": 10, "soft": 5},
        {"metric": Metric.POSITION, "scope": Scope.UNDERLYING, "hard": 10, "soft": 5},
        {"metric": Metric.DAILY_LOSS, "scope": Scope.BOOK, "underlying": "SPY", "hard": 10, "soft": 5},
        {"metric": Metric.DELTA_SHARES, "scope": Scope.UNDERLYING, "underlying": "", "hard": 10, "soft": 5},
        {"metric": Metric.DAILY_LOSS, "scope": Scope.BOOK, "hard": 0, "soft": 0},
        {"metric": Metric.DAILY_LOSS, "scope": Scope.BOOK, "hard": 10, "soft": 10},
        {"metric": Metric.DAILY_LOSS, "scope": Scope.BOOK, "hard": 10, "soft": 11},
        {"metric": Metric.DAILY_LOSS, "scope": Scope.BOOK, "hard": 10, "soft": -1},
        {"metric": Metric.DAILY_LOSS, "scope": Scope.BOOK, "hard": math.inf, "soft": 1},
        {"metric": "theta", "scope": Scope.BOOK, "hard": 10, "soft": 5},
    ]
    for kwargs in bad:
        with pytest.raises(LimitError):
            Limit(**kwargs)


def test_constructor_validates_the_set_and_orders_the_limits() -> None:
    book = Limit(metric=Metric.DAILY_LOSS, scope=Scope.BOOK, hard=10, soft=5)
    pos = Limit(metric=Metric.POSITION, scope=Scope.CONTRACT, hard=10, soft=5)
    s = LimitSet(name="x", limits=(book, pos))
    assert s.limits == (pos, book)  # canonical order: contract, underlying, book
    assert s.book(Metric.DAILY_LOSS) is book
    with pytest.raises(LimitError, match=r"\[book\] field 'daily_loss': defined twice"):
        LimitSet(
            name="x", limits=(book, pos, Limit(metric=Metric.DAILY_LOSS, scope=Scope.BOOK, hard=20, soft=5))
        )
    with pytest.raises(LimitError, match="no limits"):
        LimitSet(name="x", limits=())
    with pytest.raises(LimitError, match="soft_size_factor"):
        LimitSet(name="x", limits=(book,), soft_size_factor=2.0)
    with pytest.raises(LimitError, match=r"\[scenario\] field 'spot'"):
        LimitSet(name="x", limits=(book,), scenario_spot=())
    with pytest.raises(LimitError, match="'limits'"):
        LimitSet(name="x", limits=(book, "daily_loss"))  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# to_dict / from_dict / content_hash


@pytest.mark.parametrize("path", [DESK, TIGHT], ids=["desk", "tight"])
def test_to_dict_round_trips_with_the_same_hash(path: Path) -> None:
    s = LimitSet.load(path)
    back = LimitSet.from_dict(s.to_dict(), source="elsewhere")
    assert back == s
    assert back.limits == s.limits
    assert back.content_hash == s.content_hash
    assert back.to_dict() == s.to_dict()
    assert back.source == "elsewhere"


def test_hash_identifies_the_settings_not_the_layout() -> None:
    fraction = LimitSet.from_dict({"name": "n", "soft_fraction": 0.5, "book": {"daily_loss": 100}})
    explicit = LimitSet.from_dict({"name": "n", "book": {"daily_loss": {"hard": 100, "soft": 50}}})
    by_table = LimitSet.from_dict({"name": "n", "book": {"daily_loss": 100.0}, "soft": {"daily_loss": 0.5}})
    assert fraction.content_hash == explicit.content_hash == by_table.content_hash
    assert fraction == explicit


def test_any_change_changes_the_hash() -> None:
    ref = LimitSet.from_dict(base()).content_hash
    changes = [
        ("name", "u"),
        ("soft_fraction", 0.7),
        ("soft_spread_factor", 2.0),
        ("soft_size_factor", 0.4),
        ("stale_after_ms", 500),
        ("contract/position", 101),
        ("underlying/TSLA/vega_per_vol_point", 201),
        ("underlying/SPY/vega_per_vol_point", 500),  # same level as the default, but an override
        ("book/drawdown", {"hard": 8e4, "soft": 1}),
        ("soft/vega_per_vol_point", 0.6),
        ("scenario/spot", [-0.1, 0.0, 0.11]),
        ("scenario/vol", [-0.05, 0.0, 0.05]),
        ("scenario/every_s", 31),
        ("scenario/after_fill_vega", math.inf),
    ]
    hashes = set()
    for path, value in changes:
        d = base()
        _set(d, path, value)
        h = LimitSet.from_dict(d).content_hash
        assert h != ref, path
        hashes.add(h)
    assert len(hashes) == len(changes)


def test_var_limit_level_default_round_trip_and_hash() -> None:
    plain = LimitSet.from_dict({"name": "v", "book": {"var": 1e5}})
    assert plain.book(Metric.VAR) == Limit(metric=Metric.VAR, scope=Scope.BOOK, hard=1e5, soft=8e4)
    assert plain.var_level == 0.99
    assert plain.to_dict()["book"]["var"] == {"hard": 1e5, "soft": 8e4, "level": 0.99}
    other = LimitSet.from_dict({"name": "v", "book": {"var": {"hard": 1e5, "soft": 5e4, "level": 0.95}}})
    assert other.var_level == 0.95
    for s in (plain, other):
        back = LimitSet.from_dict(s.to_dict())
        assert back == s and back.content_hash == s.content_hash and back.var_level == s.var_level
    level_only = LimitSet.from_dict({"name": "v", "book": {"var": {"hard": 1e5, "soft": 8e4, "level": 0.95}}})
    assert len({plain.content_hash, other.content_hash, level_only.content_hash}) == 3
    # a set without a var limit writes nothing about it (the hashes of existing sets are unchanged)
    assert "level" not in str(LimitSet.load(DESK).to_dict())
    book = Limit(metric=Metric.DAILY_LOSS, scope=Scope.BOOK, hard=10.0, soft=5.0)
    with pytest.raises(LimitError, match=r"field 'var_level': 0.95 is given but there is no var"):
        LimitSet(name="x", limits=(book,), var_level=0.95)
    var = Limit(metric=Metric.VAR, scope=Scope.BOOK, hard=10.0, soft=5.0)
    message = r"\[book\] field 'var' level: must be a finite number > 0 and < 1 \(got 1.0\)"
    with pytest.raises(LimitError, match=message):
        LimitSet(name="x", limits=(var,), var_level=1.0)
    assert LimitSet(name="x", limits=(var,), var_level=0.975).var_level == 0.975


def test_to_frame_lists_every_limit() -> None:
    s = LimitSet.load(DESK)
    frame = s.to_frame()
    assert list(frame.columns) == ["scope", "underlying", "metric", "hard", "soft", "unit"]
    assert len(frame) == len(s.limits) == 17
    row = frame[(frame.underlying == "TSLA") & (frame.metric == "vega_per_vol_point")].iloc[0]
    assert (row.scope, row.hard) == ("underlying", 10_000.0)


_UNDERLYING_METRICS = [m for m in Metric if Scope.UNDERLYING in m.scopes]
_BOOK_METRICS = [m for m in Metric if Scope.BOOK in m.scopes]
_level = st.floats(min_value=1e-3, max_value=1e12, allow_nan=False)
_fraction = st.floats(min_value=0.01, max_value=0.99)


@st.composite
def limit_dicts(draw: st.DrawFn) -> dict[str, Any]:
    d: dict[str, Any] = {"name": draw(st.text(min_size=1, max_size=8).filter(str.strip))}
    if draw(st.booleans()):
        d["soft_fraction"] = draw(_fraction)
    d["book"] = {m.value: draw(_level) for m in draw(st.lists(st.sampled_from(_BOOK_METRICS), min_size=1))}
    underlying: dict[str, Any] = {
        m.value: draw(_level) for m in draw(st.lists(st.sampled_from(_UNDERLYING_METRICS), unique=True))
    }
    for name in draw(st.lists(st.sampled_from(["SPY", "TSLA", "BRK B", "ÆØ"]), unique=True)):
        underlying[name] = {
            m.value: {"hard": (h := draw(_level)), "soft": h * draw(_fraction)}
            for m in draw(st.lists(st.sampled_from(_UNDERLYING_METRICS), unique=True))
        }
    d["underlying"] = underlying
    d["soft"] = {m.value: draw(_fraction) for m in draw(st.lists(st.sampled_from(list(Metric)), unique=True))}
    d["scenario"] = {
        "spot": draw(st.lists(st.floats(min_value=-0.99, max_value=5), min_size=1, max_size=5)),
        "vol": draw(st.lists(st.floats(min_value=-1, max_value=1), min_size=1, max_size=5)),
    }
    return d


@given(limit_dicts())
def test_round_trip_property(d: dict[str, Any]) -> None:
    s = LimitSet.from_dict(d)
    back = LimitSet.from_dict(s.to_dict())
    assert back == s and back.content_hash == s.content_hash
    for lim in s.limits:
        assert 0.0 < lim.soft < lim.hard
