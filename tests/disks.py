"""Directories on a read-only or a nearly full file system, for the tests of failed writes.

As root a ``chmod`` does not stop writes, so these mount a small tmpfs (read-only, or filled up to
``free_kib``). Where mounting is not permitted they fall back to making the writes fail in-process
(``fallback``: a function the test passes that patches the writer to raise the same OSError), so
that the test still checks the behaviour, never skips it.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest


def _mount(path: Path, options: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, check=False
        )
    except OSError:
        return False
    return done.returncode == 0


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def os_error(code: int, filename: str | None = None) -> OSError:
    return OSError(code, os.strerror(code), filename)


@contextmanager
def read_only_dir(path: Path, fallback: Callable[[OSError], None]) -> Iterator[Path]:
    """``path`` on a read-only file system (or ``fallback(EROFS error)`` called to fake one)."""
    if _mount(path, "ro,size=64k"):
        try:
            yield path
        finally:
            _umount(path)
    else:
        fallback(os_error(errno.EROFS, str(path)))
        yield path


@contextmanager
def full_disk_dir(path: Path, free_kib: int, fallback: Callable[[OSError], None]) -> Iterator[Path]:
    """``path`` on a file system with about ``free_kib`` KiB free (or ``fallback(ENOSPC error)``).

    The space is taken by ``path / "filler"``, which the test should expect to find.
    """
    size = 1024
    if _mount(path, f"size={size}k"):
        try:
            with open(path / "filler", "wb") as fh:
                fh.write(b"\0" * ((size - free_kib) * 1024))
            yield path
        finally:
            _umount(path)
    else:
        (path / "filler").write_bytes(b"")
        fallback(os_error(errno.ENOSPC))
        yield path


def raising(monkeypatch: pytest.MonkeyPatch, target: Any, name: str) -> Callable[[OSError], None]:
    """A ``fallback`` for :func:`read_only_dir` and :func:`full_disk_dir`: make ``target.name`` (a
    function that writes) raise the error instead."""

    def fallback(err: OSError) -> None:
        def refuse(*args: Any, **kwargs: Any) -> Any:
            raise err

        monkeypatch.setattr(target, name, refuse)

    return fallback
