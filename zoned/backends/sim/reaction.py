"""The engine's reaction time on the simulated host: how long after an engine step begins
its writes reach the kernel, drawn from a seeded log-normal fitted to a measured median
and 99th percentile."""

from __future__ import annotations

import math
import random

Z99 = 2.326348  # the standard normal's 99th percentile


class Reaction:
    """Seeded draws of the delay, in seconds; ``p50_ms == 0`` is no delay at all.

    The log-normal has median ``p50_ms`` and 99th percentile ``p99_ms``; a draw is capped
    at ten medians so one unlucky draw cannot stand for a stuck daemon.
    """

    def __init__(self, p50_ms: float, p99_ms: float, seed: int) -> None:
        self.p50_s = p50_ms / 1000.0
        self.sigma = math.log(p99_ms / p50_ms) / Z99 if p50_ms > 0 else 0.0
        self._rng = random.Random(seed)
        self.drawn: list[float] = []  # every delay drawn, in order (for reports)

    @property
    def enabled(self) -> bool:
        return self.p50_s > 0

    def draw(self) -> float:
        if not self.enabled:
            return 0.0
        d = min(10 * self.p50_s, self.p50_s * math.exp(self.sigma * self._rng.gauss(0.0, 1.0)))
        self.drawn.append(d)
        return d
