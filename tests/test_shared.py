"""The shared zone: declared paths, check warnings, and a real warm on this host (root)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.realhost import V1_CPUSET, V1_MEMORY, need
from zoned.config.decl import Declarations
from zoned.config.load import loads
from zoned.shared.helper import _runs
from zoned.shared.pages import where
from zoned.shared.zone import SHARED_LEAF, declared_paths, expand, shared_warnings, warm

BASE = """\
host:
  shared: {shared}
  shared_paths: {paths}
containers:
  web:
    min: 64M
    shared: {web_shared}
    shared_paths: [/opt/web, /srv/common]
"""


def decls(
    shared: str = "[3]", paths: str = "[/srv/common]", web_shared: str = "false"
) -> Declarations:
    return loads(BASE.format(shared=shared, paths=paths, web_shared=web_shared))


def test_declared_paths_in_order_once() -> None:
    assert declared_paths(decls()) == ["/srv/common", "/opt/web"]


def test_warnings() -> None:
    assert shared_warnings(decls()) == []
    w = shared_warnings(decls(shared="0"))
    assert len(w) == 1 and "no shared zone" in w[0]
    w = shared_warnings(decls(web_shared="true"))
    assert len(w) == 1 and w[0].startswith("web: shared: true") and "allocate" in w[0]
    empty = loads("host:\n  shared: 1\ncontainers:\n  a:\n    min: 64M\n")
    assert "stays empty" in shared_warnings(empty)[0]


def test_expand_walks_directories(tmp_path: Path) -> None:
    (tmp_path / "d" / "e").mkdir(parents=True)
    for name in ("d/1", "d/e/2", "f"):
        (tmp_path / name).write_text("x")
    (tmp_path / "d" / "link").symlink_to(tmp_path / "f")
    got = sorted(
        str(p.relative_to(tmp_path)) for p in expand([str(tmp_path / "d"), str(tmp_path / "f")])
    )
    assert got == ["d/1", "d/e/2", "f"]


def test_runs() -> None:
    assert _runs([1, 2, 3, 7, 8, 20], 2) == [(1, 2), (3, 1), (7, 2), (20, 1)]


def test_where_reports_resident_pages(tmp_path: Path) -> None:
    f = tmp_path / "blob"
    f.write_bytes(os.urandom(64 * 4096))
    pl = where(f)
    assert pl.size == 64 * 4096 and pl.resident == 64 * 4096  # just written: cached
    assert sum(pl.nodes.values()) == pl.resident


def test_real_warm_on_v1(tmp_path: Path) -> None:
    """On the build machine's single node: the helper lands in zoned.shared (mems 0), reads
    the file, its memcg is charged for it, and the report says where the pages are."""
    need(os.geteuid() == 0, "needs root to create cgroups")
    need((V1_CPUSET / "cpuset.mems").exists() and (V1_MEMORY / "memory.usage_in_bytes").exists(),
         "needs cgroup v1 cpuset and memory hierarchies")  # fmt: skip
    from zoned.backends.select import readonly_backend

    parent = f"zoned-test-shared-{os.getpid()}"
    cfg = loads(
        f"host:\n  hierarchy: v1\n  parent: {parent}\n  reserved_nodes: []\n  shared: [0]\n"
    )
    f = tmp_path / "blob"
    f.write_bytes(os.urandom(4 << 20))
    fd = os.open(f, os.O_RDONLY)
    os.fsync(fd)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)
    backend = readonly_backend(cfg)
    try:
        if where(f, locate=False).resident:
            pytest.skip("this file system keeps the file cached after DONTNEED")
        report = warm(backend, frozenset({0}), [str(f)])
        # --move: the helper mbinds (MPOL_MF_MOVE_ALL) its mapping; here a no-op move to
        # node 0 that must still succeed (the syscall, its mask and flags are right).
        moved = warm(backend, frozenset({0}), [str(f)], move=True)
        usage = int((V1_MEMORY / parent / SHARED_LEAF / "memory.usage_in_bytes").read_text())
    finally:
        backend.close()
        for root in (V1_MEMORY, V1_CPUSET):
            for d in (root / parent / SHARED_LEAF, root / parent):
                if d.exists():
                    d.rmdir()
    (r,) = report.files
    assert report.helper_mems == "0" and report.cgroup == f"{parent}/{SHARED_LEAF}"
    assert r.read == r.resident == r.on_shared == 4 << 20 and r.nodes == {0: 4 << 20}
    assert usage >= 4 << 20
    assert moved.files[0].error is None and moved.files[0].read == 0


def test_real_warm_command_json_validates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``zoned shared warm --json`` as an operator runs it, on this host's v1 node 0."""
    need(os.geteuid() == 0, "needs root to create cgroups")
    need((V1_CPUSET / "cpuset.mems").exists() and (V1_MEMORY / "memory.usage_in_bytes").exists(),
         "needs cgroup v1 cpuset and memory hierarchies")  # fmt: skip
    from tests.support.jsondocs import parse
    from zoned.cli.main import main

    parent = f"zoned-test-warmcli-{os.getpid()}"
    cfg = tmp_path / "zoned.yaml"
    cfg.write_text(
        f"host:\n  hierarchy: v1\n  parent: {parent}\n  reserved_nodes: []\n  shared: [0]\n"
    )
    f = tmp_path / "blob"
    f.write_bytes(os.urandom(1 << 20))
    try:
        assert main(["shared", "warm", "--config", str(cfg), "--json", str(f)]) == 0
    finally:
        for root in (V1_MEMORY, V1_CPUSET):
            for d in (root / parent / SHARED_LEAF, root / parent):
                if d.exists():
                    d.rmdir()
    doc = parse(capsys.readouterr().out)
    (item,) = doc["files"]
    assert doc["shared_nodes"] == [0] and item["path"] == str(f) and item["size"] == 1 << 20
