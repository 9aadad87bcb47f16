"""Exec to container: how fast rules move a new process, and whether a burst leaves any unplaced.

Root, cgroup v1 (the build machine). Creates ``zoned-bench-<pid>/web`` in the cpuset and
memory hierarchies, runs a ``RuleMover`` (real process connector, real attach) in this
process and a spawner in a child process, and removes everything afterwards.

1. Latency: ``--latency N`` processes (``sleep 0.3`` under a marker argv[0]), one every
   2 ms; latency = attach done (CLOCK_MONOTONIC) minus the kernel's exec event timestamp.
2. Bursts: N long-lived ``sleep`` under a marker, spawned as fast as posix_spawn goes and
   kept alive until the mover has caught up. Each is placed from its exec event, placed by
   a rescan of /proc (its event was lost to a socket overrun, ENOBUFS), or left
   unplaced (must be 0). Latency: attach done minus posix_spawn's return (after the exec),
   for every placed process, rescued ones included. Run at the shipped receive buffer and
   at a small one that overruns on purpose. The load average is printed with each row.

Writes the table to docs/benchmarks.md under "Exec to container" (``--no-write``: print).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import select
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import runinfo
from zoned.backends.cgroup1 import Cgroup1Backend
from zoned.config.decl import Amount, ContainerDecl
from zoned.config.match import MatchRule, Pattern
from zoned.kernel.procwatch import DEFAULT_RCVBUF, ProcWatch
from zoned.policy.rules import RuleSet
from zoned.service.mover import Move, RuleMover

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
SECTION = "## Exec to container"
CPUSET, MEMORY = Path("/sys/fs/cgroup/cpuset"), Path("/sys/fs/cgroup/memory")

# The spawner: N processes via posix_spawn, `gap_s` apart (0: as fast as it goes), reaped
# as they end; prints the pids as JSON when all have ended.
SPAWNER = r"""
import json, os, select, sys
path, argv0, arg = sys.argv[1:4]
n, gap = int(sys.argv[4]), float(sys.argv[5])
pids, live = [], 0
for i in range(n):
    pids.append(os.posix_spawn(path, [argv0, arg], os.environ))
    live += 1
    if gap:
        select.select([], [], [], gap)
    while live:
        pid, _ = os.waitpid(-1, os.WNOHANG)
        if not pid:
            break
        live -= 1
while live:
    os.waitpid(-1, 0)
    live -= 1
print(json.dumps(pids))
"""

# The burst spawner: N long-lived processes via posix_spawn as fast as it goes; prints
# [[pid, CLOCK_MONOTONIC ns after posix_spawn returned], ...] as JSON, then holds them until
# its stdin closes, and kills and reaps them.
HOLDER = r"""
import json, os, signal, sys, time
path, argv0, arg, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
out = []
for i in range(n):
    pid = os.posix_spawn(path, [argv0, arg], os.environ)
    out.append([pid, time.monotonic_ns()])
print(json.dumps(out), flush=True)
sys.stdin.read()
for pid, _ in out:
    os.kill(pid, signal.SIGKILL)
for _ in out:
    os.waitpid(-1, 0)
