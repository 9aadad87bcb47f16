"""Cgroup2Backend on a fake v2 tree holding the texts a 6.1 kernel prints.

``FakeV2Fs`` stands in for ``CgroupFs`` where a directory cannot act like kernfs: ``mkdir``
populates a cgroup with a fresh 6.1 child's files, ``cgroup.subtree_control`` and
``cpuset.mems`` writes apply the documented v2 rules (the effective mems are the request
within the parent's effective, or all of the parent's when that is empty), and hooks run
before reads (to remove a cgroup between two reads). epoll cannot watch regular files, so
``RecordingLoop`` records the fd sources and the tests fire them; real POLLPRI on kernfs
is tested in the VM (vm-tests/guest/test_cgroup2_backend.py). Fake files cannot block like
a migrating ``cpuset.mems`` write either: that is the VM's job too.
"""

from __future__ import annotations

import errno
import logging
import mmap
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.sysfs import eight_node
from tests.fakes.v2fs import (
    LONG,
    PID,
    FakeV2Fs,
    RecordingLoop,
    numa_stat,
)
from zoned.backends.cgroup2 import Cgroup2Backend
from zoned.backends.fdloop import ERR, PRI
from zoned.config.decl import Amount, ContainerDecl
from zoned.errors import CgroupGone, EffectiveMismatch, Unsupported, WriteRefused
from zoned.kernel.cgroupfs import translated
from zoned.model.host import EventKind, OpKind
from zoned.model.sizes import MIB


class Env:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.fs = FakeV2Fs(tmp / "cgroup")
        self.sysfs = eight_node(tmp / "host")
        self.set_own_cgroup("user.slice/session-1.scope")
        self.backends: list[Cgroup2Backend] = []

    def set_own_cgroup(self, path: str) -> None:
        p = self.sysfs.proc_root / str(PID) / "cgroup"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(f"0::/{path}\n")

    def backend(self, **kw: object) -> tuple[Cgroup2Backend, RecordingLoop]:
        loop = RecordingLoop()
        b = Cgroup2Backend(
            self.fs.root,
            "zoned",
            sys_root=self.sysfs.sys_root,
            proc_root=self.sysfs.proc_root,
            fs=self.fs,
            pid=PID,
            loop=loop,
            **kw,  # type: ignore[arg-type]
        )
        self.backends.append(b)
        return b, loop


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path)
    yield e
    for b in e.backends:
        b.close()


def decl(name: str, cgroup: str | None = None) -> ContainerDecl:
    return ContainerDecl(name, Amount.nodes(1), Amount.nodes(2), cgroup=cgroup)


def set_events(fs: FakeV2Fs, cgroup: str, **counts: int) -> None:
    keys = ("low", "high", "max", "oom", "oom_kill", "oom_group_kill")
    fs.put(cgroup, {"memory.events": "".join(f"{k} {counts.get(k, 0)}\n" for k in keys)})


# ------------------------------------------------------------------------------ setup


def test_prepare_enables_controllers_top_down_and_places_the_daemon(env: Env) -> None:
    b, _ = env.backend()
    b.prepare()
    assert env.fs.writes == [
        ("", "cgroup.subtree_control", "+cpuset +memory"),
        ("zoned/zoned.daemon", "cgroup.procs", str(PID)),
        ("zoned", "cgroup.subtree_control", "+cpuset +memory"),
    ]
    assert env.fs.read("", "cgroup.subtree_control") == "cpuset memory"
    assert env.fs.read("zoned", "cgroup.subtree_control") == "cpuset memory"
    b.prepare()  # idempotent
    assert len(env.fs.writes) == 3


def test_prepare_nested_parent_and_no_daemon_leaf(env: Env) -> None:
    b, _ = env.backend(daemon_leaf=None)
    b.parent = "svc/zoned"
    b.prepare()
    assert [w[0] for w in env.fs.writes] == ["", "svc", "svc/zoned"]
    assert not env.fs.exists("svc/zoned/zoned.daemon")


