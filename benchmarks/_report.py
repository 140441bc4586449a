"""benchmarks/RESULTS.md is written by several scripts: run.py writes its head (targets,
figures) and each other script one section of its own. Each replaces what it writes and
keeps everything else, in place."""

from __future__ import annotations

from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def _sections(text: str) -> list[list[str]]:
    """The lines before the first ``## `` heading, then each ``## `` section's lines."""
    parts: list[list[str]] = [[]]
    for line in text.splitlines():
        if line.startswith("## "):
            parts.append([])
        parts[-1].append(line)
    return parts


def _join(parts: list[list[str]]) -> str:
    blocks = ["\n".join(p).strip("\n") for p in parts]
    return "\n\n".join(b for b in blocks if b) + "\n"


def _current() -> str:
    return RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmark results\n"


def write_section(lines: list[str]) -> None:
    """Put the section ``lines`` (its first line the ``## `` heading) in RESULTS.md: in the
    place of the section with the same heading, else at the end."""
    parts = _sections(_current())
    for i, part in enumerate(parts[1:], start=1):
        if part[0] == lines[0]:
            parts[i] = list(lines)
            break
    else:
        parts.append(list(lines))
    RESULTS.write_text(_join(parts), encoding="utf-8")


def write_head(lines: list[str]) -> None:
    """Replace what ``lines`` covers (the title and the sections it has) and keep the
    sections of RESULTS.md it does not have, after it, in their order."""
    ours = _sections("\n".join(lines))
    headings = {part[0] for part in ours[1:]}
    kept = [part for part in _sections(_current())[1:] if part[0] not in headings]
    RESULTS.write_text(_join(ours + kept), encoding="utf-8")
