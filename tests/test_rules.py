"""Rule matching, event decoding, the mover on a fake /proc, systemd checks: no root needed."""

from __future__ import annotations

import dataclasses
import struct
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from zoned.config.load import loads
from zoned.config.match import MatchRule, Pattern
from zoned.errors import CgroupGone
from zoned.kernel.proc import cgroup_from_proc, children, is_kernel_thread, read_proc
from zoned.kernel.procwatch import (
    OVERRUN,
    PROC_EVENT_EXEC,
    PROC_EVENT_EXIT,
    PROC_EVENT_FORK,
    ProcEvent,
    ProcEventKind,
    decode,
)
from zoned.model.process import ProcInfo, cgroup_within
from zoned.policy.rules import RuleSet
from zoned.service.mover import RuleMover
from zoned.service.systemd import Runner, systemd_conflicts

# -- patterns and rules -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "value", "hit"),
    [
        ("/usr/bin/sleep", "/usr/bin/sleep", True),
        ("/usr/bin/sleep", "/usr/bin/sleepy", False),
        ("glob:/opt/*/bin/*", "/opt/app/bin/run", True),
        ("glob:/opt/*/bin/*", "/usr/bin/run", False),
        ("re:^python3? .*train", "python3 -m x.train --fast", True),
        ("re:^python3? .*train", "/usr/bin/python3 train", False),
        ("re:train", "python train.py", True),  # searched, not anchored
    ],
)
def test_patterns(spec: str, value: str, hit: bool) -> None:
    assert Pattern.parse(spec).matches(value) is hit


def test_pattern_prints_as_written_and_refuses_a_bad_regex() -> None:
    assert str(Pattern.parse("re:^a")) == "re:^a"
    assert str(Pattern.parse("/bin/x")) == "/bin/x"
    with pytest.raises(ValueError, match="bad regular expression"):
        Pattern.parse("re:(")


BASE = ProcInfo(
    pid=100,
    exe="/usr/bin/python3",
    cmdline=("python3", "train.py"),
    uid=1000,
    user="batch",
    cgroup="system.slice/cron.service",
)


def info(**kw: Any) -> ProcInfo:
    return dataclasses.replace(BASE, **kw)


def test_all_keys_of_a_rule_must_hold() -> None:
    rule = MatchRule(exe=Pattern.parse("/usr/bin/python3"), user="batch")
    assert rule.matches(info())
    assert not rule.matches(info(user="web"))
    assert not rule.matches(info(exe="/usr/bin/perl"))
    assert not rule.matches(info(exe=None))


def test_user_by_uid_and_parent_cgroup_at_or_below() -> None:
    assert MatchRule(user=1000).matches(info())
    assert not MatchRule(user=0).matches(info())
    assert MatchRule(parent_cgroup="system.slice").matches(info())
    assert MatchRule(parent_cgroup="/system.slice/cron.service/").matches(info())
    assert not MatchRule(parent_cgroup="system.slice/cron").matches(info())
    assert not MatchRule(parent_cgroup="system.slice").matches(info(cgroup=None))


def test_an_empty_rule_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        MatchRule()


def test_cgroup_within() -> None:
    assert cgroup_within("a/b/c", "a/b")
    assert cgroup_within("a/b", "/a/b/")
    assert not cgroup_within("a/bc", "a/b")
    assert cgroup_within("anything", "")


CONFIG = """
host: {parent: zoned}
containers:
  web:
    min: 100M
    match:
      - exe: /usr/sbin/nginx
  batch:
    min: 100M
    match:
      - cmdline: "re:train"
      - {user: batch, exe: "glob:/usr/bin/python*"}
  api:
    min: 100M
    cgroup: system.slice/api.service
"""


def rules() -> RuleSet:
    return RuleSet.from_declarations(loads(CONFIG))


def test_first_declared_container_wins_and_containers_are_never_robbed() -> None:
    rs = rules()
    assert list(rs.containers()) == ["web", "batch"]
    v = rs.classify(info(exe="/usr/sbin/nginx", cmdline=("nginx", "train")))
    assert v is not None and v.container == "web"
    v = rs.classify(info())
    assert v is not None and v.container == "batch" and str(v.rule) == "cmdline re:train"
    # Already inside a declared container (created or adopted): left alone.
    assert rs.classify(info(cgroup="zoned/web")) is None
    assert rs.classify(info(cgroup="system.slice/api.service/child")) is None
    assert rs.classify(info(exe="/bin/sh", cmdline=("sh",), user="root")) is None


def test_container_at_prefers_the_deepest_declared_cgroup() -> None:
    rs = RuleSet([], {"outer": "a", "inner": "a/b"})
    assert rs.container_at("a/b/c") == "inner"
    assert rs.container_at("a/x") == "outer"
    assert rs.container_at("z") is None


# -- /proc parsing -----------------------------------------------------------------------


