"""Guest side of ``bench/vm_tripwire_latency.py``: tripwire event → ``cpuset.mems`` write.

Runs the real Engine on a Cgroup2Backend in a guest with cgroup v2. One container ``c``
(min 1 node, max 2) holds one small node with the policy's tripwire (``memory.high``) on
it. A child process in ``c`` holds a base allocation just under the tripwire; each round
it allocates a few MiB more, crossing it: the kernel counts ``high`` in ``memory.events``,
the backend's epoll wakes, ``wait()`` returns the TRIPWIRE event, the engine's step lends
a free node and calls ``start_set_nodes``. Then the child frees the increment, the node is
returned (``Engine.override(Return)``) and the policy re-arms the 1-node tripwire.

Instrumentation, without touching engine code: an FdLoop subclass notes when epoll
returns; a Cgroup2Backend subclass notes when ``wait()`` returns a TRIPWIRE event and
when ``start_set_nodes`` is called. When the kernel has kprobe events, a kprobe on
``cgroup_file_notify`` filtered to the child's pid, on the ``mono`` trace clock (the same
clock as ``time.monotonic``), gives the moment the kernel posted the event.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import select
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from zoned.backends.cgroup2 import Cgroup2Backend
from zoned.backends.fdloop import FdLoop
from zoned.config.decl import Amount, ContainerDecl, Declarations, HostDecl, PolicyDecl
from zoned.engine import Engine
from zoned.model.actions import Return
from zoned.model.host import Event, EventKind, NodeMemory, Usage
from zoned.model.sizes import MIB
from zoned.policy.placement import place

ROOT = Path("/sys/fs/cgroup")
PARENT = "zbench-trip"
TRACING = Path("/sys/kernel/tracing")
PROBE = "zbench_notify"
# The loop's wait bound (the daemon re-reads levels on such a tick even without events).
TICK_S = 0.5

# The child: "alloc N" maps and touches N bytes (one byte per page, at C speed through a
# strided memoryview), "free" unmaps the last allocation. Answers "ok" after each.
CHILD = r"""
import mmap, sys
held = []
for line in sys.stdin:
    cmd, _, arg = line.strip().partition(" ")
    if cmd == "alloc":
        m = mmap.mmap(-1, int(arg), flags=mmap.MAP_PRIVATE)  # private: anon, not shmem
        v = memoryview(m)
        v[::4096] = b"\1" * (len(m) // 4096)
        v.release()
        held.append(m)
    elif cmd == "free":
        held.pop().close()
    print("ok", flush=True)
"""


class TimedLoop(FdLoop):
    """FdLoop noting when epoll last returned with something ready."""

    last_ready = 0.0

    def _epoll_wait(self, timeout: float) -> list[tuple[int, int]]:
        ready = super()._epoll_wait(timeout)
        if ready:
            self.last_ready = time.monotonic()
        return ready


@dataclass
class Trip:
    epoll: float  # epoll returned (the round that produced the event)
    event: float  # the backend built the TRIPWIRE event (after reading memory.events)
    woke: float  # wait() returned it to the engine
    usage: int
    wait_no: int


@dataclass
class SetCall:
    at: float
    nodes: list[int]
    wait_no: int
    reads_s: float  # time the step spent in the backend's reads since wait() returned
    node_s: float  # ... of which node_memory() (every node's meminfo, via the topology)


class TimedBackend(Cgroup2Backend):
    """Cgroup2Backend recording TRIPWIRE wake-ups and ``start_set_nodes`` calls."""

    def __init__(self, loop: TimedLoop) -> None:
        super().__init__(ROOT, PARENT, loop=loop)
        self.tloop = loop
        self.trips: list[Trip] = []
        self.sets: list[SetCall] = []
        self.waits = 0
        self.reads_s = 0.0
        self.node_s = 0.0

    # The engine's reads during a step, timed: how much of a step is sysfs/cgroupfs I/O.
    def node_memory(self) -> Mapping[int, NodeMemory]:
        t = time.monotonic()
        try:
            return super().node_memory()
        finally:
            self.reads_s += time.monotonic() - t
            self.node_s += time.monotonic() - t

    def usage(self, name: str) -> Usage:
        t = time.monotonic()
        try:
            return super().usage(name)
        finally:
            self.reads_s += time.monotonic() - t

    def wait(self, timeout_s: float | None) -> list[Event]:
        evs = super().wait(timeout_s)
        woke = time.monotonic()
        self.waits += 1
        self.reads_s = self.node_s = 0.0
        for e in evs:
            if e.kind is EventKind.TRIPWIRE:
                usage = e.value or 0
                self.trips.append(Trip(self.tloop.last_ready, e.at, woke, usage, self.waits))
        return evs

    def start_set_nodes(self, name: str, nodes: frozenset[int], deadline_s: float) -> int:
        at = time.monotonic()
        self.sets.append(SetCall(at, sorted(nodes), self.waits, self.reads_s, self.node_s))
        return super().start_set_nodes(name, nodes, deadline_s)


class Child:
    """The allocating process, moved into the container before it allocates."""

    def __init__(self, backend: Cgroup2Backend) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        backend.fs.move_pid(f"{PARENT}/c", self.proc.pid)
        self.pending = False

    def send(self, cmd: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        self.pending = True

    def answered(self, timeout_s: float = 0.0) -> bool:
        """True once the last command was answered (non-blocking by default)."""
        assert self.proc.stdout is not None
        if self.pending and select.select([self.proc.stdout], [], [], timeout_s)[0]:
            line = self.proc.stdout.readline()
            if line.strip() != "ok":
                raise RuntimeError(f"child died or said {line!r}")
            self.pending = False
        return not self.pending


def guest_speed_ms() -> float:
    """A fixed bit of Python work, timed: tracks how fast the guest runs right now (TCG
    vCPUs slow down when other jobs take the host's cores)."""
    t0 = time.perf_counter()
    sum(range(200_000))
    return (time.perf_counter() - t0) * 1000


def kprobe_setup(pid: int) -> str | None:
    """Arm a kprobe on cgroup_file_notify for ``pid``; return why not, or None."""
    try:
        if not (TRACING / "kprobe_events").exists():
            subprocess.run(
                ["mount", "-t", "tracefs", "nodev", str(TRACING)], check=True, capture_output=True
            )
        (TRACING / "trace_clock").write_text("mono")
        (TRACING / "kprobe_events").write_text(f"p:{PROBE} cgroup_file_notify\n")
        ev = TRACING / "events" / "kprobes" / PROBE
        (ev / "filter").write_text(f"common_pid == {pid}\n")
        (ev / "enable").write_text("1")
        (TRACING / "tracing_on").write_text("1")
    except (OSError, subprocess.CalledProcessError) as exc:
        return f"kprobe on cgroup_file_notify unavailable: {exc}"
    return None


def kprobe_clear() -> None:
    with (TRACING / "trace").open("w") as f:  # opening with O_TRUNC clears the buffer
        f.write("")


_TS = re.compile(rf"\s(\d+\.\d+):\s+{PROBE}:")


def kprobe_first(after: float) -> float | None:
    """The first traced notify at or after ``after`` (mono seconds)."""
    for line in (TRACING / "trace").read_text().splitlines():
        m = _TS.search(line)
        if m and float(m.group(1)) >= after:
            return float(m.group(1))
    return None


def drive(engine: Engine, b: TimedBackend, done: Callable[[], bool], deadline_s: float) -> None:
    """wait → step until ``done()`` is true; the loop a daemon runs, with a short tick."""
    end = time.monotonic() + deadline_s
    while not done():
        if time.monotonic() > end:
            for rec in engine.log[-8:]:
                print(f"  log: {rec.kind} {rec.what}: {rec.reason} [{rec.outcome}]")
            print(f"  usage {b.usage('c')}, state {b.state('c')}, trips {b.trips[-2:]}")
            raise TimeoutError(f"no progress within {deadline_s:.0f} s: {engine.pending()}")
        engine.step(b.wait(TICK_S))


def one_round(
    engine: Engine,
    b: TimedBackend,
    child: Child,
    home: list[int],
    trip1: int,
    *,
    step: int,
    kprobe: bool,
) -> dict[str, Any] | None:
    """Cross the tripwire, let the engine lend a node, then undo it all."""
    n_trips, n_sets, n_log = len(b.trips), len(b.sets), len(engine.log)
    if kprobe:
        kprobe_clear()
    t0 = time.monotonic()
    child.send(f"alloc {step}")

    def lent() -> bool:
        return (
            child.answered()
            and len(engine.zonemap.nodes_of("c")) == 2
            and not engine.pending()
            and b.state("c").tripwire != trip1
        )

    drive(engine, b, lent, 120)
    trips, sets = b.trips[n_trips:], b.sets[n_sets:]
    got = sorted(engine.zonemap.nodes_of("c"))
    lent_node = next(n for n in got if n not in home)
    child.send("free")
    drive(engine, b, child.answered, 120)
    engine.override(Return(lent_node, "c", "bench: reset for the next round"))

    def reset() -> bool:
        return (
            sorted(engine.zonemap.nodes_of("c")) == home
            and not engine.pending()
            and b.state("c").tripwire == trip1
        )

    drive(engine, b, reset, 120)
    if not trips or not sets:
        return None
    trip = trips[0]
    # A step on the tick can see usage past the tripwire before memory.events' notification
    # arrives, and lend first: then this round measured no event-driven write.
    after = [c for c in sets if c.at >= trip.woke]
    if sets[0].at < trip.woke or not after:
        return {"tick_first": True, "trip": asdict(trip), "call": asdict(sets[0])}
    call = after[0]
    return {
        "speed_ms": guest_speed_ms(),
        "tick_first": False,
        "trip": asdict(trip),
        "call": asdict(call),
        "kernel": kprobe_first(t0) if kprobe else None,
        "same_step": call.wait_no == trip.wait_no,
        "start": t0,
        "nodes": got,
        "notes": [r.reason for r in engine.log[n_log:] if r.kind == "note"],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=60)
    ap.add_argument("--step-mib", type=int, default=8, help="allocation that crosses")
    ap.add_argument("--margin-mib", type=int, default=6, help="base below the tripwire")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    decls = Declarations(
        host=HostDecl(cgroup_root=str(ROOT), parent=PARENT, reserved_nodes=(0,)),
        policy=PolicyDecl(cooldown_s=0.0, idle_return_s=1e9, tripwire_pct=85.0),
        containers=(ContainerDecl("c", Amount.nodes(1), Amount.nodes(2)),),
    )
    b = TimedBackend(TimedLoop(workers=2, name="zbench"))
    zonemap = place(b.topology(), decls).zonemap
    engine = Engine(b, decls, zonemap)
    engine.admit()
    home = sorted(engine.zonemap.nodes_of("c"))
    trip1 = b.state("c").tripwire
    assert trip1 is not None, "the engine armed no tripwire"
    child = Child(b)
    why_no_kprobe = kprobe_setup(child.proc.pid)

    # Base allocation: just under the tripwire, so each round's step crosses it by a few MiB.
    step = args.step_mib * MIB
    current = b.usage("c").current
    # 6 MiB below: the child's own heap and page tables grow by ~4 MiB after this reading
    # (measured: with 2 MiB, usage stayed over the tripwire after "free"). The step then
    # crosses by ~2 MiB: small, since a small node's real free memory is well under MemTotal.
    base = trip1 - current - args.margin_mib * MIB
    child.send(f"alloc {base}")
    drive(engine, b, child.answered, 120)
    print(f"c on node {home}, tripwire {trip1 / MIB:.1f} MiB, base {base / MIB:.1f} MiB")

    rounds: list[dict[str, object]] = []
    failed = ""
    for i in range(args.events):
        try:
            r = one_round(engine, b, child, home, trip1, step=step, kprobe=why_no_kprobe is None)
        except RuntimeError as exc:
            # The child was killed: the zone filled before the lent node arrived (a cpuset
            # OOM, seen when the host is so loaded that one engine step takes seconds).
            failed = (
                f"round {i}: {exc}; memory.events {b.fs.read_keyed(f'{PARENT}/c', 'memory.events')}"
            )
            print(failed)
            break
        if r is None:
            print(f"round {i}: no tripwire or no write, skipped")
            continue
        rounds.append(r)
        if r["tick_first"]:
            print(f"round {i}: a tick step lent before the event arrived")
            continue
        wake_ms = (r["call"]["at"] - r["trip"]["woke"]) * 1000
        print(f"round {i}: wake→write {wake_ms:.2f} ms, usage {r['trip']['usage'] / MIB:.1f} MiB")

    child.proc.kill()
    child.proc.wait(timeout=30)
    with contextlib.suppress(OSError):
        (TRACING / "tracing_on").write_text("0")
    out = {
        "kernel": os.uname().release,
        "numa": os.environ.get("ZONED_VM_NUMA", "?"),
        "home": home,
        "node_mib": round(b.node_memory()[home[0]].total / MIB, 1),
        "tripwire_mib": round(trip1 / MIB, 1),
        "step_mib": args.step_mib,
        "kprobe": why_no_kprobe,
        "rounds": rounds,
        "failed": failed,
    }
    args.out.write_text(json.dumps(out, indent=1))
    b.close()


if __name__ == "__main__":
    main()
