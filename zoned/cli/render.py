"""Aligned text tables for people, fitted to a width; ``--json`` output goes elsewhere.

The width rule (every text command that fits its output): ``$COLUMNS`` when set, else the
terminal's width when stdout is a terminal, else ``DEFAULT_WIDTH`` (a pipe, a file, a
journal); ``--wide`` passes ``None``: nothing is cut or hidden.
"""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Sequence

DEFAULT_WIDTH = 100  # columns when stdout is no terminal and $COLUMNS is unset
ELLIPSIS = "..."  # ASCII: a C locale's stdout must be able to print it
MIN_SHRUNK = 10  # a shrunk column keeps at least this many characters (or its header)


def terminal_width() -> int:
    """The columns text output may use (see the module docstring)."""
    return shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns


def clip(text: str, width: int | None) -> str:
    """``text`` cut to ``width`` characters, ending in ``...`` when cut."""
    if width is None or len(text) <= width:
        return text
    if width <= len(ELLIPSIS):
        return text[:width]
    return text[: width - len(ELLIPSIS)] + ELLIPSIS


def wrap(text: str, width: int | None, indent: str = "") -> list[str]:
    """``text`` as lines of at most ``width`` characters (continuations indented by
    ``indent``); one line when ``width`` is None."""
    if width is None or len(text) <= width:
        return [text]
    lead = len(text) - len(text.lstrip(" "))
    return textwrap.wrap(
        text,
        width=width,
        subsequent_indent=" " * lead + indent,
        break_on_hyphens=False,
    ) or [text[:width]]


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    right: set[int] | None = None,
    *,
    width: int | None = None,
    shrink: Sequence[int] = (),
    optional: Sequence[int] = (),
    floor: int = MIN_SHRUNK,
) -> str:
    """Columns padded to their widest cell; ``right`` holds indexes of right-aligned columns.

    The last column is never padded, so long reasons don't leave trailing spaces. With a
    ``width``, the columns in ``shrink`` are narrowed in that order (their cells cut with
    ``...``, never below ``floor`` characters or their header), then the columns in
    ``optional`` left out in that order (a last line names them), until every line fits;
    a line that still does not fit is cut.
    """
    right = right or set()
    full = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    cols = list(range(len(headers)))
    widths = list(full)

    def total() -> int:
        return sum(widths[i] for i in cols) + 2 * (len(cols) - 1)

    dropped: list[str] = []
    if width is not None:
        # Fewest columns left out first; each try shrinks from the full widths again.
        for k in range(len(optional) + 1):
            cols = [i for i in range(len(headers)) if i not in optional[:k]]
            widths = list(full)
            for i in shrink:
                if i in cols and total() > width:
                    least = min(widths[i], max(floor, len(headers[i])))
                    widths[i] = max(least, widths[i] - (total() - width))
            if total() <= width or len(cols) == 1:
                break
        dropped = [headers[i] for i in range(len(headers)) if i not in cols]
    out: list[str] = []
    for r in [headers, *rows]:
        cells = []
        for i in cols:
            text = clip(str(r[i]), widths[i])
            if i == cols[-1]:
                cells.append(text)
            elif i in right:
                cells.append(text.rjust(widths[i]))
            else:
                cells.append(text.ljust(widths[i]))
        out.append(clip("  ".join(cells).rstrip(), width))
    if dropped:
        out.append(clip(f"({', '.join(dropped)} left out to fit; --wide shows all)", width))
    return "\n".join(out)
