"""optmm._compile_wrap: a function of optmm's compiled only for its callers has no Python entry until
Python calls it; then one is built and kept in the dispatcher's table, from a fresh compile or from
numba's cache, with the fix on or off; other code is compiled as numba does it."""

from __future__ import annotations

import textwrap
from pathlib import Path

from builders import last_json, run_python

from optmm import _compile_wrap

# A module of optmm's (by its name): caller calls callee, which Python calls only later
_FIXTURE = textwrap.dedent(
    """
    import numpy as np
    from numba import njit


    @njit(cache=True)
    def callee(x, y):
        return x * y + 1.0


    @njit(cache=True)
    def halves(n):  # an array and a count: the entry boxes them with numba's runtime
        out = np.empty(n)
        for i in range(n):
            out[i] = 0.5 * i
        return out, n


    @njit(cache=True)
    def caller(x):
        a, n = halves(int(x) + 2)  # (an int64, not a literal)
        return callee(x, 2.0) - 1.0 + a[n - 1]
    """
)
_RUNNER = textwrap.dedent(
    """
    import importlib.util, json, sys
    from numba import njit
    from optmm import _compile_wrap

    spec = importlib.util.spec_from_file_location("optmm._wrap_fixture", sys.argv[1])
    fixture = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = fixture
    spec.loader.exec_module(fixture)

    @njit
    def theirs(x, y):  # not optmm's
        return x - y

    @njit
    def their_caller(x):
        return theirs(x, 1.0)

    def entries(dispatcher):
        return [type(c.entry_point).__name__ for c in dispatcher.overloads.values()]

    out = {"caller": fixture.caller(1.5), "their_caller": their_caller(4.0)}
    out["before"], out["theirs"] = entries(fixture.callee), entries(theirs)
    asked = []  # calls that found no entry in the dispatcher's table
    compile_for_args = fixture.callee._compile_for_args
    fixture.callee._compile_for_args = lambda *a, **k: asked.append(a) or compile_for_args(*a, **k)
    out["calls"] = [fixture.callee(3.0, 4.0), fixture.callee(0.5, 0.25), fixture.callee(x=2.0, y=2.0)]
    out["asked"] = len(asked)
    array, count = fixture.halves(4)
    out["halves"] = [array.tolist(), count]
    out["after"] = entries(fixture.callee)
    out["overloads"] = len(fixture.callee.overloads)
    out["hits"] = sum(fixture.callee.stats.cache_hits.values())
    out["stats"] = _compile_wrap.STATS
    out["installed"] = _compile_wrap.installed()
    print(json.dumps(out))
    """
)


def _run(tmp_path: Path, switch: str = "1") -> dict:
    source = tmp_path / "wrap_fixture.py"
    source.write_text(_FIXTURE)
    return last_json(run_python(_RUNNER, tmp_path / "cache", str(source), OPTMM_COMPILE_SPEED=switch))


def test_a_callee_gets_its_python_entry_when_python_first_calls_it(tmp_path):
    first = _run(tmp_path)
    assert first["installed"] and first["caller"] == 1.5 * 2.0 + 1.0 and first["their_caller"] == 3.0
    # compiled for caller alone: no Python entry yet (other code's functions have theirs), one built
    # at the first call and then kept in the dispatcher's table (the later calls, keywords folded, go
    # there), with no second compile
    assert first["before"] == ["LazyEntry"] and first["theirs"] == ["builtin_function_or_method"]
    assert first["calls"] == [13.0, 1.125, 5.0]
    assert first["stats"]["deferred"] >= 2 and first["stats"]["built"] == 2
    assert first["halves"] == [[0.0, 0.5, 1.0, 1.5], 4]
    assert first["after"] == ["LazyEntry"] and first["hits"] == 0 and first["asked"] == 1
    # from the cache, written without the entry (caller holds a copy of callee: nothing loaded before
    # the call): loaded at the call, then built the same way
    second = _run(tmp_path)
    assert second["before"] == [] and second["after"] == ["LazyEntry"]
    assert second["hits"] == 1 and second["stats"]["built"] == 2 and second["asked"] == 1
    assert second["calls"] == first["calls"] and second["halves"] == first["halves"]
    # ... and with the fix off (numba alone would make an entry of the missing wrapper's null address)
    off = _run(tmp_path, switch="0")
    assert not off["installed"] and off["hits"] == 1 and off["after"] == ["LazyEntry"]
    assert off["stats"]["built"] == 2 and off["calls"] == first["calls"] and off["caller"] == first["caller"]
    assert off["halves"] == first["halves"]


def test_without_the_fix_a_callee_is_compiled_with_its_entry(tmp_path):
    off = _run(tmp_path, switch="0")
    assert off["before"] == off["after"] == ["builtin_function_or_method"]
    assert off["stats"] == {"deferred": 0, "built": 0} and off["calls"] == [13.0, 1.125, 5.0]
    assert off["halves"] == [[0.0, 0.5, 1.0, 1.5], 4]


def test_installed_under_the_pinned_numba():
    assert _compile_wrap.installed()
