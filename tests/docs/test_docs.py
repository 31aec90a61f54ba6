"""The docs run: every code block of README.md and docs/*.md, as written (see tests/docs_blocks.py).

One test per block (``docs/risk.md:13``): Python blocks run as scripts, shell blocks through bash,
``console`` blocks compared with the output they show; each file's blocks in order, in a working
directory of their own holding a copy of ``scenarios/``, where they may write only under ``out/``.
``optmm`` and ``python`` on the blocks' PATH are this checkout's. ``OPTMM_DOCS_FULL=1`` runs the
long blocks as written instead of their reduced variants.

Beside them: the synopses (``optmm ...`` lines of ```text blocks, e.g. the README's command list)
match the argument parsers, and no command in the docs writes outside ``out/``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from docs_blocks import (
    DATA,
    REPO,
    Block,
    DocFormatError,
    first_difference,
    output_matches,
    parse_blocks,
    parse_console,
    parse_text,
    synopsis_commands,
    synopsis_options,
)
from docs_blocks import doc_files as _doc_files

FULL = os.environ.get("OPTMM_DOCS_FULL") == "1"
TIMEOUT_S = 600

ALL_BLOCKS: list[Block] = [b for f in _doc_files() for b in parse_blocks(f)]
RUN_BLOCKS = [b for b in ALL_BLOCKS if b.runs]


# --------------------------------------------------------------------------------------------
# running a file's blocks
# --------------------------------------------------------------------------------------------


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` outside ``out/``: (size, mtime) by relative path."""
    snap = {}
    for p in root.rglob("*"):
        rel = p.relative_to(root)
        if rel.parts[0] == "out" or p.is_dir():
            continue
        st = p.stat()
        snap[rel.as_posix()] = (st.st_size, st.st_mtime_ns)
    return snap


@dataclass
class DocRun:
    """The working directory of one doc file and what its blocks did so far."""

    workdir: Path
    scripts: Path
    env: dict[str, str]
    before: dict[str, tuple[int, int]]
    failures: dict[int, str | None] = field(default_factory=dict)  # line -> message, None = ok


def _tail(text: str, n: int = 40) -> str:
    lines = text.rstrip().splitlines()
    return "\n".join((["[...]"] if len(lines) > n else []) + lines[-n:])


def _show(block: Block, text: str) -> str:
    return "\n".join(f"{block.line + 1 + i:5d} | {line}" for i, line in enumerate(text.splitlines()))


def _run(cmd: list[str], run: DocRun) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            cmd, cwd=run.workdir, env=run.env, capture_output=True, text=True, timeout=TIMEOUT_S
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else exc.stderr or ""
        return subprocess.CompletedProcess(cmd, -1, out, err + f"\n(timed out after {TIMEOUT_S} s)")


def _execute(block: Block, run: DocRun) -> str | None:
    """Run one block; ``None`` if it did what the doc says, else the failure, block included."""
    text = block.variant(FULL)
    what = f"{block.id} ({block.lang}{', its variant' if text != block.text else ''})"
    if block.lang == "python":
        script = run.scripts / f"{Path(block.path).stem}_{block.line}.py"
        script.write_text(text, encoding="utf-8")
        steps = [([sys.executable, "-W", "error::RuntimeWarning", str(script)], ())]
    elif block.lang in ("bash", "sh"):
        steps = [(["bash", "-e", "-o", "pipefail", "-x", "-c", text], ())]
    else:  # console
        steps = [
            (["bash", "-e", "-o", "pipefail", "-c", c.command], c.expected)
            for c in parse_console(text, block.id)
        ]
    for cmd, expected in steps:
        proc = _run(cmd, run)
        shown = cmd[-1] if block.lang == "console" else ""
        # a console block may show a command's error: then the error is what it printed
        printed = proc.stdout if proc.returncode == 0 else proc.stderr
        if proc.returncode != 0 and not (expected and output_matches(expected, printed)):
            return (
                f"{what} failed{': $ ' + shown if shown else ''}: exit code {proc.returncode}\n"
                f"--- block ---\n{_show(block, text)}\n"
                f"--- stdout ---\n{_tail(proc.stdout)}\n--- stderr ---\n{_tail(proc.stderr)}"
            )
        if expected and not output_matches(expected, printed):
            return (
                f"{what}: the output of $ {shown} differs from the doc's: "
                f"{first_difference(expected, printed)}\n"
                f"--- the doc shows ---\n" + "\n".join(expected) + "\n"
                f"--- the command printed ---\n{printed.rstrip()}"
            )
    after = _snapshot(run.workdir)
    changed = sorted(k for k, v in after.items() if run.before.get(k) != v)
    run.before = after  # a stray file is the fault of the block that wrote it, not of the next
    if changed:
        shown = ", ".join(changed[:10]) + (f" and {len(changed) - 10} more" if len(changed) > 10 else "")
        return f"{what} wrote outside out/: {shown}\n--- block ---\n{_show(block, text)}"
    return None


