"""Scratch directories beside an output, named after the process that owns them, so that the ones a
killed process left behind can be told apart from a running process's and removed.

A scratch directory is ``.<label>.<host>-<pid>.<random>.tmp`` in the output's parent directory
(:func:`scratch_dir`). :func:`remove_stale` deletes those of this host whose process no longer
exists; those of another host (a shared file system) or of a live process are left alone.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import tempfile
from pathlib import Path

__all__ = ["remove_stale", "scratch_dir"]

_NAME = re.compile(r"^\.(?P<label>.+)\.(?P<host>[A-Za-z0-9_-]+)-(?P<pid>\d+)\.[A-Za-z0-9_]+\.tmp$")


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname()) or "host"


def scratch_dir(parent: str | os.PathLike[str], label: str) -> Path:
    """A new empty directory ``.<label>.<host>-<pid>.<random>.tmp`` in ``parent`` (mode 0o700).

    Raises OSError if it cannot be made (a read-only file system, no space, not a directory).
    """
    return Path(tempfile.mkdtemp(prefix=f".{label}.{_host()}-{os.getpid()}.", suffix=".tmp", dir=parent))


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else (or not ours to ask): alive
        return True
    return True


def remove_stale(parent: str | os.PathLike[str]) -> list[Path]:
    """Delete the scratch directories in ``parent`` left by dead processes of this host; return them.

    Entries that cannot be listed or removed are left (nothing is raised).
    """
    host = _host()
    removed = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return []
    for entry in entries:
        m = _NAME.match(entry.name)
        if m is None or m["host"] != host or _alive(int(m["pid"])):
            continue
        try:
            if not entry.is_dir(follow_symlinks=False):
                continue
            shutil.rmtree(entry.path)
        except OSError:
            continue
        removed.append(Path(entry.path))
    return removed
