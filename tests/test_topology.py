"""read_topology on fake trees, the numa=fake= planner, warnings, and ``zoned topology``."""

from __future__ import annotations

import filecmp
import sys
import types
from pathlib import Path

import pytest

from tests.fakes.sysfs import DATA, FakeSys, write_8node
from tests.support.jsondocs import parse as parse_json
from zoned.cli.capsview import render_capabilities
from zoned.cli.commands import topology as topology_cmd
from zoned.cli.main import main
from zoned.config.decl import Amount, ContainerDecl, Declarations
from zoned.errors import TopologyError
from zoned.kernel.capabilities import probe
from zoned.kernel.roots import HostRoots
from zoned.kernel.topology import (
    fake_numa_arg,
    machine_memory,
    parse_node_meminfo,
    read_node_memory,
    read_topology,
)
from zoned.model.sizes import GIB, KIB, MIB
from zoned.policy.fakenuma import boot_steps, plan_fake_numa, recommend_fake_numa, warnings

SYS8 = DATA / "sys-8node"
PROC8 = DATA / "proc-8node"
MEASURED_256M = (288, 256, 256, 256, 208, 256, 479)  # numa=fake=256M on 2 GiB, measured


def uneven(tmp_path: Path) -> FakeSys:
    fs = FakeSys(tmp_path).cmdline("root=/dev/vda1 numa=fake=256M").numa_balancing(0)
    for nid, mib in enumerate(MEASURED_256M):
        fs.node(nid, mib, mib - 10, 5)
    return fs.build()


# ------------------------------------------------------------------ read_topology


def test_uneven_nodes_are_read_as_the_kernel_sized_them(tmp_path: Path) -> None:
    fs = uneven(tmp_path)
    topo = read_topology(fs.sys_root, fs.proc_root)
    assert topo.node_ids == (0, 1, 2, 3, 4, 5, 6)
    assert [n.mem_total for n in topo.nodes] == [m * MIB for m in MEASURED_256M]
    assert [n.mem_free for n in topo.nodes] == [(m - 10) * MIB for m in MEASURED_256M]
    assert all(n.file_pages == 5 * MIB for n in topo.nodes)
    assert all(n.cpus == (0, 1) for n in topo.nodes)
    assert all(n.distances == (10,) * 7 for n in topo.nodes)
    assert topo.fake_numa == "256M"
    assert topo.numa_balancing is False
    assert topo.cmdline == "root=/dev/vda1 numa=fake=256M"
    # node 0 (288M) is the largest here: no "node 0 smaller" warning, no other either.
    assert warnings(topo) == []


def test_static_8node_tree() -> None:
    topo = read_topology(SYS8, PROC8)
    assert topo.node_ids == tuple(range(8))
    assert topo.node(0).mem_total == 215_732 * KIB
    assert topo.node(0).mem_free == 112_604 * KIB
    assert topo.node(0).file_pages == 61_448 * KIB
    assert topo.node(7).mem_total == 254_148 * KIB
    assert topo.fake_numa == "8"
    assert topo.numa_balancing is False
    assert topo.memory_node_ids == tuple(range(8))
    assert [w.split(" ")[:2] for w in warnings(topo)] == [["node", "0"]]


def test_static_8node_tree_is_what_the_generator_writes(tmp_path: Path) -> None:
    sys_dir, proc_dir = write_8node(tmp_path)
    for ours, theirs in ((sys_dir, SYS8), (proc_dir, PROC8)):
        cmp = filecmp.dircmp(ours, theirs)
        stack = [cmp]
        while stack:
            c = stack.pop()
            assert c.left_only == [] and c.right_only == [], c.left
            _, mismatch, errors = filecmp.cmpfiles(c.left, c.right, c.common_files, shallow=False)
            assert mismatch == [] and errors == [], (c.left, mismatch, errors)
            stack.extend(c.subdirs.values())


