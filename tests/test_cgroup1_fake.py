"""The v1 backend on a fake cgroupfs tree (tests/fakes/v1tree.py): no kernel, no root."""

from __future__ import annotations

import errno
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.v1tree import NO_LIMIT, FakeV1Tree
from zoned.backends.cgroup1 import Cgroup1Backend
from zoned.config.decl import Amount, ContainerDecl
from zoned.errors import BackendError, CgroupGone, EffectiveMismatch, WriteRefused
from zoned.kernel.v1events import Watch
from zoned.model.host import EventKind, OpKind

WEB = ContainerDecl("web", Amount.nodes(1), Amount.nodes(2))
N0 = frozenset({0})
MIB = 1 << 20


@pytest.fixture
def tree(tmp_path: Path) -> FakeV1Tree:
    return FakeV1Tree(tmp_path, nodes="0-1")


def make_backend(
    tree: FakeV1Tree, *, enable_memory_pressure: bool = False, adopt: dict[str, str] | None = None
) -> Cgroup1Backend:
    return Cgroup1Backend(
        proc_root=tree.proc_root,
        sys_root=tree.sys_root,
        enable_memory_pressure=enable_memory_pressure,
        adopt=adopt or {},
        fs_factory=tree.fs_for,
        page_size=4096,
    )


@pytest.fixture
def backend(tree: FakeV1Tree) -> Iterator[Cgroup1Backend]:
    b = make_backend(tree)
    yield b
    b.close()


def signal(b: Cgroup1Backend, name: str, watch: Watch) -> None:
    """What the kernel does on an event: bump the registration's eventfd."""
    os.eventfd_write(b._managed[name].regs[watch].fd, 1)


def test_roots_come_from_mountinfo(backend: Cgroup1Backend, tree: FakeV1Tree) -> None:
    assert backend.cpuset.root == tree.cpuset_root
    assert backend.memory.root == tree.memory_root
    assert backend.topology().fake_numa == "4"
    assert backend.topology().numa_balancing is False


def test_memory_pressure_enabled_only_when_asked(
    tree: FakeV1Tree, caplog: pytest.LogCaptureFixture
) -> None:
    make_backend(tree).close()
    assert tree.cpuset.read("", "cpuset.memory_pressure_enabled") == "0"
    with caplog.at_level(logging.INFO, logger="zoned.backends.cgroup1"):
        b = make_backend(tree, enable_memory_pressure=True)
        assert tree.cpuset.read("", "cpuset.memory_pressure_enabled") == "1"
        b.close()
    assert tree.cpuset.read("", "cpuset.memory_pressure_enabled") == "0"  # restored at stop
    assert "enabled cpuset.memory_pressure_enabled" in caplog.text
    assert "restored cpuset.memory_pressure_enabled" in caplog.text


def test_ensure_creates_with_cpus_before_mems(backend: Cgroup1Backend, tree: FakeV1Tree) -> None:
    st = backend.ensure(WEB, N0)
    assert (st.name, st.path, st.nodes, st.pids) == ("web", "zoned/web", N0, ())
    files = [(cg, f) for cg, f, _ in tree.cpuset.writes]
    assert files.index(("zoned/web", "cpuset.cpus")) < files.index(("zoned/web", "cpuset.mems"))
    assert files.index(("zoned", "cpuset.mems")) < files.index(("zoned/web", "cpuset.mems"))
    assert tree.cpuset.read("zoned/web", "cpuset.cpus") == "0-1"  # the parent's effective
    assert tree.cpuset.read("zoned", "cpuset.mems") == "0-1"  # the root's effective
    assert tree.cpuset.read("zoned/web", "cpuset.memory_migrate") == "1"
    assert tree.memory.exists("zoned/web")
    registered = [v for cg, f, v in tree.memory.writes if f == "cgroup.event_control"]
    assert len(registered) == 2  # OOM and pressure level
    assert any(v.endswith(" low,hierarchy") for v in registered)
    assert set(backend.existing()) == {"web"}


