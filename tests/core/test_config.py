"""The configuration base (optmm._config): declared bounds, enum choices, the TOML reader and writer,
the one JSON encoder and its NaN rule, and the one range parser (optmm.cli.common.parse_grid)."""

from __future__ import annotations

import argparse
import datetime as dt
import enum
import json
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from optmm._config import Config, canonical_hash, json_records, setting, to_json, toml_text
from optmm.cli.common import parse_grid


class Colour(enum.Enum):
    RED = "red"
    DARK_BLUE = "dark_blue"


@dataclass(frozen=True, kw_only=True)
class Example(Config):
    rate: float = setting(0.5, ge=0, le=1)
    horizon_s: float = setting(60.0, gt=0, unit="s")
    cap: float = setting(math.inf, gt=0, inf_ok=True)
    count: int = setting(3, ge=1)
    on: bool = True
    colour: Colour = Colour.RED
    steps: tuple[float, ...] = setting((1.0, 2.0), gt=0)
    scale: float | None = setting(None, gt=0)
    label: str = "x"


@dataclass(frozen=True, kw_only=True)
class Section(Config):
    _table = "section"

    k: float = setting(1.0, gt=0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rate": 1.5}, "Example.rate: must be a finite number >= 0 and <= 1 (got 1.5)"),
        ({"rate": math.nan}, "Example.rate: must be a finite number >= 0 and <= 1 (got nan)"),
        ({"rate": True}, "Example.rate: must be a finite number >= 0 and <= 1 (got True)"),
        ({"rate": "0.5"}, "Example.rate: must be a finite number >= 0 and <= 1 (got '0.5')"),
        ({"rate": 10**400}, "Example.rate: must be a finite number >= 0 and <= 1 (got 1" + "0" * 400 + ")"),
        ({"horizon_s": 0}, "Example.horizon_s: must be a finite number > 0 s (got 0)"),
        ({"cap": -math.inf}, "Example.cap: must be a number > 0, or inf (got -inf)"),
        ({"count": 2.5}, "Example.count: must be a whole number >= 1 (got 2.5)"),
        ({"count": 0}, "Example.count: must be a whole number >= 1 (got 0)"),
        ({"on": 1}, "Example.on: must be true or false (got 1)"),
        ({"colour": "green"}, "Example.colour: must be one of red, dark_blue (got 'green')"),
        ({"steps": ()}, "Example.steps: must be a non-empty list of numbers (got ())"),
        ({"steps": (1.0, -2.0)}, "Example.steps[1]: must be a finite number > 0 (got -2.0)"),
        ({"scale": 0.0}, "Example.scale: must be a finite number > 0 (got 0.0)"),
        ({"label": " "}, "Example.label: must be a non-empty string (got ' ')"),
    ],
)
def test_a_refusal_names_the_field_the_bound_and_the_value(kwargs, message) -> None:
    with pytest.raises(ValueError) as info:
        Example(**kwargs)
    assert str(info.value) == message


def test_values_are_normalised() -> None:
    e = Example(rate=np.float32(0.25), count=4.0, on=np.bool_(False), colour="DARK_BLUE", steps=[3, 4])
    assert type(e.rate) is float and e.rate == 0.25
    assert type(e.count) is int and e.count == 4
    assert e.on is False
    assert e.colour is Colour.DARK_BLUE
    assert e.steps == (3.0, 4.0) and all(type(x) is float for x in e.steps)
    assert math.copysign(1.0, Example(rate=-0.0).rate) == 1.0  # -0.0 is stored as 0.0: one hash


def test_a_section_names_its_table_and_unknown_keys_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^\[section\] k: must be a finite number > 0 \(got -1\)$"):
        Section(k=-1)
    path = tmp_path / "s.toml"
    path.write_text("k = 2\nkk = 3\n")
    with pytest.raises(ValueError) as info:
        Section.load(path)
    assert str(info.value) == f"{path}: [section] unknown key 'kk' (allowed: k)"
    path.write_text("rate = 2.0\n")
    with pytest.raises(ValueError, match=rf"^{path}: Example.rate: must be a finite number >= 0 and <= 1"):
        Example.load(path)


