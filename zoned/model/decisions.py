"""The engine's decision log and running totals, as plain data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from zoned.model.actions import Action, Lend, Reclaim, Return

# What became of a decision, as a word a program can match (``outcome`` says it for people):
# started: a hand-over (or directed reclaim) began; waiting: its write is still in the
# kernel; done: it (or an admit, release, tripwire, reload) took effect; retrying: a phase
# failed and is tried again; failed: it gave up or could not be done; cancelled: a
# container it involved vanished; refused: zoned declined a request; dry-run: it would
# have been done; noted: a signal recorded, nothing done (an OOM kill, a vanished cgroup).
Code = Literal[
    "started", "waiting", "done", "retrying", "failed", "cancelled", "refused", "dry-run", "noted"
]
CODES: tuple[str, ...] = get_args(Code)


@dataclass(frozen=True)
class LogRecord:
    """One line of the decision log: the words people read and the same facts as fields.

    ``kind``: an action kind (``lend``, ``reclaim``, ``return``, ``directed-reclaim``,
    ``tripwire``, ``oom``), or ``note`` (a signal that led to no action), ``admit``,
    ``gone``, ``release`` (no longer declared, on reload), ``reload``. ``outcome``:
    ``started``, ``done …``, ``failed …; retrying``, ``gave up …``, ``would have`` (dry
    run), ``recorded``, ``armed``, ``released``, ``created``, ``adopted``; ``code`` says
    which of ``CODES`` it is. ``container``: whom it is about (the receiver of a node, the
    container giving one back, the one whose tripwire or OOM kill it is); ``donor``: the
    container a node is taken from. Byte counts and ``seconds`` are set on the records
    that measured them (a hand-over's end), else None.
    """

    at: float
    kind: str
    what: str  # "lend node 3 to web"
    reason: str
    outcome: str
    action: Action | None = None
    code: Code = "noted"
    container: str | None = None
    node: int | None = None
    donor: str | None = None
    seconds: float | None = None
    migrated: int | None = None  # bytes the evacuation moved to the donor's other nodes
    freed: int | None = None  # bytes that left the node because they were freed
    left_behind: int | None = None  # bytes still on the node when it was handed on
    reclaimed: int | None = None  # bytes a directed reclaim (or a hand-over's node reclaim) dropped


def record_fields(rec: LogRecord) -> dict[str, object]:
    """A record's fields as JSON data, all but its time (docs/json.md, ``zoned/event``)."""
    return {
        "kind": rec.kind,
        "code": rec.code,
        "container": rec.container,
        "node": rec.node,
        "donor": rec.donor,
        "seconds": rec.seconds,
        "migrated_bytes": rec.migrated,
        "freed_bytes": rec.freed,
        "left_behind_bytes": rec.left_behind,
        "reclaimed_bytes": rec.reclaimed,
        "what": rec.what,
        "reason": rec.reason,
        "outcome": rec.outcome,
    }


def subjects(action: Action | None) -> tuple[str | None, int | None, str | None]:
    """``(container, node, donor)`` an action is about (see ``LogRecord``)."""
    if action is None:
        return None, None, None
    if isinstance(action, Lend):
        return action.to, action.node, None
    if isinstance(action, Reclaim):
        return action.to, action.node, action.from_
    if isinstance(action, Return):
        return action.from_, action.node, action.from_
    return action.container, None, None


@dataclass
class ContainerStats:
    """Running totals for reports."""

    nodes_gained: int = 0
    nodes_lost: int = 0
    bytes_migrated: int = 0
    bytes_left_behind: int = 0  # left on nodes it gave up (the kernel leaves a few pages)
    oom_kills: int = 0
    peak_current: int = 0
    peak_anon: int = 0
