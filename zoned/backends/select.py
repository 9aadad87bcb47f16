"""Choose the backend for this host, and check up front what it needs.

``check_host`` reads (never writes) the mount table, the v2 root's ``cgroup.controllers``,
``/proc/pressure/memory``, the kernel command line and the node topology, and answers
which hierarchy holds ``cpuset`` and ``memory``; ``open_backend`` builds the backend.

Rules:

* ``host.hierarchy: v1`` or ``v2`` insists; ``auto`` takes v2 when the unified hierarchy
  offers both controllers, else v1 when both are mounted as v1 hierarchies. A host where
  the two controllers sit on different versions is refused: a container's cpuset and its
  memcg must be the same cgroup.
* v2 needs PSI (the pressure triggers are per-cgroup ``memory.pressure`` files):
  ``psi=0`` on the command line or no ``/proc/pressure/memory`` is refused. v1 does not
  need it (it has its own pressure-level eventfds).
* zoned's parent cgroup must exist and be writable, or be creatable under the root:
  checked with ``access(2)`` for this process's uid, and, when not root, ownership (a
  delegated subtree: systemd's ``Delegate=yes`` chowns it).
* A machine with one memory node runs, but cannot juggle: ``HostCheck.single_node`` and a
  warning say so; the daemon then only reports usage.

Every refusal is ``Unsupported`` with the reason and what to do about it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from zoned.backends.base import Backend
from zoned.backends.cgroup1 import Cgroup1Backend
from zoned.backends.cgroup2 import DEFAULT_DAEMON_LEAF, Cgroup2Backend
from zoned.backends.fdloop import FdLoop
from zoned.backends.realhost import FdLoopBackend
from zoned.config.decl import Declarations
from zoned.errors import TopologyError, Unsupported
from zoned.kernel.hierarchy import CgroupMount, parse_mountinfo
from zoned.kernel.psi import trigger_spec
from zoned.kernel.roots import PROC_ROOT, SYS_ROOT
from zoned.kernel.topology import read_topology
from zoned.kernel.v2stat import parse_controllers
from zoned.model.zonemap import Topology

log = logging.getLogger(__name__)

Version = Literal["v1", "v2"]
NEEDED = ("cpuset", "memory")


@dataclass(frozen=True)
class HostCheck:
    """What ``check_host`` found: the hierarchy to use and its roots, plus warnings."""

    hierarchy: Version
    cgroup_root: Path  # v2: the unified root; v1: the directory holding the mounts
    cpuset_root: Path  # v1 only (== cgroup_root on v2)
    memory_root: Path
    topology: Topology
    psi: bool
    warnings: tuple[str, ...] = field(default=())

    @property
    def single_node(self) -> bool:
        return len(self.topology.memory_node_ids) < 2


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def psi_state(proc_root: Path) -> tuple[bool, str]:
    """(available, why not): PSI off on the command line, or not in this kernel."""
    cmdline = (_read(proc_root / "cmdline") or "").split()
    if "psi=0" in cmdline:
        return False, "PSI is disabled on the kernel command line (psi=0); boot with psi=1"
    if _read(proc_root / "pressure" / "memory") is None:
        return False, (
            f"{proc_root}/pressure/memory is missing: this kernel has no PSI "
            "(CONFIG_PSI) or it is disabled (CONFIG_PSI_DEFAULT_DISABLED without psi=1)"
        )
    return True, ""


def _v1_root(cgroup_root: Path, mount: CgroupMount) -> Path:
    """The v1 mount of a controller, re-rooted under ``cgroup_root`` (tests hand in a tree
    that mirrors ``/sys/fs/cgroup``); the mount point itself when it lives elsewhere."""
    under = cgroup_root / mount.mount_point.name
    return under if under.is_dir() or not mount.mount_point.is_dir() else mount.mount_point


def _writable(
    root: Path, parent: str, euid: int, access: Callable[[Path, int], bool]
) -> str | None:
    """Why zoned could not create or write its parent cgroup under ``root`` (None: fine)."""
    if not root.is_dir():
        return f"{root} does not exist or is not a directory"
    target = root
    for part in parent.strip("/").split("/"):
        if not (target / part).is_dir():
            break
        target = target / part
    if not access(target, os.W_OK):
        return f"{target} is not writable by uid {euid}"
    if euid != 0 and target.stat().st_uid != euid:
        return f"{target} belongs to uid {target.stat().st_uid}, not to zoned (uid {euid})"
    return None


def _choose(
    want: str,
    *,
    v1: dict[str, CgroupMount | None],
    v2: frozenset[str],
    v2_mounted: bool,
    v2_text: str | None,
    cgroup_root: Path,
) -> Version:
    """v1 or v2 by the rules of the module docstring; raises Unsupported."""
    on_v2 = [c for c in NEEDED if c in v2]
    on_v1 = [c for c in NEEDED if v1[c] is not None]
    chosen: Version
    if want == "v2" or (want == "auto" and len(on_v2) == len(NEEDED)):
        chosen = "v2"
        if not v2_mounted:
            raise Unsupported("hierarchy: v2 was asked for, but no cgroup2 file system is mounted")
        missing = [c for c in NEEDED if c not in v2]
        if missing:
            where = [f"{c} is bound to a v1 hierarchy" for c in missing if v1[c] is not None]
            raise Unsupported(
                f"{cgroup_root}: the {' and '.join(missing)} controller"
                f"{'s are' if len(missing) > 1 else ' is'} not available on cgroup v2"
                + (f" ({'; '.join(where)})" if where else "")
            )
    elif want == "v1" or len(on_v1) == len(NEEDED):
        chosen = "v1"
        missing = [c for c in NEEDED if v1[c] is None]
        if missing:
            also = [f"{c} is on cgroup v2" for c in missing if c in v2]
            raise Unsupported(
                f"no cgroup v1 hierarchy carries {' or '.join(missing)}"
                + (f" ({'; '.join(also)})" if also else "")
                + ("" if want == "v1" else "; zoned needs cpuset and memory on one version")
            )
    elif v2_mounted and v2_text is None:
        raise Unsupported(
            f"{cgroup_root} is not the cgroup v2 mount (no cgroup.controllers there); "
            "host.cgroup_root (or --cgroup-root) must name it"
        )
    else:
        have = {c: ("v2" if c in v2 else "v1" if v1[c] is not None else None) for c in NEEDED}
        absent = [c for c, v in have.items() if v is None]
        if absent:
            raise Unsupported(
                f"the {' and '.join(absent)} cgroup controller"
                f"{'s are' if len(absent) > 1 else ' is'} not mounted (neither v1 nor v2)"
            )
        raise Unsupported(
            "cpuset is on cgroup "
            + str(have["cpuset"])
            + " and memory on cgroup "
            + str(have["memory"])
            + ": zoned needs both controllers on the same version"
        )

    return chosen


def check_host(
    decls: Declarations,
    *,
    cgroup_root: Path,
    sys_root: Path = SYS_ROOT,
    proc_root: Path = PROC_ROOT,
    euid: int | None = None,
    access: Callable[[Path, int], bool] = os.access,
) -> HostCheck:
    """Which hierarchy to use on this host and whether it can work; raises Unsupported.

    Reads only. ``euid`` and ``access`` are injectable for tests (they run as root).
    """
    uid = os.geteuid() if euid is None else euid
    mi = proc_root / "self" / "mountinfo"
    text = _read(mi)
    if text is None:
        raise Unsupported(f"cannot read {mi}")
    mounts = parse_mountinfo(text)
    v1 = {
        c: next(
            (m for m in mounts if m.version == 1 and c in m.controllers and m.root == "/"),
            next((m for m in mounts if m.version == 1 and c in m.controllers), None),
        )
        for c in NEEDED
    }
    v2_mounted = any(m.version == 2 for m in mounts)
    v2_text = _read(cgroup_root / "cgroup.controllers") if v2_mounted else None
    v2 = parse_controllers(v2_text) if v2_text is not None else frozenset()

    chosen = _choose(
        decls.host.hierarchy,
        v1=v1,
        v2=v2,
        v2_mounted=v2_mounted,
        v2_text=v2_text,
        cgroup_root=cgroup_root,
    )
    psi_ok, why = psi_state(proc_root)
    warnings: list[str] = []
    if chosen == "v2" and not psi_ok:
        raise Unsupported(f"cgroup v2 needs PSI for its pressure triggers: {why}")
    if not psi_ok:
        log.info("no PSI (%s); cgroup v1 uses its own pressure levels", why)

    parent = decls.host.parent
    if chosen == "v2":
        roots = (cgroup_root, cgroup_root)
    else:
        m_cpu, m_mem = v1["cpuset"], v1["memory"]
        assert m_cpu is not None and m_mem is not None
        roots = (_v1_root(cgroup_root, m_cpu), _v1_root(cgroup_root, m_mem))
    for root in dict.fromkeys(roots):
        problem = _writable(root, parent, uid, access)
        if problem:
            raise Unsupported(
                f"cannot create or manage zoned's parent cgroup {parent!r}: {problem} "
                "(run zoned as root, or give it a delegated subtree: Delegate=yes)"
            )

    try:
        topo = read_topology(sys_root, proc_root)
    except TopologyError as exc:
        raise Unsupported(f"cannot read the NUMA topology: {exc}") from exc
    if len(topo.memory_node_ids) < 2:
        warnings.append(
            f"this machine has {len(topo.memory_node_ids)} memory node: zoned cannot juggle "
            "zones here; it reports usage only (boot with numa=fake=N to get nodes)"
        )
    for w in warnings:
        log.warning("%s", w)
    return HostCheck(chosen, cgroup_root, roots[0], roots[1], topo, psi_ok, tuple(warnings))


def own_v2_cgroup(proc_root: Path) -> str | None:
    """This process's cgroup on the unified hierarchy ("" for the root), from
    ``/proc/self/cgroup``; None when unreadable or not on v2."""
    text = _read(proc_root / "self" / "cgroup")
    for line in (text or "").splitlines():
        if line.startswith("0::"):
            return line[3:].strip().strip("/")
    return None


def must_move(parent: str, proc_root: Path) -> bool:
    """Whether zoned has to leave its cgroup for a leaf under ``parent`` (v2).

    Only when it sits on the path from the root to ``parent`` (the root itself is exempt):
    the no-internal-process rule would then refuse to enable controllers there. Anywhere
    else (``system.slice/zoned.service`` under systemd, a login session) it stays, which
    keeps the unit's MemoryMin= and accounting on the daemon.
    """
    own = own_v2_cgroup(proc_root)
    if own is None:
        return True  # unknown: the backend's safe default
    parent = parent.strip("/")
    return bool(own) and (
        parent == own or parent.startswith(own + "/") or own.startswith(parent + "/")
    )


def _root_and_adopted(decls: Declarations, cgroup_root: Path | None) -> tuple[Path, dict[str, str]]:
    """The hierarchy's root (given, or ``host.cgroup_root``) and the adopted cgroups."""
    root = Path(decls.host.cgroup_root) if cgroup_root is None else cgroup_root
    return root, {c.name: c.cgroup for c in decls.containers if c.cgroup}


