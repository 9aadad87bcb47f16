"""Per-node proactive reclaim: ``/sys/devices/system/node/nodeN/reclaim`` (Linux 6.16+).

The write takes an amount (``memparse``: bytes, or a K/M/G suffix) and optionally
``swappiness=N``, and reclaims that much from the node's LRUs across **every** memcg (no
cgroup is named: it is the root's reclaim on that node). Measured on 6.18 and 7.3
(docs/kernel-checks.md): every failure is EAGAIN, a short reclaim and a malformed
argument alike, so zoned writes only a plain byte count it made itself, and EAGAIN means
"less than asked". The write blocks while the kernel reclaims: a worker makes it.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from zoned.errors import BackendError, Unsupported, WriteRefused


def node_reclaim_file(sys_root: Path, node: int) -> Path:
    """Where node ``node``'s reclaim file is under ``sys_root`` (present or not)."""
    return sys_root / "devices" / "system" / "node" / f"node{node}" / "reclaim"


def has_node_reclaim(sys_root: Path, node: int) -> bool:
    """Whether the kernel under ``sys_root`` can reclaim node ``node`` alone and this
    process may write its file: a read-only /sys (the unit's ``ProtectKernelTunables=yes``)
    has it but refuses the write with EROFS, which access(2) tells beforehand."""
    path = node_reclaim_file(sys_root, node)
    return path.exists() and os.access(path, os.W_OK)


def reclaim_node(sys_root: Path, node: int, nbytes: int) -> None:
    """Ask the kernel to reclaim ``nbytes`` from node ``node`` (blocks until it is done).

    Raises ``WriteRefused`` with errno EAGAIN when it reclaimed less, ``Unsupported`` when
    the kernel has no such file, ``BackendError`` for any other OS error."""
    if nbytes <= 0:
        raise ValueError("node reclaim needs a positive byte count")
    path = node_reclaim_file(sys_root, node)
    what = f"node{node}/reclaim"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise Unsupported(f"{what}: not on this kernel (6.16 or later has it)") from exc
    except OSError as exc:
        raise _error(what, exc) from exc
    try:
        os.write(fd, str(nbytes).encode())
    except OSError as exc:
        raise _error(what, exc) from exc
    finally:
        os.close(fd)


def _error(what: str, exc: OSError) -> BackendError:
    code = exc.errno or 0
    name = errno.errorcode.get(code, str(code))
    if code == errno.EAGAIN:
        return WriteRefused(f"{what}: reclaimed less than asked ({name})", code)
    return BackendError(f"{what}: {exc.strerror or name} ({name})", code)
