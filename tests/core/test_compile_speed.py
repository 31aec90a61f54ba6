"""optmm._compile_speed: numba's inlining of optmm's functions reuses each callee's IR and copies its
scope once, and its type inference resolves each kind of call once; what it compiles computes the
same bits as numba's own inlining and typing, other code is left alone, and it turns itself off
outside the numba range it was written for."""

from __future__ import annotations

import gc
import textwrap
import threading
import types
from pathlib import Path

import numpy as np
from builders import last_json, run_python
from numba import njit
from numba.core import ir

from optmm import _compile_speed
from optmm.greeks._american import clenshaw, clenshaw_py

clenshaw_typed = njit(clenshaw_py)  # an optmm function compiled here, typed under the fix

# Compiles the boundary engine's European leg (bsm_all inlined, its exp/log/normal helpers inlined at
# several sites each) in a fresh process and cache, then prints every output's bits and the counts.
_RUNNER = textwrap.dedent(
    """
    import json, numpy as np
    from numba import njit
    from optmm import _compile_speed
    from optmm.greeks._american import european_py

    kernel = njit(error_model="numpy")(european_py)
    rng = np.random.default_rng(7)
    bits = []
    for s, k, t, r, q, v, c in zip(
        rng.uniform(50, 150, 64), rng.uniform(50, 150, 64), rng.uniform(0, 3, 64),
        rng.uniform(-0.02, 0.1, 64), rng.uniform(0, 0.08, 64), rng.uniform(0.01, 1.5, 64),
        rng.integers(0, 2, 64).astype(bool),
    ):
        bits.append([x.hex() for x in kernel(s, k, t, r, q, v, c)])
    print(json.dumps({"installed": _compile_speed.installed(), "stats": _compile_speed.STATS, "bits": bits}))
    """
)


def _run(switch: str, cache: Path) -> dict:
    return last_json(run_python(_RUNNER, cache, **{_compile_speed.ENV_SWITCH: switch}))


def test_installed_under_the_pinned_numba():
    # the suite runs with the fixes in place, so the golden content hashes are checked with them
    assert _compile_speed.installed()


def test_same_bits_with_and_without(tmp_path):
    on = _run("1", tmp_path / "on")
    off = _run("0", tmp_path / "off")
    assert on["installed"] and not off["installed"]
    assert on["bits"] == off["bits"]
    assert len(on["bits"]) == 64 and all(len(row) == 8 for row in on["bits"])
    # the fixes did act: IR kept and reused, copies made with one memo, call types kept and returned
    # again; none without them
    assert on["stats"]["reused"] > 0 and on["stats"]["kept"] > 0 and on["stats"]["one_memo"] > 0
    assert on["stats"]["typed"] > 0 and on["stats"]["retyped"] > on["stats"]["typed"]
    assert on["stats"]["uncopied"] > 0
    assert off["stats"] == {"kept": 0, "reused": 0, "one_memo": 0, "uncopied": 0, "typed": 0, "retyped": 0}


def test_kept_ir_serves_callers_of_other_types():
    # one optmm callee inlined into two callers with different argument types: the second reuses
    # the first's IR, and inlining must not have changed the IR it was given
    @njit
    def with_floats(c, z):
        return clenshaw(c, z) + clenshaw(c, -z)

    @njit
    def with_ints(c, z):
        return clenshaw(c, z)

    c = np.array([0.5, -1.25, 2.0, 0.75])
    before = dict(_compile_speed.STATS)
    assert with_floats(c, 0.3) == clenshaw_py(c, 0.3) + clenshaw_py(c, -0.3)
    assert with_ints(c.astype(np.int64), 1) == clenshaw_py(c.astype(np.int64), 1)
    assert _compile_speed.STATS["reused"] >= before["reused"] + 2


def test_an_inlined_callee_shares_its_source_positions_and_is_copied_once():
    @njit
    def caller(c, z):
        return clenshaw(c, z)

    c = np.array([0.5, -1.25, 2.0, 0.75])
    before = dict(_compile_speed.STATS)
    assert caller(c, 0.3) == clenshaw_py(c, 0.3)
    kept = list(_compile_speed._kept[clenshaw_py].values())
    kept_locs = {id(st.loc) for callee in kept for block in callee.blocks.values() for st in block.body}
    blocks = caller.overloads[caller.signatures[0]].type_annotation.blocks
    shared = [st for block in blocks.values() for st in block.body if id(st.loc) in kept_locs]
    assert len(shared) >= len(kept_locs)  # the inlined statements point at the kept IR's positions
    # numba's second copy (of the first, which it discards) not made: one skip per block
    assert _compile_speed.STATS["uncopied"] - before["uncopied"] in {len(k.blocks) for k in kept}
    assert "__deepcopy__" not in vars(ir.Loc)  # numba's own copying once the inlining is done


