"""The three ownership models on fake cgroup, sysfs and procfs trees."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from tests.fakes.sysfs import FakeSys
from tests.support.jsondocs import parse as parse_json
from zoned.accounting.ownership import measure, shared_nodes
from zoned.backends.select import readonly_backend
from zoned.config.load import loads
from zoned.kernel.pagemap import PRESENT, PagemapReader

MIB = 1 << 20
CONFIG = """\
host:
  hierarchy: v2
  cgroup_root: {root}
  parent: zoned
  shared: [3]
containers:
  a:
    min: {{nodes: 1}}
  b:
    min: {{nodes: 1}}
  gone:
    min: {{nodes: 1}}
"""


def cgroup(root: Path, name: str, mems: str, pids: list[int], current: int) -> None:
    d = root / "zoned" / name
    d.mkdir(parents=True)
    files = {
        "cpuset.mems.effective": mems,
        "cgroup.procs": "\n".join(map(str, pids)),
        "memory.high": "max",
        "memory.current": str(current),
        "memory.stat": f"anon {current}\nfile 0\n",
        "memory.numa_stat": "anon N1=0\nfile N1=0\n",
    }
    for k, v in files.items():
        (d / k).write_text(v + "\n")


def process(proc: Path, pid: int, pfns: list[int]) -> None:
    """A process whose only VMA maps one page per PFN."""
    d = proc / str(pid)
    d.mkdir(parents=True)
    (d / "maps").write_text(f"00001000-{0x1000 + len(pfns) * 4096:08x} rw-p 0 00:00 0\n")
    with (d / "pagemap").open("wb") as f:
        f.seek(8)
        for p in pfns:
            f.write(struct.pack("<Q", PRESENT | p))


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, FakeSys]:
    fs = FakeSys(tmp_path)
    for n, free in ((0, 100), (1, 156), (2, 206), (3, 192)):
        fs.node(n, total_mib=256, free_mib=free)
    fs.build()
    cg = tmp_path / "cgroup"
    cgroup(cg, "a", "1", [10, 11], 90 * MIB)
    cgroup(cg, "b", "2", [20], 40 * MIB)
    # a's processes share PFN 1-2 between them (counted once); b maps 2 and 3 of a's.
    process(fs.proc_root, 10, [1, 2, 5])
    process(fs.proc_root, 11, [1, 2, 6])
    process(fs.proc_root, 20, [2, 3, 9])
    return cg, fs


def test_three_models(tree: tuple[Path, FakeSys]) -> None:
    cg, fs = tree
    decls = loads(CONFIG.format(root=cg))
    backend = readonly_backend(decls, sys_root=fs.sys_root, proc_root=fs.proc_root)
    shared = shared_nodes(decls, backend.topology())
    assert shared == {3}
    reader = PagemapReader(fs.proc_root, page_size=4096)
    r = measure(backend, ["a", "b", "gone"], ("zones", "static", "partial"), shared=shared,
                reader=reader)  # fmt: skip
    backend.close()
    by = {c.name: c for c in r.charges}
    assert r.missing == ["gone"]
    assert by["a"].zones == 100 * MIB and by["b"].zones == 50 * MIB  # total - free
    assert by["a"].static == 90 * MIB and by["b"].static == 40 * MIB
    assert by["a"].partial == 4 * 4096 and by["b"].partial == 3 * 4096
    assert by["a"].pids == 2 and by["a"].partial_stderr == 0
    assert r.overlaps == {("a", "b"): 4096}
    assert r.shared_zone_used == 64 * MIB
    assert r.scan.processes == 3


def test_zones_charge_leaves_out_free_pages_on_per_cpu_lists(
    tree: tuple[Path, FakeSys],
) -> None:
    """MemFree does not count them (7.x keeps up to ~18 MiB per node there): a's node 1
    shows 10 MiB on its lists, so a is charged 100 - 10 MiB; b's node has none."""
    cg, fs = tree
    pages = 10 * MIB // 4096
    (fs.proc_root / "zoneinfo").write_text(
        "Node 1, zone   Normal\n  pagesets\n    cpu: 0\n"
        f"              count:    {pages // 2}\n    cpu: 1\n"
        f"              count:    {pages - pages // 2}\n"
        "Node 2, zone   Normal\n  pagesets\n    cpu: 0\n              count:    0\n"
    )
    decls = loads(CONFIG.format(root=cg))
    backend = readonly_backend(decls, sys_root=fs.sys_root, proc_root=fs.proc_root)
    try:
        r = measure(backend, ["a", "b"], ("zones",))
    finally:
        backend.close()
    by = {c.name: c for c in r.charges}
    assert by["a"].zones == 90 * MIB and by["b"].zones == 50 * MIB


