"""Shared tmpfs (zoned.shared.tmpfs): mountinfo parsing, every decision, the effect with a fake
mount(2) against a fake mountinfo, the CLI, the daemon's start-up mount, the declaration
and its warnings. One test as root mounts a real tmpfs on the build machine (node 0)."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.mounts import FakeKernel
from tests.support.daemon import daemon
from tests.support.jsondocs import parse as parse_json
from tests.support.realhost import need
from zoned.cli import main as cli
from zoned.config.decl import TmpfsDecl
from zoned.config.load import loads
from zoned.errors import BackendError, ConfigError, WriteRefused
from zoned.kernel.mountinfo import MountEntry, parse_mountinfo, read_mounts
from zoned.model.zonemap import SHARED
from zoned.shared.tmpfs import ensure, libc_mount, perform, translate
from zoned.shared.tmpfsplan import (
    MS_NOATIME,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_RDONLY,
    MS_RELATIME,
    MS_REMOUNT,
    MS_STRICTATIME,
    NEW_MOUNT_FLAGS,
    Mpol,
    PathKind,
    PathState,
    TmpfsAction,
    Verb,
    mount_flags,
    plan,
    probe_path,
    shown_size,
    top_mount,
)
from zoned.shared.zone import shared_warnings

DATA = Path(__file__).parent / "data"

# As the 6.1 guest printed them (docs/shared-zone.md), plus a few of the host's own.
MOUNTINFO = """\
22 1 0:21 / / rw,relatime - 9p hostroot ro,trans=virtio
24 22 0:5 / /dev rw,nosuid,relatime - devtmpfs devtmpfs rw,size=1002836k,mode=755
25 22 0:22 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
31 22 0:27 / /tmp rw,relatime - tmpfs tmpfs rw,inode64
35 31 0:30 / /tmp/zt-a rw,nosuid,nodev,relatime - tmpfs tmpfs rw,size=163840k,inode64,mpol=bind:7
36 31 0:31 / /tmp/zt-b ro,relatime - tmpfs tmpfs ro,size=32768k,inode64,mpol=bind:7
37 36 0:32 / /tmp/zt-b rw,relatime - tmpfs tmpfs rw,inode64,mpol=bind:4
40 31 0:33 / /tmp/with\\040space rw,noatime - tmpfs tmpfs rw,mpol=bind=static:6
41 22 0:34 / /srv/data rw,relatime shared:5 - ext4 /dev/vda1 rw
not a mountinfo line
"""

MOUNTS = parse_mountinfo(MOUNTINFO)
BY_POINT = {m.mount_point: m for m in MOUNTS}
SEVEN = frozenset({7})


def decide(
    path: str,
    *,
    kind: PathKind = PathKind.EMPTY_DIR,
    nodes: frozenset[int] = SEVEN,
    size: int | None = None,
    mode: int = 0o1777,
    mounts: list[MountEntry] = MOUNTS,
    resolved: str | None = None,
) -> TmpfsAction:
    d = TmpfsDecl(path, size=size, mode=mode)
    (a,) = plan([d], nodes, mounts, {path: PathState(kind, resolved or path)})
    return a


# -- mountinfo ---------------------------------------------------------------------------


def test_mountinfo_fields_escapes_and_optional_fields() -> None:
    assert len(MOUNTS) == 9  # the junk line is skipped
    a = BY_POINT["/tmp/zt-a"]
    assert (a.mount_id, a.parent_id, a.fstype, a.source) == (35, 31, "tmpfs", "tmpfs")
    assert a.options == ("rw", "nosuid", "nodev", "relatime")
    assert a.super_option("mpol") == "bind:7"
    assert a.super_option("inode64") == ""
    assert a.super_option("mode") is None
    assert shown_size(a) == 163840 * 1024
    assert shown_size(BY_POINT["/tmp"]) is None
    assert "/tmp/with space" in BY_POINT
    ext4 = BY_POINT["/srv/data"]  # an optional field (shared:5) before the separator
    assert (ext4.fstype, ext4.source, ext4.super_options) == ("ext4", "/dev/vda1", ("rw",))


def test_the_visible_mount_is_the_top_of_a_stack() -> None:
    top = top_mount(MOUNTS, "/tmp/zt-b")
    assert top is not None and top.mount_id == 37
    # In whatever order mountinfo lists them.
    rev = list(reversed(MOUNTS))
    top = top_mount(rev, "/tmp/zt-b")
    assert top is not None and top.mount_id == 37
    assert top_mount(MOUNTS, "/nowhere") is None


def test_read_mounts_from_an_injected_proc_root(tmp_path: Path) -> None:
    (tmp_path / "self").mkdir()
    (tmp_path / "self" / "mountinfo").write_text(MOUNTINFO)
    assert read_mounts(tmp_path) == MOUNTS
    with pytest.raises(BackendError, match="cannot read"):
        read_mounts(tmp_path / "nope")


@pytest.mark.parametrize(
    ("text", "mode", "flags", "nodes"),
    [
        ("bind:7", "bind", "", {7}),
        ("bind:5-7", "bind", "", {5, 6, 7}),
        ("bind=static:6", "bind", "static", {6}),
        ("interleave:1-2", "interleave", "", {1, 2}),
        ("prefer:6", "prefer", "", {6}),
        ("local", "local", "", set()),
    ],
)
def test_mpol_as_the_kernel_prints_it(text: str, mode: str, flags: str, nodes: set[int]) -> None:
    m = Mpol.parse(text)
    assert (m.mode, m.flags, m.nodes) == (mode, flags, frozenset(nodes))
    assert str(m) == text


def test_remount_flags_keep_the_per_mount_options() -> None:
    assert mount_flags(BY_POINT["/tmp/zt-a"]) == MS_NOSUID | MS_NODEV | MS_RELATIME
    assert mount_flags(BY_POINT["/proc"]) == MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RELATIME
    assert mount_flags(top_mount(MOUNTS, "/tmp/with space")) == MS_NOATIME  # type: ignore[arg-type]
    ro = parse_mountinfo("9 1 0:1 / /x ro - tmpfs tmpfs ro\n")[0]
    assert mount_flags(ro) == MS_RDONLY | MS_STRICTATIME  # no atime option shown


# -- the decision, every branch ----------------------------------------------------------


def test_nothing_mounted_on_an_empty_directory_mounts_with_bind_and_mode() -> None:
    a = decide("/srv/shared", mode=0o770)
    assert a.verb is Verb.MOUNT and not a.create
    assert a.data == "mpol=bind:7,mode=0770"
    assert a.flags == NEW_MOUNT_FLAGS
    assert a.reason == "nothing is mounted there"


def test_a_missing_directory_is_made_first_and_the_size_passed() -> None:
    a = decide("/srv/shared", kind=PathKind.MISSING, size=256 << 20, nodes=frozenset({6, 7}))
    assert a.verb is Verb.MOUNT and a.create
    assert a.data == "mpol=bind:6-7,mode=1777,size=268435456"
    assert "missing" in a.reason


def test_a_tmpfs_with_the_right_policy_is_kept() -> None:
    a = decide("/tmp/zt-a", kind=PathKind.DIR)
    assert a.verb is Verb.KEEP, a
    assert a.reason == "already a tmpfs with mpol=bind:7"
    # Declared size equal to what it shows (163840k), given in another unit: still kept.
    assert decide("/tmp/zt-a", kind=PathKind.DIR, size=160 << 20).verb is Verb.KEEP


def test_a_tmpfs_bound_to_other_nodes_is_remounted_keeping_its_flags() -> None:
    a = decide("/tmp/zt-a", nodes=frozenset({6}))
    assert a.verb is Verb.REMOUNT
    assert a.data == "mpol=bind:6"
    assert a.flags == MS_NOSUID | MS_NODEV | MS_RELATIME
    assert "mpol=bind:7" in a.reason and "wants mpol=bind:6" in a.reason
    assert "files created before keep their old policy" in a.reason


@pytest.mark.parametrize(
    ("point", "why"),
    [
        ("/tmp", "the default (none)"),  # a tmpfs without any policy
        ("/tmp/with space", "mpol=bind=static:6"),  # the right mode but flags and nodes
    ],
)
def test_a_tmpfs_with_another_policy_is_remounted(point: str, why: str) -> None:
    a = decide(point, kind=PathKind.DIR)
    assert a.verb is Verb.REMOUNT and a.data == "mpol=bind:7"
    assert why in a.reason


def test_a_static_bind_on_the_right_nodes_is_still_not_what_zoned_mounts() -> None:
    mounts = parse_mountinfo("9 1 0:1 / /x rw,relatime - tmpfs tmpfs rw,mpol=bind=static:7\n")
    assert decide("/x", mounts=mounts).verb is Verb.REMOUNT


def test_the_top_of_a_stack_decides() -> None:
    # Under it: ro, bind:7 (right); on top: bind:4 (wrong) → remount the top one, rw.
    a = decide("/tmp/zt-b", kind=PathKind.DIR)
    assert a.verb is Verb.REMOUNT and a.flags == MS_RELATIME


def test_only_the_size_differs_remounts_with_the_size_only() -> None:
    a = decide("/tmp/zt-a", kind=PathKind.DIR, size=64 << 20)
    assert a.verb is Verb.REMOUNT
    assert a.data == "size=67108864"
    assert a.reason == "its size is 160M, declared 64M"
    # A declared size against the default size (not shown): remount with it.
    mounts = parse_mountinfo("9 1 0:1 / /x rw,relatime - tmpfs tmpfs rw,mpol=bind:7\n")
    b = decide("/x", mounts=mounts, size=64 << 20)
    assert (b.verb, b.data) == (Verb.REMOUNT, "size=67108864")
    assert "the default" in b.reason
    # No size declared: whatever size it has is kept.
    assert decide("/tmp/zt-a", kind=PathKind.DIR, size=None).verb is Verb.KEEP


def test_another_filesystem_is_refused() -> None:
    a = decide("/srv/data", kind=PathKind.DIR)
    assert a.verb is Verb.REFUSE
    assert a.reason.startswith("a ext4 mount from /dev/vda1 is there")
    assert decide("/proc", kind=PathKind.DIR).verb is Verb.REFUSE


def test_a_directory_with_files_or_a_file_is_refused() -> None:
    a = decide("/srv/full", kind=PathKind.DIR)
    assert a.verb is Verb.REFUSE and "would hide its files" in a.reason
    b = decide("/srv/file", kind=PathKind.OTHER)
    assert b.verb is Verb.REFUSE and "needs a directory" in b.reason


def test_without_shared_nodes_everything_is_refused() -> None:
    for point in ("/srv/new", "/tmp/zt-a"):
        a = decide(point, nodes=frozenset())
        assert a.verb is Verb.REFUSE and "no shared zone" in a.reason


def test_a_symlinked_path_is_decided_at_its_target() -> None:
    a = decide("/shared", kind=PathKind.DIR, resolved="/tmp/zt-a")
    assert (a.verb, a.path, a.target) == (Verb.KEEP, "/shared", "/tmp/zt-a")


def test_probe_path_on_real_directories(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    (tmp_path / "file").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "empty")
    real = os.path.realpath(tmp_path)
    assert probe_path(str(tmp_path / "empty")) == PathState(PathKind.EMPTY_DIR, f"{real}/empty")
    assert probe_path(str(tmp_path / "full")).kind is PathKind.DIR
    assert probe_path(str(tmp_path / "file")).kind is PathKind.OTHER
    assert probe_path(str(tmp_path / "none" / "deeper")).kind is PathKind.MISSING
    assert probe_path(str(tmp_path / "link")) == PathState(PathKind.EMPTY_DIR, f"{real}/empty")


# -- the effect, with a fake kernel --------------------------------------------------------


@pytest.fixture
def kernel(tmp_path: Path) -> FakeKernel:
    return FakeKernel(tmp_path / "proc", [])


def test_ensure_mounts_then_verifies_and_a_second_run_keeps(
    tmp_path: Path, kernel: FakeKernel
) -> None:
    target = tmp_path / "mnt" / "shared"
    decl = [TmpfsDecl(str(target), size=64 << 20)]
    r = ensure(decl, SEVEN, proc_root=kernel.proc, mount=kernel)
    assert r.ok, r.lines()
    (o,) = r.outcomes
    assert o.done and o.action.verb is Verb.MOUNT
    assert target.is_dir()  # made first
    assert kernel.calls == [
        ("tmpfs", str(target), "tmpfs", NEW_MOUNT_FLAGS, "mpol=bind:7,mode=1777,size=67108864")
    ]
    assert o.after == "a tmpfs (mpol=bind:7, size 64M)"
    assert r.lines()[1].startswith(f"  {target}: mounted with mpol=bind:7,mode=1777,size=")
    again = ensure(decl, SEVEN, proc_root=kernel.proc, mount=kernel)
    assert [x.action.verb for x in again.outcomes] == [Verb.KEEP]
    assert len(kernel.calls) == 1 and again.ok


def test_ensure_remounts_with_the_current_flags(tmp_path: Path, kernel: FakeKernel) -> None:
    target = str(tmp_path)
    kernel.lines.append(
        f"50 1 0:50 / {target} rw,nosuid,noexec,noatime - tmpfs tmpfs rw,size=1024k,mpol=bind:6"
    )
    kernel.save()
    r = ensure([TmpfsDecl(target)], SEVEN, proc_root=kernel.proc, mount=kernel)
    assert r.ok, r.lines()
    assert kernel.calls == [
        ("tmpfs", target, None, MS_REMOUNT | MS_NOSUID | MS_NOEXEC | MS_NOATIME, "mpol=bind:7")
    ]
    assert r.outcomes[0].after == "a tmpfs (mpol=bind:7, size 1M)"


def test_a_mount_the_kernel_did_not_take_is_an_error(tmp_path: Path, kernel: FakeKernel) -> None:
    kernel.ignore = True
    r = ensure([TmpfsDecl(str(tmp_path / "m"))], SEVEN, proc_root=kernel.proc, mount=kernel)
    assert not r.ok
    assert r.outcomes[0].error == "the kernel accepted it but shows no mount there"


def test_errors_are_per_mount_point_with_their_errno(tmp_path: Path, kernel: FakeKernel) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "file").write_text("x")
    bad, good, full = (str(tmp_path / n) for n in ("bad", "good", "full"))
    kernel.fail[bad] = errno.EINVAL
    decls = [TmpfsDecl(bad), TmpfsDecl(full), TmpfsDecl(good)]
    r = ensure(decls, SEVEN, proc_root=kernel.proc, mount=kernel)
    assert [o.ok for o in r.outcomes] == [False, False, True]
    assert r.outcomes[0].errno_name == "EINVAL"
    assert "a node without memory in mpol" in (r.outcomes[0].error or "")
    assert r.lines()[1].startswith(f"  {bad}: failed to mount with mpol=bind:7")
    assert r.lines()[2] == (
        f"  {full}: refused: {full} is a directory with files in it: mounting there would hide"
        " its files"
    )
    assert [c[1] for c in kernel.calls] == [bad, good]  # the refused one is never mounted
    assert not r.ok


def test_dry_run_decides_and_mounts_nothing(tmp_path: Path, kernel: FakeKernel) -> None:
    target = tmp_path / "m"
    r = ensure([TmpfsDecl(str(target))], SEVEN, proc_root=kernel.proc, mount=kernel, dry_run=True)
    assert r.ok and kernel.calls == [] and not target.exists()
    assert r.lines() == [
        "shared tmpfs: shared zone node 7 (dry run: nothing mounted)",
        f"  {target}: would mount with mpol=bind:7,mode=1777: nothing is mounted there;"
        " the directory is missing (made first)",
    ]


def test_a_private_mount_namespace_is_noted_and_the_daemon_refuses_it(
    tmp_path: Path, kernel: FakeKernel
) -> None:
    (kernel.proc / "self" / "ns").mkdir()
    (kernel.proc / "1" / "ns").mkdir(parents=True)
    (kernel.proc / "self" / "ns" / "mnt").symlink_to("mnt:[4026532001]")
    (kernel.proc / "1" / "ns" / "mnt").symlink_to("mnt:[4026531841]")
    decl = [TmpfsDecl(str(tmp_path / "m"))]
    r = ensure(decl, SEVEN, proc_root=kernel.proc, mount=kernel, refuse_private_namespace=True)
    assert not r.ok and kernel.calls == []
    assert "is not PID 1's" in (r.namespace or "")
    assert (r.outcomes[0].error or "").startswith("not mounted: this process's mount namespace")
    # The CLI's call: it mounts, and the report carries the note.
    r = ensure(decl, SEVEN, proc_root=kernel.proc, mount=kernel)
    assert r.ok and len(kernel.calls) == 1
    assert r.lines()[-1].startswith("  note: this process's mount namespace (mnt:[4026532001])")


def test_perform_raises_zoned_errors() -> None:
    refuse = decide("/srv/data", kind=PathKind.DIR)
    with pytest.raises(WriteRefused, match="ext4"):
        perform(refuse, mount=lambda *a: None)

    def eperm(*args: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    with pytest.raises(WriteRefused, match=r"EPERM .* CAP_SYS_ADMIN") as info:
        perform(decide("/srv/new"), mount=eperm)
    assert info.value.errno == errno.EPERM
    err = translate(OSError(errno.ENOMEM, "Cannot allocate memory"), "mount x")
    assert type(err) is BackendError and err.errno_name == "ENOMEM"


# -- the command -------------------------------------------------------------------------


def write_config(tmp_path: Path, body: str) -> Path:
    cfg = tmp_path / "zoned.yaml"
    cfg.write_text(body)
    return cfg


def test_cli_dry_run_json_and_text(
    tmp_path: Path, kernel: FakeKernel, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    cfg = write_config(
        tmp_path,
        "host:\n  shared: [7]\n"
        f"  shared_tmpfs: [{tmp_path / 'new'}, {{path: {tmp_path / 'full'}, size: 1G}}]\n"
        "containers:\n  a: {min: 1G, shared: true}\n",
    )
    argv = ["shared", "mount", "--config", str(cfg), "--proc-root", str(kernel.proc)]
    assert cli.main([*argv, "--dry-run", "--json"]) == 1  # one is refused
    doc = parse_json(capsys.readouterr().out)
    assert (doc["schema"], doc["shared_nodes"], doc["dry_run"], doc["ok"]) == (
        "zoned/shared-mount/v1",
        [7],
        True,
        False,
    )
    assert [(m["action"], m["ok"], m["done"]) for m in doc["mounts"]] == [
        ("mount", True, False),
        ("refuse", False, False),
    ]
    assert doc["mounts"][0]["options"] == "mpol=bind:7,mode=1777"
    assert not (tmp_path / "new").exists()
    assert cli.main([*argv, "--dry-run"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "shared tmpfs: shared zone node 7 (dry run: nothing mounted)"
    assert out[1].startswith(f"  {tmp_path / 'new'}: would mount with mpol=bind:7,mode=1777")
    assert out[2].startswith(f"  {tmp_path / 'full'}: refused:")


def test_cli_with_a_shared_count_reads_the_topology(
    tmp_path: Path, kernel: FakeKernel, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_config(tmp_path, f"host:\n  shared: 2\n  shared_tmpfs: [{tmp_path / 'm'}]\n")
    shutil.copytree(DATA / "proc-8node", kernel.proc, dirs_exist_ok=True)  # and its mountinfo
    code = cli.main(
        ["shared", "mount", "--config", str(cfg), "--dry-run", "--json",
         "--proc-root", str(kernel.proc), "--sysfs-root", str(DATA / "sys-8node")]
    )  # fmt: skip
    assert code == 0
    doc = parse_json(capsys.readouterr().out)
    assert doc["shared_nodes"] == [6, 7]  # the top two pool nodes, as placement takes them
    assert doc["mounts"][0]["options"] == "mpol=bind:6-7,mode=1777"


def test_cli_without_shared_tmpfs_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_config(tmp_path, "host: {shared: [7]}\n")
    assert cli.main(["shared", "mount", "--config", str(cfg)]) == 0
    assert capsys.readouterr().out == f"{cfg}: no host.shared_tmpfs declared: nothing to mount\n"


# -- the daemon at start -------------------------------------------------------------------

SHARED_DAEMON = """\
host: {{reserved_nodes: [0], shared: 1, shared_tmpfs: [{good}, {bad}]}}
containers:
  web:   {{min: {{nodes: 1}}, max: {{nodes: 1}}, shared: true}}
  batch: {{min: {{nodes: 1}}, max: {{nodes: 1}}}}
