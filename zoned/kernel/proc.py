"""Processes as ``/proc`` shows them, under an injected proc root.

``read_proc`` reads what the rules look at (``/proc/PID/{exe,cmdline,status,cgroup}``); a
process that exits meanwhile is None, not an error.
"""

from __future__ import annotations

import os
import pwd
from functools import lru_cache
from pathlib import Path

from zoned.model.nodelist import parse_nodelist
from zoned.model.process import ProcInfo, norm_cgroup

PF_KTHREAD = 0x00200000  # include/linux/sched.h


def _read_bytes(path: Path) -> bytes | None:
    """The file's bytes, or None when the process is gone (ENOENT, ESRCH)."""
    try:
        with path.open("rb") as f:
            return f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None


def mems_allowed(proc_root: Path, tid: int) -> frozenset[int] | None:
    """The nodes task ``tid`` may allocate on now (``Mems_allowed_list`` of its status),
    or None when it is gone. A cpuset.mems write updates each task in turn."""
    raw = _read_bytes(proc_root / str(tid) / "status")
    if raw is None:
        return None
    for line in raw.decode(errors="replace").splitlines():
        if line.startswith("Mems_allowed_list:"):
            return parse_nodelist(line.split(":", 1)[1].strip())
    return None


def wchan(proc_root: Path, tid: int) -> str | None:
    """Where task ``tid`` sleeps in the kernel (``/proc/TID/wchan``: a function name, "0"
    when it runs), or None when it is gone or the kernel hides it."""
    try:
        raw = _read_bytes(proc_root / str(tid) / "wchan")
    except PermissionError:
        return None
    return None if raw is None else raw.decode(errors="replace").strip()


def cgroup_from_proc(text: str) -> str | None:
    """The cgroup zoned cares about in a ``/proc/PID/cgroup`` text, relative to the root:
    the v1 cpuset hierarchy's when there is one, else the v2 (``0::``) one."""
    unified: str | None = None
    for line in text.splitlines():
        hier, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if "cpuset" in controllers.split(","):
            return norm_cgroup(path)
        if hier == "0" and not controllers:
            unified = norm_cgroup(path)
    return unified


def v1_paths_from_proc(text: str) -> dict[str, str]:
    """Each v1 controller's cgroup in a ``/proc/PID/cgroup`` text (``{"cpuset": "zoned/web",
    "memory": "zoned/web", ...}``), relative to its hierarchy's root."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        _, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        for c in controllers.split(","):
            if c:
                out[c] = norm_cgroup(path)
    return out


def proc_v1_paths(proc_root: Path, pid: int) -> dict[str, str] | None:
    """``v1_paths_from_proc`` of a live process; None when it is gone."""
    data = _read_bytes(proc_root / str(pid) / "cgroup")
    return None if data is None else v1_paths_from_proc(data.decode(errors="replace"))


def proc_cgroup(proc_root: Path, pid: int) -> str | None:
    """The process's cgroup (see ``cgroup_from_proc``); None when it is gone."""
    data = _read_bytes(proc_root / str(pid) / "cgroup")
    return None if data is None else cgroup_from_proc(data.decode(errors="replace"))


@lru_cache(maxsize=1024)
def user_name(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


def read_proc(proc_root: Path, pid: int) -> ProcInfo | None:
    """What the rules look at, or None when the process is gone, a zombie or a kernel
    thread (no ``exe``). Read order: exe, cmdline, status, cgroup (the cgroup last, so a
    move made meanwhile is seen)."""
    base = proc_root / str(pid)
    try:
        exe = str((base / "exe").readlink())
    except (FileNotFoundError, ProcessLookupError):
        return None  # gone, a zombie, or a kernel thread
    except PermissionError:
        exe = None
    exe = exe.removesuffix(" (deleted)") if exe is not None else None
    raw = _read_bytes(base / "cmdline")
    status = _read_bytes(base / "status")
    cgroup = proc_cgroup(proc_root, pid)
    if raw is None or status is None or cgroup is None:
        return None
    args = raw.rstrip(b"\0").split(b"\0") if raw else []
    cmdline = tuple(a.decode(errors="surrogateescape") for a in args)
    uid: int | None = None
    for line in status.split(b"\n"):
        if line.startswith(b"Uid:"):
            uid = int(line.split()[1])  # the real uid
            break
    return ProcInfo(
        pid=pid,
        exe=exe,
        cmdline=cmdline,
        uid=uid,
        user=user_name(uid) if uid is not None else None,
        cgroup=cgroup,
    )


def stat_fields(proc_root: Path, pid: int) -> list[str] | None:
    """``/proc/PID/stat`` fields after the comm, split (field 3 first); None when gone."""
    data = _read_bytes(proc_root / str(pid) / "stat")
    if data is None:
        return None
    # comm may hold spaces and parentheses: the fields start after the last ")".
    return data[data.rfind(b")") + 2 :].decode().split()


def comm(proc_root: Path, pid: int) -> str | None:
    data = _read_bytes(proc_root / str(pid) / "comm")
    return None if data is None else data.decode(errors="replace").rstrip("\n")


def is_kernel_thread(proc_root: Path, pid: int) -> bool | None:
    """PF_KTHREAD in the flags of ``/proc/PID/stat`` (field 9); None when gone."""
    fields = stat_fields(proc_root, pid)
    if fields is None:
        return None
    return bool(int(fields[6]) & PF_KTHREAD)


def children(proc_root: Path, pid: int) -> list[int]:
    """Direct children of every thread of ``pid`` (``task/*/children``); [] when gone."""
    out: list[int] = []
    try:
        tasks = list((proc_root / str(pid) / "task").iterdir())
    except (FileNotFoundError, ProcessLookupError):
        return out
    for task in tasks:
        data = _read_bytes(task / "children")
        if data:
            out.extend(int(x) for x in data.split())
    return out


def all_pids(proc_root: Path) -> list[int]:
    """Every process id under the proc root, ascending."""
    return sorted(int(e.name) for e in os.scandir(proc_root) if e.name.isdigit())


# ---------------------------------------------------------------------------------------
# Where containers' cgroups are