def test_models_can_be_left_out(tree: tuple[Path, FakeSys]) -> None:
    cg, fs = tree
    decls = loads(CONFIG.format(root=cg))
    backend = readonly_backend(decls, sys_root=fs.sys_root, proc_root=fs.proc_root)
    r = measure(backend, ["a"], ["static"])
    assert r.charges[0].static == 90 * MIB and r.charges[0].zones is None
    with pytest.raises(ValueError, match="PagemapReader"):
        measure(backend, ["a"], ["partial"])
    with pytest.raises(ValueError, match="unknown"):
        measure(backend, ["a"], ["beancounters"])


def test_shared_count_takes_the_top_pool_nodes(tree: tuple[Path, FakeSys]) -> None:
    cg, fs = tree
    text = CONFIG.format(root=cg).replace("shared: [3]", "shared: 2")
    decls = loads(text)
    backend = readonly_backend(decls, sys_root=fs.sys_root, proc_root=fs.proc_root)
    assert shared_nodes(decls, backend.topology()) == {2, 3}


def test_usage_command_json(tree: tuple[Path, FakeSys], capsys: pytest.CaptureFixture[str]) -> None:

    from zoned.cli.main import main

    cg, fs = tree
    cfg = cg.parent / "zoned.yaml"
    cfg.write_text(CONFIG.format(root=cg))
    args = ["usage", "--config", str(cfg), "--sysfs-root", str(fs.sys_root),
            "--proc-root", str(fs.proc_root)]  # fmt: skip
    assert main([*args, "--json"]) == 0
    doc = parse_json(capsys.readouterr().out)
    assert doc["schema"] == "zoned/usage/v1" and doc["missing"] == ["gone"]
    assert [c["partial"] for c in doc["containers"]] == [4 * 4096, 3 * 4096]
    assert doc["overlaps"] == [{"a": "a", "b": "b", "bytes": 4096}]
    assert main([*args, "--model", "zones"]) == 0
    text = capsys.readouterr().out
    rows = [line.split() for line in text.splitlines()]
    assert ["a", "1", "2", "100M"] in rows and ["(shared", "zone)", "3", "-", "64M"] in rows


def test_sharing_command_json(
    tree: tuple[Path, FakeSys], capsys: pytest.CaptureFixture[str]
) -> None:
    from zoned.cli.main import main

    cg, fs = tree
    line = "7f0000000000 default file=/data/x mapped=10 mapmax=2 N1=10 kernelpagesize_kB=4\n"
    for pid in (10, 11, 20):  # b (node 2) maps a file whose pages are on a's node 1
        (fs.proc_root / str(pid) / "numa_maps").write_text(line)
    cfg = cg.parent / "zoned.yaml"
    cfg.write_text(CONFIG.format(root=cg))
    args = ["sharing", "--config", str(cfg), "--sysfs-root", str(fs.sys_root),
            "--proc-root", str(fs.proc_root), "--json"]  # fmt: skip
    assert main(args) == 0
    doc = parse_json(capsys.readouterr().out)
    assert doc["promoted"] is None
    assert [(s["mapper"], s["owner"], s["file"]) for s in doc["shares"]] == [("b", "a", 40960)]


# -- usage and sharing: the running daemon's zone map, else the installed file ----------


