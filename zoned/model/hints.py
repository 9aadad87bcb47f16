"""What the previous run said about a node (from ``zoned.service.statefile``), as data."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Hint:
    """What the previous run said about a node: owner (as ``str(Owner)``), why, since
    (Unix time)."""

    owner: str
    reason: str
    since_wall: float


def engine_time(hint: Hint, *, engine_now: float, wall_now: float | None = None) -> float:
    """A hint's time on the engine's clock."""
    wall = time.time() if wall_now is None else wall_now
    return engine_now - (wall - hint.since_wall)
