"""The kernel's node-list format (``0-2,5``), as in ``cpuset.mems`` and ``nodeN/cpulist``."""

from __future__ import annotations

from collections.abc import Iterable


def parse_nodelist(text: str) -> frozenset[int]:
    """Parse ``"0-2,5"`` into ``{0, 1, 2, 5}``; empty or blank text is the empty set.

    Raises ValueError on anything the kernel would not write.
    """
    out: set[int] = set()
    for raw in text.strip().split(","):
        part = raw.strip()
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        if sep:
            a, b = int(lo), int(hi)
            if a > b or a < 0:
                raise ValueError(f"bad range {part!r}")
            out.update(range(a, b + 1))
        else:
            n = int(part)
            if n < 0:
                raise ValueError(f"bad node {part!r}")
            out.add(n)
    return frozenset(out)


def format_nodelist(nodes: Iterable[int]) -> str:
    """Format nodes as the kernel does: ``0-2,5``; the empty set is ``""``."""
    ids = sorted(set(nodes))
    parts: list[str] = []
    i = 0
    while i < len(ids):
        j = i
        while j + 1 < len(ids) and ids[j + 1] == ids[j] + 1:
            j += 1
        parts.append(str(ids[i]) if i == j else f"{ids[i]}-{ids[j]}")
        i = j + 1
    return ",".join(parts)


def nodes_word(nodes: Iterable[int]) -> str:
    """``node 3`` or ``nodes 1-2,5`` (``nodes none`` when empty), for reasons and logs."""
    ids = set(nodes)
    return ("node " if len(ids) == 1 else "nodes ") + (format_nodelist(ids) or "none")
