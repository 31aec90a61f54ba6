"""optmm._jit: kernels compiled serial and threaded give the same figures, each call picks its form
by size, and the two forms never share numba's on-disk cache entries."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from numba import prange

from optmm._jit import SizedKernel, function_copy
from optmm.greeks import _american, _american_fd, _bsm, _dividend, _iv
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
