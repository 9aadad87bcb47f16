"""A burst of engine container starts against the watcher: how many inspects at once, how
long the loop is held.

    .venv/bin/python bench/inspect_burst.py [--starts 500] [--inspect-s 0.2] [--linger-s 0]

Drives ``zoned.service.enginewatch`` on a real ``FdLoop`` with ``--starts`` engine cgroups
appearing at once (plain directories under a temporary root: no cgroups, no root) and a
fake ``podman inspect`` (``sh``) that answers after ``--inspect-s``, then closes its output
and lingers ``--linger-s`` before it exits (as a wrapper that forks would). Admission is
stubbed (counted). Prints the commit, machine and load, then: inspects running at the
peak, the longest loop dispatch (from epoll's return to the round's end: a blocking reap
shows here), the time until every start was answered, and how many were admitted and
dropped. Runs on older commits too
(before the cap, ``d.inspections`` was a dict of the children in flight). Numbers only.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import types
from contextlib import closing
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench import runinfo  # noqa: E402
from zoned.backends.fdloop import FdLoop  # noqa: E402
from zoned.config.load import loads  # noqa: E402
from zoned.service import engines, enginewatch  # noqa: E402

DECLS = loads("containers:\n  web: {min: 256M, engine: {podman: {name: 'web-*'}}}\n")


class TimedLoop(FdLoop):
    """Notes when epoll returned: a round's dispatch is the time after it."""

    woke = 0.0

    def _epoll_wait(self, timeout: float) -> list[tuple[int, int]]:
        ready = super()._epoll_wait(timeout)
        self.woke = time.monotonic()
        return ready


def in_flight(d: Any) -> dict[str, Any]:
    running: dict[str, Any] = getattr(d.inspections, "running", d.inspections)
    return running


def burst(starts: int, inspect_s: float, linger_s: float) -> dict[str, float]:
    admitted: list[str] = []
    engines.admit = lambda d, c, cg: admitted.append(cg) or {"ok": True}  # type: ignore[assignment,func-returns-value]
    answer = '[{"Id": "%s", "Name": "web-1"}]'
    script = f"sleep {inspect_s}; printf '{answer}' \"$0\"; exec >&- 2>&-; sleep {linger_s}"
    enginewatch.INSPECT["podman"] = ("sh", "-c", script)
    with tempfile.TemporaryDirectory() as tmp, closing(TimedLoop(workers=1)) as loop:
        root = Path(tmp)
        paths = [f"libpod_parent/libpod-{i:064x}" for i in range(starts)]
        for p in paths:
            (root / p).mkdir(parents=True)
        d: Any = types.SimpleNamespace(
            engine=types.SimpleNamespace(decls=DECLS),
            engine_watch=types.SimpleNamespace(root=root),
            _host=loop,
            backend=None,
            inspections={},
        )
        if hasattr(enginewatch, "inspector"):
            d.inspections = enginewatch.inspector(d)
        t0 = time.monotonic()
        enginewatch.watch_new(d, paths)
        first = time.monotonic() - t0
        peak, longest = len(in_flight(d)), 0.0
        end = t0 + 600
        while (in_flight(d) or getattr(d.inspections, "queued", None)) and time.monotonic() < end:
            loop.poll_once(1.0)
            longest = max(longest, time.monotonic() - loop.woke)
            peak = max(peak, len(in_flight(d)))
        total = time.monotonic() - t0
        if hasattr(d.inspections, "close"):
            d.inspections.close()
    return {
        "peak": peak,
        "first_s": first,
        "longest_s": longest,
        "total_s": total,
        "admitted": len(admitted),
        "dropped": float(getattr(d.inspections, "dropped", 0)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--starts", type=int, default=500, help="engine cgroups appearing at once")
    ap.add_argument("--inspect-s", type=float, default=0.2, help="the fake inspect's answer time")
    ap.add_argument("--linger-s", type=float, default=0.0, help="its life after its answer")
    a = ap.parse_args()
    print(runinfo.header())
    r = burst(a.starts, a.inspect_s, a.linger_s)
    print(
        f"{a.starts} starts at once; fake inspect answers after {a.inspect_s:g} s, "
        f"then lingers {a.linger_s:g} s with its output closed\n"
    )
    print("| what | value |\n|---|---|")
    print(f"| inspects running at the peak | {r['peak']:.0f} |")
    print(f"| the watcher's first call (forks included) | {r['first_s']:.3f} s |")
    print(f"| longest loop dispatch (epoll's return to the round's end) | {r['longest_s']:.3f} s |")
    print(f"| every start answered after | {r['total_s']:.1f} s |")
    print(f"| admitted / dropped | {r['admitted']} / {r['dropped']:.0f} |")


if __name__ == "__main__":
    main()
