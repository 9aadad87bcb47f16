"""The kernel-capabilities probe on fake trees: what it finds, what it writes, what it says."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tests.support.daemon import running
from zoned.cli.capsview import render_capabilities
from zoned.kernel.capabilities import (
    PSI_PROBE,
    RECLAIM_ARGS_PROBE,
    Capabilities,
    jobs,
    live_writer,
    probe,
    to_doc,
    write_once,
)
from zoned.kernel.roots import HostRoots

NUMA_STAT_V2 = "anon N0=0 N1=4096\nfile N0=8192 N1=0\nshmem N0=0 N1=0\n"
NUMA_STAT_V1 = "total=3 N0=1 N1=2\nfile=1 N0=1 N1=0\nanon=2 N0=0 N1=2\n"


def mount_line(i: int, point: Path, fstype: str, opts: str) -> str:
    return f"{i} 1 0:{i} / {point} rw,nosuid - {fstype} {fstype} {opts}"


def tree(
    base: Path,
    *,
    node_reclaim: bool = False,
    v2: str | None = "cpuset memory",
    v1: bool = False,
    psi: bool = True,
    damon: bool = False,
) -> HostRoots:
    """A fake /sys and /proc under ``base``: two nodes, the interfaces asked for."""
    roots = HostRoots(base / "sys", base / "proc")
    for nid in (0, 1):
        node = roots.sys / "devices" / "system" / "node" / f"node{nid}"
        node.mkdir(parents=True)
        if node_reclaim:
            (node / "reclaim").write_text("")
    (roots.proc / "sys" / "kernel").mkdir(parents=True)
    (roots.proc / "sys" / "kernel" / "osrelease").write_text("7.3.4+deb13-amd64\n")
    lines = []
    if v2 is not None:
        cg = roots.sys / "fs" / "cgroup"
        cg.mkdir(parents=True)
        (cg / "cgroup.controllers").write_text(v2 + "\n")
        if "memory" in v2.split():
            (cg / "memory.reclaim").write_text("")
            (cg / "memory.numa_stat").write_text(NUMA_STAT_V2)
        lines.append(mount_line(30, cg, "cgroup2", "rw,nsdelegate"))
    if v1:
        for i, c in enumerate(("cpuset", "memory")):
            point = base / "v1" / c
            point.mkdir(parents=True)
            lines.append(mount_line(40 + i, point, "cgroup", f"rw,{c}"))
        (base / "v1" / "memory" / "memory.numa_stat").write_text(NUMA_STAT_V1)
    (roots.proc / "self").mkdir(parents=True)
    (roots.proc / "self" / "mountinfo").write_text("".join(f"{x}\n" for x in lines))
    if psi:
        (roots.proc / "pressure").mkdir()
        (roots.proc / "pressure" / "memory").write_text("some avg10=0.00\n")
    if damon:
        (roots.sys / "kernel" / "mm" / "damon" / "admin").mkdir(parents=True)
    return roots


class Recorder:
    """A kernel's answers to the probe's writes, by file name; records every write."""

    def __init__(self, **answers: str) -> None:
        self.answers = answers
        self.writes: list[tuple[Path, str]] = []

    def __call__(self, path: Path, text: str) -> str:
        self.writes.append((path, text))
        return self.answers.get(path.name.replace(".", "_"), "ok")


def job(caps: Capabilities, name: str) -> tuple[str, str]:
    (found,) = [(j.path, j.note) for j in jobs(caps) if j.job == name]
    return found


def test_a_7x_kernel_has_node_reclaim_reclaim_arguments_psi_and_damon(tmp_path: Path) -> None:
    roots = tree(tmp_path, node_reclaim=True, damon=True)
    rec = Recorder()
    caps = probe(roots, rec)
    node0 = roots.sys / "devices" / "system" / "node" / "node0"
    assert caps.release == "7.3.4+deb13-amd64"
    assert caps.node_reclaim == node0 / "reclaim"
    assert caps.memory_reclaim == roots.sys / "fs" / "cgroup" / "memory.reclaim"
    assert (caps.reclaim_args, caps.psi_trigger) == ("ok", "ok")
    assert rec.writes == [
        (roots.sys / "fs" / "cgroup" / "memory.reclaim", RECLAIM_ARGS_PROBE),
        (roots.proc / "pressure" / "memory", PSI_PROBE),
    ]
    assert caps.hierarchy == "v2"
    assert caps.numa_stat_fields == ("anon", "file", "shmem")
    assert caps.damon_sysfs == roots.sys / "kernel" / "mm" / "damon" / "admin"
    assert job(caps, "reclaim a container's page cache") == ("memory.reclaim", "")
    path, note = job(caps, "reclaim what a donor leaves on a node")
    assert path == "nodeN/reclaim" and "alone" in note
    assert job(caps, "memory pressure signal") == ("PSI trigger on memory.pressure", "")
    path, note = job(caps, "move pages on hand-over")
    assert path == "the kernel's migration inside the cpuset.mems write"
    assert "migrate_pages/move_pages" in note and "measured" in note
    text = render_capabilities(caps)
    assert f"nodeN/reclaim: yes ({node0 / 'reclaim'})" in text
    assert "takes swappiness=" in text and "triggers armable" in text
    assert "/memory.numa_stat, 3 items, with anon and file)" in text


def test_a_read_only_node_reclaim_is_not_the_path(tmp_path: Path) -> None:
    # The unit's ProtectKernelTunables=yes mounts /sys read-only: the file is there, and
    # a write is refused with EROFS (access(2) says so first; docs/kernel-checks.md).
    caps = probe(tree(tmp_path, node_reclaim=True, damon=True), Recorder())
    assert caps.node_reclaim_writable  # root on a plain directory
    ro = dataclasses.replace(caps, node_reclaim_writable=False)
    path, note = job(ro, "reclaim what a donor leaves on a node")
    assert path == "memory.reclaim" and "read-only" in note
    assert "nodeN/reclaim: yes (" in render_capabilities(ro)
    assert ", read-only here)" in render_capabilities(ro)
    assert to_doc(ro)["node_reclaim_writable"] is False


def test_a_61_kernel_refuses_reclaim_arguments_and_has_no_node_reclaim(tmp_path: Path) -> None:
    caps = probe(tree(tmp_path), Recorder(memory_reclaim="EINVAL"))
    assert caps.node_reclaim is None and caps.damon_sysfs is None
    assert caps.reclaim_args == "EINVAL"
    assert "no nodeN/reclaim" in job(caps, "reclaim what a donor leaves on a node")[1]
    assert "memory.reclaim: yes (" in render_capabilities(caps)
    assert "no arguments (EINVAL)" in render_capabilities(caps)
    assert "nodeN/reclaim: no" in render_capabilities(caps)


def test_refused_psi_trigger_leaves_no_pressure_path_on_v2(tmp_path: Path) -> None:
    caps = probe(tree(tmp_path), Recorder(memory="EOPNOTSUPP"))
    assert caps.psi_trigger == "EOPNOTSUPP"
    assert job(caps, "memory pressure signal") == ("-", "PSI trigger refused: EOPNOTSUPP")
    caps = probe(tree(tmp_path / "nopsi", psi=False), Recorder())
    assert caps.psi is None and caps.psi_trigger is None
    assert job(caps, "memory pressure signal") == ("-", "no PSI")


def test_v1_hierarchies_from_mountinfo(tmp_path: Path) -> None:
    caps = probe(tree(tmp_path, v2="hugetlb", v1=True), Recorder())
    assert caps.v1_cpuset == tmp_path / "v1" / "cpuset"
    assert caps.v1_memory == tmp_path / "v1" / "memory"
    assert caps.hierarchy == "v1"
    assert caps.memory_reclaim is None and caps.reclaim_args is None
    assert caps.numa_stat == tmp_path / "v1" / "memory" / "memory.numa_stat"
    assert caps.numa_stat_fields == ("total", "file", "anon")
    assert "memory.numa_stat, 3 items, with anon and file)" in render_capabilities(caps)
    assert job(caps, "memory pressure signal") == ("memory.pressure_level (v1)", "")
    assert job(caps, "confine a zone to its nodes")[0].endswith("(v1)")


def test_numa_stat_from_a_child_when_the_root_has_none(tmp_path: Path) -> None:
    roots = tree(tmp_path)
    cg = roots.sys / "fs" / "cgroup"
    (cg / "memory.numa_stat").unlink()
    (cg / "web").mkdir()
    (cg / "web" / "memory.numa_stat").write_text(NUMA_STAT_V2)
    caps = probe(roots, Recorder())
    assert caps.numa_stat == cg / "web" / "memory.numa_stat"
    assert caps.numa_stat_fields == ("anon", "file", "shmem")


def test_an_empty_tree_has_nothing_and_zoned_no_path(tmp_path: Path) -> None:
    (tmp_path / "sys").mkdir()
    (tmp_path / "proc").mkdir()
    caps = probe(HostRoots(tmp_path / "sys", tmp_path / "proc"), Recorder())
    assert caps == Capabilities(
        release=None,
        node_reclaim=None,
        memory_reclaim=None,
        reclaim_args=None,
        psi=None,
        psi_trigger=None,
        cgroup2=None,
        cgroup2_controllers=frozenset(),
        v1_cpuset=None,
        v1_memory=None,
        numa_stat=None,
        numa_stat_fields=(),
        damon_sysfs=None,
    )
    assert caps.hierarchy is None
    assert {j.path for j in jobs(caps)} == {"-"}
    assert "kernel: unknown (cgroup hierarchy zoned can use: none)" in render_capabilities(caps)


def test_without_a_writer_nothing_is_written(tmp_path: Path) -> None:
    roots = tree(tmp_path)
    caps = probe(roots)
    assert (caps.reclaim_args, caps.psi_trigger) == (None, None)
    assert (roots.sys / "fs" / "cgroup" / "memory.reclaim").read_text() == ""
    assert (roots.proc / "pressure" / "memory").read_text() == "some avg10=0.00\n"
    assert "arguments not probed" in render_capabilities(caps)
    assert job(caps, "memory pressure signal")[0] == "PSI trigger on memory.pressure"


def test_only_the_live_roots_get_the_write_probes(tmp_path: Path) -> None:
    assert live_writer(HostRoots()) is write_once
    assert live_writer(HostRoots(cgroup=Path("/sys/fs/cgroup"))) is write_once
    assert live_writer(HostRoots(cgroup=tmp_path)) is None
    assert live_writer(HostRoots.under(tmp_path)) is None


def test_write_once_reports_the_errno(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_text("")
    assert write_once(target, "x") == "ok" and target.read_text() == "x"
    assert write_once(tmp_path / "missing", "x") == "ENOENT"
    assert write_once(tmp_path, "x") == "EISDIR"


def test_doc_is_json_data_with_the_jobs(tmp_path: Path) -> None:
    doc = to_doc(probe(tree(tmp_path, node_reclaim=True), Recorder()))
    assert doc["node_reclaim"] == str(
        tmp_path / "sys" / "devices" / "system" / "node" / "node0" / "reclaim"
    )
    assert doc["hierarchy"] == "v2" and doc["cgroup2_controllers"] == ["cpuset", "memory"]
    assert {j["job"] for j in doc["jobs"]} >= {"memory pressure signal", "usage per node"}


@pytest.mark.parametrize("caps", [None, {"release": "7.3.4+deb13-amd64", "jobs": []}])
def test_status_carries_the_probe(tmp_path: Path, caps: dict[str, object] | None) -> None:
    with running(tmp_path) as r:
        assert r.status()["kernel"] is None  # the simulated host has no kernel to probe
        r.daemon.kernel_caps = caps
        assert r.status()["kernel"] == caps