def test_task_before_mems_is_refused_like_the_kernel(tree: FakeV1Tree) -> None:
    tree.cpuset.mkdir("bare")
    with pytest.raises(WriteRefused) as exc:
        tree.cpuset.move_pid("bare", 1)
    assert exc.value.errno == errno.ENOSPC


def test_ensure_with_an_offline_node_is_refused(backend: Cgroup1Backend) -> None:
    with pytest.raises(WriteRefused) as exc:
        backend.ensure(WEB, frozenset({5}))
    assert exc.value.errno == errno.EINVAL


def test_ensure_checks_effective(backend: Cgroup1Backend, tree: FakeV1Tree) -> None:
    def widen(cgroup: str, file: str) -> None:
        if cgroup == "zoned/web" and file == "cpuset.effective_mems":
            tree.cpuset.path(cgroup, file).write_text("0-1\n")

    tree.cpuset.before_read.append(widen)
    with pytest.raises(EffectiveMismatch) as exc:
        backend.ensure(WEB, N0)
    assert exc.value.effective == frozenset({0, 1})


def test_adoption_after_restart_writes_nothing(tree: FakeV1Tree) -> None:
    tree.make("zoned", mems="0-1")
    tree.make("zoned/web", mems="0")
    tree.make("srv/db", mems="1")
    before = tree.snapshot()
    b = make_backend(tree, adopt={"db": "/srv/db"})
    try:
        assert {n: s.nodes for n, s in b.existing().items()} == {"web": N0, "db": frozenset({1})}
        b.ensure(WEB, N0)
        db = ContainerDecl("db", Amount.nodes(1), Amount.nodes(1), cgroup="srv/db")
        b.ensure(db, frozenset({1}))
    finally:
        b.close()
    assert tree.snapshot() == before
    assert {f for _, f, _ in tree.cpuset.writes + tree.memory.writes} == {"cgroup.event_control"}


def test_vanished_between_two_reads_is_cgroup_gone(
    backend: Cgroup1Backend, tree: FakeV1Tree
) -> None:
    backend.ensure(WEB, N0)

    def vanish(cgroup: str, file: str) -> None:
        if file == "memory.stat":
            tree.remove("zoned/web")

    tree.memory.before_read.append(vanish)
    with pytest.raises(CgroupGone):
        backend.usage("web")  # read usage_in_bytes, then memory.stat is gone
    assert backend.processes("web") == ()
    with pytest.raises(CgroupGone):
        backend.state("web")


def test_usage_from_usage_stat_and_numa_stat(backend: Cgroup1Backend, tree: FakeV1Tree) -> None:
    backend.ensure(WEB, frozenset({0, 1}))
    tree.set_memory("zoned/web", "memory.usage_in_bytes", str(40 * MIB))
    stat = tree.memory.read("zoned/web", "memory.stat")
    stat = stat.replace("total_rss 0", f"total_rss {30 * MIB}")
    stat = stat.replace("total_cache 0", f"total_cache {8 * MIB}")
    tree.set_memory("zoned/web", "memory.stat", stat)
    tree.set_memory(
        "zoned/web",
        "memory.numa_stat",
        "total=9 N0=9 N1=0\nfile=1 N0=1 N1=0\nanon=8 N0=8 N1=0\nunevictable=0 N0=0 N1=0\n"
        "hierarchical_total=9728 N0=7680 N1=2048\nhierarchical_file=2048 N0=0 N1=2048\n"
        "hierarchical_anon=7680 N0=7680 N1=0\nhierarchical_unevictable=0 N0=0 N1=0",
    )
    u = backend.usage("web")
    assert (u.current, u.anon, u.file) == (40 * MIB, 30 * MIB, 8 * MIB)
    assert u.per_node[0].anon == 30 * MIB
    assert u.per_node[1].file == 8 * MIB