def test_config_numa_n_is_one_node_from_proc_meminfo(tmp_path: Path) -> None:
    fs = FakeSys(tmp_path).node(0, 1024, 800, 100, cpus="0-3").no_numa().build()
    assert not (fs.sys_root / "devices/system/node").exists()
    topo = read_topology(fs.sys_root, fs.proc_root)
    assert len(topo.nodes) == 1
    n = topo.node(0)
    assert (n.mem_total, n.mem_free) == (1024 * MIB, 800 * MIB)
    assert n.file_pages == 100 * MIB  # Cached + Buffers (+ SwapCached)
    assert n.cpus == (0, 1, 2, 3)
    assert n.distances == (10,)
    assert topo.fake_numa is None
    assert warnings(topo)[0].startswith("only one NUMA node with memory: zoned needs")


def test_single_node_with_node_dir(tmp_path: Path) -> None:
    fs = FakeSys(tmp_path).node(0, 4698, 4100, 300).numa_balancing(None).build()
    topo = read_topology(fs.sys_root, fs.proc_root)
    assert topo.node_ids == (0,)
    assert topo.numa_balancing is None
    assert len(warnings(topo)) == 1


def test_memoryless_node(tmp_path: Path) -> None:
    fs = (
        FakeSys(tmp_path)
        .cmdline("numa=fake=3")
        .node(0, 256)
        .node(1, 0, 0, cpus="")
        .node(2, 256)
        .build()
    )
    assert (fs.sys_root / "devices/system/node/has_memory").read_text() == "0,2\n"
    topo = read_topology(fs.sys_root, fs.proc_root)
    assert topo.memory_node_ids == (0, 2)
    assert topo.node(1).cpus == ()
    assert warnings(topo) == [
        "node 1 has no memory: it cannot be given to a container (cpuset.mems refuses it)"
    ]


def test_has_memory_overrides_meminfo(tmp_path: Path) -> None:
    fs = FakeSys(tmp_path).cmdline("numa=fake=3").node(0, 256).node(1, 256).node(2, 256)
    fs.has_memory("0-1").build()
    topo = read_topology(fs.sys_root, fs.proc_root)
    assert topo.memory_node_ids == (0, 1)
    assert topo.node(2).mem_total == 0


def test_node0_smaller_than_the_rest(tmp_path: Path) -> None:
    fs = FakeSys(tmp_path).cmdline("numa=fake=4").node(0, 200)
    for nid in (1, 2, 3):
        fs.node(nid, 256)
    topo = read_topology(fs.build().sys_root, fs.proc_root)
    assert warnings(topo) == [
        "node 0 (200M) is smaller than the others (256M typical): the kernel's own memory "
        "lives there; keep it reserved for the host"
    ]


def test_numa_balancing_on_with_fake_numa_warns(tmp_path: Path) -> None:
    fs = FakeSys(tmp_path).cmdline("numa=fake=2").numa_balancing(1).node(0, 256).node(1, 256)
    topo = read_topology(fs.build().sys_root, fs.proc_root)
    assert topo.numa_balancing is True
    (w,) = warnings(topo)
    assert w.startswith("kernel.numa_balancing is on: ")
    assert w.endswith("set kernel.numa_balancing=0")


def test_numa_balancing_tiering_mode_counts_as_on(tmp_path: Path) -> None:
    fs = FakeSys(tmp_path).numa_balancing(2).node(0, 256).build()
    assert read_topology(fs.sys_root, fs.proc_root).numa_balancing is True


def test_real_numa_without_fake_warns(tmp_path: Path) -> None:
    fs = FakeSys(tmp_path).node(0, 256, distances=(10, 21)).node(1, 256, distances=(21, 10))
    topo = read_topology(fs.build().sys_root, fs.proc_root)
    assert topo.node(1).distances == (21, 10)
    assert warnings(topo)[0].startswith("2 nodes but no numa=fake=")


