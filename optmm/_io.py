"""File output that is whole or absent: write to a temporary file beside the target, then rename."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def atomic_target(path: str | os.PathLike[str], *, text: bool) -> Iterator[IO[Any]]:
    """Yield a temporary file next to ``path``; on success fsync it and ``os.replace`` it onto
    ``path``; on any exception delete it and leave ``path`` untouched.

    The file gets the target's permissions if it exists, else 0o644 (``mkstemp`` makes 0o600).
    """
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        f: IO[Any] = os.fdopen(fd, "w", encoding="utf-8", newline="") if text else os.fdopen(fd, "wb")
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, target.stat().st_mode & 0o7777 if target.exists() else 0o644)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


FIGURE_FORMATS = ("png", "pdf", "svg")
"""The file formats a figure is written in, named by the file's extension."""


def figure_format(path: str | os.PathLike[str]) -> str:
    """The format a figure written to ``path`` gets, from its extension (``"png"``, ``"pdf"``, ``"svg"``).

    Raises
    ------
    ValueError
        Another extension, or none: the file would not be what its name says.

    Examples
    --------
    >>> figure_format("out/pnl.PDF")
    'pdf'
    """
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in FIGURE_FORMATS:
        got = f"extension {'.' + suffix!r}" if suffix else "no extension"
        raise ValueError(f"{os.fspath(path)}: {got}; a figure is written as .png, .pdf or .svg")
    return suffix


def save_figure(fig: Any, path: str | os.PathLike[str]) -> Path:
    """Write the matplotlib figure ``fig`` to ``path`` in the format its extension names
    (:func:`figure_format`), whole or not at all (:func:`atomic_target`)."""
    fmt = figure_format(path)
    with atomic_target(path, text=False) as fh:
        fig.savefig(fh, format=fmt)
    return Path(path)
