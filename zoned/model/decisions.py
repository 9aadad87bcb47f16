"""The engine's decision log and running totals, as plain data."""

from __future__ import annotations

from dataclasses import dataclass

from zoned.model.actions import Action


@dataclass(frozen=True)
class LogRecord:
    """One line of the decision log.

    ``kind``: an action kind (``lend``, ``reclaim``, ``return``, ``directed-reclaim``,
    ``tripwire``, ``oom``), or ``note`` (a signal that led to no action), ``admit``,
    ``gone``, ``release`` (no longer declared, on reload). ``outcome``: ``started``,
    ``done …``, ``failed …; retrying``, ``gave up …``, ``would have`` (dry run),
    ``recorded``, ``armed``, ``released``, ``created``, ``adopted``.
    """

    at: float
    kind: str
    what: str  # "lend node 3 to web"
    reason: str
    outcome: str
    action: Action | None = None


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