def test_prepare_refuses_v1_bound_controllers_and_non_v2(env: Env) -> None:
    env.fs.put("", {"cgroup.controllers": "cpu io pids\n"})
    b, _ = env.backend()
    with pytest.raises(Unsupported, match="cpuset memory"):
        b.prepare()
    env.fs.path("", "cgroup.controllers").unlink()
    with pytest.raises(Unsupported, match="not a cgroup v2"):
        b.prepare()
    assert env.fs.writes == []


def test_ebusy_from_an_internal_process_says_why(env: Env) -> None:
    env.fs.refuse[("", "cgroup.subtree_control")] = errno.EBUSY
    b, _ = env.backend()
    with pytest.raises(WriteRefused, match="no-internal-process") as info:
        b.prepare()
    assert info.value.errno == errno.EBUSY


# ------------------------------------------------------------------- ensure / adopt


def test_ensure_creates_a_leaf_with_its_nodes_and_watches_it(env: Env) -> None:
    b, loop = env.backend()
    st = b.ensure(decl("web"), frozenset({2, 3}))
    assert (st.name, st.path, st.nodes, st.pids, st.tripwire) == (
        "web",
        "zoned/web",
        frozenset({2, 3}),
        (),
        None,
    )
    assert ("zoned/web", "cpuset.mems", "2-3") in env.fs.writes
    assert loop.fd_of("zoned/web/memory.events") >= 0
    psi = loop.fd_of("zoned/web/memory.pressure")
    assert loop.sources[psi][0] == PRI
    # the trigger was written (with the NUL psi.rst's example writes)
    text = env.fs.path("zoned/web", "memory.pressure").read_bytes()
    assert text.startswith(b"some 100000 1000000\0")


def test_restart_adopts_without_writing_anything(env: Env) -> None:
    b1, _ = env.backend()
    b1.ensure(decl("web"), frozenset({2, 3}))
    b1.ensure(decl("db"), frozenset({4}))
    b1.arm_tripwire("db", 200 << 20)
    env.fs.put("zoned/db", {"cgroup.procs": "77\n78\n"})
    env.set_own_cgroup("zoned/zoned.daemon")
    b1.close()
    before = env.fs.snapshot()
    n_writes = len(env.fs.writes)

    b2, loop = env.backend()
    found = b2.existing()
    assert sorted(found) == ["db", "web"]  # not the daemon leaf
    assert found["db"].pids == (77, 78)
    assert found["db"].nodes == frozenset({4})
    assert found["db"].tripwire == 200 << 20
    b2.ensure(decl("web"), frozenset({2, 3}))
    b2.ensure(decl("db"), frozenset({4}))
    b2.arm_tripwire("db", 200 << 20)
    assert env.fs.writes[n_writes:] == []
    after = env.fs.snapshot()
    # PSI triggers are per open fd: re-arming writes memory.pressure (not a setting).
    psi_files = {k for k in before if k.endswith("memory.pressure")}
    assert {k: v for k, v in after.items() if k not in psi_files} == {
        k: v for k, v in before.items() if k not in psi_files
    }
    # the old tripwire is watched again
    env.fs.put("zoned/db", {"memory.current": str(201 << 20)})
    set_events(env.fs, "zoned/db", high=1)
    assert [e.kind for e in loop.fire("zoned/db/memory.events")] == [EventKind.TRIPWIRE]


def test_adopted_cgroup_is_used_in_place_and_kept_on_release(env: Env) -> None:
    env.fs.put("", {"cgroup.subtree_control": "cpuset memory\n"})
    env.fs.mkdir("system.slice")
    env.fs.put("system.slice", {"cgroup.subtree_control": "cpuset memory\n"})
    env.fs.mkdir("system.slice/app.service")
    b, _ = env.backend(adopted={"app": "/system.slice/app.service"})
    assert sorted(b.existing()) == ["app"]
    st = b.ensure(decl("app", "/system.slice/app.service"), frozenset({5}))
    assert st.path == "system.slice/app.service"
    b.release("app")
    assert env.fs.exists("system.slice/app.service")