def _status_doc(config: Path, shared: int) -> dict[str, object]:
    """The parts of ``zoned status --json`` that usage and sharing read."""
    kinds = {0: "reserved", 1: "container", 2: "container", 3: "free"} | {shared: "shared"}
    return {
        "daemon": {"pid": 4242, "config": str(config)},
        "nodes": [{"node": n, "kind": k} for n, k in sorted(kinds.items())],
    }


def _installed(tree: tuple[Path, FakeSys], monkeypatch: pytest.MonkeyPatch) -> Path:
    """The declarations written as the installed file that usage and sharing fall back to."""
    from zoned.cli.commands import _zonemap

    cg, _ = tree
    installed = cg.parent / "installed.yaml"
    installed.write_text(CONFIG.format(root=cg))
    monkeypatch.setattr(_zonemap, "INSTALLED", installed)
    return installed


def _roots(fs: FakeSys) -> list[str]:
    return ["--sysfs-root", str(fs.sys_root), "--proc-root", str(fs.proc_root)]


def test_usage_and_sharing_take_the_shared_zone_from_the_running_daemon(
    tree: tuple[Path, FakeSys],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import json

    from zoned.cli.commands import _zonemap
    from zoned.cli.main import main

    cg, fs = tree
    cfg = cg.parent / "zoned.yaml"
    cfg.write_text(CONFIG.format(root=cg))  # declares shared: [3]
    asked: list[tuple[Path, dict[str, object]]] = []

    def request(path: Path, req: dict[str, object], **_: object) -> dict[str, object]:
        asked.append((path, req))
        return {"ok": True, "result": _status_doc(cfg, shared=2)}

    monkeypatch.setattr(_zonemap, "request", request)
    monkeypatch.setattr(_zonemap, "INSTALLED", cg.parent / "absent.yaml")
    sock = cg.parent / "control.sock"
    roots = _roots(fs)
    assert main(["usage", "--socket", str(sock), *roots, "--json", "--model", "zones"]) == 0
    out, err = capsys.readouterr()
    assert asked == [(sock, {"cmd": "status"})]
    # The daemon's map (node 2 shared) wins over what the file would give (node 3).
    assert json.loads(out)["shared_nodes"] == [2]
    assert err == (
        f"zoned usage: zone map from the running daemon (pid 4242), declarations from {cfg}\n"
    )
    assert main(["sharing", "--socket", str(sock), *roots, "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["shared_nodes"] == [2]
    assert err.startswith("zoned sharing: zone map from the running daemon (pid 4242)")


def test_usage_without_a_daemon_reads_the_installed_file_and_says_so(
    tree: tuple[Path, FakeSys],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import json

    from zoned.cli.main import main

    cg, fs = tree
    installed = _installed(tree, monkeypatch)
    sock = cg.parent / "no-daemon.sock"  # nothing listens: the real client's error
    roots = _roots(fs)
    assert main(["usage", "--socket", str(sock), *roots, "--json", "--model", "zones"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["shared_nodes"] == [3]
    assert err == (
        f"zoned usage: not from a running daemon (no daemon at {sock} (is zoned.service "
        f"running?)): read {installed}; the shared zone is computed from it\n"
    )
    # --config asks no daemon and notes nothing.
    assert main(["usage", "--config", str(installed), "--socket", str(sock), *roots]) == 0
    assert capsys.readouterr().err == ""


def test_a_status_without_a_zone_map_falls_back_to_the_file(
    tree: tuple[Path, FakeSys],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import json

    from zoned.cli.commands import _zonemap
    from zoned.cli.main import main

    cg, fs = tree
    _installed(tree, monkeypatch)
    # A daemon whose status document has another shape: no shared set guessed as empty.
    monkeypatch.setattr(_zonemap, "request", lambda *_a, **_k: {"ok": True, "result": {}})
    sock = cg.parent / "control.sock"
    roots = _roots(fs)
    assert main(["usage", "--socket", str(sock), *roots, "--json", "--model", "zones"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["shared_nodes"] == [3]
    assert f"the daemon at {sock} sent a status without its zone map" in err