def open_backend(
    decls: Declarations,
    *,
    cgroup_root: Path | None = None,
    sys_root: Path = SYS_ROOT,
    proc_root: Path = PROC_ROOT,
    check: HostCheck | None = None,
    dry_run: bool = False,
    v1_memory_pressure: bool = False,
    state_dir: Path | None = None,
    delegated: str | None = None,
) -> Backend:
    """The backend this host supports for ``decls`` (``check_host`` first; Unsupported).

    Constructing it writes nothing, except on v1 with ``v1_memory_pressure`` and not
    ``dry_run``: the root's host-wide ``cpuset.memory_pressure_enabled`` (its old value
    noted under ``state_dir``, restored by ``close``; without the option, a value noted by a
    crashed predecessor is put back). ``state_dir`` also keeps the v1 reclaim's limit notes
    (``zoned.backends.v1limits``); a dry run uses neither. The first ``ensure`` creates the parent.
    ``delegated`` (v2): the cgroup systemd delegated to zoned; nothing above it is written.
    """
    root, adopted = _root_and_adopted(decls, cgroup_root)
    hc = check or check_host(decls, cgroup_root=root, sys_root=sys_root, proc_root=proc_root)
    if hc.hierarchy == "v2":
        pol = decls.policy
        return Cgroup2Backend(
            hc.cgroup_root,
            decls.host.parent,
            sys_root=sys_root,
            proc_root=proc_root,
            adopted=adopted,
            psi=trigger_spec("some", pol.psi_some_ms * 1000, pol.psi_window_ms * 1000),
            daemon_leaf=DEFAULT_DAEMON_LEAF if must_move(decls.host.parent, proc_root) else None,
            state_dir=None if dry_run else state_dir,
            delegated=delegated,
        )
    return Cgroup1Backend(
        parent=decls.host.parent,
        cpuset_root=hc.cpuset_root,
        memory_root=hc.memory_root,
        proc_root=proc_root,
        sys_root=sys_root,
        adopt=adopted,
        enable_memory_pressure=v1_memory_pressure and not dry_run,
        state_dir=None if dry_run else state_dir,  # a dry run writes no flag, no notes
    )


