"""What the policy asks the engine to do: plain frozen data, each with a reason a person reads.

The policy returns these; the engine carries them out through the backend. Every action
names its containers and nodes, and ``reason`` says why in one line, e.g.
``"web: anon 410M of 435M capacity crossed tripwire 85%; lent node 3 (free)"``.
"""

from __future__ import annotations

from dataclasses import dataclass

from zoned.model.sizes import format_size


@dataclass(frozen=True)
class Lend:
    """Give free pool node ``node`` to container ``to``."""

    node: int
    to: str
    reason: str

    def describe(self) -> str:
        return f"lend node {self.node} to {self.to}"


@dataclass(frozen=True)
class Reclaim:
    """Take ``node`` from ``from_`` and give it to ``to``: evacuate it first (the donor's
    pages migrate to its other nodes), then hand it over."""

    node: int
    from_: str
    to: str
    reason: str

    def describe(self) -> str:
        return f"reclaim node {self.node} from {self.from_} for {self.to}"


@dataclass(frozen=True)
class DirectedReclaim:
    """Ask the kernel to drop ``nbytes`` of ``container``'s reclaimable pages (page cache
    first), so its pages fit the nodes it keeps. When followed in the same decision by a
    ``Reclaim`` or ``Return`` from the same container, it is that hand-over's first step."""

    container: str
    nbytes: int
    reason: str

    def describe(self) -> str:
        return f"directed reclaim of {format_size(self.nbytes)} from {self.container}"


@dataclass(frozen=True)
class SetTripwire:
    """Arm ``container``'s headroom tripwire at ``nbytes``."""

    container: str
    nbytes: int
    reason: str

    def describe(self) -> str:
        return f"tripwire of {self.container} at {format_size(self.nbytes)}"


@dataclass(frozen=True)
class Return:
    """``from_`` gives ``node`` back to the free pool (evacuated first)."""

    node: int
    from_: str
    reason: str

    def describe(self) -> str:
        return f"return node {self.node} from {self.from_} to the pool"


@dataclass(frozen=True)
class RecordOom:
    """The kernel OOM-killed inside ``container``'s zones; zoned records it, kills nothing."""

    container: str
    reason: str
    kills: int = 1

    def describe(self) -> str:
        return f"record OOM kill in {self.container}"


Action = Lend | Reclaim | DirectedReclaim | SetTripwire | Return | RecordOom


def kind_of(action: Action) -> str:
    """A short lower-case name for tables and JSON: ``lend``, ``reclaim``, ``tripwire``, ..."""
    return {
        Lend: "lend",
        Reclaim: "reclaim",
        DirectedReclaim: "directed-reclaim",
        SetTripwire: "tripwire",
        Return: "return",
        RecordOom: "oom",
    }[type(action)]


def movers(a: Action) -> tuple[str, ...]:
    """The containers a hand-over action takes nodes from or gives them to."""
    if isinstance(a, Lend):
        return (a.to,)
    if isinstance(a, Reclaim):
        return (a.from_, a.to)
    if isinstance(a, Return):
        return (a.from_,)
    if isinstance(a, DirectedReclaim):
        return (a.container,)
    return ()
