"""A fourth fix to the cost of numba's first compile: a large function of optmm's is compiled once,
and its callers call it.

numba links a copy of every function a compiled function calls into the caller's LLVM module
(``CPUCodeLibrary.finalize`` links each callee library's module), which LLVM then optimises and
compiles to machine code again, with the callee's own callees: a function three calls deep is
compiled four times, and the pricing kernels of a book are four or five calls deep. The copy lets
LLVM inline a small callee; a large one it does not inline, and its copy is compiled for nothing.

Here, when a library is linked into its caller, each of optmm's functions in it that is too long
for LLVM to inline (:data:`MIN_INSTRUCTIONS`), and that is the entry of a compiled overload of a
dispatcher this module can find again by its module and name, is linked as a declaration: the
caller's machine code calls the function's own machine code, which the process has loaded (it is
in numba's JIT, under its own symbol). Small functions are linked as numba links them.

The caller's machine code then needs that symbol whenever it is loaded, so the caller's compile
result carries a :class:`Needs` for each (numba's ``reload_init``, which numba runs before it loads a
compile result from its cache, and which a caller's library inherits from the libraries linked into
it): it compiles the function's dispatcher for the function's argument types (numba loads it from
its cache) and checks that the symbol is defined, or makes it an alias of the symbol the process
holds the same function under (see :class:`Needs`). If neither can be done (the dispatcher is not
found, or the function returns another type now), the cache entry of the caller counts as missing
and numba compiles the caller again (:func:`install_guard`) rather than load machine code that
calls nothing.

None of this changes a figure: LLVM keeps the same floating-point operations in the same order
whether a function is called or inlined (optmm compiles nothing with fast-math), and the golden
content hashes are equal with and without the fix. It applies to optmm's functions only, is part of
:func:`optmm._compile_speed.install` (``OPTMM_COMPILE_SPEED=0`` turns it off); the guard on
loading is installed in any case, for cache entries a process with the fix wrote.
"""

from __future__ import annotations

import importlib
import re
import sys
from dataclasses import dataclass
from typing import Any

from optmm._once import once

__all__ = ["MIN_INSTRUCTIONS", "STATS", "Needs", "StaleLink", "install", "install_guard"]

MIN_INSTRUCTIONS = 150
"""A function is linked as a declaration when its LLVM instructions (after numba's per-function
optimisation) outnumber its parameters by at least this many. LLVM's inliner (numba's level 3) counts
about one unit per instruction against a threshold of some 50, less one per argument the call no
longer passes: a function this long is not inlined, one that takes a named tuple of arrays (numba
passes each array's fields as parameters, hundreds for the simulation's phases) may be, and is
linked as numba links it."""

STATS = {"declared": 0, "needs_checked": 0, "aliased": 0, "stale": 0}
"""In this process: functions linked as declarations, symbols checked before a cache load, symbols
made aliases (:class:`Needs`), cache entries found stale."""

_PREFIX = "_ZN5optmm"  # numba's mangled names of optmm's functions
_owners: dict[str, Needs] = {}  # mangled name -> how to load it
_aliases: dict[str, int] = {}  # symbol -> the address it was made an alias of


class StaleLink(Exception):
    """A cached compile result calls a function whose machine code is not loaded under its name."""


def _ours(obj: Any) -> bool:
    from optmm._compile_speed import _ours  # (that module installs this one)

    return _ours(obj)


def _dispatchers_in(value: Any) -> list[Any]:
    from numba.core.dispatcher import Dispatcher

    if isinstance(value, Dispatcher):
        return [value]
    if _ours(type(value)) and hasattr(value, "__dict__"):  # e.g. SizedKernel
        return [v for v in vars(value).values() if isinstance(v, Dispatcher)]
    return []


def _locate(module: str, qualname: str) -> Any:
    """The one dispatcher in ``module``'s globals (or one level into optmm's objects there) whose
    Python function is ``module.qualname``; None if there is none or more than one."""
    mod = sys.modules.get(module)
    if mod is None:
        mod = importlib.import_module(module)
    found = {
        id(d): d
        for value in list(vars(mod).values())
        for d in _dispatchers_in(value)
        if d.py_func.__module__ == module and d.py_func.__qualname__ == qualname
    }
    return next(iter(found.values())) if len(found) == 1 else None


