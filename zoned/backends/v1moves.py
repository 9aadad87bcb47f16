"""Process moves on cgroup v1, where a container is two cgroups (cpuset and memory).

A move is two writes, so it can stop half-way: a crash (kill -9) between them, or a memory
write the kernel refuses, leaves the process in its new cpuset and its old memcg. zoned
never leaves it so:

- ``attach_both`` writes the cpuset first (its next allocations land on the container's
  nodes), then the memcg; a refused memcg write is retried once, and if it fails again
  the process goes back to the cpuset it came from before the error is raised;
- ``finish_split`` (run by ``ensure``, so at every start and adoption) finds the container's
  processes whose memcg is elsewhere, reading both paths from ``/proc/PID/cgroup``, and
  finishes their move. The cpuset is written first, so it says where a move was going.
"""

from __future__ import annotations

import errno
import logging
from pathlib import Path

from zoned.errors import BackendError, CgroupGone
from zoned.kernel.cgroupfs import CgroupFs
from zoned.kernel.faults import fault_point
from zoned.kernel.proc import proc_v1_paths
from zoned.model.process import cgroup_within

log = logging.getLogger("zoned.backends.cgroup1")

MEMORY_RETRIES = 1


def attach_both(cpuset: CgroupFs, memory: CgroupFs, proc_root: Path, path: str, pid: int) -> None:
    """Move ``pid`` into ``path`` in both hierarchies, or leave it where it was (see the
    module). Raises CgroupGone for a dead pid (ESRCH), else the memcg write's error."""
    before = proc_v1_paths(proc_root, pid)  # None: exiting (the write will say ESRCH)
    cpuset.move_pid(path, pid)
    fault_point("attach.cpuset_moved")
    error: BackendError | None = None
    for _ in range(1 + MEMORY_RETRIES):
        try:
            memory.move_pid(path, pid)
        except CgroupGone as exc:
            if exc.errno == errno.ESRCH:
                raise  # the process died: nothing is left split
            error = exc
            break  # the memcg vanished: retrying cannot help
        except BackendError as exc:
            error = exc
            continue
        fault_point("attach.memory_moved")
        return
    assert error is not None
    _move_back(cpuset, path, pid, None if before is None else before.get("cpuset"), error)
    raise error


def _move_back(cpuset: CgroupFs, path: str, pid: int, back: str | None, error: Exception) -> None:
    """Undo the cpuset half of a move whose memcg half failed with ``error``; raises
    BackendError naming the split when that cannot be done."""
    if back is None:
        raise BackendError(f"pid {pid} is split: in cpuset {path}, memcg not moved ({error})")
    try:
        cpuset.move_pid(back, pid)
    except CgroupGone:
        return  # the process died meanwhile: nothing is left split
    except BackendError as exc:
        raise BackendError(
            f"pid {pid} is split: in cpuset {path}, memcg not moved ({error}); "
            f"moving it back to cpuset /{back} failed too ({exc})",
            exc.errno,
        ) from exc
    log.warning("pid %d: memcg move to %s failed, moved back to cpuset /%s", pid, path, back)


def finish_split(cpuset: CgroupFs, memory: CgroupFs, proc_root: Path, path: str) -> list[int]:
    """Move into ``path``'s memcg each process of ``path``'s cpuset whose memcg is outside
    it (a move that stopped half-way); returns their pids. A process that exits meanwhile
    is skipped."""
    done: list[int] = []
    for pid in cpuset.pids(path):
        paths = proc_v1_paths(proc_root, pid)
        mem = None if paths is None else paths.get("memory")
        if mem is None or cgroup_within(mem, path):
            continue
        try:
            memory.move_pid(path, pid)
        except CgroupGone as exc:
            if exc.errno == errno.ESRCH:
                continue
            raise
        log.info("pid %d: finished its move to %s (its memcg was /%s)", pid, path, mem)
        done.append(pid)
    return done
