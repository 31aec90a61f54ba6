"""The one configuration base of optmm: declared bounds, enum choices, TOML in and out, JSON out, hashes.

A settings class is a frozen, keyword-only dataclass deriving from :class:`Config`. Each field states
its bounds where it is declared, ``tick_size: float = setting(0.05, gt=0, unit="price")``, and its type
says the rest: ``float`` (a finite number within the bounds), ``int`` (a whole number within them),
``bool``, ``str`` (non-empty), an :class:`enum.Enum` (parsed from its value or name, any case),
``tuple[float, ...]`` (a non-empty list of finite numbers, each within the bounds), or any of these
``| None``. :class:`Config` checks every field after construction and stores it normalised (a float,
an int, a tuple, the enum member); rules across fields go in the subclass's :meth:`Config.check`.

One vocabulary for every refusal (:func:`bad_value`, :func:`unknown_key`)::

    QuoterConfig.tick_size: must be a finite number > 0 (got -1.0)
    [flow] arrival_k: must be a finite number > 0 (got -1)
    [chain] instrument: must be one of options, underlying (got 'bonds')
    sim.toml: [quoter] unknown key 'skw' (allowed: base_half_spread_vol_points, ...)

JSON: :func:`to_json` is the one encoder of every JSON file and console output optmm writes. Its NaN
rule: **a non-finite float (NaN, inf, -inf) is written as null**, never as a figure (JSON has none).
The content hash (:func:`canonical_hash`) is not an output but a name for the settings: it keeps
non-finite floats as the text ``"inf"``, ``"-inf"``, ``"nan"`` so that settings that differ only there
(a tick threshold of inf, a NaN) still hash apart.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import hashlib
import json
import math
import os
import tomllib
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd

MAX_SEED = 2**63 - 1
"""The largest seed of a run: seeds are stored as 64-bit integers (a sweep's ``runs.parquet``)."""

_META = "optmm"
_E = typing.TypeVar("_E", bound=enum.Enum)


# --------------------------------------------------------------------------------------------------
# the vocabulary of refusals


def bad_value(where: str, wanted: str, value: Any) -> ValueError:
    """``"<where>: must be <wanted> (got <value>)"``: a value outside its bounds or of the wrong type."""
    return ValueError(f"{where}: must be {wanted} (got {value!r})")


def unknown_key(where: str, key: Any, allowed: Iterable[str]) -> ValueError:
    """``"<where> unknown key 'k' (allowed: a, b, c)"``: ``where`` names the file and the table."""
    prefix = f"{where} " if where else ""
    return ValueError(f"{prefix}unknown key {key!r} (allowed: {', '.join(allowed)})")


def is_real_number(value: Any) -> bool:
    """A Python or numpy int or float, and not a bool (which Python counts as an int)."""
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool | np.bool_
    )


def is_finite(value: Any) -> bool:
    """A finite real number (an int too large for a float is not)."""
    try:
        return is_real_number(value) and math.isfinite(value)
    except OverflowError:
        return False


def bound_text(
    ge: float | None = None, gt: float | None = None, le: float | None = None, lt: float | None = None
) -> str:
    """``"> 0 and <= 1"``: the bounds in words (empty without bounds)."""
    parts = [f"{op} {v:g}" for op, v in ((">=", ge), (">", gt), ("<=", le), ("<", lt)) if v is not None]
    return " and ".join(parts)


def within(
    x: float,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
) -> bool:
    """Whether ``x`` satisfies every given bound (NaN satisfies none)."""
    return (
        (ge is None or x >= ge)
        and (gt is None or x > gt)
        and (le is None or x <= le)
        and (lt is None or x < lt)
    )


def parse_number(
    value: Any,
    where: str,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    inf_ok: bool = False,
    unit: str = "",
) -> float:
    """``value`` as a float (``-0.0`` as ``0.0``) if it is a finite number within the bounds (``inf_ok``:
    infinities too, if within them); else :func:`bad_value` naming ``where``, the bounds and the value."""
    ok = is_finite(value) or (inf_ok and is_real_number(value) and not math.isnan(value))
    if not (ok and within(float(value), ge, gt, le, lt)):
        text = bound_text(ge, gt, le, lt)
        wanted = ("a number" if inf_ok else "a finite number") + (f" {text}" if text else "")
        wanted += f" {unit}" if unit and text else ""
        raise bad_value(where, wanted + (", or inf" if inf_ok else ""), value)
    return float(value) + 0.0