def test_compiling_optmms_functions_leaves_out_llvms_lock_event():
    import llvmlite.binding as ll
    from numba.core import event

    seen: list[str] = []

    class Seen(event.Listener):
        def on_start(self, ev):
            seen.append(ev.kind)

        def on_end(self, ev):
            pass

    listener = Seen()
    callbacks = list(ll.ffi.lib._lock._cblist)
    event.register("numba:llvm_lock", listener)
    try:
        assert njit(lambda x: x * 2.5 + 1.0)(2.0) == 6.0  # not optmm's: numba announces its LLVM calls
        theirs = len(seen)
        seen.clear()
        c = np.array([0.5, -1.25, 2.0])
        assert njit(clenshaw_py)(c, 0.75) == clenshaw_py(c, 0.75)  # optmm's: not
        ours = len(seen)
    finally:
        event.unregister("numba:llvm_lock", listener)
    assert theirs > 100 and ours == 0
    assert ll.ffi.lib._lock._cblist == callbacks  # (put back)


def test_compiling_optmms_functions_pauses_the_garbage_collector():
    from numba.core import event

    seen: list[bool] = []

    class Seen(event.Listener):
        def on_start(self, ev):
            seen.append(gc.isenabled())

        def on_end(self, ev):
            pass

    listener = Seen()
    event.register("numba:compile", listener)
    try:
        assert njit(lambda x: x * 3.5)(2.0) == 7.0  # not optmm's: collected as always
        c = np.array([0.5, -1.25, 2.0])
        assert njit(clenshaw_py)(c, 0.25) == clenshaw_py(c, 0.25)  # optmm's: paused
    finally:
        event.unregister("numba:compile", listener)
    assert seen[0] is True and seen[1:] and not any(seen[1:])
    assert gc.isenabled()  # (on again)


def test_the_collector_is_on_again_when_the_last_of_compiles_in_threads_ends():
    """Two threads compiling at once, the first ending first: paused until the second ends, then as
    it was before the first began (on; off when it was off)."""
    lock = types.SimpleNamespace(_cblist=[print])
    ours = types.SimpleNamespace(py_func=clenshaw_py)
    b_started, a_done = threading.Event(), threading.Event()
    during: dict[str, bool] = {}
    threads: list[threading.Thread] = []

    def compile_(self, sig):
        if sig == "a":
            threads.append(threading.Thread(target=quiet, args=(ours, "b")))
            threads[-1].start()
            b_started.wait(5)
        else:
            b_started.set()
            a_done.wait(5)
            during["b after a"] = gc.isenabled()
            during["callbacks"] = bool(lock._cblist)
        return sig

    quiet = _compile_speed._quiet(compile_, lock)
    for was in (True, False):
        (gc.enable if was else gc.disable)()
        b_started.clear()
        a_done.clear()
        try:
            assert quiet(ours, "a") == "a"
            a_done.set()
            threads[-1].join(5)
        finally:
            on_after = gc.isenabled()
            gc.enable()
        assert during == {"b after a": False, "callbacks": False}
        assert on_after is was and lock._cblist == [print]


def test_other_code_is_inlined_by_numba_itself():
    @njit(inline="always")
    def helper(x):
        return x * 2.0 + 1.0

    @njit
    def caller(x):
        return helper(x) + helper(x + 1.0)

    before = dict(_compile_speed.STATS)
    assert caller(1.5) == 4.0 + 6.0
    assert _compile_speed.STATS == before


def test_kept_call_types_follow_the_argument_types():
    # one optmm kernel compiled for float, int and complex arguments: the calls inside it (+, *, abs,
    # math.sqrt...) are kept per argument types, so each signature computes as the plain-Python rule
    c = np.array([0.5, -1.25, 2.0, 0.75])
    before = dict(_compile_speed.STATS)
    for z in (0.3, 1, -2):
        assert clenshaw_typed(c, z) == clenshaw_py(c, z)
    assert clenshaw_typed(c.astype(np.int64), 3) == clenshaw_py(c.astype(np.int64), 3)
    assert clenshaw_typed(c.astype(np.complex128), 0.5j) == clenshaw_py(c.astype(np.complex128), 0.5j)
    assert _compile_speed.STATS["typed"] > before["typed"]
    assert _compile_speed.STATS["retyped"] > before["retyped"]


def test_other_code_is_typed_by_numba_itself():
    @njit
    def own(x, y):
        return abs(x * y + 1.0) - x / (y + 2.0)

    before = dict(_compile_speed.STATS)
    assert own(1.5, -3) == abs(1.5 * -3 + 1.0) - 1.5 / (-3 + 2.0)
    assert _compile_speed.STATS["typed"] == before["typed"]
    assert _compile_speed.STATS["retyped"] == before["retyped"]


def test_numba_range():
    assert _compile_speed._numba_in_range("0.68.1")
    assert _compile_speed._numba_in_range("0.61.0rc1")
    assert not _compile_speed._numba_in_range("0.69.0")
    assert not _compile_speed._numba_in_range("0.60.0")
    assert not _compile_speed._numba_in_range("dev")