def test_cgroup_from_proc_prefers_the_v1_cpuset_line() -> None:
    v1 = "12:memory:/zoned/web\n3:cpuset,cpu:/zoned/web\n0::/user.slice\n"
    assert cgroup_from_proc(v1) == "zoned/web"
    assert cgroup_from_proc("0::/system.slice/x.service\n") == "system.slice/x.service"
    assert cgroup_from_proc("0::/\n") == ""
    assert cgroup_from_proc("4:memory:/a\n") is None


def fake_proc(
    root: Path,
    pid: int,
    *,
    exe: str | None = "/usr/bin/sleep",
    argv: Sequence[str] = ("sleep", "30"),
    uid: int = 0,
    cgroup: str = "/",
    kids: Sequence[int] = (),
    flags: int = 0x400100,
) -> None:
    d = root / str(pid)
    (d / "task" / str(pid)).mkdir(parents=True)
    if exe is not None:
        (d / "exe").symlink_to(exe)
    (d / "cmdline").write_bytes(b"".join(a.encode() + b"\0" for a in argv))
    (d / "status").write_text(f"Name:\tx\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n")
    (d / "cgroup").write_text(f"3:cpuset:{cgroup}\n4:memory:{cgroup}\n")
    (d / "comm").write_text("x (y) z\n")
    (d / "stat").write_text(f"{pid} (x) y) S 1 1 1 0 -1 {flags} 0 0 0 0\n")
    (d / "task" / str(pid) / "children").write_text(" ".join(map(str, kids)))


def test_read_proc_and_kernel_threads(tmp_path: Path) -> None:
    fake_proc(tmp_path, 10, argv=("sleep", "30", "a b"), uid=0, cgroup="/x/y")
    fake_proc(tmp_path, 2, exe=None, argv=(), flags=0x208040)
    p = read_proc(tmp_path, 10)
    assert p == ProcInfo(10, "/usr/bin/sleep", ("sleep", "30", "a b"), 0, "root", "x/y")
    assert p is not None and p.command == "sleep 30 a b"
    assert read_proc(tmp_path, 2) is None  # no exe: kernel thread or zombie
    assert read_proc(tmp_path, 99) is None  # gone
    assert is_kernel_thread(tmp_path, 2) is True
    assert is_kernel_thread(tmp_path, 10) is False  # comm with ") " does not shift fields
    assert is_kernel_thread(tmp_path, 99) is None


# -- event decoding ----------------------------------------------------------------------


def datagram(what: int, *data: int, ts: int = 7) -> bytes:
    payload = struct.pack("=IIQ", what, 0, ts) + struct.pack(f"={len(data)}I", *data)
    cn = struct.pack("=IIIIHH", 1, 1, 0, 0, len(payload), 0)
    body = cn + payload
    return struct.pack("=IHHII", 16 + len(body), 3, 0, 0, 0) + body


def test_decode_keeps_processes_and_drops_threads() -> None:
    assert decode(datagram(PROC_EVENT_EXEC, 51, 50)) == [ProcEvent(ProcEventKind.EXEC, 50, 0, 7)]
    assert decode(datagram(PROC_EVENT_FORK, 9, 9, 50, 50)) == [
        ProcEvent(ProcEventKind.FORK, 50, 9, 7)
    ]
    assert decode(datagram(PROC_EVENT_FORK, 9, 9, 51, 50)) == []  # a new thread
    assert decode(datagram(PROC_EVENT_EXIT, 50, 50, 0, 17, 9, 9)) == [
        ProcEvent(ProcEventKind.EXIT, 50, 0, 7)
    ]
    assert decode(datagram(PROC_EVENT_EXIT, 51, 50, 0, 0, 9, 9)) == []  # a thread exits
    assert decode(datagram(0x200, 50, 50, 0, 0, 0, 0)) == []  # COMM: not wanted
    assert decode(b"\0" * 10) == []
    two = datagram(PROC_EVENT_EXEC, 1, 1) + datagram(PROC_EVENT_EXEC, 2, 2)
    assert [e.pid for e in decode(two)] == [1, 2]


# -- the mover on a fake /proc -----------------------------------------------------------


class Attacher:
    def __init__(self, proc: Path, paths: dict[str, str]) -> None:
        self.proc = proc
        self.paths = paths
        self.moves: list[tuple[str, int]] = []

    def __call__(self, container: str, pid: int) -> None:
        cg = self.proc / str(pid) / "cgroup"
        if not cg.exists():
            raise CgroupGone(f"pid {pid} gone", 3)  # ESRCH
        self.moves.append((container, pid))
        path = self.paths[container]
        cg.write_text(f"3:cpuset:/{path}\n4:memory:/{path}\n")


def mover(proc: Path) -> tuple[RuleMover, Attacher]:
    rs = rules()
    att = Attacher(proc, rs.paths)
    return RuleMover(att, rs, proc, self_pid=1), att


