"""File output that is whole or absent: write to a temporary file beside the target, then rename.

The rename is made onto the file a path names: a symlink is followed (its target is replaced, the
link stays), and a path that names something other than a regular file (a named pipe, a device
such as ``/dev/null``) is written straight into, never replaced by a regular file.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def _resolve(path: str | os.PathLike[str]) -> tuple[Path, bool]:
    """The file that ``path`` names (symlinks followed) and whether it is a special file (a pipe, a
    device, a socket: anything that exists and is neither a regular file nor a directory)."""
    target = Path(os.path.realpath(path))
    try:
        mode = target.stat().st_mode
    except FileNotFoundError:
        return target, False
    return target, not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def _fdopen(fd: int, text: bool) -> IO[Any]:
    """The file of descriptor ``fd``: UTF-8 text with no newline translation, or bytes."""
    return os.fdopen(fd, "w", encoding="utf-8", newline="") if text else os.fdopen(fd, "wb")


@contextmanager
def atomic_target(path: str | os.PathLike[str], *, text: bool) -> Iterator[IO[Any]]:
    """Yield a temporary file next to the file ``path`` names; on success fsync it and
    ``os.replace`` it onto that file; on any exception delete it and leave the file untouched.

    A symlink is followed: its target is written, the link stays. A named pipe or a device is
    opened and written directly (it cannot be replaced, and must not be). The file gets the
    target's permissions if it exists, else 0o644 (``mkstemp`` makes 0o600).
    """
    target, special = _resolve(path)
    if special:
        with _fdopen(os.open(target, os.O_WRONLY), text) as direct:
            yield direct
        return
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with _fdopen(fd, text) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, target.stat().st_mode & 0o7777 if target.exists() else 0o644)
        os.replace(tmp, target)
    except BaseException:
        _unlink([tmp])
        raise


def write_files(items: Sequence[tuple[str | os.PathLike[str], bytes]]) -> None:
    """Write several files as one step: all of them, or (on an error) none that did not exist before.

    Every regular target is first written whole to a temporary file beside it (flushed and synced);
    only when all are written are they renamed into place, and special targets (pipes, devices)
    written. If a rename fails, the targets already renamed that did not exist before are removed.
    """
    staged: list[tuple[Path, bool, str | None, bytes, bool]] = []
    try:
        for path, data in items:
            target, special = _resolve(path)
            existed = target.exists()
            if special:
                staged.append((target, True, None, data, existed))
                continue
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
            staged.append((target, False, tmp, data, existed))
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, target.stat().st_mode & 0o7777 if existed else 0o644)
    except BaseException:
        _unlink(tmp for _, _, tmp, _, _ in staged)
        raise
    done: list[Path] = []
    try:
        for target, special, staged_tmp, data, existed in staged:
            if special:
                with _fdopen(os.open(target, os.O_WRONLY), text=False) as direct:
                    direct.write(data)
                continue
            assert staged_tmp is not None
            os.replace(staged_tmp, target)
            if not existed:
                done.append(target)
    except BaseException:
        _unlink(tmp for _, _, tmp, _, _ in staged)
        _unlink(done)
        raise


def _unlink(paths: Any) -> None:
    for p in paths:
        if p is None:
            continue
        try:
            os.unlink(p)
        except FileNotFoundError:
            pass


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