def test_old_kernel_meminfo_with_leading_blank_line(tmp_path: Path) -> None:
    text = (
        "\n"
        "Node 0 MemTotal:     262144 kB\n"
        "Node 0 MemFree:      200000 kB\n"
        "Node 0 MemUsed:       62144 kB\n"
        "Node 0 FilePages:     10000 kB\n"
        "Node 0 HugePages_Total:     0\n"
    )
    fs = FakeSys(tmp_path).node(0, 256, meminfo=text).build()
    n = read_topology(fs.sys_root, fs.proc_root).node(0)
    assert (n.mem_total, n.mem_free, n.file_pages) == (262144 * KIB, 200000 * KIB, 10000 * KIB)


def test_parse_node_meminfo_keeps_hugepage_counts_as_counts() -> None:
    fields = parse_node_meminfo("Node 3 HugePages_Free:      7\nNode 3 Dirty: 4 kB\n", 3)
    assert fields == {"HugePages_Free": 7, "Dirty": 4 * KIB}


@pytest.mark.parametrize(
    ("cmdline", "expected"),
    [
        ("ro numa=fake=8 quiet", "8"),
        ("numa=fake=256M", "256M"),
        ("numa=fake=2U", "2U"),
        ("numa=fake=4 numa=fake=2G", "2G"),  # the last one wins
        ("numa=off", None),
        ("ro -- numa=fake=8", None),  # after "--": for init, not the kernel
        ("", None),
    ],
)
def test_fake_numa_arg(cmdline: str, expected: str | None) -> None:
    assert fake_numa_arg(cmdline) == expected


# ------------------------------------------------------------ missing and garbage

NODE = "sys/devices/system/node"


@pytest.mark.parametrize(
    ("relpath", "message"),
    [
        (f"{NODE}/node2/meminfo", "node2/meminfo: missing"),
        (f"{NODE}/node1/distance", "node1/distance: missing"),
        (f"{NODE}/node0/cpulist", "node0/cpulist: missing"),
        (f"{NODE}/online", "node/online: missing"),
        (f"{NODE}/node1", "node1: missing, but node 1 is online"),
        ("proc/cmdline", "proc/cmdline: missing"),
    ],
)
def test_missing_file(tmp_path: Path, relpath: str, message: str) -> None:
    fs = FakeSys(tmp_path).node(0, 256).node(1, 256).node(2, 256).omit(relpath).build()
    with pytest.raises(TopologyError, match=message) as info:
        read_topology(fs.sys_root, fs.proc_root)
    assert str(tmp_path) in str(info.value)


@pytest.mark.parametrize(
    ("relpath", "text", "message"),
    [
        (f"{NODE}/node1/meminfo", "Node 1 MemTotal: lots\n", "line 1: cannot read"),
        (f"{NODE}/node1/meminfo", "Node 0 MemTotal: 5 kB\n", "about node 0, not node 1"),
        (
            f"{NODE}/node1/meminfo",
            "Node 1 MemTotal: 5 kB\nNode 1 MemFree: 5 kB\n",
            "no FilePages line",
        ),
        (f"{NODE}/node1/distance", "10 10\n", "2 distances for 3 online nodes"),
        (f"{NODE}/node1/distance", "10 ten 10\n", "not numbers"),
        (f"{NODE}/node0/cpulist", "0-x\n", "not a node list"),
        (f"{NODE}/online", "2-0\n", "not a node list"),
        (f"{NODE}/online", "\n", "no online nodes"),
        ("proc/sys/kernel/numa_balancing", "yes\n", "expected a number, found 'yes'"),
        ("proc/sys/kernel/numa_balancing", "-1\n", "found -1"),
    ],
)
def test_garbage(tmp_path: Path, relpath: str, text: str, message: str) -> None:
    fs = FakeSys(tmp_path).node(0, 256).node(1, 256).node(2, 256).build()
    fs.write(relpath, text)
    with pytest.raises(TopologyError, match=message) as info:
        read_topology(fs.sys_root, fs.proc_root)
    assert str(fs.root / relpath) in str(info.value)