def fd_loop_of(backend: Backend) -> FdLoop | None:
    """The FdLoop behind a real backend's ``wait``, so the daemon can watch its own fds
    (control socket, signals) in the same epoll; None for a backend without one."""
    return backend.loop if isinstance(backend, FdLoopBackend) else None


def readonly_backend(
    decls: Declarations,
    *,
    cgroup_root: Path | None = None,
    sys_root: Path = SYS_ROOT,
    proc_root: Path = PROC_ROOT,
) -> Backend:
    """A backend for reading containers' state, built so that it writes nothing.

    (The daemon's ``open_backend`` may enable v1 memory pressure accounting host-wide at
    construction; a reporting command must not.) Raises Unsupported like check_host.
    """
    root, adopted = _root_and_adopted(decls, cgroup_root)
    if decls.host.hierarchy == "v2":
        return Cgroup2Backend(
            root, decls.host.parent, sys_root=sys_root, proc_root=proc_root,
            adopted=adopted, psi=None, daemon_leaf=None,
        )  # fmt: skip
    hc = check_host(decls, cgroup_root=root, sys_root=sys_root, proc_root=proc_root)
    if hc.hierarchy == "v2":
        return Cgroup2Backend(
            hc.cgroup_root, decls.host.parent, sys_root=sys_root, proc_root=proc_root,
            adopted=adopted, psi=None, daemon_leaf=None,
        )  # fmt: skip
    return Cgroup1Backend(
        parent=decls.host.parent,
        cpuset_root=hc.cpuset_root,
        memory_root=hc.memory_root,
        proc_root=proc_root,
        sys_root=sys_root,
        adopt=adopted,
        enable_memory_pressure=False,
        pressure_level=None,
        watch_oom=False,
    )
