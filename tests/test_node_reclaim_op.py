"""The node-reclaim operation (``nodeN/reclaim``, Linux 6.16+) on the simulated host and on
the real backends over a fake sysfs tree: what is written where, and how it ends."""

from __future__ import annotations

import errno
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakes.sysfs import eight_node
from tests.fakes.v2fs import FakeV2Fs, RecordingLoop
from tests.support.donor import LEFT, donor_host
from zoned.backends.cgroup2 import Cgroup2Backend
from zoned.config.decl import Amount, ContainerDecl
from zoned.errors import Unsupported
from zoned.kernel.nodereclaim import has_node_reclaim, node_reclaim_file, reclaim_node
from zoned.model.host import OpKind
from zoned.model.sizes import MIB


def test_the_sim_reclaims_only_that_node_and_says_eagain_when_short() -> None:
    b = donor_host(node_reclaim=True)
    b.ensure(ContainerDecl("batch", Amount.nodes(1), Amount.nodes(3)), frozenset({2, 3}))
    b.advance(2)
    before = b.usage("batch")
    on2 = before.per_node[2].file
    op = b.start_node_reclaim("batch", 2, on2 + 100 * MIB, 10)
    (ev,) = [ev for ev in b.wait(10) if ev.op == op]
    r = b.op_result(op)
    assert (r.kind, ev.ok, r.errno, r.reclaimed) == (OpKind.NODE_RECLAIM, False, errno.EAGAIN, on2)
    after = b.usage("batch")
    assert after.per_node[2].file == 0 and after.per_node[2].anon == before.per_node[2].anon
    assert not b.can_reclaim_node(99)
    with pytest.raises(Unsupported):
        donor_host(node_reclaim=False).start_node_reclaim("batch", 2, MIB, 10)


# -- the real backends' operation, on a fake sysfs tree ---------------------------------


def real_backend(tmp: Path) -> tuple[Cgroup2Backend, Path]:
    sysfs = eight_node(tmp / "host")
    b = Cgroup2Backend(
        tmp / "cgroup",
        "zoned",
        sys_root=sysfs.sys_root,
        proc_root=sysfs.proc_root,
        fs=FakeV2Fs(tmp / "cgroup"),
        loop=RecordingLoop(),
    )
    return b, sysfs.sys_root


def test_the_real_backend_writes_the_amount_to_that_nodes_file(tmp_path: Path) -> None:
    b, sys_root = real_backend(tmp_path)
    try:
        assert not b.can_reclaim_node(3)  # a kernel before 6.16
        node_reclaim_file(sys_root, 3).write_text("")
        assert b.can_reclaim_node(3) and not b.can_reclaim_node(4)
        op = b.start_node_reclaim("web", 3, LEFT, 10)
        (ev,) = b.wait(10)
        r = b.op_result(op)
        assert (ev.op, ev.container, ev.ok, r.kind) == (op, "web", True, OpKind.NODE_RECLAIM)
        assert node_reclaim_file(sys_root, 3).read_text() == str(LEFT)
        assert node_reclaim_file(sys_root, 4).exists() is False
        with pytest.raises(Unsupported, match="node4/reclaim"):
            b.start_node_reclaim("web", 4, LEFT, 10)
    finally:
        b.close()


def test_an_os_error_is_a_failed_operation_with_its_errno(tmp_path: Path) -> None:
    b, sys_root = real_backend(tmp_path)
    try:
        node_reclaim_file(sys_root, 5).mkdir()  # opening it for writing: EISDIR
        op = b.start_node_reclaim("web", 5, LEFT, 10)
        (ev,) = b.wait(10)
        r = b.op_result(op)
        assert (ev.ok, r.errno) == (False, errno.EISDIR)
        assert r.error.startswith("node5/reclaim: ") and "\n" not in r.error
    finally:
        b.close()


def test_the_writer_refuses_what_the_kernel_could_not_tell_from_a_typo(tmp_path: Path) -> None:
    # The kernel answers EAGAIN to a malformed write as to a short one (docs/kernel-checks.md):
    # zoned only ever writes a positive byte count.
    with pytest.raises(ValueError):
        reclaim_node(tmp_path, 0, 0)


LIVE = Path("/sys/devices/system/node/node0/reclaim")


@pytest.mark.skipif(
    os.geteuid() != 0 or not LIVE.exists() or shutil.which("unshare") is None,
    reason="needs root, unshare(1) and a kernel with nodeN/reclaim (6.16+)",
)
def test_a_read_only_sys_is_no_node_reclaim() -> None:
    # As under the unit's ProtectKernelTunables=yes: the file is there, the write is EROFS.
    # In a private mount namespace, so the machine's /sys stays as it is.
    code = (
        "from pathlib import Path; from zoned.kernel.nodereclaim import has_node_reclaim; "
        "print(has_node_reclaim(Path('/sys'), 0))"
    )
    script = f"mount --bind -o ro /sys /sys && exec {sys.executable} -c {shlex.quote(code)}"
    out = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.strip() == "False", out
    assert has_node_reclaim(Path("/sys"), 0)  # and writable outside it
