"""Aligned text tables for people; ``--json`` output goes elsewhere."""

from __future__ import annotations

from collections.abc import Sequence


def table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], right: set[int] | None = None
) -> str:
    """Columns padded to their widest cell; ``right`` holds indexes of right-aligned columns.

    The last column is never padded, so long reasons don't leave trailing spaces.
    """
    right = right or set()
    cols = len(headers)
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(cols)]
    out: list[str] = []
    for r in [headers, *rows]:
        cells = []
        for i, cell in enumerate(r):
            text = str(cell)
            if i == cols - 1:
                cells.append(text)
            elif i in right:
                cells.append(text.rjust(widths[i]))
            else:
                cells.append(text.ljust(widths[i]))
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)
