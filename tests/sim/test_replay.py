"""Replaying a recorded market (``simulate(config, tape=...)``, ``optmm simulate --tape``) and recording
a run as a tape that replays it bit for bit (docs/tape.md, "Replay")."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from builders import assert_usage_error, run

from optmm.sim import SimConfig, simulate
from optmm.sim.tape import Tape, read_tape, tape_frame, tape_from_result, write_tape

ROOT = Path(__file__).resolve().parents[2]
CALM = ROOT / "scenarios/sim/calm_day.toml"
SHORT = {"sim.steps": 600, "sim.quotes_from_s": 0.0, "sim.quotes_window_s": 600.0}
INFORMED = {
    **SHORT,
    "flow.informed_rate": 0.3,
    "flow.informed_horizon_s": 120.0,
    "flow.informed_size": 10.0,
    "flow.latency_steps": 2,
}
TABLES = ("steps", "underlyings", "fills", "hedges", "quotes", "orders", "market_end")


def _same_run(a, b) -> None:  # type: ignore[no-untyped-def]
    """Every table and summary figure equal bit for bit (the fills' ``informed`` flag aside: a tape
    does not say which orders were informed)."""
    for name in TABLES:
        x, y = getattr(a, name), getattr(b, name)
        if name == "fills":
            x, y = x.drop(columns="informed"), y.drop(columns="informed")
        pd.testing.assert_frame_equal(x, y, check_exact=True, obj=name)
    sa = {k: v for k, v in a.summary.items() if k != "wall_s"}
    sb = {k: v for k, v in b.summary.items() if k != "wall_s"}
    assert repr(sa) == repr(sb)  # (repr: NaN figures compare equal, floats by their shortest text)


def _record(overrides: dict[str, object], path: Path):  # type: ignore[no-untyped-def]
    """The calm day with ``overrides``: its config, its result and its tape (written to ``path``)."""
    cfg = SimConfig.load(CALM).with_overrides(overrides)
    res = simulate(cfg)
    return cfg, res, read_tape(write_tape(tape_from_result(res), path))


@pytest.fixture(scope="module", params=["calm", "informed+latency"])
def recorded(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    path = tmp_path_factory.mktemp("tape") / "run.csv"
    return _record(SHORT if request.param == "calm" else INFORMED, path)


def test_a_recorded_run_replays_bit_for_bit(recorded) -> None:  # type: ignore[no-untyped-def]
    cfg, res, tape = recorded
    assert len(res.fills) > 50
    if cfg.flow.informed_rate > 0.0:
        assert res.fills["informed"].sum() > 0
    # every order that reached us is on the tape, as a trade at our price, the aggressor the other side
    assert len(tape.option_trades) == len(res.orders) >= len(res.fills)
    np.testing.assert_array_equal(tape.option_trades.price, res.orders["price"].to_numpy())
    np.testing.assert_array_equal(tape.option_trades.side, -res.orders["side"].to_numpy())
    replay = simulate(cfg, tape=tape)
    _same_run(res, replay)
    assert not replay.fills["informed"].any()


def test_parquet_tape_replays_bit_for_bit_too(recorded, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg, res, tape = recorded
    pq = read_tape(write_tape(tape, tmp_path / "run.parquet"))
    _same_run(res, simulate(cfg, tape=pq))


def _retape(tape: Tape, frame: pd.DataFrame, path: Path) -> Tape:
    """``frame`` (a tape's table, :func:`tape_frame`) written as a CSV tape and read back."""
    frame = frame.iloc[np.argsort(frame["time"].to_numpy(), kind="stable")].copy()
    frame["time"] = frame["time"].astype(np.int64)
    for c in ("kind", "expiry", "side"):
        frame[c] = frame[c].fillna("")
    frame.to_csv(path, index=False)
    return read_tape(path)


def test_no_look_ahead(recorded, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Records stamped after step m's time, changed (mids, vols, trades' prices and sizes) and added
    (a quote and a trade a nanosecond after it): the run up to step m is unchanged, and it changes
    later (the perturbation matters)."""
    cfg, _, tape = recorded
    base = simulate(cfg, tape=tape)
    frame = tape_frame(tape)
    m = 300
    t_m = int(frame["time"].iloc[0]) + m * 10**9
    after = frame["time"].to_numpy() > t_m
    frame.loc[after, ["bid", "ask", "mid"]] *= 1.01
    frame.loc[after, "vol"] += 0.05
    frame.loc[after, "size"] *= 3.0
    trade = (frame["type"] == "trade").to_numpy()
    frame.loc[after & trade, "price"] = np.where(frame.loc[after & trade, "side"] == "buy", 1e6, 0.0)
    first_trade = frame[trade].iloc[0]
    extra = pd.DataFrame(
        [
            {**frame.iloc[0].to_dict(), "time": t_m + 1, "mid": 150.0, "bid": 149.0, "ask": 151.0},
            {**first_trade.to_dict(), "time": t_m + 1, "price": 0.0, "size": 50.0, "side": "sell"},
        ]
    )
    moved = simulate(
        cfg, tape=_retape(tape, pd.concat([frame, extra], ignore_index=True), tmp_path / "p.csv")
    )
    assert moved.config.sim.steps == base.config.sim.steps

    def upto(df: pd.DataFrame, last: int, drop: tuple[str, ...] = ()) -> pd.DataFrame:
        return df[df["step"] <= last].drop(columns=list(drop)).reset_index(drop=True)

    # step k's own market, quotes, orders, fills, hedges; the steps table's row k holds the P&L of
    # holding over (k, k + 1], marked at step k + 1; a fill's markout is its fair value 5 steps later
    for name, last, drop in (
        ("underlyings", m, ()),
        ("quotes", m, ()),
        ("orders", m, ()),
        ("fills", m, ("markout",)),
        ("hedges", m, ()),
        ("steps", m - 1, ()),
    ):
        a, b = upto(getattr(base, name), last, drop), upto(getattr(moved, name), last, drop)
        pd.testing.assert_frame_equal(a, b, check_exact=True, obj=name)
    assert moved.underlyings["spot"].iloc[m + 1] == base.underlyings["spot"].iloc[m + 1] * 1.01
    assert (
        not moved.fills[moved.fills["step"] > m]
        .reset_index(drop=True)
        .equals(base.fills[base.fills["step"] > m].reset_index(drop=True))
    )


def test_records_outside_the_chain_are_ignored(recorded, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Another underlying's quotes and trades, and a contract the chain does not have, change nothing."""
    cfg, res, tape = recorded
    frame = tape_frame(tape)
    quote0, trade0 = frame.iloc[0].to_dict(), frame[frame["type"] == "trade"].iloc[0].to_dict()
    t = frame["time"].to_numpy()
    extra = pd.DataFrame(
        [
            {**quote0, "time": t[10], "underlying": "ZZZ", "mid": 20.0, "bid": 19.9, "ask": 20.1},
            {**trade0, "time": t[20], "underlying": "ZZZ"},
            {**trade0, "time": t[30], "strike": 1234.0},
            {**trade0, "time": t[40], "expiry": "2027-01-05"},
        ]
    )
    wider = _retape(tape, pd.concat([frame, extra], ignore_index=True), tmp_path / "wider.csv")
    assert len(wider.underlyings) == 2 and wider.n_contracts == tape.n_contracts + 3
    _same_run(res, simulate(cfg, tape=wider))


def test_quotes_only_fill_by_the_quote_rule(tmp_path: Path) -> None:
    """A tape of option quotes, no trades (the touch: the synthetic run's own quotes): each fill obeys
    the quote-driven rule against the touch as of its step (a side of ours resting at or inside it
    fills at our price, for at most order_size_mean; one through it at the far touch), and the resting
    fills number n·p within five binomial standard deviations, n the sides of ours resting there and
    p = 1 − exp(−arrival_a·dt) (an independent count over the replay's own quotes); seeds differ."""
    cfg, res, tape = _record(SHORT, tmp_path / "run.csv")  # (latency 0: a step's live quote is its own)
    a = 0.2
    cfg = cfg.with_overrides({"flow.arrival_a": a})
    frame = tape_frame(tape)
    desc = res.fills.drop_duplicates("contract").set_index("contract")
    t0 = int(frame["time"].iloc[0])
    q = res.quotes[res.quotes["contract"].isin(desc.index) & (res.quotes["bid_size"] > 0)]
    q = q[q["ask_size"] > 0]
    d = desc.loc[q["contract"]]
    days = np.ceil(d["expiry_days"].to_numpy()).astype("timedelta64[D]")
    touch = pd.DataFrame(
        {
            "time": t0 + q["step"].to_numpy() * 10**9,
            "type": "quote",
            "underlying": "AAA",
            "kind": d["kind"].to_numpy(),
            "expiry": np.datetime_as_string(np.datetime64("2026-01-05") + days),
            "strike": d["strike"].to_numpy(),
            "bid": q["bid"].to_numpy(),
            "ask": q["ask"].to_numpy(),
        }
    )
    unds = frame[frame["type"] == "quote"]
    quotes_only = _retape(tape, pd.concat([unds, touch], ignore_index=True), tmp_path / "q.csv")
    assert len(quotes_only.option_trades) == 0 and len(quotes_only.option_quotes) > 1000
    one, two = simulate(cfg, tape=quotes_only, seed=1), simulate(cfg, tape=quotes_only, seed=2)
    assert len(one.fills) > 20
    assert (
        not one.fills[["step", "contract"]]
        .reset_index(drop=True)
        .equals(two.fills[["step", "contract"]].reset_index(drop=True))
    )
    # each (step, contract) of ours against the touch as of that step (the last recorded at or before)
    every = pd.MultiIndex.from_product([range(cfg.sim.steps), sorted(desc.index)], names=["step", "contract"])
    mkt = q.set_index(["step", "contract"])[["bid", "ask"]].reindex(every).groupby(level="contract").ffill()
    mkt = mkt.rename(columns={"bid": "mb", "ask": "ma"}).reset_index()
    ours = one.quotes.merge(mkt, on=["step", "contract"])
    mid = 0.5 * (ours["mb"] + ours["ma"])
    rest_b = (ours["bid_size"] > 0) & (ours["bid"] >= ours["mb"]) & (ours["bid"] < mid)
    rest_a = (ours["ask_size"] > 0) & (ours["ask"] <= ours["ma"]) & (ours["ask"] > mid)
    cross_b = (ours["bid_size"] > 0) & (ours["bid"] >= ours["ma"])
    cross_a = (ours["ask_size"] > 0) & (ours["ask"] <= ours["mb"])
    f = one.fills.merge(ours.assign(rb=rest_b, ra=rest_a, cb=cross_b, ca=cross_a), on=["step", "contract"])
    assert len(f) == len(one.fills)  # every fill where a touch was recorded
    buy = f["side"] == 1
    resting = np.where(buy, f["rb"], f["ra"])
    crossing = np.where(buy, f["cb"], f["ca"])
    assert (resting | crossing).all()
    want_px = np.where(resting, np.where(buy, f["bid"], f["ask"]), np.where(buy, f["ma"], f["mb"]))
    np.testing.assert_array_equal(f["price"].to_numpy(), want_px)
    assert (f.loc[resting, "size"] <= cfg.flow.order_size_mean).all()
    p = -math.expm1(-a * cfg.sim.dt_s)
    n = int(rest_b.sum() + rest_a.sum())
    k = int(resting.sum())
    assert n > 1000 and abs(k - n * p) <= 5.0 * math.sqrt(n * p * (1.0 - p)), (k, n, p)


def test_a_tape_without_the_configs_underlying_is_refused(recorded, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg, _, tape = recorded
    frame = tape_frame(tape)
    frame["underlying"] = "QQQ"
    other = _retape(tape, frame, tmp_path / "qqq.csv")
    with pytest.raises(
        ValueError, match=r"qqq\.csv: no underlying of the configuration \(AAA\); the tape has QQQ"
    ):
        simulate(cfg, tape=other)


def test_cli_replays_and_records(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    sets = [a for k, v in SHORT.items() for a in ("--set", f"{k}={v}")]
    rec = tmp_path / "rec.parquet"
    code, out1, err = run(capsys, "simulate", str(CALM), *sets, "--format", "json", "--record-tape", str(rec))
    assert code == 0 and "tape written to" in err and rec.is_file()
    code, out2, _ = run(capsys, "simulate", str(CALM), *sets, "--format", "json", "--tape", str(rec))
    assert code == 0
    one, two = json.loads(out1), json.loads(out2)
    one.pop("wall_s"), two.pop("wall_s")
    assert one == two and one["fills"] > 50


def test_cli_tape_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    sets = ["--set", "sim.steps=60"]
    missing = tmp_path / "none.csv"
    assert_usage_error(run(capsys, "simulate", str(CALM), *sets, "--tape", str(missing)), "none.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("time,type,underlying,bid,ask\n2026-01-05T14:30:00Z,quote,AAA,1.3,1.2\n")
    assert_usage_error(
        run(capsys, "simulate", str(CALM), *sets, "--tape", str(bad)), "bad.csv: row 1: field 'bid'"
    )
    other = tmp_path / "other.csv"
    other.write_text(
        "time,type,underlying,bid,ask\n2026-01-05T14:30:00Z,quote,QQQ,1.2,1.3\n2026-01-05T14:31:00Z,quote,QQQ,1.2,1.3\n"
    )
    assert_usage_error(
        run(capsys, "simulate", str(CALM), *sets, "--tape", str(other)), "other.csv: no underlying", "AAA"
    )
    assert_usage_error(
        run(capsys, "simulate", str(CALM), *sets, "--record-tape", str(tmp_path / "x.txt")),
        "unknown tape format",
    )
    index = Path(__file__).resolve().parents[2] / "scenarios" / "examples" / "index"
    with_book = ["--book", str(index / "book.csv"), "--market", str(index / "market.toml")]
    assert_usage_error(
        run(capsys, "simulate", str(CALM), *sets, *with_book, "--tape", str(missing)), "--tape with --book"
    )
    assert_usage_error(
        run(
            capsys,
            "simulate",
            str(CALM),
            *sets,
            "--compare",
            "greeks",
            "--record-tape",
            str(tmp_path / "x.csv"),
        ),
        "--record-tape",
        "--compare",
    )
    assert not (tmp_path / "x.csv").exists()


def test_the_bundled_tape_replays_the_calm_days_first_900_steps() -> None:
    """scenarios/tapes/calm_day.csv (make_calm_day.py: the calm day at 900 steps), replayed by the
    whole day's configuration: the tape holds 900 steps, the run stops there, with that run's figures."""
    day = SimConfig.load(CALM)
    replay = simulate(day, tape=read_tape(ROOT / "scenarios/tapes/calm_day.csv"))
    assert replay.config.sim.steps == 900
    _same_run(simulate(day.with_overrides({"sim.steps": 900})), replay)


def test_one_compiled_loop_for_both(tmp_path: Path) -> None:
    """A synthetic run and replays (of trades, of quotes) use one specialisation of the compiled loop:
    the first run's compile time is paid once (a second would be minutes more)."""
    from optmm.sim import _kernels

    cfg, _, tape = _record({"sim.steps": 60}, tmp_path / "t.csv")
    simulate(cfg, tape=tape)
    frame = tape_frame(tape)
    quotes = frame[frame["type"] == "trade"].assign(type="quote", side="", size=np.nan)
    quotes = quotes.assign(bid=quotes["price"], ask=quotes["price"] + 0.05, price=np.nan)
    only = _retape(tape, pd.concat([frame[frame["type"] == "quote"], quotes]), tmp_path / "q.csv")
    assert len(only.option_quotes) > 0 and len(only.option_trades) == 0
    simulate(cfg, tape=only)
    assert (
        len(_kernels.run_path_european.signatures) == 1
    )  # (no American option: the loop without the engine)


@pytest.mark.parametrize("strategy", ["as2008", "as-symmetric"])
def test_an_underlying_chain_replays_bit_for_bit(strategy: str, tmp_path: Path) -> None:
    """Quoting the underlying itself (the Avellaneda-Stoikov experiment, one path of 200 steps of
    5 ms): the orders are underlying trades on the tape, and the replay gives the run back."""
    cfg = SimConfig.load(ROOT / "scenarios/sim/as2008.toml").with_overrides({"sim.paths": 1})
    res = simulate(cfg, strategy=strategy)
    tape = read_tape(write_tape(tape_from_result(res), tmp_path / "as.parquet"))
    assert len(tape.underlying_trades) == len(res.orders) > 50 and tape.n_contracts == 0
    _same_run(res, simulate(cfg, strategy=strategy, tape=tape))
