"""The v1 backend against the build machine's real cgroup v1 hierarchies (root only).

Every test works in its own ``zoned-test-<pid>-<n>`` cgroup directly under each
hierarchy's root, and removes it afterwards whatever happens: its child processes are
killed, anything left inside is moved to the root, and cgroups are removed children first.
Nothing else is touched; in particular the root's ``cpuset.memory_pressure_enabled`` is
read, never written. Every wait has a deadline; no test sleeps.

Measured values are printed (``pytest -s``) and recorded in docs/kernel-checks.md.
"""

from __future__ import annotations

import errno
import itertools
import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.cgroups import RecordingFs, remove_cgroup_tree
from tests.support.realhost import V1_CPUSET, V1_MEMORY
from zoned.backends.cgroup1 import LIMIT_SLACK, Cgroup1Backend
from zoned.config.decl import Amount, ContainerDecl
from zoned.errors import BackendError, WriteRefused
from zoned.kernel.cgroupfs import CgroupFs
from zoned.kernel.hierarchy import v1_roots
from zoned.model.host import Event, EventKind

pytestmark = pytest.mark.root

MIB = 1 << 20
NO_LIMIT = "9223372036854771712"
N0 = frozenset({0})
WEB = ContainerDecl("web", Amount.nodes(1), Amount.nodes(1))
_serial = itertools.count()

# A child that allocates (touching every page, 1 MiB at a time, timing each MiB on the
# system-wide monotonic clock), frees, or reads a file through the page cache on command.
CHILD = r"""
import json, sys, time
held = []
for line in sys.stdin:
    cmd, _, arg = line.strip().partition(" ")
    times = []
    if cmd == "alloc":
        for _ in range(int(arg)):
            b = bytearray(1 << 20)
            for i in range(0, len(b), 4096):
                b[i] = 1
            held.append(b)
            times.append(time.monotonic())
    elif cmd == "free":
        held.clear()
    elif cmd == "read":
        with open(arg, "rb", buffering=0) as f:
            while f.read(1 << 20):
                pass
    print("ok " + json.dumps(times), flush=True)
"""


@dataclass
class Child:
    proc: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def reply(self, deadline_s: float) -> list[float] | None:
        """The child's answer (per-MiB timestamps), or None if it died first."""
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], deadline_s)
        if not ready:
            pytest.fail(f"child {self.pid} did not answer within {deadline_s} s")
        line = self.proc.stdout.readline().decode()
        if not line:
            return None
        times: list[float] = json.loads(line.removeprefix("ok "))
        return times

    def do(self, line: str, deadline_s: float = 20.0) -> list[float] | None:
        self.send(line)
        return self.reply(deadline_s)


@dataclass
class Sandbox:
    """This test's own cgroup (same name in both hierarchies) and what runs in it."""

    name: str
    backends: list[Cgroup1Backend] = field(default_factory=list)
    children: list[Child] = field(default_factory=list)

    def backend(
        self,
        fs_factory: Callable[[Path], CgroupFs] = CgroupFs,
        *,
        tripwire_limit: bool = True,
        state_dir: Path | None = None,
    ) -> Cgroup1Backend:
        b = Cgroup1Backend(
            parent=self.name,
            cpuset_root=V1_CPUSET,
            memory_root=V1_MEMORY,
            enable_memory_pressure=False,  # host-wide switch: never flipped by tests
            fs_factory=fs_factory,
            tripwire_limit=tripwire_limit,
            state_dir=state_dir,
        )
        self.backends.append(b)
        return b

    def spawn(self) -> Child:
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        child = Child(proc)
        self.children.append(child)
        return child

    @property
    def path(self) -> str:
        return f"{self.name}/web"


@pytest.fixture
def sandbox(real_v1: tuple[Path, Path]) -> Iterator[Sandbox]:
    box = Sandbox(f"zoned-test-{os.getpid()}-{next(_serial)}")
    enabled_before = (V1_CPUSET / "cpuset.memory_pressure_enabled").read_text()
    try:
        yield box
    finally:
        for b in box.backends:
            b.close()
        for c in box.children:
            c.proc.kill()
            c.proc.wait(timeout=10)
            for stream in (c.proc.stdin, c.proc.stdout):
                if stream is not None:
                    stream.close()
        for root in real_v1:
            remove_cgroup_tree(root, box.name)
        assert (V1_CPUSET / "cpuset.memory_pressure_enabled").read_text() == enabled_before