def test_adopted_cgroup_without_controllers_is_unsupported(env: Env) -> None:
    env.fs.mkdir("plain")
    b, _ = env.backend()
    with pytest.raises(Unsupported, match="lacks cpuset memory"):
        b.ensure(decl("p", "plain"), frozenset({1}))
    with pytest.raises(CgroupGone):
        b.ensure(decl("q", "missing"), frozenset({1}))


def test_widened_grant_is_an_effective_mismatch(env: Env) -> None:
    b, _ = env.backend()
    b.prepare()
    env.fs.put("zoned", {"cpuset.mems.effective": "1-2\n"})
    with pytest.raises(EffectiveMismatch) as info:
        b.ensure(decl("web"), frozenset({5}))
    assert info.value.requested == frozenset({5})
    assert info.value.effective == frozenset({1, 2})  # empty intersection: all of parent's


def test_narrowed_grant_is_an_effective_mismatch(env: Env) -> None:
    b, _ = env.backend()
    b.prepare()
    env.fs.put("zoned", {"cpuset.mems.effective": "1-2\n"})
    with pytest.raises(EffectiveMismatch, match="asked for nodes 2-3, kernel granted 2"):
        b.ensure(decl("web"), frozenset({2, 3}))


def test_cgroup_removed_between_two_reads_is_gone(env: Env) -> None:
    b, _ = env.backend()
    b.ensure(decl("web"), frozenset({2}))
    path = env.fs.path("zoned/web")
    env.fs.before_read[("zoned/web", "cgroup.procs")] = lambda: shutil.rmtree(path)
    with pytest.raises(CgroupGone):
        b.state("web")
    assert b.processes("web") == ()


def test_existing_leaves_out_a_cgroup_removed_while_listing(env: Env) -> None:
    b, _ = env.backend()
    b.ensure(decl("a"), frozenset({1}))
    b.ensure(decl("b"), frozenset({2}))
    gone = env.fs.path("zoned/a")
    env.fs.before_read[("zoned/a", "cpuset.mems.effective")] = lambda: shutil.rmtree(gone)
    assert sorted(b.existing()) == ["b"]


def test_release_removes_an_empty_leaf_and_keeps_a_populated_one(env: Env) -> None:
    b, loop = env.backend()
    b.ensure(decl("a"), frozenset({1}))
    b.ensure(decl("b"), frozenset({2}))
    env.fs.put("zoned/b", {"cgroup.procs": "99\n"})
    b.release("a")
    b.release("a")  # missing is fine
    b.release("b")  # EBUSY: left in place, logged
    assert not env.fs.exists("zoned/a")
    assert env.fs.exists("zoned/b")
    assert loop.sources == {}


# ------------------------------------------------------------------------ reading


def test_usage_from_memory_files(env: Env) -> None:
    b, _ = env.backend()
    b.ensure(decl("web"), frozenset({3}))
    env.fs.put(
        "zoned/web",
        {
            "memory.current": "76222464\n",
            "memory.stat": "anon 67977216\nfile 7553024\nkernel 339968\n",
            "memory.numa_stat": numa_stat(
                anon={3: 67977216}, file={3: 7553024}, slab_reclaimable={0: 51272}
            ),
        },
    )
    u = b.usage("web")
    assert (u.current, u.anon, u.file) == (76222464, 67977216, 7553024)
    assert u.per_node[3].anon == 67977216
    assert u.per_node[0].other == 51272


def test_node_memory_from_sysfs(env: Env) -> None:
    b, _ = env.backend()
    mem = b.node_memory()
    assert sorted(mem) == list(range(8))
    assert all(m.total > m.free > 0 for m in mem.values())
    assert b.topology().node_ids == tuple(range(8))


