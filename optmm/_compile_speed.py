"""Fixes to the cost of numba's first compile, for optmm's own functions: three here, a fourth in
:mod:`optmm._compile_link` (a large function is compiled once and called, not copied into every
caller and compiled again), a fifth in :mod:`optmm._compile_wrap` (a function compiled for its
callers alone gets its Python entry when Python first calls it) and a sixth in
:mod:`optmm._compile_lifetimes` (the variables of the IR and where each is live, worked out faster),
which :func:`install` puts in place with them.

optmm's loops are written as small rules inlined into one kernel (``njit(inline="always")``): the
simulation's phases, the quoter's and the controller's rules, the pricing helpers. numba (0.61 to
0.68) spends most of a first compile on three costs that grow faster than the code does:

* **An inlined callee's IR is rebuilt at every site.** ``InlineWorker.run_untyped_passes`` translates
  the callee's bytecode and runs every untyped pass (including its own inlining) each time the callee
  is inlined; a helper inlined at ten sites is rebuilt ten times. Here it is built once per function
  (and per flags, locals and contexts) and kept: ``inline_ir`` deep-copies the IR it is given before
  it changes anything, which is how numba itself reuses the IR of ``@overload(inline="always")``.
* **An inlined callee's scope is copied once per block.** ``inline_ir`` deep-copies each block with a
  memo of its own, so the scope shared by all the blocks, with every local variable, is copied once
  for every block (quadratic in the callee's size), and the copies are then compared for equality.
  Here the blocks of one copy share one memo, so they share one copied scope, as the original blocks
  do; a source position (``ir.Loc``, which nothing changes) is shared, not copied, as numba's own
  copies of constants and variables share it. ``inline_ir`` also copies the copy once more, before it
  changes it, to return it as the callee's IR unchanged: both of numba's callers discard that (in
  0.61 to 0.68), so it is not made.
* **A call's type is worked out again at every pass of type inference.** Type inference propagates
  its constraints until nothing changes, and each pass resolves every call again:
  ``BaseFunction.get_call_type`` tries the function's templates in turn (``+`` on two floats goes
  through the templates of every type that defines ``+``). A simulation's first compile resolves
  about 25,000 calls, of some 360 kinds. Here the first resolution of a function type with given
  argument types (and typing context and target) is kept and returned again, with the template's
  implementation key it recorded; a resolution that fails is not kept. The templates' answer depends
  on those alone (numba keeps the answers of ``@overload`` templates the same way).

Two smaller costs besides, while numba compiles one of optmm's functions (and what it calls,
:func:`_quiet`):

* numba announces every call into LLVM (``numba:llvm_lock``, an event broadcast on entering and
  leaving llvmlite's lock, some 60,000 times in the example book's first ``optmm risk``), to time it
  for a compile result's ``metadata["timers"]``. The announcement is left out: its ``llvm_lock``
  timer reads 0.
* numba's compiler makes millions of short-lived containers, and Python's cyclic garbage collector
  walked them, and every object the process holds, about a tenth of a first compile. It is paused,
  and collects after: the first ``optmm simulate calm_day`` peaks some 100 MB higher (710 MB).

None changes what is compiled: the same IR reaches type inference, the same types reach lowering,
and the simulations' and reports' content hashes (``tests/golden``) are equal with and without them.
With the fourth and fifth they halve the first compile of ``optmm simulate`` and shorten that of
``optmm risk`` by two fifths, in one process (``bench/coldstart.py``: ``*_cold_one_process_s``
against ``*_cold_stock_s``, 42.7 s against 84.7 s and 12.3 s against 20.7 s at ``8e460c4``, on a
machine then a third slower than at ``7cae3a5``: 35.6 s against 60.7 s and 9.9 s against 14.9 s).

They apply only to optmm's functions: a function of yours is inlined and typed exactly as numba does
it (a module's globals are read when its IR is built, and kept IR would not see a global of yours
rebound in between). :func:`install` is called by ``import optmm``; it does nothing under a numba
outside the range the package pins or without these internal names, or with
``OPTMM_COMPILE_SPEED=0``.
"""

from __future__ import annotations

import copy
import gc
import os
import threading
import types
import weakref
from collections.abc import Callable
from typing import Any