def wait_for(
    b: Cgroup1Backend, done: Callable[[list[Event]], bool], deadline_s: float
) -> list[Event]:
    """Events until ``done(events)``; fails at the deadline."""
    end = time.monotonic() + deadline_s
    seen: list[Event] = []
    while not done(seen):
        left = end - time.monotonic()
        if left <= 0:
            pytest.fail(f"no matching event within {deadline_s} s; got {seen}")
        seen += b.wait(left)
    return seen


def kinds(events: list[Event]) -> set[EventKind]:
    return {e.kind for e in events}


def cold_file(path: Path, size: int) -> Path:
    """A file of ``size`` bytes on a disk filesystem, written back and dropped from the
    page cache (so whoever reads it next is charged for its pages)."""
    with path.open("wb") as f:
        chunk = os.urandom(MIB)
        for _ in range(size // MIB):
            f.write(chunk)
        f.flush()
        os.fsync(f.fileno())
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    return path


# ---------------------------------------------------------------------------------------


def test_mountinfo_names_the_real_hierarchies(real_v1: tuple[Path, Path]) -> None:
    assert v1_roots(Path("/proc")) == real_v1


def test_container_created_with_its_mems_and_a_process_moved_in(sandbox: Sandbox) -> None:
    b = sandbox.backend()
    st = b.ensure(WEB, N0)
    assert st.nodes == N0
    cs = b.cpuset
    assert cs.read(sandbox.path, "cpuset.cpus") == cs.read("", "cpuset.effective_cpus")
    assert cs.read(sandbox.path, "cpuset.memory_migrate") == "1"
    child = sandbox.spawn()
    b.attach("web", child.pid)
    assert b.processes("web") == (child.pid,)
    assert child.pid in b.memory.pids(sandbox.path)
    child.do("alloc 16")
    u = b.usage("web")
    assert u.current >= 16 * MIB
    assert u.anon >= 15 * MIB
    assert u.per_node[0].anon >= 15 * MIB
    pressure = b.memory_pressure("web")  # None unless enabled at the root (never here)
    assert pressure is None or pressure >= 0
    print(f"\nusage after 16 MiB: current={u.current} anon={u.anon} node0={u.per_node[0]}")


def test_usage_threshold_eventfd_fires_on_allocation(sandbox: Sandbox) -> None:
    b = sandbox.backend(tripwire_limit=False)  # the threshold alone: it only notifies
    b.ensure(WEB, N0)
    child = sandbox.spawn()
    b.attach("web", child.pid)
    base = b.usage("web").current
    wire = base + 32 * MIB
    b.arm_tripwire("web", wire)
    assert b.wait(0) == []
    sent = time.monotonic()
    child.send("alloc 64")
    events = wait_for(b, lambda ev: EventKind.TRIPWIRE in kinds(ev), 10)
    times = child.reply(20)
    assert times is not None
    (ev,) = [e for e in events if e.kind is EventKind.TRIPWIRE]
    assert ev.value is not None and ev.value >= wire
    # The MiB whose touch crossed the wire (approximate: other charges move it a little).
    crossing = times[min(len(times) - 1, (wire - base) // MIB - 1)]
    print(
        f"\ntripwire at {wire - base} B above base: event {ev.at - sent:.4f} s after the "
        f"command, {ev.at - crossing:+.4f} s after the crossing MiB was touched; usage at "
        f"event {ev.value - wire} B over the wire; allocation of 64 MiB took "
        f"{times[-1] - sent:.3f} s"
    )
    assert b.state("web").tripwire is None  # fired once, disarmed


def test_tripwire_limit_holds_a_grower_until_raised(sandbox: Sandbox) -> None:
    """The default v1 tripwire: a limit with the OOM killer off. The grower waits at it
    (not killed), the engine hears one TRIPWIRE and then PRESSURE while it waits (the oom
    eventfd with under_oom), and raising the tripwire lets it finish. Closing the backend puts the
    limit and the OOM killer back."""
    b = sandbox.backend()
    b.ensure(WEB, N0)
    child = sandbox.spawn()
    b.attach("web", child.pid)
    before = b.memory.read(sandbox.path, "memory.limit_in_bytes").strip()
    wire = b.usage("web").current + 32 * MIB
    b.arm_tripwire("web", wire)
    sent = time.monotonic()
    child.send("alloc 64")
    events = wait_for(b, lambda ev: EventKind.TRIPWIRE in kinds(ev), 10)
    held = wait_for(
        b, lambda ev: any(e.kind is EventKind.PRESSURE and "under_oom" in e.detail for e in ev), 10
    )
    oc = b.oom_control("web")
    assert oc["oom_kill_disable"] == 1 and oc["oom_kill"] == 0, oc
    assert b.usage("web").current <= wire + LIMIT_SLACK
    assert child.proc.poll() is None  # waiting, not killed
    raised = time.monotonic()
    b.arm_tripwire("web", wire + 64 * MIB)
    times = child.reply(20)
    assert times is not None and len(times) == 64, "the grower did not finish after the raise"
    assert b.oom_control("web")["oom_kill"] == 0
    print(
        f"\nlimit tripwire: TRIPWIRE {events[0].at - sent:.3f} s after the command; "
        f"{len(held)} more events while held; finished {time.monotonic() - raised:.3f} s "
        "after the raise"
    )
    b.close()
    assert b.memory.read(sandbox.path, "memory.limit_in_bytes").strip() == before
    assert b.memory.read_keyed(sandbox.path, "memory.oom_control")["oom_kill_disable"] == 0


def test_oom_control_reports_an_oom_kill(sandbox: Sandbox) -> None:
    b = sandbox.backend()
    b.ensure(WEB, N0)
    b.memory.write(sandbox.path, "memory.limit_in_bytes", str(48 * MIB))
    child = sandbox.spawn()
    b.attach("web", child.pid)
    sent = time.monotonic()
    child.send("alloc 128")
    events = wait_for(b, lambda ev: {EventKind.OOM, EventKind.OOM_KILL} <= kinds(ev), 10)
    assert child.proc.wait(timeout=10) == -9
    oc = b.oom_control("web")
    oom = next(e for e in events if e.kind is EventKind.OOM)
    kill = next(e for e in events if e.kind is EventKind.OOM_KILL)
    n_pressure = sum(e.value or 0 for e in events if e.kind is EventKind.PRESSURE)
    print(
        f"\nOOM {oom.at - sent:.3f} s and OOM_KILL {kill.at - sent:.3f} s after the command "
        f"({n_pressure} pressure signals before); oom_control {oc}"
    )
    assert oc["oom_kill"] >= 1
    assert oc["under_oom"] == 0  # over once the victim died


def test_pressure_level_fires_on_page_cache_reclaim(sandbox: Sandbox, tmp_path: Path) -> None:
    data = cold_file(tmp_path / "cache-fill", 128 * MIB)
    b = sandbox.backend()
    b.ensure(WEB, N0)
    b.memory.write(sandbox.path, "memory.limit_in_bytes", str(32 * MIB))
    child = sandbox.spawn()
    b.attach("web", child.pid)
    sent = time.monotonic()
    child.send(f"read {data}")
    events = wait_for(b, lambda ev: EventKind.PRESSURE in kinds(ev), 20)
    first = next(e for e in events if e.kind is EventKind.PRESSURE)
    assert child.reply(30) is not None  # page cache is reclaimed, never OOM
    more = b.wait(0)
    n = sum(e.value or 0 for e in events + more if e.kind is EventKind.PRESSURE)
    print(
        f"\npressure 'low' first after {first.at - sent:.3f} s ({first.detail}); "
        f"{n} signals while reading 128 MiB through a 32 MiB limit"
    )
    assert EventKind.OOM_KILL not in kinds(events + more)


def test_directed_reclaim_drops_page_cache_and_restores_the_limit(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    data = cold_file(tmp_path / "cache", 96 * MIB)
    b = sandbox.backend()
    b.ensure(WEB, N0)
    child = sandbox.spawn()
    b.attach("web", child.pid)
    child.do(f"read {data}")
    before = b.usage("web")
    assert before.file >= 90 * MIB
    op = b.start_reclaim("web", 48 * MIB, deadline_s=20)
    wait_for(b, lambda ev: any(e.op == op for e in ev), 25)  # reclaim also signals pressure
    res = b.op_result(op)
    print(
        f"\nreclaim 48 MiB from {before.current} B: ok={res.ok} reclaimed={res.reclaimed} "
        f"in {res.seconds:.3f} s"
    )
    assert res.ok, res.error
    assert res.reclaimed >= 44 * MIB
    assert b.memory.read(sandbox.path, "memory.limit_in_bytes") == NO_LIMIT
    assert child.proc.poll() is None  # page cache only: nobody was killed


def test_set_nodes_off_thread_and_verified(sandbox: Sandbox) -> None:
    b = sandbox.backend()
    b.ensure(WEB, N0)
    child = sandbox.spawn()
    b.attach("web", child.pid)
    child.do("alloc 32")
    op = b.start_set_nodes("web", N0, deadline_s=10)
    (ev,) = wait_for(b, lambda ev: any(e.op == op for e in ev), 15)
    res = b.op_result(op)
    assert (res.ok, res.nodes, res.left_behind) == (True, N0, 0)
    op = b.start_set_nodes("web", frozenset({1}), deadline_s=10)
    (ev,) = wait_for(b, lambda ev: any(e.op == op for e in ev), 15)
    assert (ev.ok, ev.errno) == (False, errno.EINVAL)
    assert b.state("web").nodes == N0
    print(f"\nset_nodes (no change) took {res.seconds:.4f} s")


def test_adoption_after_restart_changes_nothing(sandbox: Sandbox) -> None:
    first = sandbox.backend()
    first.ensure(WEB, N0)
    child = sandbox.spawn()
    first.attach("web", child.pid)
    child.do("alloc 16")
    first.close()

    def files() -> dict[str, tuple[int, str]]:
        out = {}
        for root in (V1_CPUSET, V1_MEMORY):
            for cg in (sandbox.name, sandbox.path):
                for p in sorted((root / cg).iterdir()):
                    if (
                        p.is_file()
                        and p.stat().st_mode & 0o444
                        and p.name
                        not in (
                            "memory.pressure_level"  # read gives EINVAL
                        )
                    ):
                        try:
                            text = p.read_text()
                        except OSError:
                            continue
                        out[str(p)] = (p.stat().st_mtime_ns, text)
        return out

    stable = ("cpuset.", "cgroup.procs", "memory.limit_in_bytes")
    before = {k: v for k, v in files().items() if any(s in k for s in stable)}
    recorders: list[RecordingFs] = []

    def recording(root: Path) -> CgroupFs:
        recorders.append(RecordingFs(root))
        return recorders[-1]

    second = sandbox.backend(recording)
    assert set(second.existing()) == {"web"}
    st = second.ensure(WEB, N0)
    assert st.pids == (child.pid,)
    after = {k: v for k, v in files().items() if k in before}
    changed = {k for k in before if before[k][1] != after[k][1]}
    assert changed <= {f"{V1_CPUSET}/{sandbox.path}/cpuset.memory_pressure"}
    written = {f for r in recorders for _, f, _ in r.writes}
    assert written == {"cgroup.event_control"}  # registrations only, no settings


def test_rmdir_signals_gone(sandbox: Sandbox) -> None:
    b = sandbox.backend()
    b.ensure(WEB, N0)
    b.arm_tripwire("web", 64 * MIB)
    removed = time.monotonic()
    (V1_MEMORY / sandbox.path).rmdir()
    events = wait_for(b, lambda ev: EventKind.GONE in kinds(ev), 5)
    assert [e.kind for e in events] == [EventKind.GONE]
    print(f"\nGONE {events[0].at - removed:.4f} s after rmdir")
    assert b.wait(0.1) == []  # the other registrations' signals were absorbed


def test_kernel_errnos(sandbox: Sandbox) -> None:
    """The errnos docs/kernel-checks.md records (6.18 on the build machine)."""
    cs = CgroupFs(V1_CPUSET)
    top, kid = sandbox.name, f"{sandbox.name}/kid"
    cs.mkdir(top)
    got: dict[str, int | None] = {}

    def attempt(what: str, file: str, cgroup: str, value: str) -> None:
        try:
            cs.write(cgroup, file, value)
            got[what] = 0
        except BackendError as exc:
            got[what] = exc.errno

    child = sandbox.spawn()
    attempt("task into a cpuset with empty cpus/mems", "cgroup.procs", top, str(child.pid))
    cs.write(top, "cpuset.cpus", cs.read("", "cpuset.effective_cpus"))
    attempt("mems = node without memory (1)", "cpuset.mems", top, "1")
    attempt("mems = node 999999", "cpuset.mems", top, "999999")
    cs.mkdir(kid)
    cs.write(kid, "cpuset.cpus", "0")
    attempt("child mems not subset of (empty) parent", "cpuset.mems", kid, "0")
    cs.write(top, "cpuset.mems", "0")
    cs.write(kid, "cpuset.mems", "0")
    attempt("empty parent mems below a child's", "cpuset.mems", top, "\n")
    cs.rmdir(kid)
    cs.move_pid(top, child.pid)
    attempt("empty mems of a populated cpuset", "cpuset.mems", top, "\n")
    attempt("zero-length write to mems (no-op)", "cpuset.mems", top, "")
    assert cs.read(top, "cpuset.mems") == "0"
    try:
        cs.rmdir(top)
        got["rmdir populated cpuset"] = 0
    except WriteRefused as exc:
        got["rmdir populated cpuset"] = exc.errno
    print("\n" + "\n".join(f"{k}: {errno.errorcode.get(v or 0, v)}" for k, v in got.items()))
    assert got == {
        "task into a cpuset with empty cpus/mems": errno.ENOSPC,
        "mems = node without memory (1)": errno.EINVAL,
        "mems = node 999999": errno.ERANGE,
        "child mems not subset of (empty) parent": errno.EACCES,
        "empty parent mems below a child's": errno.EBUSY,
        "empty mems of a populated cpuset": errno.ENOSPC,
        "zero-length write to mems (no-op)": 0,
        "rmdir populated cpuset": errno.EBUSY,
    }


def test_directed_reclaim_of_anonymous_memory_without_swap_stops_at_ebusy(
    sandbox: Sandbox,
) -> None:
    b = sandbox.backend()
    b.ensure(WEB, N0)
    child = sandbox.spawn()
    b.attach("web", child.pid)
    child.do("alloc 64")
    op = b.start_reclaim("web", 32 * MIB, deadline_s=20)
    wait_for(b, lambda ev: any(e.op == op for e in ev), 25)
    res = b.op_result(op)
    print(
        f"\nreclaim 32 MiB of anon (no swap): ok={res.ok} errno={res.errno} "
        f"reclaimed={res.reclaimed} in {res.seconds:.3f} s"
    )
    assert (res.ok, res.errno) == (False, errno.EBUSY)
    assert b.memory.read(sandbox.path, "memory.limit_in_bytes") == NO_LIMIT
    assert child.proc.poll() is None  # the limit write itself never OOM-kills
    assert b.oom_control("web")["oom_kill"] == 0


def test_released_hold_lets_the_grower_go_and_a_foreign_limit_keeps_its_oom_killer(
    sandbox: Sandbox,
) -> None:
    """release_hold (nothing can be lent) puts the limit and OOM killer back: the held
    task goes on. A lower limit written behind zoned's back is not zoned's to hold at:
    the task waiting under OOM there gets the OOM killer back and is killed."""
    b = sandbox.backend()
    b.ensure(WEB, N0)
    child = sandbox.spawn()
    b.attach("web", child.pid)
    wire = b.usage("web").current + 32 * MIB
    b.arm_tripwire("web", wire)
    child.send("alloc 64")
    wait_for(
        b, lambda ev: any(e.kind is EventKind.PRESSURE and "under_oom" in e.detail for e in ev), 10
    )
    assert b.release_hold("web")
    assert not b.release_hold("web")  # nothing held any more
    times = child.reply(20)
    assert times is not None and len(times) == 64
    oc = b.oom_control("web")
    assert oc["oom_kill_disable"] == 0 and oc["oom_kill"] == 0, oc

    # Held again by the next arming; then someone lowers the limit under zoned's.
    child.send("free")
    assert child.reply(20) is not None
    b.arm_tripwire("web", b.usage("web").current + 32 * MIB)
    assert b.oom_control("web")["oom_kill_disable"] == 1
    b.memory.write(sandbox.path, "memory.limit_in_bytes", str(b.usage("web").current + 16 * MIB))
    child.send("alloc 64")
    events = wait_for(b, lambda ev: EventKind.OOM_KILL in kinds(ev), 15)
    assert child.proc.wait(timeout=10) == -9
    assert b.oom_control("web")["oom_kill_disable"] == 0
    assert not any("waiting at its limit" in e.detail for e in events[-1:])


def test_a_hold_left_by_a_crash_is_undone_by_the_next_run(sandbox: Sandbox, tmp_path: Path) -> None:
    """zoned dies (no close) while holding: the next run, with the same state directory,
    knows what the hold replaced and puts that back at its stop, not its own values."""
    first = sandbox.backend(state_dir=tmp_path)
    first.ensure(WEB, N0)
    before = first.memory.read(sandbox.path, "memory.limit_in_bytes").strip()
    first.arm_tripwire("web", first.usage("web").current + 32 * MIB)
    assert first.oom_control("web")["oom_kill_disable"] == 1
    held = first.memory.read(sandbox.path, "memory.limit_in_bytes").strip()
    assert held != before
    first._loop.close()  # the crash: nothing put back
    sandbox.backends.remove(first)

    second = sandbox.backend(state_dir=tmp_path)
    second.ensure(WEB, N0)
    second.arm_tripwire("web", second.usage("web").current + 48 * MIB)
    second.close()
    assert second.memory.read(sandbox.path, "memory.limit_in_bytes").strip() == before
    assert second.oom_control("web")["oom_kill_disable"] == 0
    assert not list(tmp_path.glob("v1-hold.*"))