"""


@dataclass
class Burst:
    spawned: int
    by_event: int
    by_rescan: int
    unplaced: int
    overruns: int
    rescans: int
    seconds: float
    load: float
    latencies_ms: list[float]


def run_burst(
    mover: RuleMover, records: dict[int, Move], cmd: tuple[str, str, str], n: int, web: list[Path]
) -> Burst:
    """Spawn ``n`` long-lived ``cmd`` at once; count where each ended up once the mover is idle."""
    exe, argv0, arg = cmd
    records.clear()
    overruns0, rescans0 = mover.stats.overruns, mover.stats.rescans
    start = time.monotonic()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, exe, argv0, arg, str(n)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    assert holder.stdout is not None and holder.stdin is not None
    fd, out_fd = mover.fileno(), holder.stdout.fileno()
    out = b""
    try:
        while not out.endswith(b"\n"):
            ready, _, _ = select.select([fd, out_fd], [], [], 1.0)
            if fd in ready:
                mover.on_readable()
            if out_fd in ready:
                chunk = os.read(out_fd, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"the spawner ended early ({holder.wait()})")
                out += chunk
        seconds = time.monotonic() - start
        load = os.getloadavg()[0]
        while select.select([fd], [], [], 0.5)[0]:  # the tail still queued
            mover.on_readable()
        spawned: list[list[int]] = json.loads(out)
        # Placed: in web in both hierarchies (the sleeps are alive: the holder keeps them).
        cpuset, memory = ({int(x) for x in (d / "cgroup.procs").read_text().split()} for d in web)
        unplaced = sum(1 for pid, _ in spawned if pid not in cpuset & memory)
        moved = {p: m for p, m in records.items() if m.outcome == "moved"}
        by_event = sum(1 for pid, _ in spawned if pid in moved and moved[pid].event_ns)
        by_rescan = sum(1 for pid, _ in spawned if pid in moved and not moved[pid].event_ns)
        lat = [(moved[pid].done_ns - t) / 1e6 for pid, t in spawned if pid in moved]
    finally:
        holder.stdin.close()
        holder.wait(60)
    return Burst(
        n,
        by_event,
        by_rescan,
        unplaced,
        mover.stats.overruns - overruns0,
        mover.stats.rescans - rescans0,
        seconds,
        load,
        lat,
    )


@dataclass
class Phase:
    spawned: int
    moved: int
    seen_gone: int
    never_seen: int
    overruns: int
    seconds: float
    latencies_ms: list[float]


def run_phase(
    mover: RuleMover, records: dict[int, Move], cmd: tuple[str, str, str], n: int, gap: float
) -> Phase:
    """Spawn ``n`` of ``cmd`` (path, argv0, arg) ``gap`` seconds apart while moving."""
    exe, argv0, arg = cmd
    records.clear()
    overruns0 = mover.stats.overruns
    start = time.monotonic()
    spawner = subprocess.Popen(
        [sys.executable, "-c", SPAWNER, exe, argv0, arg, str(n), str(gap)], stdout=subprocess.PIPE
    )
    assert spawner.stdout is not None
    fd = mover.fileno()
    out = b""
    while spawner.poll() is None or not out:
        ready, _, _ = select.select([fd, spawner.stdout.fileno()], [], [], 1.0)
        if fd in ready:
            mover.on_readable()
        if spawner.stdout.fileno() in ready:
            out += spawner.stdout.read()
    seconds = time.monotonic() - start
    # Tail: events still queued after the spawner ended.
    while select.select([fd], [], [], 0.3)[0]:
        mover.on_readable()
    pids: list[int] = json.loads(out)
    moved = sum(1 for p in pids if p in records and records[p].outcome == "moved")
    seen = sum(1 for p in pids if p in records)
    lat = [
        (records[p].done_ns - records[p].event_ns) / 1e6
        for p in pids
        if p in records and records[p].outcome == "moved" and records[p].event_ns
    ]
    return Phase(n, moved, seen - moved, n - seen, mover.stats.overruns - overruns0, seconds, lat)


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q / 100 * len(s)))] if s else float("nan")


def cleanup(name: str) -> None:
    for root in (MEMORY, CPUSET):
        top = root / name
        for d in (top / "web", top):
            if not d.is_dir():
                continue
            end = time.monotonic() + 10
            while True:
                for pid in (d / "cgroup.procs").read_text().split():
                    with contextlib.suppress(ProcessLookupError):
                        (root / "cgroup.procs").write_text(pid)
                try:
                    d.rmdir()
                    break
                except OSError:
                    if time.monotonic() > end:
                        raise
                    select.select([], [], [], 0.01)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency", type=int, default=500, help="processes for the latency run")
    ap.add_argument("--bursts", default="1000,5000,10000")
    ap.add_argument("--rcvbuf", type=int, default=DEFAULT_RCVBUF, help="socket buffer asked")
    ap.add_argument(
        "--small-rcvbuf",
        type=int,
        default=16 << 10,
        help="a second buffer, small enough to overrun",
    )
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    if os.geteuid() != 0 or not (CPUSET / "cpuset.mems").exists():
        print("needs root and cgroup v1 cpuset+memory at /sys/fs/cgroup", file=sys.stderr)
        return 2
    name = f"zoned-bench-{os.getpid()}"
    marker = f"zoned-bench-marker-{os.getpid()}"
    sleep = str(Path(shutil.which("sleep") or "/bin/sleep").resolve())
    backend = Cgroup1Backend(
        parent=name,
        cpuset_root=CPUSET,
        memory_root=MEMORY,
        enable_memory_pressure=False,
        pressure_level=None,
        watch_oom=False,
    )
    records: dict[int, Move] = {}

    def record(m: Move) -> None:  # the first outcome, unless a later one is the move
        if m.outcome == "moved" or m.pid not in records:
            records[m.pid] = m

    rows: list[str] = []
    try:
        backend.ensure(ContainerDecl("web", Amount.nodes(1), Amount.nodes(1)), frozenset({0}))
        rules = RuleSet(
            [("web", [MatchRule(cmdline=Pattern.parse(f"re:^{marker} "))])], {"web": f"{name}/web"}
        )
        web = [CPUSET / name / "web", MEMORY / name / "web"]
        for rcvbuf in (args.rcvbuf, args.small_rcvbuf):
            mover = RuleMover(backend, rules, watch=ProcWatch(rcvbuf=rcvbuf), on_move=record)
            granted = mover.watch.rcvbuf if mover.watch else 0
            mover.start()
            try:
                if rcvbuf == args.rcvbuf and args.latency:
                    ph = run_phase(mover, records, (sleep, marker, "0.3"), args.latency, 0.002)
                    lat = ph.latencies_ms
                    rows.append(
                        f"| latency, {ph.spawned} execs 2 ms apart | {granted >> 10} KiB |"
                        f" {ph.moved} of {ph.spawned} | - | - | {ph.overruns} | - |"
                        f" {os.getloadavg()[0]:.2f} | p50 {pct(lat, 50):.2f} ms,"
                        f" p99 {pct(lat, 99):.2f} ms, max {max(lat, default=float('nan')):.2f} ms"
                        " (from the exec event) |"
                    )
                    print(rows[-1], flush=True)
                for n in (int(x) for x in args.bursts.split(",")):
                    b = run_burst(mover, records, (sleep, marker, "3600"), n, web)
                    lat = b.latencies_ms
                    rows.append(
                        f"| burst of {n} sleeps ({n / b.seconds:.0f}/s) | {granted >> 10} KiB |"
                        f" {b.by_event} | {b.by_rescan} | **{b.unplaced}** | {b.overruns} |"
                        f" {b.rescans} | {b.load:.2f} | p50 {pct(lat, 50):.2f} ms,"
                        f" p99 {pct(lat, 99):.2f} ms, max {max(lat, default=float('nan')):.0f} ms |"
                    )
                    print(rows[-1], flush=True)
            finally:
                mover.close()
    finally:
        backend.close()
        cleanup(name)
    table = "\n".join(
        [
            "| run | socket buffer (granted) | placed from its event | placed by a rescan"
            " | unplaced | overruns | rescans | load (1 min) | exec → in container |",
            "|---|---|---|---|---|---|---|---|---|",
            *rows,
        ]
    )
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.machine(),
    )
    text = (
        f"{SECTION}\n\n"
        "`bench/exec_latency.py` (root, cgroup v1): a `RuleMover` on the real process connector"
        " moves processes whose argv[0] carries a marker into a container; the spawner is a"
        " separate process using posix_spawn. The latency run times each move from the"
        " kernel's exec event timestamp to the end of the two `cgroup.procs` writes (cpuset,"
        " memory). Bursts spawn long-lived sleeps as fast as posix_spawn goes and hold them"
        " until the mover is idle; then every one must be in the container in both"
        ' hierarchies ("unplaced" counts those that are not). A burst whose events overflow'
        " the socket's buffer (ENOBUFS: an overrun) is placed by a rescan of /proc; their"
        " latency counts from posix_spawn's return, so a lost event shows as latency. The"
        " second buffer is small on purpose, to make overruns happen. Load is the 1-minute"
        " load average when the burst's spawning ended.\n\n"
        f"Machine: {cpu}, {os.cpu_count()} CPUs; kernel {platform.release()};"
        f" commit {commit()}; {datetime.date.today().isoformat()}.\n\n{table}\n"
    )
    print(text)
    if not args.no_write:
        write_section(text)
    return 0


def commit() -> str:
    return runinfo.commit()


def write_section(text: str) -> None:
    """Replace (or append) this section of docs/benchmarks.md; other sections stay."""
    DOC.parent.mkdir(exist_ok=True)
    old = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    if SECTION in old:
        head, _, rest = old.partition(SECTION)
        nxt = rest.find("\n## ")
        tail = rest[nxt + 1 :] if nxt >= 0 else ""
        new = head + text + ("\n" + tail if tail else "")
    else:
        new = old.rstrip("\n") + "\n\n" + text
    DOC.write_text(new)


if __name__ == "__main__":
    sys.exit(main())