@pytest.fixture(scope="session")
def doc_runs() -> dict[str, DocRun]:
    """Per doc file, its working directory and the blocks run so far (shared by its tests)."""
    return {}


def _doc_run(path: str, runs: dict[str, DocRun], factory: pytest.TempPathFactory) -> DocRun:
    if path not in runs:
        workdir = factory.mktemp(Path(path).stem, numbered=True)
        shutil.copytree(REPO / "scenarios", workdir / "scenarios")
        (workdir / "out").mkdir()  # as in a checkout (out/.gitignore keeps the folder)
        for data in (DATA, "tests/data"):  # the docs' own inputs, and the real data the project ships
            if (REPO / data).is_dir():
                shutil.copytree(REPO / data, workdir / data)
        scripts = factory.mktemp(Path(path).stem + "_scripts")
        bin_dir = scripts / "bin"
        bin_dir.mkdir()
        for name, target in (("optmm", f'"{sys.executable}" -m optmm'), ("python", f'"{sys.executable}"')):
            (bin_dir / name).write_text(f'#!/bin/sh\nexec {target} "$@"\n')
            (bin_dir / name).chmod(0o755)
        env = dict(os.environ)
        env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        env["MPLBACKEND"] = "Agg"
        runs[path] = DocRun(workdir, scripts, env, _snapshot(workdir))
    return runs[path]


@pytest.mark.parametrize("block", RUN_BLOCKS, ids=[b.id for b in RUN_BLOCKS])
def test_block_runs(
    block: Block, doc_runs: dict[str, DocRun], tmp_path_factory: pytest.TempPathFactory
) -> None:
    if block.mode == "skip":
        pytest.skip(f"{block.id}: {block.reason}")
    run = _doc_run(block.path, doc_runs, tmp_path_factory)
    # the blocks before this one first: a block may use what an earlier one wrote
    for earlier in RUN_BLOCKS:
        if earlier.path == block.path and earlier.line < block.line and earlier.mode != "skip":
            if earlier.line not in run.failures:
                run.failures[earlier.line] = _execute(earlier, run)
    if block.line not in run.failures:
        run.failures[block.line] = _execute(block, run)
    failure = run.failures[block.line]
    if failure is not None:
        pytest.fail(failure, pytrace=False)


# --------------------------------------------------------------------------------------------
# the docs' form
# --------------------------------------------------------------------------------------------


def test_every_block_says_what_it_is() -> None:
    """An untagged fence would be neither run nor checked: every block names its language."""
    untagged = [b.id for b in ALL_BLOCKS if not b.lang]
    assert not untagged, f"fences without a language (python, bash, console, text, ...): {untagged}"


_WRITES = re.compile(r"(?:--out|--output|--plot)[ =]([^\s`\]|)]+)|\b(?:AuditTrail|to_\w+)\(\s*\"([^\"]+)\"")


def test_commands_write_under_out() -> None:
    """A path that a command or an example writes to is under out/ (git-ignored), or a placeholder."""
    bad = []
    for f in _doc_files():
        for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
            for m in _WRITES.finditer(line):
                target = m[1] or m[2]
                placeholder = target == "..." or target.split(".")[0].isupper()  # DIR, FILE.png
                if not (target.startswith("out/") or placeholder):
                    bad.append(f"{f.relative_to(REPO)}:{n}: {target}")
    assert not bad, "outputs written outside out/:\n" + "\n".join(bad)


def test_out_is_kept_and_ignored() -> None:
    """out/ is in every checkout, and git ignores what the docs' commands write into it."""
    assert (REPO / "out" / ".gitignore").is_file()
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    check = ["git", "-C", str(REPO), "check-ignore", "-q", "--no-index"]
    assert subprocess.run([*check, "out/calm/summary.json"]).returncode == 0
    assert subprocess.run([*check, "out/.gitignore"]).returncode == 1


def test_toml_blocks_parse() -> None:
    """The file formats shown (market, limits, sweeps) are at least valid TOML."""
    bad = []
    for b in ALL_BLOCKS:
        if b.lang == "toml":
            try:
                tomllib.loads(b.text)
            except tomllib.TOMLDecodeError as exc:
                bad.append(f"{b.id}: {exc}")
    assert not bad, "\n".join(bad)


# --------------------------------------------------------------------------------------------
# synopses against the parser
# --------------------------------------------------------------------------------------------


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    from optmm.cli import build_parser

    parser = build_parser()
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


SYNOPSES = [b for b in ALL_BLOCKS if b.lang == "text" and b.text.startswith("optmm ")]


def test_readme_lists_every_command() -> None:
    (readme,) = [b for b in SYNOPSES if b.path == "README.md"]
    listed = [sub for sub, _ in synopsis_commands(readme.text)]
    assert listed == list(_subparsers()), "README.md's command list against `optmm --help`"