def parse_whole(value: Any, where: str, *, ge: int | None = None, le: int | None = None) -> int:
    """``value`` as an int if it is a whole number (an int, or a float with no fraction) within the
    bounds; else :func:`bad_value`."""
    whole = isinstance(value, int | np.integer) and is_real_number(value)  # any size: no float overflow
    whole = whole or (isinstance(value, float | np.floating) and math.isfinite(value) and value.is_integer())
    if not (whole and (ge is None or value >= ge) and (le is None or value <= le)):
        text = " and ".join(f"{op} {v}" for op, v in ((">=", ge), ("<=", le)) if v is not None)
        raise bad_value(where, "a whole number" + (f" {text}" if text else ""), value)
    return int(value)


def parse_bool(value: Any, where: str) -> bool:
    """``value`` as a bool (numpy's too); else :func:`bad_value`."""
    if not isinstance(value, bool | np.bool_):
        raise bad_value(where, "true or false", value)
    return bool(value)


def parse_choice(cls: type[_E], value: Any, where: str) -> _E:
    """The member of ``cls`` that ``value`` is, or names (its value, or its name in any case); else
    ``"<where>: must be one of a, b, c (got 'x')"``."""
    if isinstance(value, cls):
        return value
    if isinstance(value, str):
        for member in cls:
            if value == member.value or value.lower() in (str(member.value).lower(), member.name.lower()):
                return member
    raise bad_value(where, f"one of {', '.join(str(m.value) for m in cls)}", value)


def parse_numbers(
    value: Any,
    where: str,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
) -> tuple[float, ...]:
    """``value`` (a list, tuple or array) as a non-empty tuple of floats, each a finite number within
    the bounds; the error names the element (``"<where>[2]: must be ..."``)."""
    if not isinstance(value, list | tuple | np.ndarray) or len(value) == 0:
        raise bad_value(where, "a non-empty list of numbers", value)
    return tuple(parse_number(x, f"{where}[{i}]", ge=ge, gt=gt, le=le, lt=lt) for i, x in enumerate(value))


# --------------------------------------------------------------------------------------------------
# declared fields


@dataclasses.dataclass(frozen=True)
class Bounds:
    """What :func:`setting` declares of a field: its bounds, its unit and a line of documentation."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    inf_ok: bool = False
    unit: str = ""
    doc: str = ""


def setting(
    default: Any = dataclasses.MISSING,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    inf_ok: bool = False,
    unit: str = "",
    doc: str = "",
) -> Any:
    """A dataclass field with declared bounds (``ge``/``gt``: lower, inclusive/exclusive; ``le``/``lt``:
    upper), ``inf_ok`` (infinities allowed within the bounds), its ``unit`` and ``doc``. For a tuple
    field the bounds apply to each element."""
    meta = {_META: Bounds(ge, gt, le, lt, inf_ok, unit, doc)}
    return dataclasses.field(default=default, metadata=meta)


_NO_BOUNDS = Bounds()


def _kind(tp: Any) -> tuple[Any, bool]:
    """(the field's base type, whether None is allowed)."""
    args = typing.get_args(tp)
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else None), len(rest) != len(args)
    return tp, False


_CHECKS: dict[type, list[tuple[str, Any, bool, Bounds]]] = {}


def _checks(cls: type) -> list[tuple[str, Any, bool, Bounds]]:
    if cls not in _CHECKS:
        hints = typing.get_type_hints(cls)
        rows = []
        for f in dataclasses.fields(cls):
            if f.init:
                base, optional = _kind(hints[f.name])
                rows.append((f.name, base, optional, f.metadata.get(_META, _NO_BOUNDS)))
        _CHECKS[cls] = rows
    return _CHECKS[cls]


def _parse(value: Any, base: Any, where: str, b: Bounds) -> Any:
    """``value`` checked and normalised as a ``base``; a refusal ends with the field's ``doc``."""
    try:
        return _parse_as(value, base, where, b)
    except ValueError as exc:
        if not b.doc:
            raise
        raise ValueError(f"{exc}: {b.doc}") from None


def _parse_as(value: Any, base: Any, where: str, b: Bounds) -> Any:
    if base is float:
        return parse_number(value, where, ge=b.ge, gt=b.gt, le=b.le, lt=b.lt, inf_ok=b.inf_ok, unit=b.unit)
    if base is bool:
        return parse_bool(value, where)
    if base is int:
        ge, le = (None if v is None else int(v) for v in (b.ge, b.le))
        return parse_whole(value, where, ge=ge, le=le)
    if base is str:
        if not isinstance(value, str) or not value.strip():
            raise bad_value(where, "a non-empty string", value)
        return value
    if isinstance(base, type) and issubclass(base, enum.Enum):
        return parse_choice(base, value, where)
    if typing.get_origin(base) is tuple and typing.get_args(base) == (float, ...):
        return parse_numbers(value, where, ge=b.ge, gt=b.gt, le=b.le, lt=b.lt)
    return value  # nested settings and the like: the class's own check()