from optmm import _compile_lifetimes, _compile_link, _compile_wrap
from optmm._once import once

__all__ = ["ENV_SWITCH", "STATS", "install", "installed"]

ENV_SWITCH = "OPTMM_COMPILE_SPEED"
_PACKAGE = "optmm"
_NUMBA_RANGE = ((0, 61), (0, 69))  # the range pyproject.toml pins; inside it these internals hold

STATS = {"kept": 0, "reused": 0, "one_memo": 0, "uncopied": 0, "typed": 0, "retyped": 0}
"""How often, in this process: a callee's IR was built and kept, was reused, was copied with one memo;
a block of such a copy was not copied again; a call's type was resolved and kept, was returned
again."""

_kept: weakref.WeakKeyDictionary[Callable[..., Any], dict[tuple[Any, ...], Any]] = weakref.WeakKeyDictionary()
_CallTypes = dict[tuple[Any, ...], tuple[Any, Any]]  # (type, target, args, kws) -> (signature, impl key)
_call_types: weakref.WeakKeyDictionary[Any, _CallTypes] = weakref.WeakKeyDictionary()  # per typing context


def _our_module(module: str) -> bool:
    return module == _PACKAGE or module.startswith(_PACKAGE + ".")


def _ours(func: Any) -> bool:
    return _our_module(getattr(func, "__module__", None) or "")


def _numba_in_range(version: str) -> bool:
    try:
        major_minor = tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        return False
    low, high = _NUMBA_RANGE
    return low <= major_minor < high


def _key(worker: Any, enable_ssa: bool) -> tuple[Any, ...]:
    flags = worker.flags.values()
    flags.pop("enable_ssa", None)  # run_untyped_passes sets it from its argument
    # numba makes a new target context for every compile (a subtarget of the flags, which the key
    # holds); the untyped passes depend on its kind, not its identity
    return (
        enable_ssa,
        id(worker.typingctx),
        type(worker.targetctx),
        tuple(sorted((name, repr(value)) for name, value in flags.items())),
        repr(worker.locals),
    )


def _typed_once(
    get_call_type: Callable[..., Any], get_local_target: Callable[[Any], Any]
) -> Callable[..., Any]:
    """``BaseFunction.get_call_type`` keeping each resolution for optmm's functions (the module's third
    fix)."""

    def get_call_type_kept(self: Any, context: Any, args: Any, kws: Any) -> Any:
        stack = context.callstack._stack  # the functions being typed, the innermost last
        if not stack or not _ours(stack[-1].func_id.func):
            return get_call_type(self, context, args, kws)
        key = (self, get_local_target(context), tuple(args), tuple(sorted(kws.items())))
        per_context = _call_types.setdefault(context, {})
        kept = per_context.get(key)
        if kept is None:
            sig = get_call_type(self, context, args, kws)  # raises when no template matches
            if sig is None:
                return None
            kept = per_context[key] = (sig, self._impl_keys.get(sig.args))
            STATS["typed"] += 1
        else:
            sig, impl_key = kept
            if impl_key is not None:
                self._impl_keys[sig.args] = impl_key  # as the resolution would have recorded it
            STATS["retyped"] += 1
        return kept[0]

    return get_call_type_kept


def _itself(value: Any, memo: dict[int, Any]) -> Any:
    return value


def _quiet(compile_: Callable[..., Any], lock: Any) -> Callable[..., Any]:
    """``Dispatcher.compile`` without llvmlite's lock callbacks (numba's ``numba:llvm_lock`` event),
    with Python's cyclic garbage collector paused and with :mod:`optmm._compile_lifetimes` swapped in
    while it compiles one of optmm's functions (and what it calls); all as they were after the last
    such compile under way ends (threads may compile at once)."""
    state: dict[str, Any] = {"depth": 0}
    guard = threading.Lock()

    def compile_quietly(self: Any, sig: Any) -> Any:
        if not _ours(self.py_func):
            return compile_(self, sig)
        with guard:
            if state["depth"] == 0:
                state["callbacks"] = list(lock._cblist)
                state["collecting"] = gc.isenabled()
                lock._cblist.clear()
                gc.disable()
                state["lifetimes back"] = _compile_lifetimes.swapped_in()
            state["depth"] += 1
        try:
            return compile_(self, sig)
        finally:
            with guard:
                state["depth"] -= 1
                if state["depth"] == 0:
                    state.pop("lifetimes back")()
                    lock._cblist[:0] = state.pop("callbacks")
                    if state.pop("collecting"):
                        gc.enable()

    return compile_quietly