def test_node_memory_carries_the_min_watermarks_read_once(env: Env) -> None:
    """The kernel's reserve per node (issue 13): from /proc/zoneinfo, read at the first
    look only (it changes with vm.min_free_kbytes or hot-plug, and the file is long)."""
    zi = env.sysfs.proc_root / "zoneinfo"
    zi.write_text("Node 0, zone   DMA32\n  pages free 5\n        min      2544\n")
    b, _ = env.backend()
    mem = b.node_memory()
    assert mem[0].reserve == 2544 * mmap.PAGESIZE and mem[1].reserve == 0
    zi.write_text("not a zoneinfo at all\n        min      1\n")
    assert b.node_memory()[0].reserve == 2544 * mmap.PAGESIZE  # not read again
    b2, _ = env.backend()
    assert b2.node_memory()[0].reserve == 0  # unreadable: whole nodes, logged


# ----------------------------------------------------------------- slow operations


def test_set_nodes_reports_granted_nodes_and_left_behind(env: Env) -> None:
    b, _ = env.backend()
    b.ensure(decl("web"), frozenset({2}))
    # what the kernel left on node 2 after migrating (shared library pages, say)
    env.fs.put("zoned/web", {"memory.numa_stat": numa_stat(anon={5: 100 << 20}, file={2: 3 << 20})})
    op = b.start_set_nodes("web", frozenset({5}), LONG)
    events = b.wait(LONG)
    assert [(e.kind, e.op, e.ok) for e in events] == [(EventKind.OP_FINISHED, op, True)]
    res = b.op_result(op)
    assert (res.kind, res.nodes, res.left_behind) == (OpKind.SET_NODES, frozenset({5}), 3 << 20)
    assert env.fs.read("zoned/web", "cpuset.mems") == "5"


def test_set_nodes_mismatch_fails_the_op(env: Env) -> None:
    b, _ = env.backend()
    b.ensure(decl("web"), frozenset({2}))
    env.fs.put("zoned", {"cpuset.mems.effective": "1-2\n"})
    op = b.start_set_nodes("web", frozenset({2, 3}), LONG)
    (ev,) = b.wait(LONG)
    res = b.op_result(op)
    assert (ev.ok, res.ok, res.nodes) == (False, False, frozenset({2}))
    assert "kernel granted 2" in res.error


def test_set_nodes_refused_keeps_the_errno(env: Env) -> None:
    b, _ = env.backend()
    b.ensure(decl("web"), frozenset({2}))
    env.fs.refuse[("zoned/web", "cpuset.mems")] = errno.EINVAL
    op = b.start_set_nodes("web", frozenset({9}), LONG)
    (ev,) = b.wait(LONG)
    assert (ev.op, ev.ok, ev.errno) == (op, False, errno.EINVAL)


def test_reclaim_reports_actual_bytes_and_eagain(env: Env) -> None:
    b, _ = env.backend()
    b.ensure(decl("web"), frozenset({2}))
    env.fs.put("zoned/web", {"memory.current": str(300 << 20)})
    env.fs.before_read[("zoned/web", "memory.current")] = lambda: None  # first read as is
    env.fs.refuse[("zoned/web", "memory.reclaim")] = errno.EAGAIN

    real_read = env.fs.read
    calls = {"n": 0}

    def read(cgroup: str, file: str) -> str:
        if (cgroup, file) == ("zoned/web", "memory.current"):
            calls["n"] += 1
            if calls["n"] == 2:
                return str(260 << 20)
        return real_read(cgroup, file)

    env.fs.read = read  # type: ignore[method-assign]
    op = b.start_reclaim("web", 100 << 20, LONG)
    (ev,) = b.wait(LONG)
    res = b.op_result(op)
    assert (ev.ok, res.errno, res.reclaimed) == (False, errno.EAGAIN, 40 << 20)
    assert "EAGAIN" in res.error