def test_binary_garbage(tmp_path: Path) -> None:
    fs = FakeSys(tmp_path).node(0, 256).build()
    (fs.sys_root / "devices/system/node/node0/meminfo").write_bytes(b"\xff\xfe")
    with pytest.raises(TopologyError, match="not text the kernel writes"):
        read_topology(fs.sys_root, fs.proc_root)


def test_proc_meminfo_garbage_without_numa(tmp_path: Path) -> None:
    fs = FakeSys(tmp_path).node(0, 256).no_numa().build()
    fs.proc("meminfo", "MemTotal: 5 kB\nnonsense\n")
    with pytest.raises(TopologyError, match=r"meminfo: line 2: cannot read 'nonsense'"):
        read_topology(fs.sys_root, fs.proc_root)


def test_roots_must_exist(tmp_path: Path) -> None:
    with pytest.raises(TopologyError, match=r"not a directory \(the sysfs root\)"):
        read_topology(tmp_path / "nope", tmp_path)


# ------------------------------------------------------------------ recommending


def test_machine_memory_prefers_the_larger_proc_total(tmp_path: Path) -> None:
    fs = FakeSys(tmp_path).node(0, 1024).build()
    topo = read_topology(fs.sys_root, fs.proc_root)
    assert machine_memory(topo) == 1024 * MIB
    fs.proc("meminfo", "MemTotal:       4194304 kB\n")
    assert machine_memory(topo, fs.proc_root) == 4 * GIB
    fs.proc("meminfo", "garbage\n")
    assert machine_memory(topo, fs.proc_root) == 1024 * MIB


def test_plan_without_containers_aims_at_256m_nodes_up_to_16() -> None:
    assert recommend_fake_numa(2 * GIB) == "numa=fake=8"
    assert recommend_fake_numa(512 * MIB) == "numa=fake=2"
    assert recommend_fake_numa(64 * GIB) == "numa=fake=16"
    plan = plan_fake_numa(2 * GIB)
    assert (plan.nodes, plan.node_bytes) == (8, 256 * MIB)
    assert str(plan) == "numa=fake=8"


def test_plan_rounds_mins_up_to_whole_nodes_with_little_waste() -> None:
    c300 = (Amount.bytes_(300 * MIB), Amount.bytes_(600 * MIB))
    plan = plan_fake_numa(2 * GIB, [c300, c300])
    # At least 8 nodes (the ~256M default). A node counts as 90% of its size, so each
    # 300M min takes 2 nodes. 8 nodes (256M) hold 2x212M beyond the mins and 9 (~228M)
    # 2x155M, both over 1/8 of 2G; 10 (~205M) hold 2x110M.
    assert plan.nodes == 10
    assert plan.reasons[0] == (
        "10 nodes of ~205M: node 0 reserved for the host, 4 for the containers' mins, "
        "5 free to lend"
    )
    assert "at least one spare node so a container can grow past its min" in plan.reasons
    assert plan_fake_numa(1 * GIB, [c300, c300]).nodes == 6


def test_plan_needs_room_for_a_max_in_nodes() -> None:
    # 512M: the default would be 2 nodes; 1 + min 1 + a spare is 3; a max of 3 nodes
    # needs 3 lendable nodes besides node 0.
    assert plan_fake_numa(512 * MIB, [(Amount.nodes(1), Amount.nodes(3))]).nodes == 4
    assert plan_fake_numa(512 * MIB, [(Amount.nodes(1), Amount.nodes(2))]).nodes == 3


def test_plan_without_growth_needs_no_spare() -> None:
    fixed = (Amount.nodes(1), Amount.nodes(1))
    assert plan_fake_numa(512 * MIB, [fixed]).nodes == 2
    assert plan_fake_numa(1 * GIB, [fixed]).nodes == 4  # the ~256M default still holds


