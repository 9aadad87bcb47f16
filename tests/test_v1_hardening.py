"""Issue 14 on a fake v1 tree: the root flag is opt-in and restored, a failed admission
leaves no cgroup behind, an interrupted reclaim's lowered limit is put back at restart."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from tests.fakes.sysfs import DATA
from tests.fakes.v1tree import NO_LIMIT, FakeV1Tree
from tests.support.faults import Killer
from tests.support.jsondocs import parse as parse_json
from zoned.backends.cgroup1 import Cgroup1Backend
from zoned.backends.select import open_backend
from zoned.backends.v1rootflag import NOTE_NAME
from zoned.cli.main import main
from zoned.config.decl import Amount, ContainerDecl
from zoned.config.load import loads
from zoned.errors import WriteRefused
from zoned.kernel import faults

FLAG = "cpuset.memory_pressure_enabled"
WEB = ContainerDecl("web", Amount.nodes(1), Amount.nodes(2))


@pytest.fixture
def tree(tmp_path: Path) -> FakeV1Tree:
    t = FakeV1Tree(tmp_path / "host", nodes="0-1")
    (t.proc_root / "pressure").mkdir()
    return t


def backend(tree: FakeV1Tree, state: Path | None, *, enable: bool = False) -> Cgroup1Backend:
    return Cgroup1Backend(
        proc_root=tree.proc_root,
        sys_root=tree.sys_root,
        enable_memory_pressure=enable,
        state_dir=state,
        fs_factory=tree.fs_for,
        page_size=4096,
    )


def root_writes(tree: FakeV1Tree) -> list[tuple[str, str, str]]:
    return [w for w in tree.cpuset.writes if w[0] == ""]


def test_the_daemon_writes_no_root_flag_unless_asked(tree: FakeV1Tree, tmp_path: Path) -> None:
    decls = loads("host: {hierarchy: v1, reserved_nodes: [0]}\ncontainers: {}\n")
    for dry_run, opt_in in ((False, False), (True, True)):
        b = open_backend(
            decls,
            cgroup_root=tree.tmp / "cgroup",
            sys_root=tree.sys_root,
            proc_root=tree.proc_root,
            dry_run=dry_run,
            v1_memory_pressure=opt_in,
            state_dir=tmp_path / "run",
        )
        b.close()
    assert root_writes(tree) == []  # not by default, never in a dry run


def test_the_flag_is_restored_even_after_a_crash(tree: FakeV1Tree, tmp_path: Path) -> None:
    state = tmp_path / "run"
    crashed = backend(tree, state, enable=True)
    assert tree.cpuset.read("", FLAG) == "1"
    assert (state / NOTE_NAME).read_text() == "0\n"
    crashed.root_flag.restore_to = None  # killed: its close() never runs to restore
    crashed.close()
    assert tree.cpuset.read("", FLAG) == "1"
    restarted = backend(tree, state, enable=True)  # reads the note, not the 1 left behind
    restarted.close()
    assert tree.cpuset.read("", FLAG) == "0"
    assert not (state / NOTE_NAME).exists()


def test_a_flag_the_host_set_is_left_alone(tree: FakeV1Tree, tmp_path: Path) -> None:
    tree.cpuset.path("", FLAG).write_text("1\n")
    backend(tree, tmp_path / "run", enable=True).close()
    assert root_writes(tree) == []
    assert tree.cpuset.read("", FLAG) == "1"


def test_check_says_whether_the_flag_is_on(
    tree: FakeV1Tree, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "zoned.yaml"
    cfg.write_text("host: {reserved_nodes: [0]}\ncontainers:\n  web: {min: 1M}\n")
    # The fake v1 tree's sysfs has one node, which check refuses: the nodes of the 8-node tree.
    argv = ["check", str(cfg), "--sysfs-root", str(DATA / "sys-8node")]
    assert main([*argv, "--proc-root", str(tree.proc_root)]) == 0
    out = capsys.readouterr().out
    assert f"{tree.cpuset_root}/{FLAG} is off (0)" in out
    assert "--v1-memory-pressure" in out
    assert main([*argv, "--proc-root", str(tree.proc_root), "--json"]) == 0
    assert "is off (0)" in parse_json(capsys.readouterr().out)["v1_memory_pressure"]


def test_a_failed_admission_removes_what_it_created(tree: FakeV1Tree) -> None:
    b = backend(tree, None)
    try:
        with pytest.raises(WriteRefused) as exc:
            b.ensure(WEB, frozenset({5}))  # an offline node: EINVAL
        assert exc.value.errno == errno.EINVAL
        assert "\n" not in str(exc.value)
        for fs in (tree.cpuset, tree.memory):
            assert not fs.exists("zoned/web")
            assert not fs.exists("zoned")  # the parent this call made too
        assert b.existing() == {}
    finally:
        b.close()


def test_a_failed_admission_keeps_a_cgroup_it_did_not_create(tree: FakeV1Tree) -> None:
    tree.make("zoned/web", mems="0")
    b = backend(tree, None)
    try:
        with pytest.raises(WriteRefused):
            b.ensure(WEB, frozenset({5}))
        assert tree.cpuset.exists("zoned/web") and tree.memory.exists("zoned/web")
    finally:
        b.close()


def test_a_limit_left_lowered_by_a_killed_reclaim_is_restored(
    tree: FakeV1Tree, tmp_path: Path
) -> None:
    state = tmp_path / "run"
    b = backend(tree, state)
    b.ensure(WEB, frozenset({0}))
    tree.set_memory("zoned/web", "memory.usage_in_bytes", str(64 << 20))

    killer = Killer("reclaim.limit_lowered")
    with faults.installed(killer.point, killer.write), pytest.raises(faults.Killed):
        b.reclaim_now("zoned/web", 32 << 20)
    b.close()
    assert tree.memory.read("zoned/web", "memory.limit_in_bytes") != NO_LIMIT  # left lowered
    again = backend(tree, state)
    again.ensure(WEB, frozenset({0}))
    again.close()
    assert tree.memory.read("zoned/web", "memory.limit_in_bytes") == NO_LIMIT
    assert list(state.iterdir()) == []


def test_memory_pressure_means_nothing_while_the_flag_is_off(
    tree: FakeV1Tree, tmp_path: Path
) -> None:
    b = backend(tree, None)
    try:
        b.ensure(WEB, frozenset({0}))
        assert b.memory_pressure("web") is None  # not 0: nobody may read it as calm
        tree.cpuset.path("", FLAG).write_text("1\n")
        tree.cpuset.path("zoned/web", "cpuset.memory_pressure").write_text("12\n")
        assert b.memory_pressure("web") == 12
    finally:
        b.close()


def test_a_restart_without_the_option_still_restores_the_flag(
    tree: FakeV1Tree, tmp_path: Path
) -> None:
    state = tmp_path / "run"
    crashed = backend(tree, state, enable=True)
    crashed.root_flag.restore_to = None  # killed: its close() never runs to restore
    crashed.close()
    assert tree.cpuset.read("", FLAG) == "1"
    backend(tree, state).close()  # restarted without --v1-memory-pressure
    assert tree.cpuset.read("", FLAG) == "0"
    assert not (state / NOTE_NAME).exists()
