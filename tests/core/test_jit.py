"""optmm._jit: kernels compiled serial and threaded give the same figures, each call picks its form
by size, and the two forms never share numba's on-disk cache entries."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
from numba import njit, prange, types
from numba.extending import intrinsic

from optmm._jit import SizedKernel, function_copy, interpreted, python_meaning
from optmm.greeks import _american, _american_fd, _bsm, _dividend, _iv
from optmm.greeks._simd import _f2i, _f2i_py, _i2f, _i2f_py
from optmm.greeks.american import _scheme

ROOT = Path(__file__).resolve().parents[2]


def _double(x, out):  # pragma: no cover - compiled
    for i in prange(x.shape[0]):
        out[i] = 2.0 * x[i]


def test_a_call_below_the_threshold_compiles_and_runs_only_the_serial_form():
    k = SizedKernel(_double, 4)
    out = np.empty(3)
    k(np.arange(3.0), out)
    assert out.tolist() == [0.0, 2.0, 4.0]
    assert k.serial.signatures and not k.threaded.signatures
    out = np.empty(4)
    k(np.arange(4.0), out)
    assert out.tolist() == [0.0, 2.0, 4.0, 6.0]
    assert k.threaded.signatures


def test_the_serial_form_is_filed_under_its_own_name():
    assert SizedKernel(_double, 4).serial.py_func.__qualname__ == "_double_serial"
    g = function_copy(_double, env={"prange": range})
    assert g.__qualname__ == "_double" and g.__globals__["prange"] is range


def _market(n: int, seed: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    s = rng.uniform(50.0, 150.0, n)
    k = rng.uniform(60.0, 140.0, n)
    t = rng.uniform(0.01, 2.0, n)
    r = rng.uniform(0.0, 0.08, n)
    q = rng.uniform(0.0, 0.05, n)
    v = rng.uniform(0.05, 0.8, n)
    c = rng.random(n) < 0.5
    return s, k, t, r, q, v, c


def _both(kernel: SizedKernel, *args: np.ndarray, outs: list[np.ndarray]) -> None:
    """Run the serial and the threaded form on the same inputs; every output equal bit for bit."""
    first = [np.full_like(o, -7) for o in outs]
    second = [np.full_like(o, -7) for o in outs]
    assert kernel.serial(*args, *first) == kernel.threaded(*args, *second)
    for a, b in zip(first, second, strict=True):
        assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("n", [1, 37, 3000])
def test_european_kernels_serial_and_threaded_agree_bit_for_bit(n):
    m = _market(n, n)
    _both(_bsm.greeks_kernel, *m, outs=[np.empty(n) for _ in range(8)])
    _both(_bsm.price_kernel, *m, outs=[np.empty(n)])
    price = np.empty(n)
    _bsm.price_kernel.threaded(*m, price)
    s, k, t, r, q, _, c = m
    _both(_iv.iv_kernel, price, s, k, t, r, q, c, outs=[np.empty(n), np.empty(n, np.int8)])
    ex, amt = np.array([0.1, 0.6]), np.array([0.5, 0.7])
    _both(_dividend.escrow_kernel, s, t, r, q, ex, amt, outs=[np.empty(n) for _ in range(3)])


def test_american_kernels_serial_and_threaded_agree_bit_for_bit():
    n = 24
    m = _market(n, 5)
    sch = _scheme("default")
    _both(_american.greeks_kernel, *m, sch, outs=[np.empty(n) for _ in range(8)] + [np.empty(n, np.int8)])
    _both(_american.price_kernel, *m, sch, outs=[np.empty(n), np.empty(n, np.int8)])
    ex, amt = np.array([0.1, 0.6]), np.array([0.5, 0.7])
    grid = _american_fd.GRIDS["default"]
    _both(_american_fd.greeks_kernel, *m, ex, amt, grid, outs=[np.empty(n) for _ in range(8)])
    _both(_american_fd.price_kernel, *m, ex, amt, grid, outs=[np.empty(n)])


_PROBE = textwrap.dedent(
    """
    import sys
    import numba
    import numpy as np
    from numba import prange
    from optmm._jit import sized_kernel

    @sized_kernel(64)
    def which_thread(out):
        for i in prange(out.shape[0]):
            out[i] = numba.get_thread_id()

    if sys.argv[1] == "small-first":
        which_thread(np.empty(8, np.int64))
    out = np.zeros(100_000, np.int64)
    which_thread(out)
    print(int(out.max()))
    """
)


def test_a_threaded_call_never_loads_the_serial_forms_machine_code(tmp_path):
    """Compile the serial form first into an empty cache, then the threaded one; in a second process,
    the threaded form loaded from that cache still runs on several threads."""
    probe = tmp_path / "probe_kernel.py"
    probe.write_text(_PROBE)
    env = dict(
        os.environ,
        NUMBA_CACHE_DIR=str(tmp_path / "cache"),
        NUMBA_NUM_THREADS="2",
        PYTHONPATH=str(ROOT),
    )
    for mode in ("small-first", "large-only"):
        done = subprocess.run(
            [sys.executable, str(probe), mode], env=env, capture_output=True, text=True, check=True
        )
        assert int(done.stdout.strip()) >= 1, (mode, done.stdout, done.stderr)


# --------------------------------------------------------------------------------------------------
# interpreted: a kernel run by Python, with what it calls


@njit(cache=True)
def _wrap_add(a, b):  # pragma: no cover - compiled (and interpreted below)
    return np.uint64(a) + np.uint64(b)  # wraps at 64 bits


@njit(cache=True)
def _halves(x, out, depth):  # pragma: no cover - compiled (and interpreted below)
    """Recursive, calling another compiled function and an intrinsic."""
    if x.shape[0] <= 2 or depth > 8:
        for i in range(x.shape[0]):
            out[i] = np.int64(_wrap_add(_f2i(x[i]), 0xFFFFFFFFFFFFFFFF) >> np.uint64(1))
        return 0
    h = x.shape[0] // 2
    _halves(x[:h], out[:h], depth + 1)
    _halves(x[h:], out[h:], depth + 1)
    return 1


def test_an_interpreted_kernel_gives_the_compiled_figures_and_compiles_nothing() -> None:
    x = np.array([1.5, -0.0, 0.0, np.inf, -np.inf, np.nan, 5e-324, -2.0, 1e308])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # integer wrapping does not warn, as machine code does not
        got = np.empty(x.size, dtype=np.int64)
        assert interpreted(_halves)(x, got, 0) == 1
    # nothing was compiled: neither the kernel nor what it calls
    assert not _halves.signatures and not _wrap_add.signatures
    want = np.empty(x.size, dtype=np.int64)
    _halves(x, want, 0)
    assert got.tolist() == want.tolist()
    assert interpreted(_halves) is interpreted(_halves)  # made once


def test_the_python_meanings_of_the_bit_casts_are_the_intrinsics() -> None:
    rng = np.random.default_rng(5)
    i64 = np.iinfo(np.int64)
    bits = np.r_[rng.integers(i64.min, i64.max, 1000), 0, -1, 0x7FF8000000000000]
    floats = bits.view(np.float64)
    compiled_f2i = njit(lambda v: _f2i(v))
    compiled_i2f = njit(lambda v: _i2f(v))
    for b, f in zip(bits.tolist(), floats.tolist(), strict=True):
        assert _f2i_py(f) == compiled_f2i(f) == b
        assert np.float64(_i2f_py(b)).view(np.int64) == np.float64(compiled_i2f(b)).view(np.int64) == b


def test_an_intrinsic_without_a_python_meaning_fails_when_called_interpreted() -> None:
    @intrinsic
    def _same(typingctx, x):  # pragma: no cover - compiled
        def codegen(context, builder, signature, args):
            return args[0]

        return types.int64(types.int64), codegen

    @njit
    def uses(x):  # pragma: no cover - compiled
        return _same(x) + _f2i(2.0)

    with pytest.raises(NotImplementedError, match="not usable in pure-python"):
        interpreted(uses)(1)  # numba's own answer: nothing computed wrongly
    python_meaning(_same)(lambda x: x)
    interpreted.cache_clear()
    assert interpreted(uses)(1) == uses(1) == 1 + np.float64(2.0).view(np.int64)
