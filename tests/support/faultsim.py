"""The fault-injection suite on a fake four-node v1 tree (tests/test_faults_sim.py and
bench/fault_points.py): the daemon's steps (admission, lend, reclaim with evacuation,
directed reclaim) driven through the real engine and v1 backend; a kill at a named point or
an errno at one write; then a restart as the daemon does it (adopt what the kernel holds,
admit) and the checks: the zone map equals what the kernel holds, no node is in two
containers' cpusets, no cgroup is left that nobody declared, no memcg limit is left lowered.

Processes cannot be lost or split on a fake tree (no kernel moves them); the real-v1 suite
(tests/test_faults_v1.py) counts those.
"""

from __future__ import annotations

import errno
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.fakes.v1tree import NO_LIMIT, NODE0_MEMINFO, FakeV1Tree
from tests.support.faults import ErrnoAt, Killer
from zoned.backends.cgroup1 import Cgroup1Backend
from zoned.config.decl import Declarations
from zoned.config.load import loads
from zoned.engine import Engine
from zoned.errors import ZonedError
from zoned.kernel import faults
from zoned.model.actions import Lend, Reclaim
from zoned.model.host import EventKind
from zoned.model.zonemap import FREE
from zoned.policy.adopt import initial_map

NODES = 4
CONFIG = """\
host: {hierarchy: v1, reserved_nodes: [0]}
policy: {cooldown_s: 0}
containers:
  web: {min: {nodes: 1}, max: {nodes: 2}, priority: 10}
  other: {min: {nodes: 1}, max: {nodes: 2}}
"""
ERRNOS = (errno.EBUSY, errno.ENOSPC, errno.EINVAL, errno.ENOENT)
MIB = 1 << 20


def four_nodes(tree: FakeV1Tree) -> None:
    """Give the fake machine nodes 0-3 (sysfs and the root cpuset)."""
    node = tree.sys_root / "devices" / "system" / "node"
    for n in range(NODES):
        d = node / f"node{n}"
        d.mkdir(parents=True, exist_ok=True)
        (d / "meminfo").write_text(NODE0_MEMINFO.replace("Node 0", f"Node {n}"))
        (d / "cpulist").write_text("0-1\n" if n == 0 else "\n")
        (d / "distance").write_text(" ".join("10" if m == n else "20" for m in range(NODES)))
    (node / "online").write_text(f"0-{NODES - 1}\n")
    for f in ("cpuset.mems", "cpuset.effective_mems"):
        tree.cpuset.path("", f).write_text(f"0-{NODES - 1}\n")


@dataclass
class Host:
    """One fake machine and the daemon running on it (the latest start)."""

    tmp: Path
    tree: FakeV1Tree = field(init=False)
    decls: Declarations = field(init=False)
    backend: Cgroup1Backend | None = None
    engine: Engine | None = None

    def __post_init__(self) -> None:
        self.tree = FakeV1Tree(self.tmp / "host", nodes=f"0-{NODES - 1}")
        four_nodes(self.tree)
        self.decls = loads(CONFIG)

    @property
    def state_dir(self) -> Path:
        return self.tmp / "run"

    def start(self) -> Engine:
        """What the daemon does at start: adopt what the kernel holds, then admit."""
        b = Cgroup1Backend(
            proc_root=self.tree.proc_root,
            sys_root=self.tree.sys_root,
            fs_factory=self.tree.fs_for,
            page_size=4096,
            state_dir=self.state_dir,
        )
        self.backend = b
        zmap, _ = initial_map(
            b.topology(), self.decls, b.existing(), {}, now=b.now(), wall_now=time.time()
        )
        self.engine = Engine(b, self.decls, zmap)
        self.engine.admit()
        self.engine.step([])
        return self.engine

    def stop(self) -> None:
        """The process ends (its fds close); nothing is cleaned up in the cgroups."""
        if self.backend is not None:
            self.backend.close()
        self.backend = self.engine = None

    def settle(self) -> None:
        """Step until no hand-over is in flight (bounded: a stuck one fails the check)."""
        e, b = self.engine, self.backend
        assert e is not None and b is not None
        end = time.monotonic() + 10
        while e.pending() and time.monotonic() < end:
            e.step(b.wait(0.2))


def free_node(e: Engine) -> int | None:
    return next((n for n, a in sorted(e.zonemap.assignments.items()) if a.owner == FREE), None)


def steps(h: Host) -> None:
    """The daemon's life: start (admission), a lend, a reclaim (evacuate, give), a
    directed reclaim. A step whose container is not managed (its admission failed) or
    whose node is gone is skipped, as the policy would not decide it."""
    e = h.start()
    b = h.backend
    assert b is not None
    node = free_node(e)
    if node is not None and "web" in e.managed:
        e.override(Lend(node, "web", "fault suite: lend"))
        h.settle()
    if (
        node is not None
        and {"web", "other"} <= set(e.managed)
        and node in e.zonemap.nodes_of("web")
    ):
        e.override(Reclaim(node, "web", "other", "fault suite: reclaim"))
        h.settle()
    if "other" not in e.managed or not h.tree.memory.exists("zoned/other"):
        return
    h.tree.set_memory("zoned/other", "memory.usage_in_bytes", str(64 * MIB))
    op = b.start_reclaim("other", 32 * MIB, 10.0)
    end, done = time.monotonic() + 10, False
    while not done and time.monotonic() < end:
        events = b.wait(0.2)
        done = any(ev.kind is EventKind.OP_FINISHED and ev.op == op for ev in events)
        e.step(events)


