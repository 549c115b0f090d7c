"""Plain-text tables for the local cloud's commands (demo, chaos, soak): one spelling of the layout."""

from __future__ import annotations

from collections.abc import Collection, Sequence


def text_table(rows: Sequence[Sequence[str]], *, left: Collection[int] = (0,)) -> str:
    """The header row, a rule, then the rows; columns in `left` are left-aligned, the others (numbers) right."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)
