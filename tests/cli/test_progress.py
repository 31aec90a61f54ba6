"""What long commands show on stderr: the compile notice of a first run and the progress bar, on a
terminal (a pseudo-terminal here) and not on a pipe (optmm._progress, optmm simulate)."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path

import pytest

from optmm import _progress
from optmm._progress import COMPILE_NOTICE, Bar, compile_notice

ROOT = Path(__file__).resolve().parents[2]
CALM = str(ROOT / "scenarios/sim/calm_day.toml")
SHORT = ["--set", "sim.steps=600", "--set", "sim.quotes_window_s=60.0"]
# the CLI with the bar's delay set to 0, so that a short run draws it (the default waits 2 s)
NO_DELAY = "import sys, optmm._progress as p; p.DELAY_S = 0.0; from optmm.cli import main; sys.exit(main())"


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def _run(args: list[str], *, tty: bool, env: dict[str, str]) -> tuple[int, str, str]:
    """Run ``python -c NO_DELAY args`` with stderr on a pseudo-terminal (``tty``) or a pipe; stdout
    on a pipe. Returns (exit code, stdout, stderr)."""
    cmd = [sys.executable, "-c", NO_DELAY, *args]
    if not tty:
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)
        return p.returncode, p.stdout, p.stderr
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # 40 x 120 characters
    chunks: list[bytes] = []

    def read() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the terminal's other end is closed
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=slave, env=env, cwd=ROOT)
        os.close(slave)
        out, _ = p.communicate(timeout=900)
        reader.join(timeout=10)
    finally:
        os.close(master)
    return p.returncode, out.decode(), b"".join(chunks).decode(errors="replace")


def test_cold_cache_announces_the_compile_on_a_terminal(tmp_path: Path) -> None:
    # an empty numba cache: every kernel compiles, and the first compile says so at once
    env = _env(NUMBA_CACHE_DIR=str(tmp_path / "numba"))
    args = ["chain", "--spot", "100", "--vol", "0.2", "--days", "30"]
    code, out, err = _run(args, tty=True, env=env)
    assert code == 0 and "CALLS" in out
    assert err.count(COMPILE_NOTICE) == 1, err
    # the same command again: the kernels come from the cache, nothing is announced
    code, out, err = _run(args, tty=True, env=env)
    assert code == 0 and "CALLS" in out
    assert "compiling" not in err, err


def test_simulate_draws_a_bar_on_a_terminal_only() -> None:
    env = _env()
    args = ["simulate", CALM, *SHORT, "--paths", "2"]
    _run(args, tty=False, env=env)  # warms the worktree's numba cache, if cold
    code, out, err = _run(args, tty=True, env=env)
    assert code == 0 and "strategy calm_day: 2 path(s)" in out
    assert "calm_day: path" in err and "/1200 [" in err and "step/s" in err, err
    assert "compiling" not in err, err  # a warm cache: nothing announced
    code, out, err = _run([*args, "--no-progress"], tty=True, env=env)
    assert code == 0 and err == ""
    code, out, err = _run(args, tty=False, env=env)  # a pipe: no bar, no notice
    assert code == 0 and "strategy calm_day" in out and err == ""


def test_compile_notice_fires_once_on_a_numba_compile_only() -> None:
    from numba import njit

    stream = io.StringIO()
    with compile_notice(enabled=True, stream=stream):

        @njit  # not cached: compiles on its first call in this process
        def twice(x: float) -> float:
            return 2.0 * x

        assert twice(1.5) == 3.0
        assert twice(2.5) == 5.0  # compiled already: no event
        twice(3)  # a new signature compiles again, but the notice is said once
    assert stream.getvalue() == COMPILE_NOTICE + "\n"
    stream = io.StringIO()
    with compile_notice(enabled=False, stream=stream):
        twice(1j)
    assert stream.getvalue() == ""


def test_bar_disabled_counts_and_says_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    with Bar(5, desc="paths", enabled=False) as bar:
        for _ in range(5):
            bar.update(1)
        bar.phase("writing")
    assert bar.n == 5 and bar.desc == "writing"
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_bar_waits_for_its_delay_then_draws_and_erases(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    with Bar(4, desc="paths", unit="path", enabled=True, delay=3600.0, stream=stream) as bar:
        bar.update(4)
    assert stream.getvalue() == ""  # a run shorter than the delay shows nothing
    monkeypatch.setattr(_progress, "DELAY_S", 0.0)
    stream = io.StringIO()
    with Bar(4, desc="paths", unit="path", enabled=True, stream=stream) as bar:
        bar.phase("path 2/4")
        bar.update(1)
        bar.update(3)
    text = stream.getvalue()
    assert "paths:   0%" in text and "0/4 [" in text  # drawn at once: no delay
    assert "path 2/4:" in text  # a new phase is drawn at once
    assert text.endswith("\r") or "\x1b" in text  # erased (leave=False), not left on the screen
