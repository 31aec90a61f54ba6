"""The fenced code blocks of README.md and docs/*.md, as ``tests/docs/test_docs.py`` runs them.

Conventions of the docs (what each fence means to the test):

* ```` ```python ````: a script, run on its own (``python block.py``, a fresh process, as a reader
  would paste it into a file) from a working directory that holds a copy of ``scenarios/``;
* ```` ```bash ```` / ```` ```sh ````: commands, run in order by ``bash -e`` in that directory; each
  must exit 0;
* ```` ```console ````: ``$ `` lines are commands (a trailing ``\\`` continues one), the lines up to
  the next ``$ `` its expected standard output: compared line by line, runs of whitespace equal, a
  line holding only ``...`` standing for any number of lines. A command that fails passes only
  if the block shows what it printed on stderr (an ``optmm: error: ...`` line, in full);
* ```` ```text ```` and other languages (``toml``, ``csv``): not run. A ```` ```text ```` block whose
  lines start with ``optmm `` is a synopsis: its options are checked against the parser.

The blocks of one file run in order in one working directory (a later block may read what an
earlier one wrote); outputs go under ``out/`` there, and nothing else may appear in it.

A marker on the line before a fence (an HTML comment, invisible on the rendered page) changes that:

* ``<!-- docs-test: skip REASON -->``: not run (an external cluster, an install);
* ``<!-- docs-test: long REASON | "OLD" -> "NEW" | ... -->``: too long to run as written; the test
  runs the variant with each ``OLD`` replaced by ``NEW`` (each must occur in the block), and the
  block as written when ``OPTMM_DOCS_FULL=1``;
* ``<!-- docs-test: variant REASON | "OLD" -> "NEW" | ... -->``: cannot run here as written (an
  install, a cluster's address); the test always runs the variant.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
#: test data of the docs' reduced variants, copied into each working directory at this path
DATA = "tests/docs_data"

RUN_LANGS = {"python", "bash", "sh", "console"}

_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,})(?P<lang>[^`\s]*)\s*$")
_MARKER = re.compile(r"^<!--\s*docs-test:\s*(?P<body>.*?)\s*-->\s*$")
_REPLACE = re.compile(r'^"(?P<old>(?:[^"\\]|\\.)*)"\s*->\s*"(?P<new>(?:[^"\\]|\\.)*)"$')


@dataclass(frozen=True)
class Block:
    """One fenced block: where it is, its language, its text and its marker."""

    path: str  # relative to the repository, e.g. "docs/risk.md"
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    mode: str = "run"  # "run", "skip", "long" or "variant"
    reason: str = ""
    replacements: tuple[tuple[str, str], ...] = field(default=())

    @property
    def id(self) -> str:
        return f"{self.path}:{self.line}"

    @property
    def runs(self) -> bool:
        return self.lang in RUN_LANGS

    def variant(self, full: bool) -> str:
        """The text to run: as written, or the variant (of a long block, unless ``full``)."""
        if self.mode in ("run", "skip") or (self.mode == "long" and full):
            return self.text
        text = self.text
        for old, new in self.replacements:
            text = text.replace(old, new)
        return text


class DocFormatError(ValueError):
    """A doc file that the test cannot read unambiguously (an unclosed fence, a bad marker)."""


def _parse_marker(body: str, where: str) -> tuple[str, str, tuple[tuple[str, str], ...]]:
    head, *rest = [part.strip() for part in body.split(" | ")]
    mode, _, reason = head.partition(" ")
    if mode not in ("skip", "long", "variant"):
        raise DocFormatError(f"{where}: unknown docs-test marker {mode!r} (expected skip, long or variant)")
    if not reason.strip():
        raise DocFormatError(f"{where}: a docs-test {mode} marker needs a reason")
    replacements = []
    for part in rest:
        m = _REPLACE.match(part)
        if m is None:
            raise DocFormatError(f'{where}: cannot read replacement {part!r} (expected "OLD" -> "NEW")')
        replacements.append((m["old"].replace('\\"', '"'), m["new"].replace('\\"', '"')))
    if mode != "skip" and not replacements:
        raise DocFormatError(f'{where}: a {mode} block needs its variant ("OLD" -> "NEW")')
    if mode == "skip" and replacements:
        raise DocFormatError(f"{where}: a skipped block takes no replacements")
    return mode, reason.strip(), tuple(replacements)


def parse_blocks(path: Path) -> list[Block]:
    """Every fenced block of one Markdown file, with the marker on the line before it, if any."""
    return parse_text(path.read_text(encoding="utf-8"), path.resolve().relative_to(REPO).as_posix())


def parse_text(markdown: str, rel: str) -> list[Block]:
    """:func:`parse_blocks` of the text of the file ``rel``."""
    lines = markdown.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if m is None:
            if _MARKER.match(lines[i].strip()) and not (i + 1 < len(lines) and _FENCE.match(lines[i + 1])):
                raise DocFormatError(f"{rel}:{i + 1}: a docs-test marker must be right above a fence")
            i += 1
            continue
        start, fence = i, m["fence"]
        j = i + 1
        while j < len(lines) and lines[j].strip() != fence:
            j += 1
        if j == len(lines):
            raise DocFormatError(f"{rel}:{start + 1}: fence not closed")
        mode, reason, replacements = "run", "", ()
        prev = lines[start - 1].strip() if start > 0 else ""
        mm = _MARKER.match(prev)
        if mm is not None:
            mode, reason, replacements = _parse_marker(mm["body"], f"{rel}:{start}")
        text = "\n".join(lines[start + 1 : j]) + "\n"
        block = Block(rel, start + 1, m["lang"].lower(), text, mode, reason, replacements)
        if mode != "run" and not block.runs:
            raise DocFormatError(f"{block.id}: a docs-test marker on a block that does not run")
        for old, _ in replacements:
            if old not in text:
                raise DocFormatError(f"{block.id}: the replacement's {old!r} is not in the block")
        blocks.append(block)
        i = j + 1
    return blocks


def doc_files() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


# --------------------------------------------------------------------------------------------
# ```console blocks
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConsoleCommand:
    command: str
    expected: tuple[str, ...]  # expected stdout lines; empty: not compared


def parse_console(text: str, where: str) -> list[ConsoleCommand]:
    """``$ cmd`` lines (``\\`` continues one) each followed by its expected output."""
    out: list[ConsoleCommand] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.startswith("$ "):
            if line.strip():
                raise DocFormatError(f"{where}: console output before any '$ ' command: {line!r}")
            i += 1
            continue
        command = [line[2:]]
        while command[-1].endswith("\\") and i + 1 < len(lines):
            i += 1
            command.append(lines[i])
        i += 1
        expected = []
        while i < len(lines) and not lines[i].startswith("$ "):
            expected.append(lines[i])
            i += 1
        while expected and not expected[-1].strip():
            expected.pop()
        out.append(ConsoleCommand("\n".join(command), tuple(expected)))
    return out


def _norm(line: str) -> str:
    return " ".join(line.split())


def output_matches(expected: tuple[str, ...] | list[str], actual: str) -> bool:
    """Whether ``actual`` has the expected lines (whitespace runs equal; ``...`` = any lines)."""
    exp = [_norm(x) for x in expected]
    act = [_norm(x) for x in actual.splitlines()]
    while act and not act[-1]:
        act.pop()

    def match(i: int, j: int) -> bool:
        if i == len(exp):
            return j == len(act)
        if exp[i] == "...":
            return any(match(i + 1, k) for k in range(j, len(act) + 1))
        return j < len(act) and exp[i] == act[j] and match(i + 1, j + 1)

    return match(0, 0)


def first_difference(expected: tuple[str, ...] | list[str], actual: str) -> str:
    """Where the expected lines first part from ``actual`` (greedy: ``...`` skips to the next match)."""
    act = [_norm(x) for x in actual.splitlines()]
    j, skipping = 0, False
    for line in expected:
        want = _norm(line)
        if want == "...":
            skipping = True
            continue
        if skipping:
            k = next((k for k in range(j, len(act)) if act[k] == want), None)
            if k is None:
                return f"the doc's {line.strip()!r} is not printed (after what matched before it)"
            j, skipping = k + 1, False
        elif j < len(act) and act[j] == want:
            j += 1
        else:
            got = repr(act[j]) if j < len(act) else "nothing more"
            return f"the doc's {line.strip()!r} where the command printed {got}"
    if not skipping and j < len(act):
        return f"the command printed more than the doc shows, from {act[j]!r}"
    return "(a ... that could not be placed)"


# --------------------------------------------------------------------------------------------
# synopses (```text blocks of `optmm ...` lines)
# --------------------------------------------------------------------------------------------

_OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)(?:[ =]([^\s\[\]]+))?")


def synopsis_commands(text: str) -> list[tuple[str, str]]:
    """``(subcommand, the rest)`` per ``optmm`` line of a synopsis; indented lines continue one."""
    out: list[tuple[str, str]] = []
    for line in text.splitlines():
        if line.startswith("optmm "):
            sub, _, rest = line[len("optmm ") :].partition(" ")
            out.append((sub, rest))
        elif line.strip() and out and line[:1].isspace():
            out[-1] = (out[-1][0], out[-1][1] + " " + line.strip())
        elif line.strip():
            raise DocFormatError(f"synopsis line that is not an optmm command: {line!r}")
    return out


def synopsis_options(rest: str) -> dict[str, tuple[str | None, bool]]:
    """Each ``--option`` of a synopsis line: the value shown after it (``None`` for a flag) and
    whether it is shown optional (inside ``[...]``)."""
    found: dict[str, tuple[str | None, bool]] = {}
    for m in _OPTION.finditer(rest):
        value = m[2]
        if value is not None and value.startswith("--"):  # the next option, not a value
            value = None
        before = rest[: m.start()]
        found[m[1]] = (value, before.count("[") > before.count("]"))
    return found