# ------------------------------------------------------------------------- events


def test_tripwire_fires_once_on_usage_not_on_counter_deltas(env: Env) -> None:
    b, loop = env.backend()
    b.ensure(decl("web"), frozenset({2}))
    b.arm_tripwire("web", 200 << 20)
    assert env.fs.read("zoned/web", "memory.high") == str(200 << 20)
    src = "zoned/web/memory.events"

    # high counted, but usage is back under the tripwire (page cache reclaimed): nothing
    env.fs.put("zoned/web", {"memory.current": str(190 << 20)})
    set_events(env.fs, "zoned/web", high=1)
    assert loop.fire(src) == []

    env.fs.put("zoned/web", {"memory.current": str(201 << 20)})
    set_events(env.fs, "zoned/web", high=2)
    (ev,) = loop.fire(src)
    assert (ev.kind, ev.container, ev.value) == (EventKind.TRIPWIRE, "web", 201 << 20)

    # the throttled task makes high climb (measured 1 -> 8 in 30 ms): no more events
    for n in range(3, 9):
        set_events(env.fs, "zoned/web", high=n)
        assert loop.fire(src) == []

    b.arm_tripwire("web", 300 << 20)  # re-armed higher
    env.fs.put("zoned/web", {"memory.current": str(301 << 20)})
    set_events(env.fs, "zoned/web", high=9)
    assert [e.kind for e in loop.fire(src)] == [EventKind.TRIPWIRE]
    b.disarm_tripwire("web")
    assert env.fs.read("zoned/web", "memory.high") == "max"


def test_tripwire_below_usage_fires_at_once(env: Env) -> None:
    b, _ = env.backend()
    b.ensure(decl("web"), frozenset({2}))
    env.fs.put("zoned/web", {"memory.current": str(250 << 20)})
    b.arm_tripwire("web", 200 << 20)
    (ev,) = b.wait(LONG)
    assert (ev.kind, ev.value) == (EventKind.TRIPWIRE, 250 << 20)


def test_oom_and_cpuset_oom_kill(env: Env) -> None:
    b, loop = env.backend()
    b.ensure(decl("web"), frozenset({2}))
    src = "zoned/web/memory.events"
    set_events(env.fs, "zoned/web", oom_kill=1)  # cpuset-constrained: oom stays 0
    assert [(e.kind, e.value) for e in loop.fire(src)] == [(EventKind.OOM_KILL, 1)]
    set_events(env.fs, "zoned/web", oom=1, oom_kill=3, max=4)
    assert [(e.kind, e.value) for e in loop.fire(src)] == [
        (EventKind.OOM, 1),
        (EventKind.OOM_KILL, 2),
    ]
    assert loop.fire(src) == []  # re-read, nothing new


def test_pressure_and_gone(env: Env) -> None:
    b, loop = env.backend()
    b.ensure(decl("web"), frozenset({2}))
    (ev,) = loop.fire("zoned/web/memory.pressure")
    assert (ev.kind, ev.detail) == (EventKind.PRESSURE, "some 100ms/1000ms")
    shutil.rmtree(env.fs.path("zoned/web"))
    (ev,) = loop.fire("zoned/web/memory.pressure", ERR | PRI)
    assert ev.kind is EventKind.GONE
    assert loop.sources == {}  # both fds dropped, GONE reported once