@pytest.mark.parametrize("block", SYNOPSES, ids=[b.id for b in SYNOPSES])
def test_synopsis_matches_parser(block: Block) -> None:
    """Every option shown exists, every option exists shown; [optional] as in the parser; choices."""
    parsers = _subparsers()
    problems = []
    for sub, rest in synopsis_commands(block.text):
        if sub not in parsers:
            problems.append(f"optmm {sub}: no such command")
            continue
        actions = {
            s: a
            for a in parsers[sub]._actions
            for s in a.option_strings
            if s.startswith("--") and s != "--help"
        }
        shown = synopsis_options(rest)
        for opt, (value, optional) in shown.items():
            action = actions.get(opt)
            if action is None:
                problems.append(f"optmm {sub}: {opt} is not an option")
                continue
            if optional == action.required:
                problems.append(
                    f"optmm {sub}: {opt} is {'required' if action.required else 'optional'}"
                    f" but shown {'[optional]' if optional else 'required'}"
                )
            if action.choices is not None and value is not None and "|" in value:
                if set(value.split("|")) != {str(c) for c in action.choices}:
                    problems.append(f"optmm {sub}: {opt} {value}, the parser's choices: {action.choices}")
            takes_value = action.nargs != 0
            if takes_value != (value is not None):
                problems.append(f"optmm {sub}: {opt} {'takes' if takes_value else 'takes no'} value")
        missing = sorted(set(actions) - set(shown))
        if missing:
            problems.append(f"optmm {sub}: options not shown: {', '.join(missing)}")
    assert not problems, f"{block.id}:\n" + "\n".join(problems)


# --------------------------------------------------------------------------------------------
# the harness itself: it catches what it is meant to catch
# --------------------------------------------------------------------------------------------


def test_output_compare() -> None:
    assert output_matches(["total  1.00", "..."], "total 1.00\nmore\n")
    assert not output_matches(["total 1.00"], "total 1.01\n")  # figures exactly
    assert not output_matches(["total 1.00"], "total 1.00\nmore\n")  # nothing left out silently
    assert not output_matches(["a", "c"], "a\nb\nc\n")
    assert output_matches(["a", "...", "c"], "a\nb\nc\n")
    assert "'b'" in first_difference(["a", "c"], "a\nb\nc\n")


def _doc(text: str) -> list[Block]:
    return parse_text(text, "docs/example.md")


def test_markers() -> None:
    long = (
        '<!-- docs-test: long 96 runs | "big.toml" -> "small.toml" -->\n```bash\noptmm sweep big.toml\n```\n'
    )
    (block,) = _doc(long)
    assert block.mode == "long" and block.reason == "96 runs"
    assert block.variant(full=False) == "optmm sweep small.toml\n"
    assert block.variant(full=True) == "optmm sweep big.toml\n"
    (always,) = _doc(long.replace("long", "variant"))
    assert always.variant(full=True) == always.variant(full=False) == "optmm sweep small.toml\n"
    for bad in (
        long.replace('"big.toml"', '"gone.toml"'),  # a replacement that no longer applies
        long.replace(' | "big.toml" -> "small.toml"', ""),  # long without a reduced variant
        long.replace("long 96 runs", "skip"),  # no reason
        long.replace("long", "maybe"),
        long.replace("```bash", "```text"),  # a marker on a block that does not run
        "<!-- docs-test: skip no fence below -->\n\ntext\n",
        "```python\nx = 1\n",  # not closed
    ):
        with pytest.raises(DocFormatError):
            _doc(bad)


def test_a_failing_block_fails(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    runs: dict[str, DocRun] = {}
    run = _doc_run("docs/harness-check.md", runs, tmp_path_factory)
    broken = Block("docs/x.md", 3, "python", "raise SystemExit('broken example')\n")
    assert "broken example" in (_execute(broken, run) or "")
    stray = Block("docs/x.md", 9, "bash", "echo 1 > stray.txt\n")
    assert "wrote outside out/: stray.txt" in (_execute(stray, run) or "")
    wrong = Block("docs/x.md", 12, "console", "$ echo 1.25\n1.24\n")
    assert "differs from the doc's" in (_execute(wrong, run) or "")
    ok = Block("docs/x.md", 15, "console", "$ echo 1.25 > out/a\n$ cat out/a\n1.25\n")
    assert _execute(ok, run) is None
    # an error shown in the doc is what the command prints on stderr; an error not shown fails
    shown_error = "$ sh -c 'echo ok; echo wrong: x >&2; exit 2'\nwrong: x\n"
    assert _execute(Block("docs/x.md", 20, "console", shown_error), run) is None
    unshown = Block("docs/x.md", 25, "console", "$ sh -c 'echo ok; exit 2'\nok\n")
    assert "exit code 2" in (_execute(unshown, run) or "")