def release_all(h: Host) -> list[str]:
    """``--release-on-stop``, as the daemon's shutdown does it: errors are logged lines."""
    e, b = h.engine, h.backend
    assert e is not None and b is not None
    lines: list[str] = []
    for name in list(e.managed):
        try:
            b.release(name)
        except ZonedError as exc:
            lines.append(f"release {name}: {exc}")
    return lines


def problems(h: Host) -> list[str]:
    """What is inconsistent now between the engine's map and the fake kernel."""
    e, b = h.engine, h.backend
    assert e is not None and b is not None
    out: list[str] = []
    if e.pending():
        out.append(f"still in flight: {e.pending()}")
    held: dict[int, str] = {}
    for name in e.managed:
        nodes = b.state(name).nodes
        if nodes != e.zonemap.nodes_of(name):
            out.append(f"{name}: map {sorted(e.zonemap.nodes_of(name))}, kernel {sorted(nodes)}")
        for n in nodes:
            if n in held:
                out.append(f"node {n} in the cpusets of {held[n]} and {name}")
            held[n] = name
        limit = h.tree.memory.read(b.path_of(name), "memory.limit_in_bytes")
        # The tripwire's hold is a limit of zoned's own (issue 13); any other is left over.
        if limit != NO_LIMIT and int(limit) != b.held_limit(name):
            out.append(f"{name}: memory.limit_in_bytes left at {limit}")
    declared = {c.name for c in h.decls.containers}
    for fs in (h.tree.cpuset, h.tree.memory):
        if fs.exists("zoned"):
            extra = {c.rsplit("/", 1)[-1] for c in fs.children("zoned")} - declared
            if extra:
                out.append(f"{fs.root.name}: cgroups nobody declared: {sorted(extra)}")
    return out


def after_restart(h: Host) -> list[str]:
    """Restart the daemon as systemd would, settle, and check."""
    h.stop()
    h.start()
    h.settle()
    found = problems(h)
    missing = {c.name for c in h.decls.containers} - set(h.engine.managed if h.engine else [])
    if missing:
        found.append(f"not managed after the restart: {sorted(missing)}")
    return found


@dataclass
class Tally:
    """What the suite tried and found."""

    points: list[str] = field(default_factory=list)  # kill points reached
    injected: list[str] = field(default_factory=list)  # errno injections made
    failures: list[str] = field(default_factory=list)


def run_kill(tmp: Path, point: str, tally: Tally, nth: int = 1) -> None:
    """Kill at the ``nth`` pass of ``point`` during the steps, restart, check."""
    h = Host(tmp)
    killer = Killer(point, nth)
    try:
        with faults.installed(killer.point, killer.write):
            steps(h)
            release_all(h)
    except faults.Killed:
        pass
    if not killer.dead:
        h.stop()
        return
    tally.points.append(f"{point}#{nth}")
    tally.failures += [f"kill at {point}#{nth}: {p}" for p in after_restart(h)]
    h.stop()


def clean_run(tmp: Path) -> tuple[int, list[str]]:
    """The steps without faults: how many writes they make, and the points they pass."""
    h = Host(tmp)
    counter = ErrnoAt(-1, 0)
    with faults.installed(counter.point, counter.write):
        steps(h)
        release_all(h)
    h.stop()
    return counter.count, counter.points


def count_writes(tmp: Path) -> int:
    return clean_run(tmp)[0]


def passes(points: list[str]) -> list[tuple[str, int]]:
    """Every (point, n-th pass) in a run's ``points``."""
    return [(p, points[: i + 1].count(p)) for i, p in enumerate(points)]


def vanish(tree: FakeV1Tree) -> Callable[[str, str], None]:
    """ENOENT is a cgroup that vanished: remove the written cgroup (a container) first."""

    def hook(path: str, value: str) -> None:
        p = Path(path)
        cg = p if value in ("mkdir", "rmdir") else p.parent
        for root in (tree.cpuset_root, tree.memory_root):
            rel = cg.relative_to(root) if cg.is_relative_to(root) else None
            if rel is not None and len(rel.parts) == 2:  # zoned/<container>
                for r in (tree.cpuset_root, tree.memory_root):
                    shutil.rmtree(r / rel, ignore_errors=True)

    return hook


def run_errno(tmp: Path, nth: int, code: int, tally: Tally) -> None:
    """Answer the ``nth`` write with ``code``: the daemon must log one line and stay
    consistent; a restart must then find everything consistent too."""
    h = Host(tmp)
    inject = ErrnoAt(nth, code)
    gone = vanish(h.tree)

    def write(path: str, value: str) -> None:
        if inject.count == nth and code == errno.ENOENT:
            gone(path, value)
        inject.write(path, value)

    what = f"{errno.errorcode[code]} at write {nth}"
    errors: list[str] = []
    try:
        with faults.installed(inject.point, write):
            steps(h)
            h.settle()
            tally.failures += [f"{what}: {p}" for p in problems(h)]
            errors += [rec.outcome for rec in h.engine.log] if h.engine else []
            errors += release_all(h)
    except ZonedError as exc:  # only a start-up may fail, with one line
        errors.append(str(exc))
    tally.injected.append(f"{what} ({inject.hit})")
    tally.failures += [f"{what}: a multi-line error: {e!r}" for e in errors if "\n" in e]
    tally.failures += [f"{what}, after a restart: {p}" for p in after_restart(h)]
    h.stop()