def test_plan_refuses_what_cannot_fit() -> None:
    huge = (Amount.bytes_(3 * GIB), Amount.bytes_(3 * GIB))
    with pytest.raises(TopologyError, match="do not fit 2G"):
        plan_fake_numa(2 * GIB, [huge])
    with pytest.raises(TopologyError, match="too little for fake NUMA"):
        plan_fake_numa(48 * MIB)


def test_plan_never_exceeds_64_nodes() -> None:
    tiny = [(Amount.nodes(1), Amount.nodes(1))] * 63
    assert plan_fake_numa(64 * GIB, tiny).nodes == 64
    with pytest.raises(TopologyError):
        plan_fake_numa(64 * GIB, [*tiny, tiny[0]])


# ------------------------------------------------------------------ the command

TABLE_8NODE = """\
node  total  free   file  cpus  distance
   0   211M  110M    60M  0-1   10x8
   1   252M  243M   3.8M  0-1   10x8
   2   252M  245M   2.2M  0-1   10x8
   3   252M  245M   2.6M  0-1   10x8
   4   252M  246M   1.7M  0-1   10x8
   5   252M  245M   2.4M  0-1   10x8
   6   252M  245M   3.1M  0-1   10x8
   7   248M  231M  10.3M  0-1   10x8
 all   1.9G  1.8G  86.1M
fake NUMA: numa=fake=8 (8 nodes)
numa_balancing: off
warnings:
  - node 0 (211M) is smaller than the others (252M typical): the kernel's own memory lives \
there; keep it reserved for the host
containers: none read (no /nonexistent/zoned.yaml; --config FILE sizes for one)
"""


