"""The fault-injection suite against Cgroup2Backend on a real kernel (numa=fake=8, v2).

The daemon's steps run through the real engine and v2 backend: start (adopt, admit),
two ``sleep`` processes attached, a lend of a free node, a reclaim (evacuate, give),
release-on-stop. Each case stops the daemon at one named point (``Killer``: nothing is
written after it, as after kill -9) or answers one write with EBUSY/ENOSPC/EINVAL/ENOENT;
then a restart (a new backend and engine adopting what the kernel holds) and the checks:
the zone map equals each container's ``cpuset.mems.effective``, no node is in two
containers, no undeclared cgroup is left under the parent, and every process is alive in
its container or where it started (v2 moves a process in one write: it cannot be split).
Counts are recorded as a finding. Every wait is bounded; no test sleeps.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.faults import ErrnoAt, Killer
from zoned.backends.cgroup2 import Cgroup2Backend
from zoned.config.decl import Declarations
from zoned.config.load import loads
from zoned.engine import Engine
from zoned.errors import ZonedError
from zoned.kernel import faults
from zoned.model.actions import Lend, Reclaim
from zoned.model.host import is_internal
from zoned.model.zonemap import FREE
from zoned.policy.adopt import initial_map

from .cgtools import remove_tree, write
from .conftest import Finding

pytestmark = pytest.mark.boot(cgroup="v2", numa="8")

ROOT = Path("/sys/fs/cgroup")
PARENT = "zoned-vmtest-faults"
NAMES = ("web", "other")
CONFIG = f"""\
host: {{hierarchy: v2, parent: {PARENT}, reserved_nodes: [0, 7]}}
policy: {{cooldown_s: 0}}
containers:
  web: {{min: {{nodes: 1}}, max: {{nodes: 2}}, priority: 10}}
  other: {{min: {{nodes: 1}}, max: {{nodes: 2}}}}
