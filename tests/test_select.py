"""Backend selection on fake mountinfo / proc / sys / cgroup trees (no root, no kernel)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.fakes.sysfs import FakeSys
from tests.fakes.v1tree import FakeV1Tree
from zoned.backends.cgroup1 import Cgroup1Backend
from zoned.backends.cgroup2 import Cgroup2Backend
from zoned.backends.select import check_host, fd_loop_of, must_move, open_backend
from zoned.config.decl import Declarations
from zoned.config.load import loads
from zoned.errors import Unsupported

V1 = """\
31 23 0:28 / {root}/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
34 31 0:31 / {root}/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / {root}/cgroup/memory rw,relatime - cgroup cgroup rw,memory
"""
V2 = "30 23 0:27 / {root}/cgroup rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw\n"
# cpuset on v1, memory on v2 (a half-converted host)
SPLIT = """\
30 23 0:27 / {root}/cgroup rw,relatime - cgroup2 cgroup2 rw
34 30 0:31 / {root}/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
"""
PSI = (
    "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
    "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
)


def decls(hierarchy: str = "auto") -> Declarations:
    return loads(
        f"host: {{hierarchy: {hierarchy}, reserved_nodes: [0]}}\n"
        "containers:\n  web: {min: {nodes: 1}, max: {nodes: 2}}\n"
    )


def host(
    tmp: Path,
    mountinfo: str,
    *,
    nodes: int = 4,
    controllers: str | None = "cpuset memory pids",
    psi: bool = True,
    cmdline: str = "root=/dev/vda1 numa=fake=4",
) -> FakeSys:
    fs = FakeSys(tmp)
    for n in range(nodes):
        fs.node(n, 256)
    fs.cmdline(cmdline).proc("self/mountinfo", mountinfo.format(root=tmp))
    if psi:
        fs.proc("pressure/memory", PSI)
    fs.build()
    (tmp / "cgroup" / "cpuset").mkdir(parents=True, exist_ok=True)
    (tmp / "cgroup" / "memory").mkdir(parents=True, exist_ok=True)
    if controllers is not None:
        (tmp / "cgroup" / "cgroup.controllers").write_text(controllers + "\n")
    return fs


def check(tmp: Path, fs: FakeSys, d: Declarations | None = None, **kw: object):  # type: ignore[no-untyped-def]
    return check_host(
        d or decls(),
        cgroup_root=tmp / "cgroup",
        sys_root=fs.sys_root,
        proc_root=fs.proc_root,
        **kw,  # type: ignore[arg-type]
    )


def test_v1_host_picks_v1_with_each_controller_root(tmp_path: Path) -> None:
    fs = host(tmp_path, V1, controllers=None)
    hc = check(tmp_path, fs)
    assert hc.hierarchy == "v1"
    assert hc.cpuset_root == tmp_path / "cgroup" / "cpuset"
    assert hc.memory_root == tmp_path / "cgroup" / "memory"
    assert not hc.single_node and hc.warnings == ()


def test_v2_host_with_both_controllers_picks_v2(tmp_path: Path) -> None:
    hc = check(tmp_path, host(tmp_path, V2))
    assert hc.hierarchy == "v2" and hc.cgroup_root == tmp_path / "cgroup" and hc.psi


def test_v2_without_cpuset_names_it(tmp_path: Path) -> None:
    fs = host(tmp_path, V2, controllers="memory pids")
    with pytest.raises(
        Unsupported, match=r"the cpuset cgroup controller is not mounted \(neither v1 nor v2\)"
    ):
        check(tmp_path, fs)
    with pytest.raises(Unsupported, match="cpuset controller is not available on cgroup v2"):
        check(tmp_path, fs, decls("v2"))


def test_controllers_split_across_versions_refused(tmp_path: Path) -> None:
    fs = host(tmp_path, SPLIT, controllers="memory")
    with pytest.raises(Unsupported, match="cpuset is on cgroup v1 and memory on cgroup v2"):
        check(tmp_path, fs)


def test_insisting_on_v2_on_a_v1_host(tmp_path: Path) -> None:
    fs = host(tmp_path, V1, controllers=None)
    with pytest.raises(Unsupported, match="no cgroup2 file system is mounted"):
        check(tmp_path, fs, decls("v2"))


def test_insisting_on_v1_when_memory_is_on_v2(tmp_path: Path) -> None:
    fs = host(tmp_path, SPLIT, controllers="memory")
    with pytest.raises(Unsupported, match=r"no cgroup v1 hierarchy carries memory \(memory is on"):
        check(tmp_path, fs, decls("v1"))


def test_v2_needs_psi(tmp_path: Path) -> None:
    fs = host(tmp_path, V2, cmdline="root=/dev/vda1 psi=0")
    with pytest.raises(Unsupported, match=r"needs PSI.*psi=0"):
        check(tmp_path, fs)


def test_v2_needs_pressure_file(tmp_path: Path) -> None:
    fs = host(tmp_path, V2, psi=False)
    with pytest.raises(Unsupported, match=r"pressure/memory is missing"):
        check(tmp_path, fs)


def test_v1_runs_without_psi(tmp_path: Path) -> None:
    fs = host(tmp_path, V1, controllers=None, psi=False)
    hc = check(tmp_path, fs)
    assert hc.hierarchy == "v1" and not hc.psi


def test_parent_not_writable_refused_with_what_to_do(tmp_path: Path) -> None:
    fs = host(tmp_path, V2)
    with pytest.raises(Unsupported, match=r"not writable by uid 0.*Delegate=yes"):
        check(tmp_path, fs, access=lambda p, m: False)


def test_unprivileged_needs_a_delegated_parent(tmp_path: Path) -> None:
    fs = host(tmp_path, V2)
    with pytest.raises(Unsupported, match=r"belongs to uid 0, not to zoned \(uid 1000\)"):
        check(tmp_path, fs, euid=1000, access=lambda p, m: True)
    owned = tmp_path / "cgroup" / "zoned"
    owned.mkdir()
    import os

    os.chown(owned, 1000, 1000)
    assert check(tmp_path, fs, euid=1000, access=lambda p, m: True).hierarchy == "v2"


def test_missing_root_refused(tmp_path: Path) -> None:
    fs = host(tmp_path, V2)
    with pytest.raises(Unsupported, match="is not the cgroup v2 mount"):
        check_host(
            decls(), cgroup_root=tmp_path / "nowhere", sys_root=fs.sys_root, proc_root=fs.proc_root
        )


def test_single_node_runs_but_says_it_cannot_juggle(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fs = host(tmp_path, V1, nodes=1, controllers=None)
    with caplog.at_level(logging.WARNING):
        hc = check(tmp_path, fs)
    assert hc.single_node
    assert "cannot juggle" in hc.warnings[0]
    assert "cannot juggle" in caplog.text


def test_open_backend_builds_v1_on_the_fake_tree(tmp_path: Path) -> None:
    tree = FakeV1Tree(tmp_path, nodes="0")
    (tree.proc_root / "pressure").mkdir()
    b = open_backend(
        decls(), cgroup_root=tmp_path / "cgroup", sys_root=tree.sys_root, proc_root=tree.proc_root
    )
    try:
        assert isinstance(b, Cgroup1Backend)
        assert b.cpuset.root == tree.cpuset_root
        assert fd_loop_of(b) is not None
    finally:
        b.close()


def test_open_backend_builds_v2(tmp_path: Path) -> None:
    fs = host(tmp_path, V2)
    b = open_backend(
        decls(), cgroup_root=tmp_path / "cgroup", sys_root=fs.sys_root, proc_root=fs.proc_root
    )
    try:
        assert isinstance(b, Cgroup2Backend)
        assert b.parent == "zoned"
        assert fd_loop_of(b) is not None
    finally:
        b.close()


@pytest.mark.parametrize(
    ("own", "parent", "move"),
    [
        ("/", "zoned", False),  # the root is exempt from the no-internal-process rule
        ("/system.slice/zoned.service", "zoned", False),  # stays: keeps MemoryMin=
        ("/user.slice/session-1.scope", "zoned", False),
        ("/zoned", "zoned", True),  # in the parent itself
        ("/a", "a/b/zoned", True),  # on the path down to it
        ("/zoned/web", "zoned", True),  # inside its subtree: a container's cgroup
        ("/ab", "a/zoned", False),  # a name prefix is not an ancestor
    ],
)
def test_daemon_moves_only_when_on_the_parents_path(
    tmp_path: Path, own: str, parent: str, move: bool
) -> None:
    (tmp_path / "self").mkdir()
    (tmp_path / "self" / "cgroup").write_text(f"0::{own}\n")
    assert must_move(parent, tmp_path) is move


def test_daemon_moves_when_its_cgroup_is_unknown(tmp_path: Path) -> None:
    assert must_move("zoned", tmp_path) is True
