"""Which kernel interfaces this machine has, probed rather than assumed from a version.

:func:`probe` looks at the interfaces themselves, every path under the injected
:class:`~zoned.kernel.roots.HostRoots`:

- ``/sys/devices/system/node/nodeN/reclaim``: proactive reclaim of one node (new in 6.16;
  absent on Debian's 6.1 and 6.12, present on its 7.x), which the hand-over uses for what a
  donor leaves on a node taken from it (``zoned.handover``);
- ``memory.reclaim`` on the cgroup2 root, and whether it takes arguments: the probe writes
  ``0 swappiness=60`` (reclaim nothing; 6.1 parses only an amount and says EINVAL, 6.7 and
  later accept it);
- PSI: ``/proc/pressure/memory`` and whether a trigger can be armed there (written, then
  closed, which removes it);
- the mounted cgroup hierarchies: cgroup2, v1 ``cpuset``, v1 ``memory`` (6.12 and later
  Debian kernels have no v1 cpuset or memory);
- the items of ``memory.numa_stat`` (v2, else v1);
- DAMON's sysfs interface, ``/sys/kernel/mm/damon/admin``.

The two writes change nothing, but only a live kernel's files may take them: they are made
only when the caller passes ``write`` (:func:`live_writer` gives :func:`write_once` for the
live machine's roots, None for a fake tree), so tests answer for the kernel.
:func:`jobs` is the path zoned takes for each job on such a kernel.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoned.kernel.hierarchy import CgroupMount, parse_mountinfo
from zoned.kernel.roots import PROC_ROOT, SYS_ROOT, HostRoots

#: What the probe writes to ``memory.reclaim``: an amount of zero reclaims nothing, so only
#: the argument is tested.
RECLAIM_ARGS_PROBE = "0 swappiness=60"
#: A trigger every kernel with PSI triggers accepts (a 2 s window suits 6.4+'s unprivileged
#: rule too); the kernel doc writes the NUL, and /proc/pressure cuts a write's last byte.
PSI_PROBE = "some 500000 2000000\0"

#: ``write(path, text)`` → ``"ok"`` or the errno name (``"EINVAL"``): one write(2).
Writer = Callable[[Path, str], str]


def write_once(path: Path, text: str) -> str:
    """One write(2) of ``text`` to ``path`` opened read-write, then close; the outcome."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        return errno.errorcode.get(exc.errno or 0, "EIO")
    try:
        os.write(fd, text.encode())
    except OSError as exc:
        return errno.errorcode.get(exc.errno or 0, "EIO")
    finally:
        os.close(fd)
    return "ok"


def live_writer(roots: HostRoots) -> Writer | None:
    """:func:`write_once` when ``roots`` are the live machine's /sys, /proc and a cgroup
    mount under /sys; None (no write probes) for any other tree, whose files are plain
    files on a disk."""
    live = (roots.sys, roots.proc) == (SYS_ROOT, PROC_ROOT)
    if roots.cgroup is not None and not roots.cgroup.is_relative_to(SYS_ROOT):
        live = False
    return write_once if live else None


@dataclass(frozen=True)
class Capabilities:
    """What :func:`probe` found. Paths are where the interface is; None: absent.

    ``reclaim_args`` and ``psi_trigger`` are the outcome of the probe's write (``"ok"`` or
    an errno name), None when there was nothing to write to or no write was made.
    """

    release: str | None
    node_reclaim: Path | None  # the first memory node's reclaim file
    memory_reclaim: Path | None
    reclaim_args: str | None
    psi: Path | None
    psi_trigger: str | None
    cgroup2: Path | None
    cgroup2_controllers: frozenset[str]
    v1_cpuset: Path | None
    v1_memory: Path | None
    numa_stat: Path | None
    numa_stat_fields: tuple[str, ...]
    damon_sysfs: Path | None
    # Whether zoned may write it: a read-only /sys (the unit's ProtectKernelTunables=yes)
    # has the file but refuses the write (EROFS).
    node_reclaim_writable: bool = False

    @property
    def hierarchy(self) -> str | None:
        """The cgroup hierarchy zoned can manage here: v2 when cgroup2 carries cpuset and
        memory, else v1 when both v1 hierarchies are mounted, else None."""
        if self.cgroup2 is not None and {"cpuset", "memory"} <= self.cgroup2_controllers:
            return "v2"
        if self.v1_cpuset is not None and self.v1_memory is not None:
            return "v1"
        return None


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _exists(path: Path) -> Path | None:
    return path if path.exists() else None