# --------------------------------------------------------------------------------------------------
# the base class


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Config):
        return value.to_dict()
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


class Config:
    """The base of optmm's frozen, keyword-only settings classes.

    Construction checks every declared field (module docstring) and then :meth:`check`. A refusal
    names the field: ``"[<_table>] name: ..."`` when the class sets ``_table`` (a section of a
    larger file), else ``"<Class>.name: ..."``. ``None`` fields are left out of :meth:`to_dict` (TOML
    has no null): an absent key reads back as the field's default, which must then be ``None``. A
    class whose files may nest the settings under one table (``[hedger]``) names it in ``_toml_table``.
    """

    _table: ClassVar[str | None] = None
    _toml_table: ClassVar[str | None] = None

    def where(self, name: str) -> str:
        """How refusals name the field ``name``."""
        return f"[{self._table}] {name}" if self._table else f"{type(self).__name__}.{name}"

    def __post_init__(self) -> None:
        for name, base, optional, b in _checks(type(self)):
            value = getattr(self, name)
            if not (optional and value is None):
                object.__setattr__(self, name, _parse(value, base, self.where(name), b))
        self.check()

    def check(self) -> None:
        """Rules across fields (a subclass's); the fields themselves are already checked."""

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain Python values (enums by value); :meth:`from_dict` reads them back."""
        return {
            f.name: _plain(getattr(self, f.name))
            for f in dataclasses.fields(self)  # type: ignore[arg-type]
            if f.init and f.compare and getattr(self, f.name) is not None
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Self:
        """Build from a dictionary shaped like :meth:`to_dict`; unknown keys are refused
        (:func:`unknown_key`), as is anything the constructor refuses."""
        label = f"[{cls._table}]" if cls._table else f"{cls.__name__}:"
        if not isinstance(d, Mapping):
            raise ValueError(f"{label} expected a table, got {type(d).__name__}")
        names = [f.name for f in dataclasses.fields(cls) if f.init]  # type: ignore[arg-type]
        for key in d:
            if key not in names:
                raise unknown_key(label, key, names)
        return cls(**dict(d))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Self:
        """Read the settings from a TOML file (the keys of :meth:`to_dict`, at the top level or
        under ``[<_toml_table>]``); every error names the file."""
        where = os.fspath(path)
        doc = read_toml(where, "settings")
        table = cls._toml_table
        if table is not None and set(doc) == {table} and isinstance(doc[table], dict):
            doc = doc[table]
        try:
            return cls.from_dict(doc)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None

    def to_toml(self) -> str:
        """The settings as a TOML document that :meth:`load` reads back to equal settings."""
        return toml_text(self.to_dict())

    @property
    def content_hash(self) -> str:
        """SHA-256 (hex) of the canonical JSON of :meth:`to_dict` (:func:`canonical_hash`)."""
        return canonical_hash(self.to_dict())

    def short_repr(self, limit: int = 240) -> str:
        """``Name(field=value, ..., hash=1a2b3c4d)``: the settings that differ from their defaults (cut
        after about ``limit`` characters) and the first digits of :attr:`content_hash`, which name the
        settings whole. A subclass with many fields uses it as its ``__repr__``."""
        parts = []
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = _plain(getattr(self, f.name))
            if f.default is not dataclasses.MISSING:
                default: Any = f.default
            elif f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            else:
                default = dataclasses.MISSING
            if default is dataclasses.MISSING or value != _plain(default):
                parts.append(f"{f.name}={value!r}")
        text = ""
        for part in parts:
            if len(text) + len(part) > limit:
                text += ", ..." if text else "..."
                break
            text += (", " if text else "") + part
        return f"{type(self).__name__}({text}{', ' if text else ''}hash={self.content_hash[:8]})"


# --------------------------------------------------------------------------------------------------
# TOML in and out


def read_toml(path: str | os.PathLike[str], what: str) -> dict[str, Any]:
    """The TOML document at ``path``; a file that cannot be read or parsed, or is not a regular file
    (a directory, a named pipe), is a ValueError naming it (``"<path>: cannot read the <what> (...)"``,
    ``"<path>: not valid TOML: ..."``)."""
    where = os.fspath(path)
    if os.path.exists(where) and not os.path.isfile(where):  # a directory, a named pipe (would block), ...
        raise ValueError(f"{where}: cannot read the {what} (not a regular file)")
    try:
        with open(where, "rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ValueError(f"{where}: cannot read the {what} ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{where}: not valid TOML: {exc}") from None


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {v!r} to TOML")


def _key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else json.dumps(k)


def _is_table_array(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)


def _table(prefix: str, d: Mapping[str, Any], out: list[str], *, header: str = "[{}]") -> None:
    """``d`` under the header ``prefix`` (none at the top): its values, then its tables, then its
    arrays of tables; an empty list in an array of tables' row is left out (it reads back as empty)."""
    if prefix:
        out.append("\n" + header.format(prefix))
    row = header == "[[{}]]"
    out.extend(
        f"{_key(k)} = {_toml_value(v)}"
        for k, v in d.items()
        if not (isinstance(v, dict) or _is_table_array(v) or (row and v == []))
    )
    for k, v in d.items():
        if isinstance(v, dict):
            _table(f"{prefix}.{_key(k)}" if prefix else _key(k), v, out)
    for k, v in d.items():
        if _is_table_array(v):
            for item in v:
                _table(f"{prefix}.{_key(k)}" if prefix else _key(k), item, out, header="[[{}]]")


