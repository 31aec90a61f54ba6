"""optmm._cache_guard: numba keeps serving a kernel compiled with a helper from another file after
that file changed; the guard deletes such entries when the package's sources change, and only then,
and only the package's cache files. Every run is a fresh process with its own cache directory."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from numba.core.caching import _CacheLocator

from optmm._cache_guard import ENV_SWITCH, STAMP_NAME

ROOT = Path(__file__).resolve().parents[2]
GUARD_FILE = ROOT / "optmm" / "_cache_guard.py"
TAG = f"py{sys.version_info[0]}{sys.version_info[1]}"

# Loads the guard from its file, without importing optmm (whose own guard would run first), calls
# it on the toy package if asked, then prints what it deleted, the kernel's result and its cache hits.
_RUNNER = textwrap.dedent(
    f"""
    import importlib.util, sys
    from pathlib import Path

    root = Path(sys.argv[1])
    deleted = "-"
    if sys.argv[2] == "guard":
        spec = importlib.util.spec_from_file_location("cache_guard", {str(GUARD_FILE)!r})
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        deleted = module.guard(root)
    if sys.argv[3] == "call":
        sys.path.insert(0, str(root.parent))
        from toypkg.b import kernel

        print(deleted, kernel(1), sum(kernel.stats.cache_hits.values()))
    else:
        print(deleted)
    """
)


def _toy(tmp_path: Path, step: int) -> Path:
    """The toy package: ``b.kernel`` (cached) calls ``a.helper`` (inlined), which adds ``step``."""
    root = tmp_path / "toypkg"
    root.mkdir(exist_ok=True)
    (root / "__init__.py").write_text("")
    _edit(root, step)
    (root / "b.py").write_text(
        "from numba import njit\n\nfrom toypkg.a import helper\n\n\n"
        "@njit(cache=True)\ndef kernel(x):\n    return helper(x) * 10\n"
    )
    return root


def _edit(root: Path, step: int) -> None:
    (root / "a.py").write_text(
        f'from numba import njit\n\n\n@njit(inline="always")\ndef helper(x):\n    return x + {step}\n'
    )


def _run(root: Path, cache: Path | None, mode: str, action: str = "call", **env: str) -> list[str]:
    """Run the runner on ``root``; ``cache`` is NUMBA_CACHE_DIR (None: numba's in-tree __pycache__)."""
    runner = root.parent / "runner.py"
    runner.write_text(_RUNNER)
    environ = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", ENV_SWITCH)}
    environ.update(PYTHONDONTWRITEBYTECODE="1", **env)
    if cache is not None:
        environ["NUMBA_CACHE_DIR"] = str(cache)
    done = subprocess.run(
        [sys.executable, str(runner), str(root), mode, action], env=environ, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def _entries(cache_dir: Path) -> dict[str, int]:
    """The numba cache files in ``cache_dir``: name to modification time (ns)."""
    return {p.name: p.stat().st_mtime_ns for p in cache_dir.iterdir() if p.suffix in (".nbi", ".nbc")}


def test_without_the_guard_numba_serves_the_old_helper(tmp_path):
    """numba's own behaviour, the trap the guard exists for: after ``a.py`` changes, the cached
    kernel still adds the old step (1 -> (1 + 1) * 10 = 20 instead of (1 + 2) * 10 = 30)."""
    root = _toy(tmp_path, step=1)
    assert _run(root, tmp_path / "cache", "plain")[1] == "20"
    _edit(root, step=2)
    assert _run(root, tmp_path / "cache", "plain")[1:] == ["20", "1"]  # loaded from the cache


def test_with_the_guard_an_edited_helper_takes_effect(tmp_path):
    root = _toy(tmp_path, step=1)
    assert _run(root, tmp_path / "cache", "guard")[:2] == ["0", "20"]
    _edit(root, step=2)
    deleted, result, hits = _run(root, tmp_path / "cache", "guard")
    assert (deleted, result, hits) == ("2", "30", "0")  # the kernel's index and data file; compiled anew


def test_unchanged_sources_keep_the_cache(tmp_path):
    """Same sources: nothing deleted, the second process loads the kernel from the cache."""
    root = _toy(tmp_path, step=1)
    cache = tmp_path / "cache"
    assert _run(root, cache, "guard") == ["0", "20", "0"]
    cache_dir = cache / _CacheLocator.get_suitable_cache_subpath(str(root / "b.py"))
    before = _entries(cache_dir)
    assert any(name.startswith("b.kernel-") and name.endswith(".nbc") for name in before)
    assert _run(root, cache, "guard") == ["0", "20", "1"]
    assert _entries(cache_dir) == before


def test_only_the_packages_cache_files_are_deleted(tmp_path):
    """In-tree cache (no NUMBA_CACHE_DIR): the package's own __pycache__ keeps its other files."""
    root = _toy(tmp_path, step=1)
    assert _run(root, None, "guard") == ["0", "20", "0"]
    pycache = root / "__pycache__"
    assert (pycache / STAMP_NAME).is_file()
    kept = {
        "notes.txt": b"not a cache file",
        f"b.cpython-{TAG[2:]}.pyc": b"bytecode",  # a package module's, but not numba's
        f"other.f-3.{TAG}.nbi": b"index",  # numba's, but of no module of the package
    }
    for name, content in kept.items():
        (pycache / name).write_bytes(content)
    _edit(root, step=2)
    assert _run(root, None, "guard") == ["2", "30", "0"]
    assert {name: (pycache / name).read_bytes() for name in kept} == kept


def _fingerprint(package: Path) -> str:
    """optmm's fingerprint recomputed here: sha256 over the sorted (relative path, sha256 of content)."""
    h = hashlib.sha256()
    for p in sorted(p for p in package.rglob("*.py") if "__pycache__" not in p.parts):
        h.update(p.relative_to(package).as_posix().encode() + b"\0" + hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


@pytest.mark.parametrize("switch", ["0", "1"])
def test_import_optmm_guards_its_own_cache(tmp_path, switch):
    """A stale stamp and an entry of a greeks module: ``import optmm`` deletes the entry and renews
    the stamp to the fingerprint of optmm's sources; with ``OPTMM_CACHE_GUARD=0`` it touches neither."""
    package = ROOT / "optmm"
    stamp = tmp_path / _CacheLocator.get_suitable_cache_subpath(str(package / "__init__.py")) / STAMP_NAME
    greeks = tmp_path / _CacheLocator.get_suitable_cache_subpath(str(package / "greeks" / "_bsm.py"))
    stale = greeks / f"_bsm.price-10.{TAG}.nbi"
    stamp.parent.mkdir()
    greeks.mkdir()
    stamp.write_text("old\n")
    stale.write_bytes(b"an index compiled from older sources")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), PYTHONPATH=str(ROOT), **{ENV_SWITCH: switch})
    subprocess.run([sys.executable, "-c", "import optmm"], env=env, check=True)
    if switch == "0":
        assert stale.exists()
        assert stamp.read_text() == "old\n"
    else:
        assert not stale.exists()
        assert stamp.read_text() == _fingerprint(package) + "\n"


@pytest.mark.parametrize("blocked", ["no cache location", "stamp not writable"])
def test_an_unwritable_cache_does_not_raise(tmp_path, blocked):
    """No writable cache location at all (every one numba tries is under a regular file), or a stamp
    that cannot be written (a directory in its place): the guard does nothing and returns 0."""
    root = _toy(tmp_path, step=1)
    cache = tmp_path / "cache"
    env = {}
    if blocked == "no cache location":
        (tmp_path / "file").write_text("")
        (root / "__pycache__").write_text("")
        cache = tmp_path / "file" / "cache"
        env = {"XDG_CACHE_HOME": str(tmp_path / "file" / "xdg"), "HOME": str(tmp_path / "file")}
    else:
        (cache / _CacheLocator.get_suitable_cache_subpath(str(root / "__init__.py")) / STAMP_NAME).mkdir(
            parents=True
        )
    assert _run(root, cache, "guard", "import", **env) == ["0"]
