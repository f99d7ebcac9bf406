"""Plain-text tables for the terminal (no dependency): right-aligned numbers, left-aligned text."""
from __future__ import annotations

from typing import Iterable, Sequence


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e6 else f"{v:.3e}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)


def format_table(headers: Sequence[str], rows: Iterable[Sequence], title: str | None = None) -> str:
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for r in cells:
        for i, c in enumerate(r):
            widths[i] = max(widths[i], len(c))
    right = [bool(cells) and all(_is_number(r[i]) for r in cells if i < len(r))
             for i in range(len(headers))]

    def line(vals):
        return "  ".join(v.rjust(w) if right[i] else v.ljust(w)
                         for i, (v, w) in enumerate(zip(vals, widths))).rstrip()

    out = []
    if title:
        out.append(title)
    out.append(line(list(headers)))
    out.append("  ".join("-" * w for w in widths))
    out.extend(line(r) for r in cells)
    return "\n".join(out)


def _is_number(s: str) -> bool:
    try:
        float(s.replace(",", ""))
        return True
    except ValueError:
        return False