@dataclass(frozen=True)
class Needs:
    """Loads the machine code of ``module.qualname`` compiled for ``args`` (returning ``restype``) and
    checks it is defined under ``symbol``; kept in numba's ``reload_init`` of every compile result
    that calls the function by its symbol.

    A process may hold the function under another symbol: it compiled the function itself before a
    cache entry of a caller compiled elsewhere was loaded (the command and its helper process,
    :mod:`optmm._compile_ahead`, both compile a kernel both need), or the function's own cache entry
    was written again since. Each symbol is the same function of the same source compiled for the
    same types (numba numbers the functions a process compiles, and the number is part of the
    symbol); when the return type is the one the caller was compiled against, the symbol the caller
    calls is made an alias of the address of the one the process holds. Otherwise :class:`StaleLink`
    is raised (the caller is then compiled again)."""

    module: str
    qualname: str
    args: tuple[Any, ...]
    restype: Any
    symbol: str

    def __call__(self) -> None:
        STATS["needs_checked"] += 1
        try:
            dispatcher = _locate(self.module, self.qualname)
            if dispatcher is None:
                raise StaleLink(f"{self.module}.{self.qualname}: no single dispatcher")
            dispatcher.compile(self.args)
            engine = dispatcher.targetctx.codegen()._engine
            if engine.is_symbol_defined(self.symbol) or self.symbol in _aliases:
                return
            cres = dispatcher.overloads[tuple(self.args)]
            if cres.signature.return_type != self.restype:
                raise StaleLink(f"{self.module}.{self.qualname}: returns {cres.signature.return_type} now")
            address = cres.library.get_pointer_to_function(cres.fndesc.mangled_name)
            if not address:
                raise StaleLink(f"{self.module}.{self.qualname}: no machine code")
        except StaleLink:
            raise
        except Exception as exc:  # the function no longer compiles for these types: compile the caller
            raise StaleLink(f"{self.module}.{self.qualname}: {exc}") from exc
        import llvmlite.binding as ll

        ll.add_symbol(self.symbol, address)
        _aliases[self.symbol] = address
        _owners.setdefault(self.symbol, self)  # a caller that copies one calling it needs this too
        STATS["aliased"] += 1


def _register(dispatcher: Any, cres: Any) -> None:
    """Note a compiled (or loaded) overload of one of optmm's dispatchers as linkable by its symbol,
    when :func:`_locate` finds the dispatcher again by its function's module and name."""
    func = getattr(dispatcher, "py_func", None)
    fndesc = getattr(cres, "fndesc", None)
    if func is None or fndesc is None or getattr(cres, "objectmode", False):
        return
    if not _ours(func):
        return
    module = func.__module__
    symbol = fndesc.mangled_name
    if symbol in _owners or not symbol.startswith(_PREFIX):
        return
    try:
        if _locate(module, func.__qualname__) is not dispatcher:
            return
    except Exception:
        return
    _owners[symbol] = Needs(
        module, func.__qualname__, tuple(cres.signature.args), cres.signature.return_type, symbol
    )


def _instructions(fn: Any) -> int:
    return sum(1 for block in fn.blocks for _ in block.instructions)


_LINKAGE = re.compile(
    r"^(?:(?:private|internal|available_externally|linkonce|weak|common|appending|extern_weak|"
    r"linkonce_odr|weak_odr|external|dso_local|dso_preemptable)\s+)*"
)
_AFTER_HEADER = re.compile(r"\s+(?:personality|comdat|section|prefix|prologue|gc)\b.*$|\s+!dbg\s+!\d+")


