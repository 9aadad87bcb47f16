"""Systemd-native ownership (issue 15, item 1): the delegated scope, with a fake systemd.

No real D-Bus: ``FakeSystemd`` answers as PID 1 would and makes the cgroups systemd
makes (the slice and the scope, the controllers enabled down to the scope, the anchor
placed in the scope). Everything zoned then writes must be inside the scope.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.fakes.v2fs import FakeV2Fs
from zoned.backends.cgroup2 import Cgroup2Backend
from zoned.config.decl import Declarations, HostDecl
from zoned.config.diff import config_diff
from zoned.errors import BackendError, Unsupported
from zoned.kernel.roots import HostRoots
from zoned.policy.delegation import (
    ANCHOR_LEAF,
    SLICE,
    choose,
    localize,
    scope_cgroup,
    scope_unit,
)
from zoned.service.daemon import Daemon, Options
from zoned.service.sdscope import ensure_scope, pid1_is_systemd

SCOPE = "zoned.slice/zoned-containers.scope"


@dataclass
class FakeAnchor:
    pid: int
    killed: bool = False

    def kill(self) -> None:
        self.killed = True


@dataclass
class FakeSystemd:
    """PID 1 as seen over D-Bus; ``fail`` names a method that answers with an error."""

    fs: FakeV2Fs
    proc: Path
    states: dict[str, str] = field(default_factory=dict)
    calls: list[tuple[str, ...]] = field(default_factory=list)
    fail: str = ""
    takes_pids: bool = True  # False: the scope starts but the anchor never arrives

    def _maybe_fail(self, method: str) -> None:
        if self.fail == method:
            raise BackendError(f"systemd: {method}: org.freedesktop.DBus.Error.AccessDenied: no")

    def active_state(self, unit: str) -> str | None:
        self.calls.append(("active_state", unit))
        return self.states.get(unit)

    def start_scope(self, unit: str, slice_: str, pids: Sequence[int], description: str) -> None:
        self.calls.append(("start_scope", unit, slice_, *map(str, pids)))
        self._maybe_fail("start_scope")
        # what systemd does: the slice and the scope, controllers enabled down to the scope
        self.fs.put("", {"cgroup.subtree_control": "cpuset memory\n"})
        self.fs.mkdir(slice_)
        self.fs.put(slice_, {"cgroup.subtree_control": "cpuset memory\n"})
        cg = f"{slice_}/{unit}"
        self.fs.mkdir(cg)
        if self.takes_pids:
            for pid in pids:
                self.fs.put(cg, {"cgroup.procs": f"{pid}\n"})
                self.place(pid, cg)
        self.states[unit] = "active"

    def attach(self, unit: str, subcgroup: str, pids: Sequence[int]) -> None:
        self.calls.append(("attach", unit, subcgroup, *map(str, pids)))
        self._maybe_fail("attach")
        for pid in pids:
            self.fs.put(f"{SLICE}/{unit}{subcgroup}", {"cgroup.procs": f"{pid}\n"})

    def reset_failed(self, unit: str) -> None:
        self.calls.append(("reset_failed", unit))

    def close(self) -> None:
        self.calls.append(("close",))

    def place(self, pid: int, cg: str) -> None:
        p = self.proc / str(pid) / "cgroup"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(f"0::/{cg}\n")


class World:
    def __init__(self, tmp: Path) -> None:
        self.fs = FakeV2Fs(tmp / "cgroup")
        self.proc = tmp / "proc"
        self.systemd = FakeSystemd(self.fs, self.proc)
        self.anchors: list[FakeAnchor] = []

    def spawn(self) -> FakeAnchor:
        a = FakeAnchor(5000 + len(self.anchors))
        self.anchors.append(a)
        return a

    def ensure(self, *, dry_run: bool = False, arrives: bool = True) -> object:
        def wait(cond: Callable[[], bool], deadline_s: float) -> bool:
            return cond() if arrives else False

        return ensure_scope(
            self.systemd, self.fs, self.proc, "zoned", dry_run=dry_run, spawn=self.spawn,
            wait=wait,
        )  # fmt: skip


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


# -- which path runs ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "hierarchy", "pid1", "mode"),
    [
        ("auto", "v2", True, "systemd"),
        ("auto", "v2", False, "cgroupfs"),  # busybox init, a container's own init
        ("auto", "v1", True, "cgroupfs"),  # systemd on v1: today's direct path
        ("cgroupfs", "v2", True, "cgroupfs"),
        ("systemd", "v2", True, "systemd"),
    ],
)
def test_choose(setting: str, hierarchy: str, pid1: bool, mode: str) -> None:
    assert choose(setting, hierarchy, pid1) == mode  # type: ignore[arg-type]


def test_systemd_insisted_on_where_it_cannot_be_is_one_line() -> None:
    with pytest.raises(Unsupported) as info:
        choose("systemd", "v1", True)
    assert str(info.value) == (
        "host.delegation: systemd was asked for, but cgroup v1 is in use; use auto or cgroupfs"
    )
    with pytest.raises(Unsupported, match="PID 1 is not systemd"):
        choose("systemd", "v2", False)


def test_pid1_is_read_under_the_injected_proc_root(tmp_path: Path) -> None:
    assert not pid1_is_systemd(tmp_path)  # unreadable: not systemd
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "comm").write_text("init\n")
    assert not pid1_is_systemd(tmp_path)
    (tmp_path / "1" / "comm").write_text("systemd\n")
    assert pid1_is_systemd(tmp_path)


def test_scope_names() -> None:
    assert scope_unit("zoned") == "zoned-containers.scope"
    assert scope_cgroup("zoned") == SCOPE
    assert scope_unit("/work/zoned/") == "work-zoned-containers.scope"
    assert scope_unit("a b") == "a\\x20b-containers.scope"


def test_localize_puts_the_parent_in_the_scope_and_a_parent_change_still_needs_a_restart() -> None:
    decls = Declarations(host=HostDecl(parent="zoned"))
    assert localize(decls, "cgroupfs") is decls
    assert localize(decls, "systemd").host.parent == SCOPE
    other = Declarations(host=HostDecl(parent="jobs"))
    refusals, _ = config_diff(localize(decls, "systemd"), localize(other, "systemd"))
    assert any(r.startswith("host.parent changed") for r in refusals), refusals


# -- starting and adopting the scope -------------------------------------------------------


def test_a_new_scope_holds_the_anchor_in_a_leaf(world: World) -> None:
    scope = world.ensure()
    assert (scope.unit, scope.cgroup, scope.outcome) == (  # type: ignore[attr-defined]
        "zoned-containers.scope",
        SCOPE,
        "created",
    )
    pid = world.anchors[0].pid
    assert world.systemd.calls[:2] == [
        ("active_state", "zoned-containers.scope"),
        ("start_scope", "zoned-containers.scope", "zoned.slice", str(pid)),
    ]
    assert world.fs.pids(f"{SCOPE}/{ANCHOR_LEAF}") == (pid,)
    assert not world.anchors[0].killed


def test_zoned_writes_only_inside_the_delegated_scope(world: World) -> None:
    """The old code created /zoned at the root of systemd's tree; now the scope is the
    parent and every write zoned makes (after systemd made the scope) is inside it."""
    world.ensure()
    before = len(world.fs.writes)
    backend = Cgroup2Backend(
        world.fs.root, SCOPE, fs=world.fs, proc_root=world.proc, daemon_leaf=None,
        delegated=SCOPE, psi=None,
    )  # fmt: skip
    backend.prepare()
    written = world.fs.writes[before:]
    assert (SCOPE, "cgroup.subtree_control", "+cpuset +memory") in written
    assert all(cg == SCOPE or cg.startswith(SCOPE + "/") for cg, _f, _v in written), written
    assert not world.fs.exists("zoned")


def test_the_backend_refuses_to_write_above_the_delegated_scope(world: World) -> None:
    world.fs.put("", {"cgroup.subtree_control": "cpuset memory\n"})
    world.fs.mkdir(SLICE)
    world.fs.mkdir(SCOPE)  # below a slice without cpuset for its children: not delegated
    world.fs.writes.clear()
    backend = Cgroup2Backend(
        world.fs.root, SCOPE, fs=world.fs, proc_root=world.proc, daemon_leaf=None,
        delegated=SCOPE, psi=None,
    )  # fmt: skip
    with pytest.raises(Unsupported) as info:
        backend.prepare()
    assert "cgroup.subtree_control lacks cpuset memory" in str(info.value)
    assert "zoned writes nothing there" in str(info.value)
    assert world.fs.writes == []


def test_a_running_scope_is_adopted_without_a_start(world: World) -> None:
    world.ensure()
    world.systemd.calls.clear()
    scope = world.ensure()
    assert scope.outcome == "adopted"  # type: ignore[attr-defined]
    assert [c[0] for c in world.systemd.calls] == ["active_state"]
    assert len(world.anchors) == 1


def test_a_scope_that_lost_its_anchor_gets_a_new_one(world: World) -> None:
    world.ensure()
    for cg in (SCOPE, f"{SCOPE}/{ANCHOR_LEAF}"):  # the sleep was killed
        world.fs.put(cg, {"cgroup.procs": ""})
    scope = world.ensure()
    assert scope.outcome == "re-anchored"  # type: ignore[attr-defined]
    new = world.anchors[1].pid
    assert world.systemd.calls[-1] == (
        "attach",
        "zoned-containers.scope",
        "/zoned.anchor",
        str(new),
    )


def test_an_anchor_left_in_the_scope_itself_moves_into_its_leaf(world: World) -> None:
    """A start cut short between systemd taking the anchor and zoned moving it."""
    world.systemd.start_scope("zoned-containers.scope", SLICE, [77], "x")
    world.ensure()
    assert world.fs.pids(f"{SCOPE}/{ANCHOR_LEAF}") == (77,)
    assert world.anchors == []


def test_a_failed_scope_is_reset_before_it_starts_again(world: World) -> None:
    world.systemd.states["zoned-containers.scope"] = "failed"
    world.ensure()
    names = [c[0] for c in world.systemd.calls]
    assert names.index("reset_failed") < names.index("start_scope")


def test_a_refused_start_kills_the_anchor_and_says_why_in_one_line(world: World) -> None:
    world.systemd.fail = "start_scope"
    with pytest.raises(BackendError) as info:
        world.ensure()
    assert "\n" not in str(info.value)
    assert "AccessDenied" in str(info.value)
    assert world.anchors[0].killed


def test_an_anchor_that_never_arrives_is_one_line(world: World) -> None:
    world.systemd.takes_pids = False
    with pytest.raises(BackendError) as info:
        world.ensure(arrives=False)
    assert str(info.value).startswith(
        f"systemd: zoned-containers.scope started, but its anchor (pid {world.anchors[0].pid})"
    )
    assert world.anchors[0].killed


def test_a_dry_run_starts_nothing(world: World) -> None:
    scope = world.ensure(dry_run=True)
    assert scope.outcome == "absent"  # type: ignore[attr-defined]
    assert world.anchors == []
    assert world.fs.writes == []
    assert [c[0] for c in world.systemd.calls] == ["active_state"]


# -- the daemon ----------------------------------------------------------------------------


def test_the_daemon_under_systemd_puts_its_containers_in_the_scope(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Old code: the parent stayed ``zoned`` at the root of systemd's tree."""
    (world.proc / "1").mkdir(parents=True)
    (world.proc / "1" / "comm").write_text("systemd\n")
    config = tmp_path / "zoned.yaml"
    config.write_text("host: {parent: zoned}\ncontainers:\n  web: {min: {nodes: 1}}\n")
    roots = HostRoots(tmp_path / "sys", world.proc, world.fs.root)
    monkeypatch.setattr("zoned.service.sdscope.spawn_anchor", world.spawn)
    monkeypatch.setattr("zoned.service.daemon.CgroupFs", lambda root: world.fs)
    d = Daemon(Options(config=config, roots=roots), systemd_bus=lambda: world.systemd)
    try:
        decls = d._delegate(d._load(), "v2", world.fs.root)
        assert decls.host.parent == SCOPE
        assert d._load().host.parent == SCOPE  # what a reload compares
        assert world.systemd.calls[-1] == ("close",)
        assert world.fs.pids(f"{SCOPE}/{ANCHOR_LEAF}") == (world.anchors[0].pid,)
    finally:
        d._wake_r.close()
        d._wake_w.close()


def test_commands_find_containers_in_the_scope_under_systemd(world: World, tmp_path: Path) -> None:
    """``zoned exec``/``adopt`` (``locate``) look where the daemon put the container; the
    old code looked for ``zoned/web`` at the root of systemd's tree."""
    from zoned.cli.commands._locate import locate

    config = tmp_path / "zoned.yaml"
    config.write_text("containers:\n  web: {min: {nodes: 1}}\n")
    world.ensure()
    world.fs.mkdir(f"{SCOPE}/web")
    (world.proc / "1").mkdir(parents=True, exist_ok=True)
    (world.proc / "1" / "comm").write_text("systemd\n")
    found = locate(config, "web", cgroup_root=world.fs.root, proc_root=world.proc)
    assert found.path == f"{SCOPE}/web"
    (world.proc / "1" / "comm").write_text("init\n")  # busybox init: the direct path
    found = locate(config, "web", cgroup_root=world.fs.root, proc_root=world.proc, must_exist=False)
    assert found.path == "zoned/web"
