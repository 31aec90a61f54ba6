"""numba compile helpers: a function copied under another name or namespace, array kernels that
use threads only when the work pays for them, and a kernel run by the interpreter where compiling it
would not pay.

A ``prange`` kernel compiled with ``parallel=True`` costs numba one to two seconds more to compile
than the same loop compiled serially (the first time it runs on a machine; ``cache=True`` keeps
both afterwards), and starting the thread pool costs microseconds on every call. For a few dozen
options neither pays: the loop is done in milliseconds on one thread. :func:`sized_kernel` compiles
one loop body twice, lazily, and each call runs the serial form when the call's size (the largest
first dimension among its array arguments) is below the kernel's ``serial_below``. Every iteration
of these loops computes its own elements, so both forms give the same figures bit for bit
(``tests/core/test_jit.py``).

``serial_below`` is set per kernel from the work of one element: for the American engines, so that
the serial form runs at most about 20 ms of single-threaded work (256 options on the boundary engine
at ~70 µs each, 16 on the finite-difference engine at ~1.5 ms); for the closed forms (tens of
nanoseconds an option), below the thousands of options where threads start to pay.

A kernel over a few hundred rows (numbering contracts, summing exposures) runs in a millisecond or
two interpreted, where numba would spend over half a second compiling it the first time and some
milliseconds loading it from the cache every time after. :func:`interpreted` is the kernel's own
Python function run by the interpreter, calling the interpreted forms of the compiled functions it
calls: one rule, whichever runs it. It suits kernels whose arithmetic numpy's scalars and Python do
as numba's machine code does (the same IEEE operations in the same order, integers wrapping at 64
bits); each use is tested against the compiled kernel, bit for bit.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable
from typing import Any

import numpy as np
from numba import njit
from numba.core.dispatcher import Dispatcher

__all__ = ["SizedKernel", "function_copy", "interpreted", "python_meaning", "sized_kernel"]


def function_copy(
    f_py: Callable[..., Any],
    *,
    suffix: str = "",
    env: dict[str, Any] | None = None,
    closure: tuple[types.CellType, ...] | None = None,
) -> Callable[..., Any]:
    """``f_py``'s code as a new function named ``name + suffix``, resolving its globals in ``env``
    (default: its own module's) and its free variables in ``closure`` (default: its own).

    numba's on-disk cache files a compiled function under its module, qualified name and first
    line, and keys the entries by signature, not by compile options: a serial and a threaded
    compile of one function must have different names, or each would load the other's machine code.
    """
    g = types.FunctionType(
        f_py.__code__,
        f_py.__globals__ if env is None else env,
        f_py.__name__ + suffix,
        f_py.__defaults__,
        f_py.__closure__ if closure is None else closure,
    )
    g.__qualname__ = f_py.__qualname__ + suffix
    g.__module__ = f_py.__module__
    g.__doc__ = f_py.__doc__
    return g


class SizedKernel:
    """One ``prange`` loop compiled threaded and serial; a call picks by its size.

    Attributes
    ----------
    threaded, serial : numba dispatchers
        ``njit(parallel=True)`` and ``njit`` of the same function, with the same options.
    serial_below : int
        Calls whose largest array has fewer elements along its first axis run serially.
    """

    def __init__(self, f_py: Callable[..., Any], serial_below: int, **options: Any) -> None:
        self.threaded = njit(cache=True, parallel=True, **options)(f_py)
        self.serial = njit(cache=True, **options)(function_copy(f_py, suffix="_serial"))
        self.serial_below = serial_below
        self.__doc__ = f_py.__doc__
        self.__name__ = f_py.__name__
        self.__wrapped__ = f_py

    def __call__(self, *args: Any) -> Any:
        size = max((a.shape[0] for a in args if isinstance(a, np.ndarray) and a.ndim), default=0)
        return (self.serial if size < self.serial_below else self.threaded)(*args)


def sized_kernel(serial_below: int, **options: Any) -> Callable[[Callable[..., Any]], SizedKernel]:
    """Decorator: ``@sized_kernel(serial_below, error_model=...)`` over a ``prange`` loop."""
    return lambda f_py: SizedKernel(f_py, serial_below, **options)


_MEANINGS: dict[int, tuple[Any, Callable[..., Any]]] = {}


def python_meaning(compiled: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: the Python function that does what ``compiled`` (a numba intrinsic, which has no
    Python body) does, for :func:`interpreted` to call in its place."""

    def register(f_py: Callable[..., Any]) -> Callable[..., Any]:
        _MEANINGS[id(compiled)] = (compiled, f_py)
        return f_py

    return register


def _names(code: types.CodeType) -> set[str]:
    """The global names ``code`` and the code nested in it read."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names(const)
    return names


def _plain(kernel: Dispatcher, made: dict[Dispatcher, Callable[..., Any]]) -> Callable[..., Any]:
    """``kernel``'s Python function, resolving its globals in a copy of its module's and its free
    variables in new cells, where each compiled function it names is its plain form (``made``:
    those already made, recursion included) and each intrinsic its Python meaning."""
    if kernel in made:
        return made[kernel]
    f_py = kernel.py_func
    env = dict(f_py.__globals__)
    cells = tuple(types.CellType() for _ in f_py.__closure__ or ())
    plain = made[kernel] = function_copy(f_py, env=env, closure=cells if f_py.__closure__ else None)

    def meaning(value: Any) -> Any:
        if isinstance(value, Dispatcher):
            return _plain(value, made)
        if id(value) in _MEANINGS and _MEANINGS[id(value)][0] is value:
            return _MEANINGS[id(value)][1]
        return value

    for name in _names(f_py.__code__):
        if name in env:
            env[name] = meaning(env[name])
    for cell, new in zip(f_py.__closure__ or (), cells, strict=True):
        try:
            new.cell_contents = meaning(cell.cell_contents)
        except ValueError:  # a free variable not bound yet: left empty, as it is
            pass
    return plain


@functools.cache
def interpreted(kernel: Dispatcher) -> Callable[..., Any]:
    """``kernel`` (a numba function) run by the interpreter: its Python function, calling the
    interpreted forms of the numba functions it names (as globals or free variables) and the Python
    meanings of its intrinsics (:func:`python_meaning`), under ``numpy.errstate(all="ignore")`` as
    machine code does not warn (an integer wraps at 64 bits, a float overflows to inf). Nothing is
    compiled. Where Python's own arithmetic differs from numba's (a Python float divided by zero
    raises, where numba's ``error_model="numpy"`` gives inf or NaN), the kernel is not one for it:
    each use is tested against the compiled kernel."""
    plain = _plain(kernel, {})

    @functools.wraps(kernel.py_func)
    def run(*args: Any) -> Any:
        with np.errstate(all="ignore"):
            return plain(*args)

    return run
