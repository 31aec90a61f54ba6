"""optmm._compile_link: a large function of optmm's is linked into its callers as a declaration (its
callers call its machine code), with the same bits as numba's own linking; a caller loaded from
numba's cache first loads what it calls, calls the process's own compile of it when the process
holds it under another symbol, and is compiled again when what it calls cannot be found (no
unresolved symbol, no crash)."""

from __future__ import annotations

import textwrap
from pathlib import Path

from builders import last_json, run_python

from optmm import _compile_link

# Prices through the boundary engine's one-boundary solve (core calls solve_boundary, a large
# function, and small ones it copies) and prints the bits, the fix's counts, how core's overload was
# obtained, the symbols core's machine code leaves to others, and solve_boundary's own symbol.
_RUNNER = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from numba import njit
    from optmm import _compile_link
    from optmm.greeks import _american
    from optmm.greeks.american import _scheme

    if "--advance" in sys.argv:  # numba numbers every function it compiles: move the numbering on
        for i in range(5):
            njit(lambda x: x + 1.0)(float(i))
    if "--callee-first" in sys.argv:
        _american.solve_boundary(100.0, 0.04, 0.01, 0.3, 0.5, 100.0, _scheme("default"))
    if "--lost" in sys.argv:  # solve_boundary's dispatcher cannot be found again
        locate = _compile_link._locate
        _compile_link._locate = lambda m, q: None if q == "solve_boundary_py" else locate(m, q)
    rng = np.random.default_rng(11)
    bits = []
    for s, k, t, r, q, v, c in zip(
        rng.uniform(60, 140, 12), rng.uniform(80, 120, 12), rng.uniform(0.05, 2.0, 12),
        rng.uniform(0.0, 0.08, 12), rng.uniform(0.0, 0.06, 12), rng.uniform(0.1, 0.6, 12),
        rng.integers(0, 2, 12).astype(bool),
    ):
        out = _american.core(s, k, t, r, q, v, c, _scheme("default"))
        bits.append([float(x).hex() for x in np.atleast_1d(np.asarray(out, dtype=np.float64)).ravel()])
    (cres,) = _american.core.overloads.values()
    declared = sorted(
        fn.name for fn in cres.library._final_module.functions
        if fn.is_declaration and fn.name.startswith("_ZN5optmm")
    )
    callee = next(iter(_american.solve_boundary.overloads.values()), None)  # (None: core copied it)
    print(json.dumps({
        "installed": _compile_link.installed(), "stats": _compile_link.STATS, "bits": bits,
        "hits": sum(_american.core.stats.cache_hits.values()),
        "misses": sum(_american.core.stats.cache_misses.values()),
        "declared": declared, "callee": callee and callee.fndesc.mangled_name,
    }))
    """
)


def _python(code: str, cache: Path, *args: str, switch: str = "1") -> dict:
    """Run ``code`` in a fresh process on the numba cache ``cache``; its last line of stdout, as JSON."""
    return last_json(run_python(code, cache, *args, OPTMM_COMPILE_SPEED=switch))


def _run(cache: Path, *flags: str, switch: str = "1") -> dict:
    return _python(_RUNNER, cache, *flags, switch=switch)


def test_a_large_callee_is_called_with_the_same_bits(tmp_path):
    on = _run(tmp_path / "on")
    off = _run(tmp_path / "off", switch="0")
    assert on["installed"] and not off["installed"]
    assert on["bits"] == off["bits"] and len(on["bits"]) == 12
    # core's machine code calls solve_boundary's; numba's own linking copies it in
    assert on["callee"] in on["declared"]
    assert off["callee"] not in off["declared"] and off["declared"] == []
    assert on["stats"]["declared"] > 0 and off["stats"]["declared"] == 0


def test_a_cached_caller_first_loads_what_it_calls(tmp_path):
    first = _run(tmp_path)
    again = _run(tmp_path)
    assert first["misses"] == 1 and again["hits"] == 1 and again["misses"] == 0
    assert again["stats"]["needs_checked"] > 0 and again["stats"]["stale"] == 0
    assert again["bits"] == first["bits"]
    assert again["callee"] == first["callee"]  # loaded from the cache under the symbol core calls


def test_a_cached_caller_calls_the_processs_own_compile_of_its_callee(tmp_path):
    first = _run(tmp_path)
    # solve_boundary's cache entry is lost; the next process compiles it first, under another number
    gone = [p for p in tmp_path.rglob("*solve_boundary_py*") if p.is_file()]
    assert gone
    for p in gone:
        p.unlink()
    again = _run(tmp_path, "--advance", "--callee-first")
    assert again["callee"] != first["callee"]
    # core's cache entry calls the old symbol, made an alias of the new one: loaded, not compiled
    assert again["stats"]["aliased"] >= 1 and again["stats"]["stale"] == 0
    assert again["hits"] == 1 and again["misses"] == 0
    assert again["bits"] == first["bits"]


def test_a_cached_caller_whose_callee_cannot_be_found_is_compiled_again(tmp_path):
    first = _run(tmp_path)
    lost = _run(tmp_path, "--lost")
    # the cache entry counts as missing (not loaded with a symbol nothing defines): core compiled again,
    # with a copy of the function it cannot find again, as numba links it
    assert lost["stats"]["stale"] >= 1 and lost["misses"] == 1 and lost["hits"] == 0
    assert lost["callee"] not in lost["declared"]
    assert lost["bits"] == first["bits"]
    # the entry written again loads in the next process, which needs no solve_boundary of its own
    third = _run(tmp_path)
    assert third["hits"] == 1 and third["stats"]["stale"] == 0 and third["bits"] == first["bits"]
    assert third["callee"] is None


# Three functions of a module named as one of optmm's: ``big`` (too long to inline), ``small`` (calls
# it; copied into its callers) and ``top`` (calls small). Prints top's bits, how top was obtained,
# big's symbol and the symbols top's machine code leaves to others.
_FIXTURE = (
    "from numba import njit\nimport math\n\n\n@njit(cache=True)\ndef big(x):\n    s = 0.0\n"
    + "".join(
        f"    s += math.sin({k} * x) * math.exp(-{k} * x) / (1.0 + {k} * x * x)\n" for k in range(1, 61)
    )
    + (
        "    return s\n\n\n@njit(cache=True)\ndef small(x):\n    return big(x) + 1.0\n\n\n"
        "@njit(cache=True)\ndef top(x):\n    return small(x) * 2.0\n"
    )
)
_FIXTURE_RUNNER = textwrap.dedent(
    """
    import importlib.util, json, sys
    from numba import njit
    import optmm
    from optmm import _compile_link

    spec = importlib.util.spec_from_file_location("optmm._link_fixture", sys.argv[1])
    fixture = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = fixture
    spec.loader.exec_module(fixture)
    if "--advance" in sys.argv:
        for i in range(5):
            njit(lambda x: x + 1.0)(float(i))
    if "--big-first" in sys.argv:
        fixture.big(0.25)
    bits = [fixture.top(x).hex() for x in (0.1, 0.7, 1.3)]
    (cres,) = fixture.top.overloads.values()
    (callee,) = fixture.big.overloads.values()
    print(json.dumps({
        "stats": _compile_link.STATS, "bits": bits,
        "hits": sum(fixture.top.stats.cache_hits.values()),
        "misses": sum(fixture.top.stats.cache_misses.values()),
        "big": callee.fndesc.mangled_name,
        "declared": sorted(f.name for f in cres.library._final_module.functions if f.is_declaration),
    }))
    """
)


def _run_fixture(tmp_path: Path, *flags: str) -> dict:
    source = tmp_path / "link_fixture.py"
    source.write_text(_FIXTURE)
    return _python(_FIXTURE_RUNNER, tmp_path / "cache", str(source), *flags)


def test_a_copy_calling_an_alias_carries_what_the_alias_needs(tmp_path):
    first = _run_fixture(tmp_path)
    assert first["big"] in first["declared"] and first["misses"] == 1  # top holds small's copy, calling big
    # top's and big's cache entries are lost; the next process compiles big first, under another number,
    # loads small (calling big's old symbol, made an alias) and compiles top with small's copy in it
    gone = [
        p for p in (tmp_path / "cache").rglob("*") if p.is_file() and (".top-" in p.name or ".big-" in p.name)
    ]
    assert len(gone) >= 4
    for p in gone:
        p.unlink()
    second = _run_fixture(tmp_path, "--advance", "--big-first")
    assert second["big"] != first["big"] and second["stats"]["aliased"] >= 1
    assert first["big"] in second["declared"] and second["misses"] == 1
    # top's entry calls big's old symbol: loading it must make the alias again (a crash without it)
    third = _run_fixture(tmp_path)
    assert third["hits"] == 1 and third["stats"]["aliased"] >= 1 and third["stats"]["stale"] == 0
    assert first["bits"] == second["bits"] == third["bits"]


def test_functions_are_found_again_by_module_and_name():
    from optmm.greeks import _american, _bsm

    assert _compile_link._locate("optmm.greeks._american", "solve_boundary_py") is _american.solve_boundary
    # a kernel compiled serial and threaded from one function: each form by its own function's name
    serial = _compile_link._locate("optmm.greeks._bsm", _bsm.price_kernel.serial.py_func.__qualname__)
    assert serial is _bsm.price_kernel.serial
    assert _compile_link._locate("optmm.greeks._american", "no_such_function") is None
