"""numba compile helpers: a function copied under another name or namespace, and array kernels
that use threads only when the work pays for them.

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
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

import numpy as np
from numba import njit

__all__ = ["SizedKernel", "function_copy", "sized_kernel"]


def function_copy(
    f_py: Callable[..., Any], *, suffix: str = "", env: dict[str, Any] | None = None
) -> Callable[..., Any]:
    """``f_py``'s code as a new function named ``name + suffix``, resolving its globals in ``env``
    (default: its own module's).

    numba's on-disk cache files a compiled function under its module, qualified name and first
    line, and keys the entries by signature, not by compile options: a serial and a threaded
    compile of one function must have different names, or each would load the other's machine code.
    """
    g = types.FunctionType(
        f_py.__code__,
        f_py.__globals__ if env is None else env,
        f_py.__name__ + suffix,
        f_py.__defaults__,
        f_py.__closure__,
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
