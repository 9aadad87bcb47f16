"""Which containers' usage the engine re-reads each step, and what it read last.

Reading a container's usage is the dearest part of a step (memory.stat and numa_stat: about
93 µs per container on cgroup v1), so a step reads only what it must: the containers its
events name, those in a hand-over, and a slice of the rest in round robin, least recently
read first. The slice is sized by the time since the last sweep (``count / sweep_s`` reads
a second) and every container last read ``sweep_s`` ago is in it, so each is re-read at
least every ``sweep_s`` however often steps come. A host of at most ``min_slice``
containers reads all of them every step, as before.

Pure bookkeeping: the engine does the reads and hands them in with ``put``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Container

from zoned.model.host import Usage

# Every container is re-read at least this often: the daemon's fallback poll (5 s), which
# read everything at each tick before. Signals (tripwire, PSI, OOM) make a container fresh
# in their step, so staleness only delays what no event reports: idle returns (after 60 s
# of idleness, so 5 s is small beside it) and the rate projection of a quiet grower.
SWEEP_S = 5.0

# Up to this many containers, every step reads all of them: well under 2 ms on v1, and
# small hosts (every scenario and test) decide on fresh figures each step, as before.
MIN_SLICE = 16


class UsageCache:
    """Each container's last usage read and when, ordered least recently read first."""

    def __init__(self, sweep_s: float = SWEEP_S, min_slice: int = MIN_SLICE) -> None:
        self.sweep_s = sweep_s
        self.min_slice = min_slice
        self._last: OrderedDict[str, tuple[float, Usage]] = OrderedDict()
        self._swept_at: float | None = None
        self._credit = 0.0  # reads the sweep owes, from the time since the last one

    def get(self, name: str) -> tuple[float, Usage] | None:
        """(when it was read, what was read), or None if never read (or dropped)."""
        return self._last.get(name)

    def put(self, name: str, at: float, usage: Usage) -> None:
        self._last[name] = (at, usage)
        self._last.move_to_end(name)

    def drop(self, name: str) -> None:
        self._last.pop(name, None)

    def due(self, now: float, managed: Container[str], count: int) -> set[str]:
        """The sweep's share of this step among ``count`` managed containers: the least
        recently read ones, as many as the time since the last sweep calls for (all of
        them up to ``min_slice``), and every one last read ``sweep_s`` or more ago. Containers never
        read are not included (the caller reads those anyway). Names no longer managed are
        forgotten on the way."""
        since = self.sweep_s if self._swept_at is None else max(now - self._swept_at, 0.0)
        self._swept_at = now
        if count <= self.min_slice:
            share = count
        else:
            # count/sweep_s reads a second, carried over between steps: a stream of events
            # 2 ms apart costs one read every few steps, not a rounded-up read each.
            self._credit = min(self._credit + count * since / self.sweep_s, float(count))
            share = int(self._credit)
            self._credit -= share
        stale_before = now - self.sweep_s
        out: set[str] = set()
        gone: list[str] = []
        for name, (at, _) in self._last.items():
            if len(out) >= share and at > stale_before:
                break
            if name in managed:
                out.add(name)
            else:
                gone.append(name)
        for name in gone:
            del self._last[name]
        return out