def _node_reclaim(sys_root: Path) -> Path | None:
    nodes = sys_root / "devices" / "system" / "node"
    ids = sorted(int(p.name[4:]) for p in nodes.glob("node*") if p.name[4:].isdigit())
    for nid in ids:
        path = nodes / f"node{nid}" / "reclaim"
        if path.exists():
            return path
    return None


def _mounts(proc_root: Path) -> list[CgroupMount]:
    text = _read(proc_root / "self" / "mountinfo")
    return parse_mountinfo(text) if text is not None else []


def _v1(mounts: list[CgroupMount], controller: str) -> Path | None:
    found = [m for m in mounts if m.version == 1 and controller in m.controllers]
    found.sort(key=lambda m: m.root != "/")
    return found[0].mount_point if found else None


def _numa_stat(cgroup2: Path | None, v1_memory: Path | None) -> Path | None:
    """The root's ``memory.numa_stat``, or a child's where the root has none."""
    for base in (cgroup2, v1_memory):
        if base is None:
            continue
        if (base / "memory.numa_stat").exists():
            return base / "memory.numa_stat"
        children = sorted(p for p in base.iterdir() if (p / "memory.numa_stat").exists())
        if children:
            return children[0] / "memory.numa_stat"
    return None


def probe(roots: HostRoots, write: Writer | None = None) -> Capabilities:
    """Probe the kernel under ``roots``; ``write`` makes the two write probes (None: not
    made). Never raises for a missing interface: absence is the answer."""
    mounts = _mounts(roots.proc)
    cgroup2 = roots.cgroup
    if cgroup2 is None:
        v2 = [m.mount_point for m in mounts if m.version == 2]
        cgroup2 = v2[0] if v2 else None
    if cgroup2 is not None and not (cgroup2 / "cgroup.controllers").exists():
        cgroup2 = None  # a v1 hierarchy's mount point, or nothing
    controllers: frozenset[str] = frozenset()
    if cgroup2 is not None:
        controllers = frozenset((_read(cgroup2 / "cgroup.controllers") or "").split())
    v1_cpuset, v1_memory = _v1(mounts, "cpuset"), _v1(mounts, "memory")
    memory_reclaim = _exists(cgroup2 / "memory.reclaim") if cgroup2 is not None else None
    psi = _exists(roots.proc / "pressure" / "memory")
    numa_stat = _numa_stat(cgroup2, v1_memory)
    fields: tuple[str, ...] = ()
    if numa_stat is not None:
        text = _read(numa_stat) or ""
        fields = tuple(line.split()[0].split("=")[0] for line in text.splitlines() if line.split())
    release = _read(roots.proc / "sys" / "kernel" / "osrelease")
    node_reclaim = _node_reclaim(roots.sys)
    return Capabilities(
        release=release.strip() if release else None,
        node_reclaim=node_reclaim,
        memory_reclaim=memory_reclaim,
        reclaim_args=write(memory_reclaim, RECLAIM_ARGS_PROBE)
        if memory_reclaim and write
        else None,
        psi=psi,
        psi_trigger=write(psi, PSI_PROBE) if psi and write else None,
        cgroup2=cgroup2,
        cgroup2_controllers=controllers,
        v1_cpuset=v1_cpuset,
        v1_memory=v1_memory,
        numa_stat=numa_stat,
        numa_stat_fields=fields,
        damon_sysfs=_exists(roots.sys / "kernel" / "mm" / "damon" / "admin"),
        node_reclaim_writable=node_reclaim is not None and os.access(node_reclaim, os.W_OK),
    )


#: Why hand-over keeps the write: the measured alternatives (bench/vm_handover.py).
HANDOVER_NOTE = "migrate_pages/move_pages before the write: no faster, measured"