def test_set_nodes_reports_effective_and_left_behind(
    backend: Cgroup1Backend, tree: FakeV1Tree
) -> None:
    backend.ensure(WEB, frozenset({0, 1}))
    tree.set_memory("zoned/web", "memory.numa_stat", "hierarchical_total=300 N0=200 N1=100")
    op = backend.start_set_nodes("web", N0, deadline_s=5)
    events = backend.wait(5)
    assert [(e.kind, e.op, e.ok) for e in events] == [(EventKind.OP_FINISHED, op, True)]
    res = backend.op_result(op)
    assert (res.kind, res.nodes, res.left_behind) == (OpKind.SET_NODES, N0, 100 * 4096)
    assert tree.cpuset.read("zoned/web", "cpuset.mems") == "0"


def test_set_nodes_refused_ends_as_failed_op(backend: Cgroup1Backend) -> None:
    backend.ensure(WEB, N0)
    op = backend.start_set_nodes("web", frozenset({7}), deadline_s=5)
    (ev,) = backend.wait(5)
    assert (ev.op, ev.ok, ev.errno) == (op, False, errno.EINVAL)


def test_reclaim_lowers_in_steps_and_restores(backend: Cgroup1Backend, tree: FakeV1Tree) -> None:
    backend.ensure(WEB, N0)
    usage = 100 * MIB
    tree.set_memory("zoned/web", "memory.usage_in_bytes", str(usage))
    out = backend.reclaim_now("zoned/web", 40 * MIB)
    limits = [v for _, f, v in tree.memory.writes if f == "memory.limit_in_bytes"]
    assert limits == [str(x * MIB) for x in (90, 80, 70, 60)] + [NO_LIMIT]
    assert out.ok
    assert tree.memory.read("zoned/web", "memory.limit_in_bytes") == NO_LIMIT


def test_reclaim_stops_at_ebusy_and_restores(backend: Cgroup1Backend, tree: FakeV1Tree) -> None:
    backend.ensure(WEB, N0)
    tree.set_memory("zoned/web", "memory.usage_in_bytes", str(100 * MIB))

    def busy_below_80m(cgroup: str, file: str, value: str) -> None:
        if file == "memory.limit_in_bytes" and int(value) < 80 * MIB:
            raise OSError(errno.EBUSY, "Device or resource busy")

    tree.memory.before_write.append(busy_below_80m)
    op = backend.start_reclaim("web", 40 * MIB, deadline_s=5)
    (ev,) = backend.wait(5)
    res = backend.op_result(op)
    assert (ev.ok, res.ok, res.errno, res.kind) == (False, False, errno.EBUSY, OpKind.RECLAIM)
    limits = [v for _, f, v in tree.memory.writes if f == "memory.limit_in_bytes"]
    assert limits == [str(90 * MIB), str(80 * MIB), NO_LIMIT]


def test_reclaim_restores_the_limit_on_any_error(backend: Cgroup1Backend, tree: FakeV1Tree) -> None:
    backend.ensure(WEB, N0)
    tree.set_memory("zoned/web", "memory.usage_in_bytes", str(100 * MIB))

    def einval(cgroup: str, file: str, value: str) -> None:
        if file == "memory.limit_in_bytes" and value != NO_LIMIT:
            raise OSError(errno.EINVAL, "Invalid argument")

    tree.memory.before_write.append(einval)
    with pytest.raises(WriteRefused):
        backend.reclaim_now("zoned/web", 40 * MIB)
    assert [v for _, f, v in tree.memory.writes if f == "memory.limit_in_bytes"] == [NO_LIMIT]


