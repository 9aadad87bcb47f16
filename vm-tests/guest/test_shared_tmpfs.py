"""A shared tmpfs bound to the shared zone (``zoned shared mount``) on a real kernel.

Node 7 is the shared zone; container ``sharer`` (``shared: true``: its cpuset.mems hold its
own node and node 7) and container ``plain`` (its own node only) each start a process in
their cgroup that creates or writes a file on the tmpfs. Where the pages landed is read
from ``/proc/self/numa_maps`` of a mapping of each file in this process (the pages are
resident, so mapping them allocates nothing), with the policy the kernel shows for it.

What is asserted is the consequence the docs state: files a ``shared: true`` container
creates are on the shared node; what a container without the shared nodes writes lands
on its own node (its cpuset cuts the mount's policy), and a file it creates gets no
policy at all, so even a ``shared: true`` writer fills it on its own node. Then a
remount to another node: new files follow, existing files keep their nodes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from zoned.model.nodelist import format_nodelist

from .cgtools import remove_tree
from .conftest import Finding, online_nodes, zoned

pytestmark = pytest.mark.boot(kernel=("6.1", "newest"), cgroup="v2", numa="8")

ROOT = Path("/sys/fs/cgroup")
PARENT = f"zoned-tmpfs-{os.getpid()}"
MOUNT = Path(f"/run/zoned-shared-tmpfs-{os.getpid()}")
MIB = 1 << 20
SHARED = 7
CLI_S = 300

WRITER = r"""
import os, sys
mode, path, mib = sys.argv[1], sys.argv[2], int(sys.argv[3])
flags = {"create": os.O_CREAT | os.O_TRUNC, "append": os.O_APPEND}[mode]
fd = os.open(path, os.O_WRONLY | flags, 0o666)
chunk = b"\x5a" * (1 << 20)
for _ in range(mib):
    os.write(fd, chunk)