@dataclass(frozen=True)
class Job:
    """One job zoned does and the kernel interface it uses for it here."""

    job: str
    path: str  # the interface used; "-" when zoned cannot do the job on this kernel
    note: str = ""


def jobs(caps: Capabilities) -> list[Job]:
    """The path zoned takes for each job on a kernel with ``caps``."""
    v2 = caps.hierarchy == "v2"
    v1 = caps.hierarchy == "v1"
    out = [
        Job(
            "confine a zone to its nodes",
            "cpuset.mems (v2)" if v2 else "cpuset.mems + cpuset.memory_migrate (v1)" if v1 else "-",
            "" if v2 or v1 else "no cgroup hierarchy with cpuset and memory",
        ),
        Job(
            "move pages on hand-over",
            "the kernel's migration inside the cpuset.mems write" if v2 or v1 else "-",
            # Measured on 6.1, 6.12 and 7.3 (docs/benchmarks.md, "Node hand-over"): moving
            # the pages from zoned before the write was never consistently faster.
            HANDOVER_NOTE if v2 or v1 else "",
        ),
        Job(
            "usage per node",
            "memory.numa_stat" if caps.numa_stat is not None else "-",
            "" if caps.numa_stat is not None else "no memory.numa_stat",
        ),
    ]
    if v2 and caps.memory_reclaim is not None:
        reclaim = Job("reclaim a container's page cache", "memory.reclaim")
    elif v1 or v2:
        reclaim = Job(
            "reclaim a container's page cache",
            "memory.limit_in_bytes lowered in steps (v1)" if v1 else "-",
            "" if v1 else "no memory.reclaim",
        )
    else:
        reclaim = Job("reclaim a container's page cache", "-")
    out.append(reclaim)
    if caps.node_reclaim is not None and caps.node_reclaim_writable and (v1 or v2):
        left = Job(
            "reclaim what a donor leaves on a node",
            "nodeN/reclaim",
            "the node taken back, alone, once the donor is off it; off with"
            " policy.node_reclaim: false",
        )
    else:
        why = "no nodeN/reclaim: cgroup-wide, before the evacuation"
        if caps.node_reclaim is not None:
            why = "nodeN/reclaim read-only here (a read-only /sys): cgroup-wide, before evacuating"
        left = Job("reclaim what a donor leaves on a node", reclaim.path, why)
    out.append(left)
    if v2 and caps.psi is not None and caps.psi_trigger in ("ok", None):
        pressure = Job("memory pressure signal", "PSI trigger on memory.pressure")
    elif v2:
        why = f"PSI trigger refused: {caps.psi_trigger}" if caps.psi else "no PSI"
        pressure = Job("memory pressure signal", "-", why)
    elif v1:
        pressure = Job("memory pressure signal", "memory.pressure_level (v1)")
    else:
        pressure = Job("memory pressure signal", "-")
    out.append(pressure)
    out.append(
        Job(
            "access sampling (DAMON)",
            "-",
            "DAMON sysfs present, not used" if caps.damon_sysfs else "no DAMON sysfs",
        )
    )
    return out


def to_doc(caps: Capabilities) -> dict[str, Any]:
    """JSON data: the findings (paths as strings, None when absent) and the jobs."""
    return {
        "release": caps.release,
        "hierarchy": caps.hierarchy,
        "node_reclaim": _s(caps.node_reclaim),
        "node_reclaim_writable": caps.node_reclaim_writable,
        "memory_reclaim": _s(caps.memory_reclaim),
        "memory_reclaim_args": caps.reclaim_args,
        "psi": _s(caps.psi),
        "psi_trigger": caps.psi_trigger,
        "cgroup2": _s(caps.cgroup2),
        "cgroup2_controllers": sorted(caps.cgroup2_controllers),
        "v1_cpuset": _s(caps.v1_cpuset),
        "v1_memory": _s(caps.v1_memory),
        "numa_stat": _s(caps.numa_stat),
        "numa_stat_fields": list(caps.numa_stat_fields),
        "damon_sysfs": _s(caps.damon_sysfs),
        "jobs": [{"job": j.job, "path": j.path, "note": j.note} for j in jobs(caps)],
    }


def _s(path: Path | None) -> str | None:
    return None if path is None else str(path)
