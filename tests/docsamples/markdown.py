"""Finding the samples in Markdown: fenced ```python and ```bash blocks, and what the prose says of them.

Rules (the contract with doc writers; README.md says that samples are run):

* Every ```python and ```bash block is a sample and is run; other fences (```text, ```sql, plain
  ```) are not.
* `<!-- sample: skip (reason) -->` on the line just above a fence: the block is not run. The
  reason is required.
* A python block whose lead-in paragraph says "Write `name.py`" is saved as that file in the sample
  folder (and imported, or run with pytest when it is named test_*.py); later blocks use it.
* A ```text block right after a sample is its expected output: every non-empty line must appear
  in what the sample printed, in order; `...` in a line matches anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>[\w+-]*)\s*$")
SKIP = re.compile(r"^\s*<!--\s*sample:\s*skip\s*(?:\((?P<reason>.*)\))?\s*-->\s*$")
WRITE = re.compile(r"[Ww]rite `(?P<name>[\w./-]+\.py)`")
RUN = ("python", "bash")


@dataclass(frozen=True, slots=True)
class Sample:
    path: Path
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    write_to: str | None = None
    expected: str | None = None  # the ```text block that follows
    skip: str | None = None  # the reason given

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass(frozen=True, slots=True)
class _Block:
    line: int
    lang: str
    code: str
    before: list[str]  # the lines above the fence, nearest last
    end: int  # index of the closing fence line


def samples(path: Path, root: Path) -> list[Sample]:
    """The python and bash samples of one Markdown file, in order (skipped ones included, marked)."""
    lines = path.read_text().splitlines()
    blocks = list(_blocks(lines))
    found: list[Sample] = []
    for number, block in enumerate(blocks):
        if block.lang not in RUN:
            continue
        expected = None
        following = blocks[number + 1] if number + 1 < len(blocks) else None
        if (
            following is not None
            and following.lang == "text"
            and _only_blank(lines[block.end + 1 : following.line - 1])
        ):
            expected = following.code
        found.append(
            Sample(
                path.relative_to(root),
                block.line,
                block.lang,
                block.code,
                write_to=_write_to(block.before) if block.lang == "python" else None,
                expected=expected,
                skip=_skip_reason(block.before),
            )
        )
    return found


def skip_markers(path: Path) -> list[tuple[int, str | None, bool]]:
    """Every skip marker: (line, reason or None, whether a python or bash fence follows it)."""
    lines = path.read_text().splitlines()
    markers = []
    for index, line in enumerate(lines):
        found = SKIP.match(line)
        if found is None:
            continue
        fence = FENCE.match(lines[index + 1]) if index + 1 < len(lines) else None
        reason = (found.group("reason") or "").strip() or None
        markers.append((index + 1, reason, fence is not None and fence.group("lang") in RUN))
    return markers


def _blocks(lines: list[str]) -> list[_Block]:
    blocks = []
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        indent = opening.group("indent")
        body: list[str] = []
        end = index + 1
        while end < len(lines) and lines[end].strip() != "```":
            body.append(lines[end][len(indent) :] if lines[end].startswith(indent) else lines[end].lstrip())
            end += 1
        blocks.append(_Block(index + 1, opening.group("lang"), "\n".join(body) + "\n", lines[:index], end))
        index = end + 1
    return blocks


def _skip_reason(before: list[str]) -> str | None:
    if not before:
        return None
    found = SKIP.match(before[-1])
    if found is None:
        return None
    return (found.group("reason") or "").strip() or "(no reason given)"


def _write_to(before: list[str]) -> str | None:
    """The file named by "Write `x.py`" in the paragraph just above the fence (its last mention)."""
    lines = [line for line in before if not SKIP.match(line)]
    while lines and not lines[-1].strip():
        lines.pop()
    paragraph: list[str] = []
    while lines and lines[-1].strip():
        paragraph.insert(0, lines.pop())
    found = WRITE.findall(" ".join(paragraph))
    return found[-1] if found else None


def _only_blank(lines: list[str]) -> bool:
    return all(not line.strip() for line in lines)
