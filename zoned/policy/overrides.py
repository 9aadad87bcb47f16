"""Whether an operator's ``lend``/``reclaim`` may take a node from the container holding it.

Pure: ``check_take(snapshot, holder, holds, node, tripwire_pct)`` reads only its arguments.
The rule (docs/service.md, "Overrides"), with ``R`` the capacity (MemTotal) of the nodes
the holder keeps, ``T = R * tripwire_pct%`` its tripwire there, and ``U`` what it cannot
drop (``ContainerView.unreclaimable``: anon, shmem, kernel memory; page cache that can be
dropped is left out, the kernel reclaims it inside the zones):

* ``U >= R`` (or ``U > 0`` with no node left): **OOM** — what it holds does not fit; the
  migration leaves pages behind and the next allocations meet the OOM killer.
* ``T <= U < R``: **tripwire** — it fits, but over its tripwire: the policy finds it in need
  at its next look and takes a node back (the node just moved, undone at once).
* its usage was never read (no view in the snapshot): **unknown** — nothing to check with.
* else **ok**.

Anything but ok is refused unless forced; the words name the numbers either way.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from zoned.model.nodelist import nodes_word
from zoned.model.sizes import MIB, format_size
from zoned.model.snapshot import Snapshot


class Risk(enum.Enum):
    NONE = "none"
    TRIPWIRE = "tripwire"
    OOM = "oom"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class TakeCheck:
    """The verdict on taking ``node`` from ``holder``: ``risk`` and ``words`` (the numbers:
    what it uses, what its nodes hold after, the tripwire there)."""

    holder: str
    node: int
    risk: Risk
    words: str

    @property
    def ok(self) -> bool:
        return self.risk is Risk.NONE

    def refusal(self) -> str:
        """The one-line refusal a client prints."""
        return f"refused: {self.words}; --force to take it anyway"


def check_take(
    snap: Snapshot, holder: str, holds: frozenset[int], node: int, tripwire_pct: float
) -> TakeCheck:
    """Whether ``holder`` (holding ``holds`` in the zone map) can lose ``node`` without
    going over its tripwire or into the OOM killer; see the module docstring."""
    view = snap.containers.get(holder)
    if view is None:
        return TakeCheck(
            holder,
            node,
            Risk.UNKNOWN,
            f"{holder}'s usage is unknown (not read yet), so taking node {node} cannot be checked",
        )
    keeps = holds - {node}
    rest = snap.capacity(keeps)
    trip = int(rest * tripwire_pct / 100.0)
    used = view.unreclaimable
    cache = max(view.current - used, 0)  # what the kernel may drop instead of moving
    size = _sizes(used, rest, trip)
    uses = f"{holder} uses {size(used)} anon (+ {format_size(cache)} page cache)"
    if not keeps:
        after = f"without node {node} it holds no node"
    else:
        after = (
            f"without node {node} its {nodes_word(keeps)} "
            f"hold{'s' if len(keeps) == 1 else ''} {size(rest)} "
            f"(tripwire {size(trip)} at {tripwire_pct:g}%)"
        )
    if used > 0 and used >= rest:
        return TakeCheck(holder, node, Risk.OOM, f"{uses}; {after}: it would not fit (OOM kill)")
    if keeps and used >= trip:
        return TakeCheck(
            holder,
            node,
            Risk.TRIPWIRE,
            f"{uses}; {after}: over its tripwire, the policy would take a node back at once",
        )
    return TakeCheck(holder, node, Risk.NONE, f"{uses}; {after}")


def _sizes(*compared: int) -> Callable[[int], str]:
    """How to write sizes that are compared with one another: ``format_size``, or whole
    MiB when it would write two different ones alike (1100M anon and a 1088M tripwire
    are not both "1.1G")."""
    short = {format_size(n) for n in compared}
    if len(short) == len(set(compared)):
        return format_size
    return lambda n: f"{n / MIB:.0f}M"


__all__ = ["Risk", "TakeCheck", "check_take"]
