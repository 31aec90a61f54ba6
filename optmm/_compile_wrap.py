"""A fifth fix to the cost of numba's first compile: the Python entry of an optmm function compiled
only for its callers is built when Python first calls it, not with the function.

numba compiles every function with a wrapper that lets the interpreter call it (``PyCallWrapper``:
it unboxes each argument and boxes the result), and LLVM optimises and compiles the wrapper to
machine code with the function. A function compiled because a function being compiled calls it
(numba types the caller and compiles each function it calls) is then called from machine code alone,
by its symbol: of the some forty functions the example book's first ``optmm risk`` compiles, a handful
are called from Python, and the others' wrappers were about a twelfth of that compile.

Here a function of optmm's that numba compiles while it types a caller is compiled without that
wrapper (numba's ``no_cpython_wrapper`` flag; the cfunc wrapper, through which numba passes a function
as a first-class value, is kept). The overload's entry point is then a :class:`LazyEntry`:

* the dispatcher keeps the overload (its callers' typing and lowering find it, and their machine code
  calls the function's symbol), but not in its table of entry points for calls from Python;
* a call from Python with those types therefore asks the dispatcher to compile, which returns the
  overload's entry point, the :class:`LazyEntry`: that builds the wrapper (in a library of its own,
  calling the function's symbol), puts it in the dispatcher's table, where later calls find it, and
  calls it.

A cache entry without the wrapper loads the same way. That side (:func:`install_reader`) is installed
by ``import optmm`` whatever the switch, as a cache written with the fix may be read without it
(numba would otherwise make an entry point of the missing wrapper's null address). Nothing a function
computes changes: its own machine code is compiled as before, and the golden content hashes are equal
with and without the fix. Part of :func:`optmm._compile_speed.install` (``OPTMM_COMPILE_SPEED=0``
turns it off), for optmm's functions only.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

from optmm._once import once

__all__ = ["STATS", "LazyEntry", "install", "install_reader"]

STATS = {"deferred": 0, "built": 0}
"""In this process: overloads whose Python entry was left to build (compiled or loaded without it),
entries built when Python first called them."""

_typing = threading.local()  # .depth: how many dispatchers this thread is typing a call to


def _ours(obj: Any) -> bool:
    from optmm._compile_speed import _ours  # (that module installs this one)

    return _ours(obj)


def _our_module(module: str) -> bool:
    from optmm._compile_speed import _our_module

    return _our_module(module)


class LazyEntry:
    """The Python entry point of a compiled overload without its CPython wrapper: built on the first
    call (see the module), then put in its dispatcher's table of entry points and called."""

    def __init__(self, context: Any, library: Any, fndesc: Any, env: Any, get_executable: Any) -> None:
        self._context = context  # the context it was lowered with (or numba's base, from the cache)
        self._library = library  # the function's own machine code, kept alive with the entry
        self._fndesc = fndesc
        self._env = env
        self._get_executable = get_executable  # numba's own
        self._dispatcher: Any = None
        self._codes: list[int] | None = None
        self._entry: Any = None

    def bind(self, dispatcher: Any, args: tuple[Any, ...]) -> None:
        """The dispatcher whose overload for ``args`` this is (its table gets the built entry)."""
        self._dispatcher = weakref.ref(dispatcher)
        self._codes = [a._code for a in args]

    def _target(self) -> tuple[Any, bool]:
        """The target context and GIL release the function's own compile gave its wrapper: from its
        dispatcher's options (a cache load hands numba's base context, without the runtime that
        boxes a returned array); the context it was lowered with when there is no dispatcher."""
        dispatcher = self._dispatcher() if self._dispatcher is not None else None
        if dispatcher is None:
            return self._context, False
        from numba.core import compiler

        flags = compiler.Flags()
        dispatcher.targetdescr.options.parse_as_flags(flags, dispatcher.targetoptions)
        return compiler._make_subtarget(dispatcher.targetctx, flags), bool(flags.release_gil)

    def entry(self) -> Any:
        """The built entry point (a CPython function, as numba's own), built on the first call."""
        if self._entry is None:
            from numba.core.compiler_lock import global_compiler_lock

            with global_compiler_lock:
                if self._entry is None:
                    fndesc = self._fndesc
                    context, release_gil = self._target()
                    library = context.codegen().create_library(f"{fndesc.qualname}.python_entry")
                    context.create_cpython_wrapper(library, fndesc, self._env, None, release_gil=release_gil)
                    entry = self._get_executable(context, library, fndesc, self._env)
                    dispatcher = self._dispatcher() if self._dispatcher is not None else None
                    if dispatcher is not None and self._codes is not None:
                        dispatcher._insert(self._codes, entry, False)
                    self._entry = entry
                    STATS["built"] += 1
        return self._entry

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.entry()(*args, **kwargs)


@once
def install_reader() -> bool:
    """An overload compiled or loaded without its CPython wrapper gets a :class:`LazyEntry` and stays
    out of its dispatcher's table until Python calls it. Installed by ``import optmm`` whatever the
    switch: a cache written with the fix may be read without it."""
    try:
        from numba.core import cpu, dispatcher

        get_executable = cpu.CPUContext.get_executable
        add_overload = dispatcher.Dispatcher.add_overload
    except (ImportError, AttributeError):
        return False

    def get_executable_or_lazy(self: Any, library: Any, fndesc: Any, env: Any) -> Any:
        if _our_module(getattr(fndesc, "modname", None) or "") and not library.get_pointer_to_function(
            fndesc.llvm_cpython_wrapper_name
        ):
            library.codegen.set_env(self.get_env_name(fndesc), env)  # as numba's own does
            STATS["deferred"] += 1
            return LazyEntry(self, library, fndesc, env, get_executable)
        return get_executable(self, library, fndesc, env)

    def add_overload_lazy(self: Any, cres: Any) -> Any:
        entry = cres.entry_point
        if not isinstance(entry, LazyEntry):
            return add_overload(self, cres)
        args = tuple(cres.signature.args)
        entry.bind(self, args)
        vars(self)["_insert"] = _not_yet  # numba's add_overload: the overload, not in the table
        try:
            return add_overload(self, cres)
        finally:
            del vars(self)["_insert"]

    cpu.CPUContext.get_executable = get_executable_or_lazy
    dispatcher.Dispatcher.add_overload = add_overload_lazy  # type: ignore[method-assign]
    return True


def _not_yet(*args: Any, **kwargs: Any) -> None:
    return None


@once
def install() -> bool:
    """Compile optmm's functions without the CPython wrapper while numba types a call to them (see the
    module); True if in place."""
    try:
        from numba.core import dispatcher

        get_call_template = dispatcher.Dispatcher.get_call_template
        function_compiler: Any = dispatcher._FunctionCompiler  # type: ignore[attr-defined]
        customize_flags = function_compiler._customize_flags
    except (ImportError, AttributeError):
        return False
    if not install_reader():
        return False

    def get_call_template_typing(self: Any, args: Any, kws: Any) -> Any:
        _typing.depth = getattr(_typing, "depth", 0) + 1
        try:
            return get_call_template(self, args, kws)
        finally:
            _typing.depth -= 1

    def customize_flags_for_callees(self: Any, flags: Any) -> Any:
        flags = customize_flags(self, flags)
        if getattr(_typing, "depth", 0) and _ours(self.py_func):
            flags.no_cpython_wrapper = True
        return flags

    dispatcher.Dispatcher.get_call_template = get_call_template_typing  # type: ignore[method-assign]
    function_compiler._customize_flags = customize_flags_for_callees
    return True


def installed() -> bool:
    """Whether :func:`install` put the fix in place in this process."""
    return install.installed()