"""


def test_the_daemon_mounts_at_start_and_a_failure_is_logged_not_fatal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    kernel = FakeKernel(tmp_path / "proc", [])
    good, bad = tmp_path / "good", tmp_path / "bad"
    kernel.fail[str(bad)] = errno.EPERM
    caplog.set_level(logging.INFO, logger="zoned.service")
    config = SHARED_DAEMON.format(good=good, bad=bad)
    with daemon(tmp_path, config, speed=100, tmpfs_mount=kernel, proc_root=kernel.proc) as d:
        assert d.engine is not None and set(d.engine.managed) == {"web", "batch"}  # it runs
        shared = d.engine.zonemap.nodes_with(SHARED)
        warnings = list(d.warnings)
    assert shared == frozenset({3})
    targets = [c[1] for c in kernel.calls]
    assert targets == [str(good), str(bad)]
    assert kernel.calls[0][4] == "mpol=bind:3,mode=1777"
    assert any(w.startswith(f"shared tmpfs: {bad}: failed to mount") for w in warnings)
    text = caplog.text
    assert f"shared tmpfs: {good}: mounted with mpol=bind:3,mode=1777" in text
    assert "EPERM" in text and "CAP_SYS_ADMIN" in text


# -- the declaration ---------------------------------------------------------------------


def test_both_shapes_parse_with_defaults() -> None:
    d = loads(
        "host:\n  shared: [7]\n  shared_tmpfs:\n    - /srv/shared\n"
        "    - {path: /dev/shm, size: 256M, mode: '0770'}\n    - {path: /x, size: 4096}\n"
    )
    assert d.host.shared_tmpfs == (
        TmpfsDecl("/srv/shared"),
        TmpfsDecl("/dev/shm", size=256 << 20, mode=0o770),
        TmpfsDecl("/x", size=4096),
    )
    assert loads("host: {shared: 1, shared_tmpfs: null}").host.shared_tmpfs == ()


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        loads(text, "zoned.yaml")
    return [str(p) for p in info.value.problems]


PATH_EXPECTED = (
    "expected an absolute path to a directory other than /, like /srv/shared"
    " (no '.', '..' or empty parts, no trailing /)"
)


def test_every_bad_item_is_reported_at_its_place() -> None:
    text = (
        "host:\n"
        "  shared: [7]\n"
        "  shared_tmpfs:\n"
        "    - srv/shared\n"
        "    - /a/../b\n"
        "    - /\n"
        "    - /c/\n"
        "    - {path: /d, size: 0}\n"
        "    - {path: /e, mode: 0750}\n"
        "    - {size: 1G}\n"
        "    - /f\n"
        "    - {path: /f}\n"
        "    - {path: /g, extra: 1}\n"
        "    - [/h]\n"
    )
    assert problems(text) == [
        f"zoned.yaml:4:7: host.shared_tmpfs[0]: found string 'srv/shared'; {PATH_EXPECTED}",
        f"zoned.yaml:5:7: host.shared_tmpfs[1]: found string '/a/../b'; {PATH_EXPECTED}",
        f"zoned.yaml:6:7: host.shared_tmpfs[2]: found string '/'; {PATH_EXPECTED}",
        f"zoned.yaml:7:7: host.shared_tmpfs[3]: found string '/c/'; {PATH_EXPECTED}",
        "zoned.yaml:8:24: host.shared_tmpfs[4].size: found integer 0; expected a size above"
        " zero like 256M, 2G or 1.5GiB, or a number of bytes",
        "zoned.yaml:9:24: host.shared_tmpfs[5].mode: found integer 0750; expected an octal"
        " mode as a quoted string, like '1777' (YAML reads 0750 as 488)",
        "zoned.yaml:10:7: host.shared_tmpfs[6]: found no 'path';"
        f" expected path: {PATH_EXPECTED[9:]}",
        "zoned.yaml:12:7: host.shared_tmpfs[8]: found /f again (first at zoned.yaml:11:7);"
        " expected each mount point once",
        "zoned.yaml:13:18: host.shared_tmpfs[9].extra: found an unknown key; expected one of"
        " path, size, mode",
        "zoned.yaml:14:7: host.shared_tmpfs[10]: found a list; expected a path or"
        " {path: ..., size: ..., mode: ...}",
    ]


def test_not_a_list() -> None:
    assert problems("host: {shared: 1, shared_tmpfs: /srv/x}\n") == [
        "zoned.yaml:1:33: host.shared_tmpfs: found string '/srv/x'; expected a list of mount"
        " points, each an absolute path or {path: ..., size: ..., mode: ...}"
    ]


def test_a_shared_tmpfs_needs_a_shared_zone() -> None:
    want = (
        "zoned.yaml:2:17: host.shared_tmpfs: found 2 shared tmpfs mount points but no shared"
        " zone (host.shared is 0); expected a shared zone for their mpol=bind (host.shared: a"
        " count or a list of nodes)"
    )
    assert problems("host:\n  shared_tmpfs: [/a, /b]\n") == [want]
    assert problems("host:\n  shared_tmpfs: [/a, /b]\n  shared: 0\n") == [want]
    # A bad shared value is reported alone, not as a missing zone too.
    assert len(problems("host:\n  shared_tmpfs: [/a]\n  shared: x\n")) == 1


# -- zoned check's warnings ----------------------------------------------------------------


def test_warnings_name_the_consequence() -> None:
    none = loads("host: {shared: [7], shared_tmpfs: [/srv/s]}\ncontainers: {a: {min: 1G}}\n")
    (w,) = [x for x in shared_warnings(none) if "shared_tmpfs" in x]
    assert "no container has shared: true" in w and "on their own nodes" in w
    some = loads(
        "host: {shared: [7], shared_tmpfs: [/srv/s, /dev/shm]}\n"
        "containers: {a: {min: 1G, shared: true}, b: {min: 1G}}\n"
    )
    ws = shared_warnings(some)
    (w,) = [x for x in ws if "shared_tmpfs" in x]
    assert w.startswith("shared_tmpfs (/srv/s, /dev/shm): only files created by a container")
    assert "(a)" in w
    assert any(x.startswith("a: shared: true puts the shared nodes (7)") for x in ws)
    plain = loads("host: {shared: [7]}\ncontainers: {a: {min: 1G, shared: true}}\n")
    assert not [x for x in shared_warnings(plain) if "shared_tmpfs" in x]


# -- real: a tmpfs on the build machine (root) ---------------------------------------------


@pytest.fixture
def real_target(tmp_path: Path) -> Iterator[Path]:
    need(os.geteuid() == 0, "needs root to mount")
    need(Path("/sys/devices/system/node/node0").is_dir(), "needs node 0 in sysfs")
    target = tmp_path / "shared"
    yield target
    while target.is_mount():
        subprocess.run(["umount", str(target)], check=True)


@pytest.mark.root
def test_real_mount_keep_and_remount_on_node_0(real_target: Path) -> None:
    zero = frozenset({0})
    decl = [TmpfsDecl(str(real_target), size=8 << 20, mode=0o750)]
    first = ensure(decl, zero, mount=libc_mount)
    assert first.ok, first.lines()
    assert first.outcomes[0].after == "a tmpfs (mpol=bind:0, size 8M)"
    assert oct(real_target.stat().st_mode & 0o7777) == "0o750"
    m = top_mount(read_mounts(), os.path.realpath(real_target))
    assert m is not None and "nosuid" in m.options and "nodev" in m.options
    assert [o.action.verb for o in ensure(decl, zero).outcomes] == [Verb.KEEP]
    bigger = [TmpfsDecl(str(real_target), size=16 << 20)]
    again = ensure(bigger, zero)
    assert again.ok and again.outcomes[0].action.verb is Verb.REMOUNT
    m = top_mount(read_mounts(), os.path.realpath(real_target))
    assert m is not None and shown_size(m) == 16 << 20
    assert "nosuid" in m.options and "nodev" in m.options  # kept across the remount
    with pytest.raises(WriteRefused, match="EINVAL"):  # a node this machine lacks
        perform(decide(str(real_target) + "x", kind=PathKind.MISSING, nodes=frozenset({1000})))