def test_memory_events_unreadable_is_gone(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    b, loop = env.backend()
    b.ensure(decl("web"), frozenset({2}))
    shutil.rmtree(env.fs.path("zoned/web"))

    def enodev(fd: int, what: str) -> str:
        # kernfs answers ENODEV on an fd opened before the cgroup was removed
        with translated(f"read {what}"):
            raise OSError(errno.ENODEV, "No such device")

    monkeypatch.setattr(Cgroup2Backend, "_read_fd", staticmethod(enodev))
    events = loop.fire("zoned/web/memory.events", ERR | PRI)
    assert [e.kind for e in events] == [EventKind.GONE]
    assert loop.sources == {}


def test_from_declarations(env: Env) -> None:
    from zoned.config.decl import Declarations, HostDecl, PolicyDecl

    decls = Declarations(
        host=HostDecl(cgroup_root=str(env.fs.root), parent="zoned"),
        policy=PolicyDecl(psi_some_ms=150, psi_window_ms=2000),
        containers=(decl("web"), decl("app", "/system.slice/app.service")),
    )
    b = Cgroup2Backend.from_declarations(
        decls, sys_root=env.sysfs.sys_root, proc_root=env.sysfs.proc_root
    )
    env.backends.append(b)
    assert (b.psi, b.adopted) == ("some 150000 2000000", {"app": "system.slice/app.service"})
    with pytest.raises(ValueError):
        Cgroup2Backend(env.fs.root, psi="some 1 100")
    with pytest.raises(ValueError):
        Cgroup2Backend(env.fs.root, "/")


def test_mems_reached_when_every_thread_of_the_subtree_may_use_the_nodes(env: Env) -> None:
    """A cpuset.mems write updates the tasks one at a time: the node is "reached" only
    when each thread's Mems_allowed_list holds it (threads gone meanwhile do not count)."""
    b, _ = env.backend()
    b.ensure(decl("web"), frozenset({2, 3}))
    env.fs.put("zoned/web", {"cgroup.threads": "101\n102\n"})
    env.fs.mkdir("zoned/web/inner")
    env.fs.put("zoned/web/inner", {"cgroup.threads": "103\n"})

    def allowed(tid: int, nodes: str) -> None:
        p = env.sysfs.proc_root / str(tid) / "status"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(f"Name:\tx\nMems_allowed:\t0\nMems_allowed_list:\t{nodes}\nvoluntary: 1\n")

    allowed(101, "2-4")
    allowed(102, "2-4")
    allowed(103, "2-3")  # the write has not reached it yet
    assert not b.mems_reached("web", frozenset({2, 3, 4}))
    allowed(103, "2-4")
    assert b.mems_reached("web", frozenset({2, 3, 4}))
    (env.sysfs.proc_root / "102" / "status").unlink()  # exited
    assert b.mems_reached("web", frozenset({2, 3, 4}))
    assert not b.mems_reached("web", frozenset({2, 5}))


def test_a_failed_admission_removes_the_cgroup_it_created(env: Env) -> None:
    """Issue 14: a refused cpuset.mems write left an empty cgroup behind."""
    b, _ = env.backend()
    b.prepare()
    env.fs.refuse[("zoned/web", "cpuset.mems")] = errno.EINVAL
    with pytest.raises(WriteRefused):
        b.ensure(decl("web"), frozenset({1}))
    assert not env.fs.exists("zoned/web")
    assert "web" not in b.existing()


def test_a_widening_write_freezes_the_populated_container_and_thaws_it(env: Env) -> None:
    """Issue 13: eight stress-ng workers filled the old node while a 3.4 s write that added
    one walked them one by one; frozen, none allocates meanwhile. Only writes that add
    nodes freeze (an evacuation migrates for seconds), never a cgroup someone else froze,
    and a freeze a killed zoned left behind is thawed at the next start."""
    notes = env.tmp / "state"
    b, _ = env.backend(state_dir=notes)
    b.ensure(decl("web"), frozenset({2}))
    env.fs.put("zoned/web", {"cgroup.procs": "123\n", "cgroup.freeze": "0\n"})
    env.fs.put("zoned/web", {"cgroup.events": "populated 1\nfrozen 1\n"})
    env.fs.writes.clear()
    op = b.start_set_nodes("web", frozenset({2, 5}), LONG)
    assert [e.op for e in b.wait(LONG)] == [op] and b.op_result(op).ok
    mine = [(f, v) for c, f, v in env.fs.writes if c == "zoned/web"]
    assert mine == [("cgroup.freeze", "1"), ("cpuset.mems", "2,5"), ("cgroup.freeze", "0")]
    assert not list(notes.glob("v2-freeze.*"))

    env.fs.writes.clear()
    op = b.start_set_nodes("web", frozenset({5}), LONG)  # taking a node away: no freeze
    b.wait(LONG)
    assert [f for c, f, _ in env.fs.writes if c == "zoned/web"] == ["cpuset.mems"]

    env.fs.put("zoned/web", {"cgroup.freeze": "1\n"})  # the operator froze it
    env.fs.writes.clear()
    b.start_set_nodes("web", frozenset({2, 5}), LONG)
    b.wait(LONG)
    assert [f for c, f, _ in env.fs.writes if c == "zoned/web"] == ["cpuset.mems"]

    # A zoned killed between freeze and thaw: its note makes the next start thaw.
    (notes / "v2-freeze.zoned%2Fweb").write_text("1\n")
    b2, _ = env.backend(state_dir=notes)
    env.fs.writes.clear()
    b2.ensure(decl("web"), frozenset({2, 5}))
    assert ("zoned/web", "cgroup.freeze", "0") in env.fs.writes
    assert not list(notes.glob("v2-freeze.*"))


def freezing_backend(env: Env, running: str, wait_s: float = 0.05) -> Cgroup2Backend:
    """A backend with short freeze waits and container web on node 2 whose freeze does not
    complete: thread 7 runs on (waiting in ``running``), 8 and 9 are stopped (7.3's and
    6.1's names for the freezer's trap)."""
    b, _ = env.backend(state_dir=env.tmp / "state", freeze_wait_s=wait_s, freeze_hold_s=0.05)
    b.ensure(decl("web"), frozenset({2}))
    env.fs.put("zoned/web", {"cgroup.procs": "7\n", "cgroup.threads": "7\n8\n9\n"})
    env.fs.put("zoned/web", {"cgroup.freeze": "0\n", "cgroup.events": "populated 1\nfrozen 0\n"})
    for where, tid in ((running, 7), ("do_freezer_trap", 8), ("get_signal", 9)):
        (env.sysfs.proc_root / str(tid)).mkdir(parents=True)
        (env.sysfs.proc_root / str(tid) / "wchan").write_text(where)
    return b


def test_a_freeze_that_does_not_complete_is_bounded(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 13: workers inside MADV_POPULATE_WRITE cannot be frozen and hold the mmap lock
    the write waits for (59-91 s in the guests), the others frozen all that time. Now the
    write goes ahead after the wait, the stopped ones stay frozen while it is quick, and a
    write still in the kernel after the hold has them thawed; the log names who ran on."""
    b = freezing_backend(env, "mem_cgroup_handle_over_high")

    def mine() -> list[tuple[str, str]]:
        return [(f, v) for c, f, v in env.fs.writes if c == "zoned/web"]

    env.fs.writes.clear()
    with caplog.at_level(logging.INFO, logger="zoned.backends.cgroup2"):
        op = b.start_set_nodes("web", frozenset({2, 5}), LONG)
        b.wait(LONG)
    assert b.op_result(op).ok
    assert mine() == [("cgroup.freeze", "1"), ("cpuset.mems", "2,5"), ("cgroup.freeze", "0")]
    assert "7 in mem_cgroup_handle_over_high" in caplog.text
    assert "8 in" not in caplog.text and "9 in" not in caplog.text  # frozen (7.3, 6.1)

    def blocked() -> None:  # the write waits behind a lock until the hold thaws the rest
        end = time.monotonic() + 5
        while ("cgroup.freeze", "0") not in mine() and time.monotonic() < end:
            time.sleep(0.01)

    env.fs.put("zoned/web", {"cpuset.mems": "2\n"})
    env.fs.before_write[("zoned/web", "cpuset.mems")] = blocked
    env.fs.writes.clear()
    op = b.start_set_nodes("web", frozenset({2, 5}), LONG)
    b.wait(LONG)
    assert b.op_result(op).ok
    assert mine() == [
        ("cgroup.freeze", "1"),
        ("cgroup.freeze", "0"),  # the hold ran out while the write was in the kernel
        ("cpuset.mems", "2,5"),
        ("cgroup.freeze", "0"),
    ]
    assert not list((env.tmp / "state").glob("v2-freeze.*"))


def test_a_raise_during_an_incomplete_freeze_keeps_the_rest_frozen(env: Env) -> None:
    """Issue 13: with one task the freezer could not stop (inside a populate, holding the
    lock the write waits for), the stopped ones cannot allocate: the raise may come once the
    running task may use the new node, and then the timer must not thaw a task the write
    has not reached (7.3: thawed at 2.5 s, one OOM kill on the old node a second later)."""
    b = freezing_backend(env, "__mem_cgroup_handle_over_high")  # 7.3's name
    b.arm_tripwire("web", 100 * MIB)

    def allow(tid: int, nodes: str) -> None:
        (env.sysfs.proc_root / str(tid) / "status").write_text(f"Mems_allowed_list:\t{nodes}\n")

    for tid in (7, 8, 9):
        allow(tid, "2")
    seen: list[bool] = []

    def blocked() -> None:  # the kernel updated task 7, then waits for its lock
        seen.append(b.mems_reached("web", frozenset({2, 5})))  # 7 not yet
        allow(7, "2,5")
        seen.append(b.mems_reached("web", frozenset({2, 5})))  # 8, 9 frozen: yes
        b.arm_tripwire("web", 200 * MIB)  # the engine's raise
        time.sleep(0.3)  # past the hold: no thaw now

    env.fs.before_write[("zoned/web", "cpuset.mems")] = blocked
    env.fs.writes.clear()
    op = b.start_set_nodes("web", frozenset({2, 5}), LONG)
    b.wait(LONG)
    assert b.op_result(op).ok
    assert seen == [False, True]
    mine = [(f, v) for c, f, v in env.fs.writes if c == "zoned/web" and f != "memory.high"]
    assert mine == [("cgroup.freeze", "1"), ("cpuset.mems", "2,5"), ("cgroup.freeze", "0")]
    assert not b.mems_reached("web", frozenset({2, 3}))  # no freeze held now: 8, 9 count


@pytest.mark.parametrize(
    ("running", "early"),
    [("mem_cgroup_handle_over_high", True), ("__mem_cgroup_handle_over_high", True), ("0", False)],
)
def test_the_write_does_not_wait_for_a_task_asleep_in_the_throttle(
    env: Env, caplog: pytest.LogCaptureFixture, running: str, early: bool
) -> None:
    """Issue 13, 7.3 CI: a single MAP_POPULATE throttled inside the call was OOM-killed
    while the freeze waited its 2.5 s for it, creeping past the tripwire meanwhile. A task
    asleep in the throttle allocates nothing, and one inside a populate stops only when
    the call ends: the write goes ahead at once. A task running in user space is waited
    for (it could allocate on the old node)."""
    b = freezing_backend(env, running, wait_s=0.5)
    with caplog.at_level(logging.INFO, logger="zoned.backends.cgroup2"):
        op = b.start_set_nodes("web", frozenset({2, 5}), LONG)
        b.wait(LONG)
    assert b.op_result(op).ok
    assert ("asleep in the memory.high throttle" in caplog.text) is early, caplog.text
    assert ("not every task stopped within 0.5s" in caplog.text) is not early, caplog.text
    assert f"7 in {running if running != '0' else 'user space'}" in caplog.text