@once
def install() -> bool:
    """Patch numba's ``InlineWorker`` and ``BaseFunction`` once (see the module), and install
    :mod:`optmm._compile_link` and :mod:`optmm._compile_wrap`; True if the fixes are in place. Their
    sides that load numba's cache are installed whatever the switch."""
    # whatever the switch: a cache written with the fourth and fifth fixes may be read
    _compile_link.install_guard()
    _compile_wrap.install_reader()
    if os.environ.get(ENV_SWITCH, "1") == "0":
        return False
    try:
        import llvmlite.binding
        import numba
        import numba.core.inline_closurecall as icc
        from numba.core.dispatcher import Dispatcher
        from numba.core.ir import Loc as loc
        from numba.core.target_extension import get_local_target
        from numba.core.types.functions import BaseFunction

        worker = icc.InlineWorker
        run_untyped = worker.run_untyped_passes
        inline_ir = worker.inline_ir
        get_call_type = BaseFunction.get_call_type
        compile_ = Dispatcher.compile
        llvm_lock = llvmlite.binding.ffi.lib._lock
        if not isinstance(llvm_lock._cblist, list):
            return False
    except (ImportError, AttributeError):
        return False
    if not _numba_in_range(numba.__version__) or icc.copy is not copy or "__deepcopy__" in vars(loc):
        return False

    def run_untyped_passes(self: Any, func: Any, enable_ssa: bool = False) -> Any:
        if not _ours(func):
            return run_untyped(self, func, enable_ssa)
        per_function = _kept.setdefault(func, {})
        key = _key(self, enable_ssa)
        func_ir = per_function.get(key)
        if func_ir is None:
            func_ir = per_function[key] = run_untyped(self, func, enable_ssa)
            STATS["kept"] += 1
        else:
            self.flags.enable_ssa = enable_ssa  # as the pipeline run would have set it
            STATS["reused"] += 1
        return func_ir

    def inline_ir_one_memo(
        self: Any,
        caller_ir: Any,
        block: Any,
        i: int,
        callee_ir: Any,
        callee_freevars: Any,
        arg_typs: Any = None,
    ) -> Any:
        if not _ours(callee_ir.func_id.func):
            return inline_ir(self, caller_ir, block, i, callee_ir, callee_freevars, arg_typs=arg_typs)
        memo: dict[int, Any] = {}
        made: set[int] = set()  # the first copy's blocks

        def deepcopy(value: Any, given: dict[int, Any] | None = None) -> Any:
            if given is None and id(value) in made:
                STATS["uncopied"] += 1
                return value  # the copy of the copy, which numba's callers discard (see the module)
            out = copy.deepcopy(value, memo if given is None else given)
            made.add(id(out))
            return out

        # inline_ir's only use of its module's ``copy`` is the per-block deepcopy of its two copies of
        # the callee; numba compiles under one global lock, so nothing else sees the swaps
        icc.copy = types.SimpleNamespace(deepcopy=deepcopy)
        loc.__deepcopy__ = _itself
        try:
            out = inline_ir(self, caller_ir, block, i, callee_ir, callee_freevars, arg_typs=arg_typs)
        finally:
            icc.copy = copy
            del loc.__deepcopy__
        STATS["one_memo"] += 1
        return out

    worker.run_untyped_passes = run_untyped_passes
    worker.inline_ir = inline_ir_one_memo
    BaseFunction.get_call_type = _typed_once(get_call_type, get_local_target)  # type: ignore[method-assign]
    Dispatcher.compile = _quiet(compile_, llvm_lock)  # type: ignore[method-assign]
    _compile_link.install()
    _compile_wrap.install()
    return True


def installed() -> bool:
    """Whether :func:`install` put the fixes in place in this process."""
    return install.installed()
