"""A guard against numba cache entries compiled from sources that have since changed.

numba's on-disk cache (``cache=True``) keys a function's entries by the content of the function's
own file. A kernel that inlines or calls a function from another file, or reads another module's
constant, keeps its cached machine code when only that other file changes: it would go on running
the old rules. :func:`guard` closes this gap for a whole package. It fingerprints the package's
sources (sha256 over the sorted relative paths and contents of every ``*.py`` under the package
directory, about 2 ms for optmm's 1.4 MB) and compares the fingerprint with a stamp file kept where
numba caches the package's top directory. When they differ it deletes the package's ``*.nbi`` and
``*.nbc`` files in the cache directory of every directory of the package, then writes the new stamp.
``import optmm`` calls it before importing any kernel; ``OPTMM_CACHE_GUARD=0`` turns it off.

The cache directories are numba's own: the locator numba picks for a function in each directory
(``NUMBA_CACHE_DIR`` if set, else the directory's ``__pycache__`` if writable, else the user-wide
cache). One stamp serves the package, kept in its top directory's cache location: numba picks the
same kind of location for all the package's directories (unless only some ``__pycache__`` are
writable), and the deletion goes to each directory's own location. A cache without a stamp (the
first import with the guard) loses its entries once. Any failure (a read-only install, a numba
without these internal names) leaves the cache untouched, as does the failure to delete an entry
(then no stamp is written, and the next import tries again).

Several processes starting at once: the stamp is written, atomically, only after every stale entry
is deleted, so a process that reads the new stamp knows none is left; one that reads the old stamp
deletes them itself. A deletion racing another process's fresh compile costs that entry a
recompile (numba treats a missing index or data file as a cache miss). So a process whose sources
match the files on disk loads no entry compiled from older ones once its guard has run. A process
still running the old sources when the files were edited (a long-lived worker) may still write
old entries after the stamp is renewed: restart such processes after an edit.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import types
from pathlib import Path

__all__ = ["ENV_SWITCH", "STAMP_NAME", "fingerprint", "guard"]

ENV_SWITCH = "OPTMM_CACHE_GUARD"
STAMP_NAME = "cache_guard.sha256"
_ROOT = Path(__file__).resolve().parent


def _package_dirs(root: Path) -> dict[Path, list[Path]]:
    """Each directory under ``root`` (``__pycache__`` excluded) that holds ``*.py`` files: its files."""
    dirs: dict[Path, list[Path]] = {}
    for here, subdirs, names in os.walk(root):
        subdirs[:] = [d for d in subdirs if d != "__pycache__"]
        files = sorted(Path(here, n) for n in names if n.endswith(".py"))
        if files:
            dirs[Path(here)] = files
    return dirs


def fingerprint(root: Path, dirs: dict[Path, list[Path]]) -> str:
    """sha256 (hex) over the sorted relative paths of the ``*.py`` files in ``dirs`` and their contents."""
    h = hashlib.sha256()
    for path in sorted(p for files in dirs.values() for p in files):
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def _cache_dir(py_file: Path) -> Path:
    """Where numba caches functions defined in ``py_file``, chosen by numba's own locators."""
    from numba.core.caching import CompileResultCacheImpl

    probe = types.FunctionType(_cache_dir.__code__.replace(co_filename=str(py_file)), {})
    return Path(CompileResultCacheImpl(probe).locator.get_cache_path())


def _delete_entries(cache_dir: Path, modules: set[str]) -> int:
    """Delete ``cache_dir``'s ``*.nbi``/``*.nbc`` files of ``modules`` (file stems); the count."""
    deleted = 0
    for entry in cache_dir.iterdir() if cache_dir.is_dir() else ():
        module = entry.name.split(".", 1)[0].rsplit("-", 1)[-1]  # "[prefix-]module.qualname-line..."
        if entry.suffix in (".nbi", ".nbc") and module in modules:
            entry.unlink(missing_ok=True)
            deleted += 1
    return deleted


def guard(root: Path = _ROOT) -> int:
    """Delete the numba cache entries of the package at ``root`` if its sources changed since the
    stamp was written; the number of files deleted (0 when fresh, switched off, or on any error)."""
    if os.environ.get(ENV_SWITCH, "1") == "0":
        return 0
    try:
        dirs = _package_dirs(root)
        current = fingerprint(root, dirs)
        top = _cache_dir(root / "__init__.py")
        stamp = top / STAMP_NAME
        if stamp.is_file() and stamp.read_text().strip() == current:
            return 0
        deleted = sum(
            _delete_entries(_cache_dir(files[0]), {p.stem for p in files}) for files in dirs.values()
        )
        fd, tmp = tempfile.mkstemp(dir=top, prefix=STAMP_NAME, suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(current + "\n")
            os.replace(tmp, stamp)
        finally:
            Path(tmp).unlink(missing_ok=True)
    except (OSError, ImportError, AttributeError, RuntimeError, TypeError):
        return 0
    return deleted