@pytest.fixture(autouse=True)
def no_installed_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """The command reads /etc/zoned/zoned.yaml when present: never this machine's."""
    monkeypatch.setattr(topology_cmd, "INSTALLED", Path("/nonexistent/zoned.yaml"))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(["topology", *argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_command_table_on_8node_tree(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "--sysfs-root", str(SYS8), "--proc-root", str(PROC8))
    assert (status, err) == (0, "")
    caps = render_capabilities(probe(HostRoots(SYS8, PROC8)))  # the section after the table
    assert out == TABLE_8NODE + caps


def test_command_json_on_8node_tree(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "--json", "--sysfs-root", str(SYS8), "--proc-root", str(PROC8))
    assert (status, err) == (0, "")
    doc = parse_json(out)
    assert set(doc) == {
        "schema",
        "nodes",
        "total_bytes",
        "fake_numa",
        "numa_balancing",
        "warnings",
        "recommendation",
        "capabilities",
    }
    assert doc["schema"] == "zoned/topology/v1"
    assert doc["nodes"][0] == {
        "id": 0,
        "mem_total": 215_732 * KIB,
        "mem_free": 112_604 * KIB,
        "file_pages": 61_448 * KIB,
        "has_memory": True,
        "cpus": [0, 1],
        "distances": [10] * 8,
    }
    assert [n["id"] for n in doc["nodes"]] == list(range(8))
    assert doc["total_bytes"] == sum(n["mem_total"] for n in doc["nodes"])
    assert doc["fake_numa"] == "8"
    assert doc["numa_balancing"] is False
    assert len(doc["warnings"]) == 1 and doc["warnings"][0].startswith("node 0 (211M)")
    assert doc["recommendation"] is None


def test_command_single_node_says_what_to_boot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fs = FakeSys(tmp_path).node(0, 2048, 1800, 100).build()
    status, out, err = run(
        capsys, "--sysfs-root", str(fs.sys_root), "--proc-root", str(fs.proc_root)
    )
    assert (status, err) == (0, "")
    topology = out[: out.index("\nkernel: ")]  # the capabilities section follows
    assert topology.splitlines()[-10:] == [
        "warnings:",
        "  - only one NUMA node with memory: zoned needs the kernel booted with numa=fake=N "
        "to have zones to hand out",
        "containers: none read (no /nonexistent/zoned.yaml; --config FILE sizes for one)",
        "zoned needs fake NUMA: boot this kernel with numa=fake=8 (memory: 2G)",
        "  - 8 nodes of ~256M: node 0 for the host, 7 to lend; with no containers declared, "
        "nodes of ~256M keep lending fine-grained",
        "to boot with numa=fake=8:",
        "  - Debian/Ubuntu (GRUB): add numa=fake=8 to GRUB_CMDLINE_LINUX in /etc/default/grub, "
        "run update-grub, reboot",
        "  - systemd-boot: add numa=fake=8 to the options line of /boot/loader/entries/*.conf "
        "(or /etc/kernel/cmdline, then kernel-install), reboot",
        "  - kernelstub (Pop!_OS): kernelstub -a numa=fake=8, reboot",
        "  - after the reboot: ls /sys/devices/system/node lists node0 to node7; "
        "zoned topology shows their sizes",
    ]
    assert "fake NUMA: not on the kernel command line (1 node)" in out

    status, out, _ = run(
        capsys, "--json", "--sysfs-root", str(fs.sys_root), "--proc-root", str(fs.proc_root)
    )
    rec = parse_json(out)["recommendation"]
    assert rec["param"] == "numa=fake=8"
    assert (rec["nodes"], rec["node_bytes"], rec["basis_bytes"]) == (8, 256 * MIB, 2 * GIB)


def test_command_sizes_the_recommendation_for_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # zoned.config is another module's job: stand in for its load() with a fixed answer.
    c = ContainerDecl("web", Amount.bytes_(300 * MIB), Amount.bytes_(600 * MIB))
    decls = Declarations(containers=(c, ContainerDecl("db", c.min, c.max)))
    loaded: list[Path] = []

    def load(path: Path) -> Declarations:
        loaded.append(path)
        return decls

    fake = types.ModuleType("zoned.config.load")
    fake.load = load  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "zoned.config.load", fake)
    fs = FakeSys(tmp_path).node(0, 2048).build()
    cfg = tmp_path / "zoned.yaml"
    status, out, _ = run(
        capsys,
        "--json",
        "--config",
        str(cfg),
        "--sysfs-root",
        str(fs.sys_root),
        "--proc-root",
        str(fs.proc_root),
    )
    assert status == 0
    assert loaded == [cfg]
    assert parse_json(out)["recommendation"]["param"] == "numa=fake=10"

    # On a fake-NUMA machine, --config still asks what its containers would want.
    status, out, _ = run(
        capsys, "--config", str(cfg), "--sysfs-root", str(SYS8), "--proc-root", str(PROC8)
    )
    assert "recommended for the declared containers: numa=fake=10 (memory: 1.9G)" in out


def test_command_error_goes_to_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fs = FakeSys(tmp_path).node(0, 256).omit(f"{NODE}/node0/meminfo").build()
    status, out, err = run(
        capsys, "--sysfs-root", str(fs.sys_root), "--proc-root", str(fs.proc_root)
    )
    assert (status, out) == (1, "")
    meminfo = fs.sys_root / "devices/system/node/node0/meminfo"
    assert err == f"zoned topology: {meminfo}: missing\n"


def test_read_node_memory_agrees_with_read_topology_on_every_fake_tree(tmp_path: Path) -> None:
    from tests.fakes.sysfs import FakeSys
    from zoned.kernel.topology import read_node_memory

    fs = FakeSys(tmp_path).node(0, 200, 100, 10).node(1, 0).node(2, 256, 250, 3)
    fs.has_memory("0,2").cmdline("numa=fake=3").build()
    topo = read_topology(fs.sys_root, fs.proc_root)
    assert read_node_memory(fs.sys_root, fs.proc_root) == {
        n.id: (n.mem_total, n.mem_free, n.file_pages) for n in topo.nodes
    }
    assert read_node_memory(fs.sys_root, fs.proc_root)[1] == (0, 0, 0)


def test_node_memory_per_step_reads_the_three_fields_of_each_node(tmp_path: Path) -> None:
    fs = FakeSys(tmp_path).node(0, 256).node(1, 256).build()
    topo = read_topology(fs.sys_root, fs.proc_root)
    got = read_node_memory(fs.sys_root, fs.proc_root)
    assert got == {n.id: (n.mem_total, n.mem_free, n.file_pages) for n in topo.nodes}
    fs.write(f"{NODE}/node1/meminfo", "Node 0 MemTotal: 5 kB\n")
    with pytest.raises(TopologyError, match="MemTotal about node 0, not node 1"):
        read_node_memory(fs.sys_root, fs.proc_root)
    fs.write(f"{NODE}/node1/meminfo", "Node 1 MemTotal: lots\nNode 1 MemFree: 5 kB\n")
    with pytest.raises(TopologyError, match="no MemTotal, FilePages line"):
        read_node_memory(fs.sys_root, fs.proc_root)


# ------------------------------------------------- the installed config, the reasons


def test_command_reads_the_installed_config_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    installed = tmp_path / "etc" / "zoned.yaml"
    installed.parent.mkdir()
    installed.write_text("containers:\n  a: {min: {nodes: 10}}\n")
    monkeypatch.setattr(topology_cmd, "INSTALLED", installed)
    fs = FakeSys(tmp_path).node(0, 4096).build()
    tree = ["--sysfs-root", str(fs.sys_root), "--proc-root", str(fs.proc_root)]
    status, out, _ = run(capsys, *tree)
    assert status == 0
    assert f"containers: 1 declared in {installed}" in out
    # 10 whole nodes, node 0 and a spare? No spare: min == max. 16 nodes by the floor.
    assert "10 for the containers' mins" in out

    # --config overrides the installed file.
    other = tmp_path / "other.yaml"
    other.write_text("containers: {}\n")
    _, out, _ = run(capsys, "--config", str(other), *tree)
    assert f"containers: 0 declared in {other}" in out

    # A broken installed file is noted, not fatal.
    installed.write_text("containers: [\n")
    status, out, _ = run(capsys, *tree)
    assert status == 0
    assert f"containers: none read: {installed} has 1 problem (zoned check {installed}" in out
    assert "boot this kernel with numa=fake=16" in out


def test_default_reasons_say_what_bent_the_256m_aim() -> None:
    (big,) = plan_fake_numa(int(23.5 * GIB)).reasons
    assert big.startswith("16 nodes of ~1.5G: node 0 for the host, 15 to lend; ")
    assert "aims at nodes of ~256M, but 23.5G would make 94 of them" in big
    assert "aiming for ~256M" not in big
    (small,) = plan_fake_numa(384 * MIB).reasons
    assert small.startswith("2 nodes of ~192M") and "less than 2 nodes of ~256M" in small
    (exact,) = plan_fake_numa(2 * GIB).reasons
    assert exact.endswith("with no containers declared, nodes of ~256M keep lending fine-grained")


def test_boot_steps_replace_a_current_numa_fake() -> None:
    steps = boot_steps("numa=fake=12", "8")
    assert steps[0].startswith("Debian/Ubuntu (GRUB): replace numa=fake=8 with numa=fake=12 in ")
    assert "kernelstub -d numa=fake=8 -a numa=fake=12" in steps[2]
    assert "node0 to node11" in steps[3]


def test_boot_steps_replace_the_booted_numa_fake(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # The 8-node tree boots numa=fake=8; an empty config on 1.9G recommends 7: steps shown.
    cfg = tmp_path / "zoned.yaml"
    cfg.write_text("containers: {}\n")
    _, out, _ = run(
        capsys, "--config", str(cfg), "--sysfs-root", str(SYS8), "--proc-root", str(PROC8)
    )
    assert "replace numa=fake=8 with numa=fake=7" in out
