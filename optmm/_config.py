"""Configuration I/O shared by optmm's frozen, keyword-only settings classes.

:class:`ConfigIO` gives a dataclass ``to_dict`` / ``from_dict`` (unknown keys refused) / ``load``
(TOML, errors naming the file) and a ``content_hash`` (SHA-256 of the canonical JSON of the
settings) to write into every run's output, so that a result can be traced to its exact settings.
Validation stays in each class's ``__post_init__``.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import math
import os
import tomllib
from collections.abc import Mapping
from typing import Any, ClassVar, Self

import numpy as np

MAX_SEED = 2**63 - 1
"""The largest seed of a run: seeds are stored as 64-bit integers (a sweep's ``runs.parquet``)."""


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def jsonable(x: Any) -> Any:
    """Canonical JSON values: non-finite floats as the strings "inf", "-inf", "nan", at any depth."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return repr(x)
    return x


def canonical_hash(d: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of ``d`` (sorted keys, no spaces, non-finite floats as text):
    the ``content_hash`` of every settings class, so equal settings give equal hashes."""
    canonical = json.dumps(jsonable(d), sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


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


def check_number(
    obj: Any,
    name: str,
    *,
    low: float = -math.inf,
    low_open: bool = False,
    high: float = math.inf,
    where: str | None = None,
) -> None:
    """Validate ``obj.name`` (a frozen settings object's field) as a finite number in ``[low, high]``
    (``low`` excluded when ``low_open``) and store it as a float. The error reads
    ``"<where>: must be ... (got x)"``, ``where`` by default ``"<Class>.<name>"``."""
    value = getattr(obj, name)
    where = f"{type(obj).__name__}.{name}" if where is None else where
    try:
        finite = is_real_number(value) and math.isfinite(value)
    except OverflowError:  # an int too large for a float
        finite = False
    if not finite:
        raise ValueError(f"{where}: must be a finite number (got {value!r})")
    if value < low or (low_open and value == low) or value > high:
        bound = f"> {low:g}" if low_open else f">= {low:g}"
        if high < math.inf:
            bound += f" and <= {high:g}"
        raise ValueError(f"{where}: must be {bound} (got {value!r})")
    object.__setattr__(obj, name, float(value))


def check_bool(obj: Any, name: str, *, where: str | None = None) -> None:
    """Validate ``obj.name`` as a bool (numpy's too) and store it as one; the error names ``where``
    (default ``"<Class>.<name>"``)."""
    value = getattr(obj, name)
    if not isinstance(value, bool | np.bool_):
        where = f"{type(obj).__name__}.{name}" if where is None else where
        raise ValueError(f"{where}: must be true or false (got {value!r})")
    object.__setattr__(obj, name, bool(value))


def is_real_number(value: Any) -> bool:
    """A Python or numpy int or float, and not a bool (which Python counts as an int)."""
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool | np.bool_
    )


class ConfigIO:
    """``to_dict`` / ``from_dict`` / ``load`` / ``content_hash`` for a frozen keyword-only dataclass.

    ``None`` fields are left out of the dictionary (TOML has no null): an absent key reads back as the
    field's default, which must then be ``None``. A subclass whose files may nest the settings under
    one table (``[hedger]``) names it in ``_toml_table``.
    """

    _toml_table: ClassVar[str | None] = None

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain Python values (enums by value); :meth:`from_dict` reads them back."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if value is not None:
                out[f.name] = _plain(value)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Self:
        """Build from a dictionary shaped like :meth:`to_dict`; unknown keys are refused.

        Raises
        ------
        ValueError
            ``"<Class>: unknown key 'x' (allowed: ...)"`` or anything the constructor refuses.
        """
        if not isinstance(d, Mapping):
            raise ValueError(f"{cls.__name__}: expected a table, got {type(d).__name__}")
        names = [f.name for f in dataclasses.fields(cls) if f.init]  # type: ignore[arg-type]
        for key in d:
            if key not in names:
                raise ValueError(f"{cls.__name__}: unknown key {key!r} (allowed: {', '.join(names)})")
        return cls(**dict(d))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Self:
        """Read the settings from a TOML file (the keys of :meth:`to_dict`, at the top level)."""
        where = os.fspath(path)
        try:
            with open(where, "rb") as fh:
                doc = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{where}: not valid TOML: {exc}") from None
        table = cls._toml_table
        if table is not None and set(doc) == {table} and isinstance(doc[table], dict):
            doc = doc[table]
        try:
            return cls.from_dict(doc)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None

    @property
    def content_hash(self) -> str:
        """SHA-256 (hex) of the canonical JSON of :meth:`to_dict` (sorted keys, inf/nan as text)."""
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