def _declared(module: Any, names: set[str]) -> Any:
    """A copy of the LLVM ``module`` with the functions ``names`` reduced to declarations."""
    import llvmlite.binding as ll

    out: list[str] = []
    skipping = False
    for line in str(module).split("\n"):
        if skipping:
            skipping = line != "}"
            continue
        if line.startswith("define "):
            match = re.search(r'@("(?:[^"\\]|\\.)*"|[-\w$.]+)\(', line)
            name = match.group(1).strip('"') if match else ""
            if name in names:
                head = _LINKAGE.sub("", line[len("define ") :]).rstrip()
                if not head.endswith("{"):
                    raise ValueError(f"unexpected function header: {line[:120]}")
                head = _AFTER_HEADER.sub("", head[:-1].rstrip())
                out.append("declare " + head)
                skipping = True
                continue
        out.append(line)
    declared = ll.parse_assembly("\n".join(out))
    declared.verify()
    return declared


def _for_linking(library: Any) -> Any:
    """``library``'s module for linking into a caller, optmm's large registered functions in it
    linked as declarations (numba's own module when there are none, or should the copy fail)."""
    view = library.__dict__.get("_optmm_linking")
    if view is not None:
        return view
    module = library._get_module_for_linking()
    names = {
        fn.name
        for fn in module.functions
        if not fn.is_declaration
        and fn.name in _owners
        and _instructions(fn) - sum(1 for _ in fn.arguments) >= MIN_INSTRUCTIONS
    }
    view = module
    if names:
        try:
            view = _declared(module, names)
            STATS["declared"] += len(names)
        except Exception:  # numba's own module: every function linked as numba links it
            view = module
    library.__dict__["_optmm_linking"] = view
    return view


class _Linked:
    """A linked library as numba's ``finalize`` sees it: its module for linking is :func:`_for_linking`'s."""

    def __init__(self, library: Any) -> None:
        self._library = library

    def __getattr__(self, name: str) -> Any:
        return getattr(self._library, name)

    def __hash__(self) -> int:
        return hash(self._library)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Linked) and other._library is self._library

    def _get_module_for_linking(self) -> Any:
        return _for_linking(self._library)


@once
def install_guard() -> bool:
    """A cache entry whose :class:`Needs` fails is a cache miss (numba compiles the function again).
    Installed by ``import optmm`` whatever the switch: a cache written with the fix may be read without."""
    try:
        from numba.core import caching

        load = caching.Cache.load_overload
    except (ImportError, AttributeError):
        return False

    def _load_overload_or_miss(self: Any, sig: Any, target_context: Any) -> Any:
        try:
            return load(self, sig, target_context)
        except StaleLink:
            STATS["stale"] += 1
            return None

    caching.Cache.load_overload = _load_overload_or_miss
    return True


@once
def install() -> bool:
    """Patch numba's library linking and dispatcher registration (see the module); True if in place."""
    try:
        from numba.core import codegen, dispatcher

        finalize = codegen.CPUCodeLibrary.finalize
        add_overload = dispatcher.Dispatcher.add_overload
        codegen.CPUCodeLibrary._get_module_for_linking  # noqa: B018 - present in the pinned range
    except (ImportError, AttributeError):
        return False
    if not install_guard():
        return False

    def finalize_calling_large(self: Any) -> Any:
        linking = self._linking_libraries
        self._linking_libraries = [_Linked(library) for library in linking]
        try:
            result = finalize(self)
        finally:
            self._linking_libraries = linking
        for fn in self._final_module.functions:  # the symbols the machine code calls: load them first
            if not fn.is_declaration or not fn.name.startswith(_PREFIX):
                continue
            needs = _owners.get(fn.name)
            if needs is not None:
                self._reload_init.add(needs)
            else:  # (not expected) a symbol nothing here can load again: numba will not cache this
                self._dynamic_globals.append(fn.name)
        return result

    def add_overload_registered(self: Any, cres: Any) -> Any:
        out = add_overload(self, cres)
        _register(self, cres)
        return out

    codegen.CPUCodeLibrary.finalize = finalize_calling_large
    dispatcher.Dispatcher.add_overload = add_overload_registered  # type: ignore[method-assign]
    return True


def installed() -> bool:
    """Whether :func:`install` put the fix in place in this process."""
    return install.installed()