def test_toml_round_trip_and_hash() -> None:
    e = Example(rate=0.1, colour=Colour.DARK_BLUE, scale=2.0)
    text = e.to_toml()
    back = Example.from_dict(tomllib.loads(text))
    assert back == e and back.content_hash == e.content_hash
    assert "cap = inf" in text and "scale" in text
    assert "scale" not in Example().to_toml()  # None is left out: it reads back as the default
    assert Example(rate=0.2).content_hash != e.content_hash
    # the hash keeps inf and nan apart (the JSON outputs do not: both are null there)
    assert canonical_hash({"x": math.inf}) != canonical_hash({"x": math.nan})


def test_toml_text_tables_and_arrays_of_tables() -> None:
    d = {"a": 1, "t": {"b": [1.5, 2.0], "u": {"c": "x y"}}, "rows": [{"n": 1, "sub": [{"m": 2}]}, {"n": 2}]}
    assert tomllib.loads(toml_text(d)) == d


def test_json_has_one_nan_rule_non_finite_is_null() -> None:
    doc = {
        "nan": math.nan,
        "inf": np.float64(np.inf),
        "arr": np.array([1.0, -np.inf]),
        "nat": pd.NaT,
        "na": pd.NA,
        "day": pd.Timestamp("2026-11-20"),
        "moment": pd.Timestamp("2026-11-20 10:30"),
        "date": dt.date(2026, 1, 2),
        "colour": Colour.RED,
        "n": np.int64(3),
    }
    assert json.loads(to_json(doc)) == {
        "nan": None,
        "inf": None,
        "arr": [1.0, None],
        "nat": None,
        "na": None,
        "day": "2026-11-20",
        "moment": "2026-11-20T10:30:00",
        "date": "2026-01-02",
        "colour": "red",
        "n": 3,
    }
    assert to_json(0.1 + 0.2) == repr(0.1 + 0.2)  # floats in full
    with pytest.raises(TypeError, match=r"doc\.x\[1\]: object is not JSON-able"):
        to_json({"x": [1, object()]}, where="doc")
    frame = pd.DataFrame({"a": [1.0, np.nan], "b": ["x", None]})
    assert json_records(frame) == [{"a": 1.0, "b": "x"}, {"a": None, "b": None}]


@pytest.mark.parametrize(
    ("text", "values"),
    [
        ("-20:20:10", (-20.0, -10.0, 0.0, 10.0, 20.0)),
        ("-1:1:0.5", (-1.0, -0.5, 0.0, 0.5, 1.0)),
        ("0.7:1:0.1", (0.7, 0.8, 0.9, 1.0)),  # binary noise rounded away: ends on 1.0
        ("80:99:5", (80.0, 85.0, 90.0, 95.0)),  # HI off the grid
        ("5,-5,0", (5.0, -5.0, 0.0)),  # a list as given
    ],
)
def test_parse_grid(text, values) -> None:
    got = parse_grid(text, what="--x", max_points=100)
    assert got == values
    assert all(math.copysign(1.0, v) == 1.0 for v in got if v == 0.0)  # no -0.0


@pytest.mark.parametrize(
    ("text", "kwargs", "message"),
    [
        ("1:2", {}, "bad --x '1:2': expected LO:HI:STEP"),
        ("1:x:2", {}, "bad --x '1:x:2': expected LO:HI:STEP or A,B,C (numbers)"),
        ("2:1:1", {}, "bad --x '2:1:1': need LO <= HI and STEP > 0"),
        ("0:1:0", {}, "bad --x '0:1:0': need LO <= HI and STEP > 0"),
        ("1,nan", {}, "bad --x '1,nan': values must be finite numbers"),
        ("0:200:1", {}, "bad --x '0:200:1': 201 points, more than the maximum 100"),
        ("1:1e300:1e-300", {}, "bad --x '1:1e300:1e-300': infinitely many points, more than the maximum 100"),
        ("0,1", {"gt": 0.0, "unit": "prices"}, "bad --x '0,1': 0 is not > 0 (prices)"),
    ],
)
def test_parse_grid_refusals(text, kwargs, message) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as info:
        parse_grid(text, what="--x", max_points=100, **kwargs)
    assert str(info.value) == message