os.close(fd)
print(open("/proc/self/status").read().split("Mems_allowed_list:")[1].split()[0])
"""


@dataclass
class Host:
    config: Path
    own: dict[str, int]  # container → its one pool node


def _config(path: Path, shared: int) -> Path:
    path.write_text(
        f"host:\n  hierarchy: v2\n  parent: {PARENT}\n  reserved_nodes: [0]\n"
        f"  shared: [{shared}]\n  shared_tmpfs:\n    - {{path: {MOUNT}, size: 160M}}\n"
        "containers:\n  sharer:\n    min: {nodes: 1}\n    shared: true\n"
        "  plain:\n    min: {nodes: 1}\n"
    )
    return path


def _unmount_all(path: Path) -> None:
    while path.is_mount():
        subprocess.run(["umount", str(path)], check=True)


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    from zoned.backends.select import readonly_backend
    from zoned.config.load import load
    from zoned.policy.placement import place

    cfg = _config(tmp_path / "zoned.yaml", SHARED)
    decls = load(cfg)
    backend = readonly_backend(decls)
    try:
        plan = place(backend.topology(), decls)
        own = {c.name: frozenset(c.nodes) for c in plan.containers}
        for c in decls.containers:  # as the engine does: shared: true adds the shared zone
            backend.ensure(c, own[c.name] | {SHARED} if c.shared else own[c.name])
        assert all(len(n) == 1 for n in own.values()), own
        yield Host(cfg, {n: min(v) for n, v in own.items()})
    finally:
        backend.close()
        _unmount_all(MOUNT)  # frees the tmpfs pages before their memcgs go
        if MOUNT.is_dir():
            MOUNT.rmdir()
        remove_tree(ROOT / PARENT, ROOT)


def _write(container: str | None, mode: str, path: Path, mib: int) -> str:
    """Write ``mib`` MiB in a process inside ``container`` (None: this process's cgroup);
    returns that process's Mems_allowed_list."""
    argv = [sys.executable, "-c", WRITER, mode, str(path), str(mib)]
    if container is not None:
        procs = ROOT / PARENT / container / "cgroup.procs"
        argv = ["sh", "-c", f'echo $$ > {procs} && exec "$0" "$@"', *argv]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def _placement(path: Path) -> tuple[dict[int, float], str]:
    """MiB per node of the file's pages, and the policy numa_maps shows for a mapping."""
    from zoned.shared.pages import where

    pl = where(path)
    assert pl.resident == pl.size, pl
    return {n: round(b / MIB, 2) for n, b in sorted(pl.nodes.items())}, _policy(path)


def _policy(path: Path) -> str:
    import mmap

    fd = os.open(path, os.O_RDONLY)
    try:
        m = mmap.mmap(fd, 4096, prot=mmap.PROT_READ)
        try:
            lines = Path("/proc/self/numa_maps").read_text().splitlines()
        finally:
            m.close()
    finally:
        os.close(fd)
    (line,) = [x for x in lines if f"file={path}" in x]
    return line.split()[1]


def _mpol() -> str | None:
    from zoned.kernel.mountinfo import read_mounts
    from zoned.shared.tmpfsplan import top_mount

    m = top_mount(read_mounts(), str(MOUNT))
    assert m is not None and m.fstype == "tmpfs", m
    return m.super_option("mpol")


def _mount(cfg: Path) -> dict[str, object]:
    doc = json.loads(
        zoned("shared", "mount", "--config", str(cfg), "--json", timeout_s=CLI_S).stdout
    )
    assert doc["ok"], doc
    (entry,) = doc["mounts"]
    assert isinstance(entry, dict)
    return entry


def test_shared_tmpfs_places_pages_by_who_creates_and_who_writes(
    host: Host, finding: Finding
) -> None:
    first = _mount(host.config)
    assert (first["action"], first["done"]) == ("mount", True), first
    line = [x for x in Path("/proc/self/mountinfo").read_text().splitlines() if f" {MOUNT} " in x]
    finding("zoned shared mount: mountinfo", line)
    assert _mpol() == f"bind:{SHARED}"
    assert oct(MOUNT.stat().st_mode & 0o7777) == "0o1777"
    again = zoned("shared", "mount", "--config", str(host.config), timeout_s=CLI_S).stdout
    finding("zoned shared mount, second run", again)
    assert f"{MOUNT}: kept: already a tmpfs with mpol=bind:{SHARED}" in again

    sharer, plain = host.own["sharer"], host.own["plain"]
    f = {name: MOUNT / f"{name}.bin" for name in ("s", "p", "s_then_p", "p_then_s")}
    mems = {
        "sharer": _write("sharer", "create", f["s"], 32),
        "plain": _write("plain", "create", f["p"], 32),
    }
    assert mems == {"sharer": format_nodelist({sharer, SHARED}), "plain": str(plain)}
    # Created empty by one container, then filled by the other.
    _write("sharer", "create", f["s_then_p"], 0)
    _write("plain", "append", f["s_then_p"], 16)
    _write("plain", "create", f["p_then_s"], 0)
    _write("sharer", "append", f["p_then_s"], 16)

    placed = {name: _placement(path) for name, path in f.items()}
    memstat = {
        c: {
            k: round(int(v) / MIB, 1)
            for k, v in (
                x.split() for x in (ROOT / PARENT / c / "memory.stat").read_text().splitlines()
            )
            if k == "shmem"
        }
        for c in ("sharer", "plain")
    }
    finding(
        "shared tmpfs: MiB per node and numa_maps policy, by creator/writer",
        {
            "nodes": {"sharer": sorted({sharer, SHARED}), "plain": [plain]},
            "sharer creates+writes 32M": placed["s"],
            "plain creates+writes 32M": placed["p"],
            "sharer creates, plain writes 16M": placed["s_then_p"],
            "plain creates, sharer writes 16M": placed["p_then_s"],
            "memcg shmem MiB": memstat,
        },
    )
    assert placed["s"] == ({SHARED: 32.0}, f"bind:{SHARED}")
    assert placed["p"] == ({plain: 32.0}, "default")  # no policy: plain's cpuset lacks 7
    assert placed["s_then_p"] == ({plain: 16.0}, f"bind:{SHARED}")  # the cpuset cuts it
    assert placed["p_then_s"] == ({sharer: 16.0}, "default")  # created without a policy
    # memcg charges the writer, wherever the pages are.
    assert memstat["sharer"]["shmem"] >= 32 + 16 - 1
    assert memstat["plain"]["shmem"] >= 32 + 16 - 1


def test_remount_binds_new_files_to_the_new_nodes_only(
    host: Host, tmp_path: Path, finding: Finding
) -> None:
    # The new binding goes to a pool node neither container holds. Placement picks nodes by
    # what is free at the time, which varies with what earlier tests left (CI once gave
    # plain node 6, the node this test used to take for granted).
    spare = max(set(online_nodes()) - {0, SHARED, *host.own.values()})
    first = zoned("shared", "mount", "--config", str(host.config), timeout_s=CLI_S).stdout
    finding("zoned shared mount, first run", first)
    assert f"{MOUNT}: mounted with mpol=bind:{SHARED},mode=1777,size=" in first
    assert _mpol() == f"bind:{SHARED}"
    old = MOUNT / "old.bin"
    _write(None, "create", old, 8)  # this process's cpuset: every node
    moved = _config(tmp_path / "moved.yaml", spare)
    second = _mount(moved)
    finding(f"zoned shared mount after the shared zone moved to node {spare} (json)", second)
    assert second["action"] == "remount", second
    assert _mpol() == f"bind:{spare}"
    _write(None, "append", old, 8)
    new = MOUNT / "new.bin"
    _write(None, "create", new, 8)
    placed = {"old (8M, +8M after the remount)": _placement(old), "new (8M)": _placement(new)}
    finding(f"remount bind:{SHARED} -> bind:{spare}: MiB per node", placed)
    assert placed["old (8M, +8M after the remount)"] == ({SHARED: 16.0}, f"bind:{SHARED}")
    assert placed["new (8M)"] == ({spare: 8.0}, f"bind:{spare}")