def toml_text(d: Mapping[str, Any]) -> str:
    """``d`` as a TOML document: scalars and lists first, then one ``[table]`` per dictionary and
    one ``[[table]]`` per row of a list of dictionaries (floats in full; inf and nan as TOML's)."""
    out: list[str] = []
    _table("", d, out)
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------------------------------
# JSON out, and the content hash


def json_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A frame's rows as JSON records (column name to :func:`json_value`), in order."""
    columns = [str(c) for c in frame.columns]
    return [
        {c: json_value(v, f"{c}[{i}]") for c, v in zip(columns, row, strict=True)}
        for i, row in enumerate(frame.itertuples(index=False, name=None))
    ]


def json_value(x: Any, where: str = "value") -> Any:
    """``x`` as plain JSON values under the one NaN rule of :func:`to_json` (non-finite as None);
    a TypeError names where in ``x`` a value that has no JSON form is."""
    if isinstance(x, Mapping):
        return {str(k): json_value(v, f"{where}.{k}") for k, v in x.items()}
    if isinstance(x, np.ndarray):
        x = x.tolist()
    if isinstance(x, list | tuple):
        return [json_value(v, f"{where}[{i}]") for i, v in enumerate(x)]
    if isinstance(x, enum.Enum):
        x = x.value
    if isinstance(x, np.datetime64):
        x = pd.Timestamp(x)
    if isinstance(x, np.generic):
        x = x.item()
    if x is None or isinstance(x, bool | int | str):
        return x
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if x is pd.NaT or x is pd.NA:
        return None
    if isinstance(x, _dt.datetime):  # a pandas Timestamp too
        return x.date().isoformat() if x.time() == _dt.time() else x.isoformat()
    if isinstance(x, _dt.date):
        return x.isoformat()
    raise TypeError(f"{where}: {type(x).__name__} is not JSON-able")


def to_json(x: Any, *, indent: int | None = None, sort_keys: bool = False, where: str = "value") -> str:
    """``x`` as JSON text, the one encoder of optmm's JSON outputs: floats in full (repr), numpy
    scalars and arrays as Python values, enums by value, dates and times in ISO form (a midnight
    without time zone as the date alone), and **every non-finite float, NaN, NaT or NA as null**.
    Anything else is a TypeError naming where in ``x`` it is (``where`` names the top)."""
    return json.dumps(json_value(x, where), indent=indent, sort_keys=sort_keys, allow_nan=False)


def decimals_to_show(values: np.ndarray, digits: int, least: int) -> int:
    """Decimals that show ``digits`` significant digits of the smallest non-zero finite magnitude among
    ``values``, at least ``least`` (also when there is none) and at most 8: the precision a column or
    row of printed figures shares (a fill rate of 0.0016% is not 0.00%)."""
    nonzero = np.abs(values[np.isfinite(values) & (values != 0.0)])
    if nonzero.size == 0:
        return least
    return int(min(max(least, digits - 1 - math.floor(math.log10(float(nonzero.min())))), 8))


def _hashable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _hashable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_hashable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return repr(x)
    return x


def canonical_hash(d: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of ``d`` (sorted keys, no spaces, non-finite floats as the
    text ``"inf"``, ``"-inf"``, ``"nan"``): the ``content_hash`` of every settings class, so equal
    settings give equal hashes."""
    canonical = json.dumps(_hashable(d), sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