def test_tripwire_fires_once_on_upward_crossing(backend: Cgroup1Backend, tree: FakeV1Tree) -> None:
    backend.ensure(WEB, N0)
    backend.arm_tripwire("web", 50 * MIB)
    assert backend.state("web").tripwire == 50 * MIB
    assert backend.wait(0) == []
    signal(backend, "web", Watch.THRESHOLD)  # a downward crossing: usage still 0
    assert backend.wait(0) == []
    tree.set_memory("zoned/web", "memory.usage_in_bytes", str(60 * MIB))
    signal(backend, "web", Watch.THRESHOLD)
    (ev,) = backend.wait(1)
    assert (ev.kind, ev.container, ev.value) == (EventKind.TRIPWIRE, "web", 60 * MIB)
    assert backend.state("web").tripwire is None
    assert Watch.THRESHOLD not in backend._managed["web"].regs  # disarmed: fd closed


def test_tripwire_armed_below_usage_fires_at_once(
    backend: Cgroup1Backend, tree: FakeV1Tree
) -> None:
    backend.ensure(WEB, N0)
    tree.set_memory("zoned/web", "memory.usage_in_bytes", str(60 * MIB))
    backend.arm_tripwire("web", 50 * MIB)
    (ev,) = backend.wait(0)
    assert ev.kind is EventKind.TRIPWIRE


def test_arm_tripwire_needs_ensure(backend: Cgroup1Backend) -> None:
    with pytest.raises(BackendError, match="not managed"):
        backend.arm_tripwire("web", 1)


def test_pressure_oom_and_kill_counter(backend: Cgroup1Backend, tree: FakeV1Tree) -> None:
    backend.ensure(WEB, N0)
    signal(backend, "web", Watch.PRESSURE)
    (ev,) = backend.wait(1)
    assert (ev.kind, ev.detail) == (EventKind.PRESSURE, "v1 low,hierarchy x1")
    tree.set_memory(
        "zoned/web", "memory.oom_control", "oom_kill_disable 0\nunder_oom 1\noom_kill 2"
    )
    signal(backend, "web", Watch.OOM)
    kinds = [(e.kind, e.value) for e in backend.wait(1)]
    assert kinds == [(EventKind.OOM, 1), (EventKind.OOM_KILL, 2)]


def test_removal_signal_is_one_gone_event(backend: Cgroup1Backend, tree: FakeV1Tree) -> None:
    backend.ensure(WEB, N0)
    backend.arm_tripwire("web", 50 * MIB)
    tree.remove("zoned/web")
    for watch in (Watch.THRESHOLD, Watch.OOM, Watch.PRESSURE):
        signal(backend, "web", watch)  # rmdir signals every registration
    events = backend.wait(1)
    assert [(e.kind, e.container) for e in events] == [(EventKind.GONE, "web")]
    assert backend.wait(0) == []
    assert backend.existing() == {}


def test_release_removes_owned_and_keeps_adopted(tree: FakeV1Tree) -> None:
    tree.make("srv/db", mems="1")
    b = make_backend(tree, adopt={"db": "srv/db"})
    try:
        b.ensure(WEB, N0)
        b.release("web")
        b.release("db")
        b.release("never-existed")
    finally:
        b.close()
    assert not tree.cpuset.exists("zoned/web")
    assert not tree.memory.exists("zoned/web")
    assert tree.cpuset.exists("srv/db")


def test_set_nodes_stuck_in_the_kernel_times_out(backend: Cgroup1Backend, tree: FakeV1Tree) -> None:
    backend.ensure(WEB, frozenset({0, 1}))
    release = threading.Event()

    def stuck(cgroup: str, file: str, value: str) -> None:
        if file == "cpuset.mems":
            release.wait(10)  # a migration that takes longer than the deadline

    tree.cpuset.before_write.append(stuck)
    try:
        op = backend.start_set_nodes("web", N0, deadline_s=0.2)
        (ev,) = backend.wait(5)
        assert (ev.op, ev.ok, ev.errno) == (op, False, errno.ETIMEDOUT)
        assert "timed out" in backend.op_result(op).error
    finally:
        release.set()