"""
V2_POINTS = (
    "admit.cpuset_created",
    "admit.mems_written",
    "set_nodes.started",
    "set_nodes.mems_written",
)
CODES = (errno.EBUSY, errno.ENOSPC, errno.EINVAL, errno.ENOENT)
SETTLE_S = 60.0  # TCG: page migration of a sleep's few pages, generous


@dataclass
class Daemon:
    decls: Declarations
    sleeps: list[subprocess.Popen[bytes]] = field(default_factory=list)
    backend: Cgroup2Backend | None = None
    engine: Engine | None = None

    def start(self) -> Engine:
        b = Cgroup2Backend(ROOT, PARENT)
        self.backend = b
        zmap, _ = initial_map(
            b.topology(), self.decls, b.existing(), {}, now=b.now(), wall_now=time.time()
        )
        self.engine = Engine(b, self.decls, zmap)
        self.engine.admit()
        self.engine.step([])
        return self.engine

    def stop(self) -> None:
        """The process ends: its fds close, nothing is cleaned up."""
        if self.backend is not None:
            self.backend.close()
        self.backend = self.engine = None

    def settle(self) -> None:
        e, b = self.engine, self.backend
        assert e is not None and b is not None
        end = time.monotonic() + SETTLE_S
        while e.pending() and time.monotonic() < end:
            e.step(b.wait(min(1.0, max(0.0, end - time.monotonic()))))


def steps(d: Daemon) -> None:
    """Start, attach, lend, reclaim, release-on-stop (a step whose container is not
    managed is skipped, as the daemon would not take it)."""
    e = d.start()
    b = d.backend
    assert b is not None
    for name, p in zip(NAMES, d.sleeps, strict=True):
        if name in e.managed:
            with contextlib.suppress(ZonedError):  # refused: logged by the mover, stays put
                b.attach(name, p.pid)
    node = next((n for n, a in sorted(e.zonemap.assignments.items()) if a.owner == FREE), None)
    if node is not None and "web" in e.managed:
        e.override(Lend(node, "web", "fault suite: lend"))
        d.settle()
    if node is not None and set(NAMES) <= set(e.managed) and node in e.zonemap.nodes_of("web"):
        e.override(Reclaim(node, "web", "other", "fault suite: reclaim"))
        d.settle()
    for name in list(e.managed):
        with contextlib.suppress(ZonedError):
            b.release(name)


def where(pid: int) -> str | None:
    try:
        text = Path(f"/proc/{pid}/cgroup").read_text()
    except FileNotFoundError:
        return None
    return next((ln[3:].strip("/") for ln in text.splitlines() if ln.startswith("0::")), "")


def problems(d: Daemon, started_in: dict[int, str]) -> list[str]:
    e, b = d.engine, d.backend
    assert e is not None and b is not None
    out: list[str] = []
    held: dict[int, str] = {}
    for name in NAMES:
        if name not in e.managed:
            out.append(f"{name} not managed after the restart")
            continue
        nodes = b.state(name).nodes
        if nodes != e.zonemap.nodes_of(name):
            out.append(f"{name}: map {sorted(e.zonemap.nodes_of(name))}, kernel {sorted(nodes)}")
        for n in nodes:
            if n in held:
                out.append(f"node {n} in {held[n]} and {name}")
            held[n] = name
    extra = {
        c.name for c in (ROOT / PARENT).iterdir() if c.is_dir() and not is_internal(c.name)
    } - set(NAMES)
    if extra:
        out.append(f"undeclared cgroups {sorted(extra)}")
    for p in d.sleeps:
        w = where(p.pid) if p.poll() is None else None
        if w is None:
            out.append(f"pid {p.pid} lost (died)")
        elif w not in (started_in[p.pid], *(f"{PARENT}/{n}" for n in NAMES)):
            out.append(f"pid {p.pid} lost in /{w}")
    return out


@contextlib.contextmanager
def daemon() -> Iterator[tuple[Daemon, dict[int, str]]]:
    remove_tree(ROOT / PARENT, ROOT)
    d = Daemon(loads(CONFIG))
    d.sleeps = [subprocess.Popen(["sleep", "600"]) for _ in NAMES]
    started_in = {p.pid: where(p.pid) or "" for p in d.sleeps}
    try:
        yield d, started_in
    finally:
        d.stop()
        for p in d.sleeps:
            p.kill()
            p.wait(timeout=30)
        write(ROOT / "cgroup.procs", str(os.getpid()))  # prepare() moved this process
        remove_tree(ROOT / PARENT, ROOT)


def restart_and_check(d: Daemon, started_in: dict[int, str]) -> list[str]:
    d.stop()
    d.start()
    d.settle()
    return problems(d, started_in)


def clean_run() -> tuple[int, list[str]]:
    """The steps without faults: (writes made, points passed in order)."""
    with daemon() as (d, _):
        counter = ErrnoAt(-1, 0)
        with faults.installed(counter.point, counter.write):
            steps(d)
    return counter.count, counter.points


def test_a_kill_at_every_pass_of_each_point_then_a_restart(finding: Finding) -> None:
    """Every pass: each container's admission, the lend's give, the evacuation and the
    reclaim's give all pass set_nodes.*."""
    _, seen = clean_run()
    passes = [(p, seen[: i + 1].count(p)) for i, p in enumerate(seen)]
    assert {p for p, _ in passes} == set(V2_POINTS)
    failures: list[str] = []
    for point, nth in passes:
        with daemon() as (d, started_in):
            killer = Killer(point, nth)
            with contextlib.suppress(faults.Killed), faults.installed(killer.point, killer.write):
                steps(d)
            if not killer.dead:
                failures.append(f"{point}#{nth} was never reached")
                continue
            failures += [f"{point}#{nth}: {p}" for p in restart_and_check(d, started_in)]
    finding(
        "v2 fault injection: kill passes, points, problems",
        {"passes": len(passes), "points": len(V2_POINTS), "problems": len(failures)},
    )
    assert failures == []


def test_an_errno_at_each_write_then_a_restart(finding: Finding) -> None:
    writes, _ = clean_run()
    assert writes > 10
    failures: list[str] = []
    tried = 0
    for nth in range(writes):
        code = CODES[nth % len(CODES)]  # each write once, the errnos in turn (TCG is slow)
        with daemon() as (d, started_in):
            inject = ErrnoAt(nth, code)
            errors: list[str] = []
            try:
                with faults.installed(inject.point, inject.write):
                    steps(d)
                errors += [r.outcome for r in d.engine.log] if d.engine else []
            except ZonedError as exc:
                errors.append(str(exc))
            what = f"{errno.errorcode[code]} at write {nth} ({inject.hit})"
            failures += [f"{what}: multi-line {e!r}" for e in errors if "\n" in e]
            failures += [f"{what}: {p}" for p in restart_and_check(d, started_in)]
            tried += 1
    finding(
        "v2 fault injection: errno runs, writes, problems",
        {"runs": tried, "writes": writes, "problems": len(failures)},
    )
    assert failures == []
