"""Rewrite the outputs shown in the docs' ``console`` blocks with what the commands print now.

For a change that moves figures on purpose (the commit says which and why): run the blocks of each
file as ``tests/docs/test_docs.py`` does (in order, in one working directory holding a copy of
``scenarios/``), and replace each command's expected output with its output. A ``...`` line of the
doc keeps its place: the lines before it are replaced by as many first lines of the output, the lines
after it by as many last lines. Review the diff before committing it.

    python tests/update_docs.py README.md docs/risk.md ...
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from docs_blocks import REPO, output_matches, parse_blocks, parse_console


def _shown(expected: tuple[str, ...], printed: str) -> list[str]:
    if output_matches(expected, printed):
        return list(expected)  # still true as the doc shows it (elisions included)
    out = printed.rstrip("\n").splitlines()
    if [e.strip() for e in expected].count("...") != 1:
        return out
    k = [e.strip() for e in expected].index("...")
    head, tail = k, len(expected) - k - 1
    if len(out) <= head + tail:
        return out
    return out[:head] + ["..."] + (out[len(out) - tail :] if tail else [])


def update(path: Path) -> int:
    """Rewrite ``path``'s console outputs; returns how many commands' outputs changed."""
    from docs import test_docs  # the test's own runner (working directory, PATH, environment)

    text = path.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    rel = path.relative_to(REPO).as_posix()
    changed = 0
    with tempfile.TemporaryDirectory() as tmp:

        class _Factory:
            def mktemp(self, name: str, numbered: bool = True) -> Path:
                d = Path(tempfile.mkdtemp(prefix=name, dir=tmp))
                return d

        runs: dict[str, test_docs.DocRun] = {}
        run = test_docs._doc_run(rel, runs, _Factory())  # type: ignore[arg-type]
        edits: list[tuple[int, int, list[str]]] = []
        for block in parse_blocks(path):
            if not block.runs or block.mode == "skip":
                continue
            if block.lang != "console" or block.text != block.variant(False):
                test_docs._execute(block, run)
                continue
            body_start = block.line  # index of the first body line in `lines` (0-based)
            new_body: list[str] = []
            for c in parse_console(block.text, block.id):
                proc = test_docs._run(["bash", "-e", "-o", "pipefail", "-c", c.command], run)
                printed = proc.stdout if proc.returncode == 0 else proc.stderr
                shown = _shown(c.expected, printed) if (c.expected or printed.strip()) else []
                if not c.expected and proc.returncode == 0:
                    shown = []  # the doc compares no output there: keep it so
                if list(c.expected) != shown:
                    changed += 1
                cmd_lines = c.command.split("\n")
                new_body += [
                    f"$ {cmd_lines[0]}\n",
                    *[f"{x}\n" for x in cmd_lines[1:]],
                    *[f"{x}\n" for x in shown],
                ]
            n_body = len(block.text.splitlines())
            edits.append((body_start, body_start + n_body, new_body))
            run.before = test_docs._snapshot(run.workdir)
    for start, end, body in reversed(edits):
        lines[start:end] = body
    path.write_text("".join(lines), encoding="utf-8")
    return changed


def main(argv: list[str]) -> int:
    for name in argv:
        n = update((REPO / name).resolve())
        print(f"{name}: {n} command outputs rewritten")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
