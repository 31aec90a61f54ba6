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