def exec_(pid: int) -> ProcEvent:
    return ProcEvent(ProcEventKind.EXEC, pid, 0, 1)


def test_mover_moves_a_match_and_the_children_it_forked_before(tmp_path: Path) -> None:
    fake_proc(tmp_path, 10, exe="/usr/sbin/nginx", argv=("nginx",), kids=[11])
    fake_proc(tmp_path, 11, exe="/usr/sbin/nginx", argv=("nginx",), kids=[12])
    fake_proc(tmp_path, 12, exe="/usr/bin/cat", argv=("cat",))
    m, att = mover(tmp_path)
    lines = m.handle([exec_(10)])
    assert att.moves == [("web", 10), ("web", 11), ("web", 12)]
    assert lines[0] == "moved pid 10 (/usr/sbin/nginx) to web: exe /usr/sbin/nginx"
    # A later fork of a matched process follows; one forked after the move is already in.
    fake_proc(tmp_path, 13, exe="/usr/bin/cat", argv=("cat",))
    fake_proc(tmp_path, 14, exe="/usr/bin/cat", argv=("cat",), cgroup="/zoned/web")
    m.handle([ProcEvent(ProcEventKind.FORK, 13, 10), ProcEvent(ProcEventKind.FORK, 14, 10)])
    assert att.moves[-1] == ("web", 13)
    assert len(att.moves) == 4
    # An exited process is forgotten: its pid's later forks are not followed.
    m.handle([ProcEvent(ProcEventKind.EXIT, 10), ProcEvent(ProcEventKind.FORK, 15, 10)])
    assert len(att.moves) == 4
    assert m.stats.moved == 4 and m.stats.forks_followed == 3


def test_mover_ignores_the_gone_the_unmatched_and_its_own(tmp_path: Path) -> None:
    fake_proc(tmp_path, 20, exe="/usr/bin/cat", argv=("cat",))
    fake_proc(tmp_path, 21, exe="/usr/sbin/nginx", argv=("nginx",), cgroup="/zoned/batch")
    fake_proc(tmp_path, 1, exe="/usr/sbin/nginx", argv=("nginx",))
    m, att = mover(tmp_path)
    assert m.handle([exec_(20), exec_(21), exec_(1), exec_(99)]) == []
    assert att.moves == []
    assert m.stats.gone_before_read == 1 and m.stats.execs == 4


def test_mover_counts_a_process_gone_before_its_move(tmp_path: Path) -> None:
    fake_proc(tmp_path, 30, exe="/usr/sbin/nginx", argv=("nginx",))
    m, _ = mover(tmp_path)

    def vanish(container: str, pid: int) -> None:
        raise CgroupGone("gone", 3)

    m._attach = vanish
    assert m.handle([exec_(30)]) == []
    assert m.stats.gone_before_move == 1


def test_overrun_rescans_proc_once(tmp_path: Path) -> None:
    fake_proc(tmp_path, 40, exe="/usr/sbin/nginx", argv=("nginx",))
    fake_proc(tmp_path, 41, exe="/usr/bin/python3", argv=("python3", "train.py"))
    m, att = mover(tmp_path)
    lines = m.handle([OVERRUN, OVERRUN])
    assert lines[0].startswith("process events were lost (socket overrun, ENOBUFS)")
    assert sorted(att.moves) == [("batch", 41), ("web", 40)]
    assert m.stats.rescans == 1 and m.stats.overruns == 1
    assert children(tmp_path, 40) == []


# -- systemd -----------------------------------------------------------------------------


def runner(props: dict[str, str]) -> Runner:
    def run(argv: Sequence[str]) -> str:
        assert list(argv[:5]) == ["systemctl", "show", "-p", "AllowedMemoryNodes,Delegate", argv[4]]
        return props.get(argv[4], "AllowedMemoryNodes=\nDelegate=no\n")

    return run


def test_systemd_allowed_memory_nodes_is_a_conflict() -> None:
    run = runner({"nginx.service": "AllowedMemoryNodes=1-2\nDelegate=no\n"})
    (msg,) = systemd_conflicts("system.slice/nginx.service", run)
    assert "remove AllowedMemoryNodes= from nginx.service or drop" in msg
    assert systemd_conflicts("system.slice/web.service", runner({})) == []


def test_systemd_path_below_an_undelegated_unit_is_a_conflict() -> None:
    (msg,) = systemd_conflicts("system.slice/web.service/inner", runner({}))
    assert "not delegated" in msg
    run = runner({"web.service": "AllowedMemoryNodes=\nDelegate=yes\n"})
    assert systemd_conflicts("system.slice/web.service/inner", run) == []


def test_systemd_not_reachable_says_so() -> None:
    def broken(argv: Sequence[str]) -> str:
        raise subprocess.CalledProcessError(1, list(argv))

    (msg,) = systemd_conflicts("system.slice/x.service", broken)
    assert msg.startswith("cannot ask systemd about system.slice")
