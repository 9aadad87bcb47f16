"""The cgroup v1 backend: split ``cpuset`` and ``memory`` hierarchies, eventfd notifications.

A container is the cgroup ``<parent>/<name>`` (or an adopted path) in *both* hierarchies.
Kernel facts this module relies on (measured on 6.18, see docs/kernel-checks.md):

- a new cpuset starts with empty ``cpuset.cpus`` and ``cpuset.mems``; adding a task before
  both are set fails with ENOSPC, so the order is cpus → mems → tasks;
- a child's mems must be a subset of its parent's (EACCES); a node without memory is
  EINVAL; emptying the mems of a populated cpuset is ENOSPC;
- a zero-length ``write(2)`` never reaches the kernel: emptying a list needs ``"\\n"``;
- ``cpuset.memory_migrate=1`` makes pages follow a ``cpuset.mems`` change; that write
  blocks while pages migrate, so it runs on a worker (:class:`FdLoop`);
- the granted set is ``cpuset.effective_mems`` (v1 name);
- notifications are eventfds registered in ``cgroup.event_control`` (:mod:`zoned.kernel.v1events`);
  removing the cgroup signals each of them once, so a signal on a vanished cgroup is GONE.

Directed reclaim: v1 has no ``memory.reclaim``. ``memory.force_empty`` is no substitute: it
reclaims *everything* the cgroup holds (meant for an empty cgroup before rmdir), not N
bytes. Instead ``memory.limit_in_bytes`` is lowered towards ``usage - N`` in steps (the
kernel reclaims to fit each new limit, and answers EBUSY when it cannot) and the original
limit is restored in a ``finally``. The limit write itself never OOM-kills (measured: with
anonymous memory and no swap it answers EBUSY at once). Risk: while the limit is low, an
allocation inside the container that reclaim cannot satisfy OOM-kills there. Steps keep
each window short and the first EBUSY stops the descent.

The tripwire (``arm_tripwire``) is a ``memory.usage_in_bytes`` threshold eventfd and, by
default (``tripwire_limit``), also a memcg limit at the same level with the OOM killer
off (``memory.oom_control`` ``oom_kill_disable=1``). v1 has no ``memory.high``: a
threshold only notifies, and a grower at ~100 MiB/s fills the last 15 % of a 200 MiB node
before the engine can lend. With the limit, a task that reaches it first has the kernel
reclaim page cache inside the container, and when only anon is left it *waits* at the
end of its page fault (no mmap lock held, killable) while the oom eventfd fires; the
engine lends a node and raises the limit, and the task goes on (measured: event after
0.04 s, resumed 0.06 s after the raise; docs/kernel-checks.md). A charge inside a system
call (``MAP_POPULATE``, a ``read`` into page cache) fails with ENOMEM instead of waiting,
so no task waits while holding a lock the ``cpuset.mems`` write needs. The limit and the
OOM killer are put back as they were (``release``, ``close``); after a crash they stay
until zoned starts again and re-arms. Beside the eventfds, the OOM poll below also
re-reads usage against an armed threshold and ``under_oom``: a threshold eventfd can miss
a crossing (measured on 6.18 under load: usage 64 MiB over a 32 MiB threshold, no signal).

OOM: the ``memory.oom_control`` eventfd only fires for memcg OOMs. A cpuset-constrained
kill signals nothing at all (measured on 6.1 and 6.18: no oom_control, pressure or
threshold signal once the tripwire's registration has fired); it shows only in the
``oom_kill`` counter. So ``wait`` re-reads that counter for every managed container at
least every ``OOM_POLL_S`` seconds, the one fallback poll of this backend (a read of one
small file per container), and on every signal of the container.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from zoned.backends.fdloop import IN, FdLoop, Outcome
from zoned.backends.realhost import FdLoopBackend
from zoned.backends.v1limits import LimitNotes
from zoned.backends.v1moves import attach_both, finish_split
from zoned.backends.v1rootflag import FLAG, NOTE_NAME, RootFlag
from zoned.config.decl import ContainerDecl
from zoned.errors import BackendError, CgroupGone, EffectiveMismatch, WriteRefused
from zoned.kernel import v1events
from zoned.kernel import v1stat as memstat
from zoned.kernel.cgroupfs import CgroupFs
from zoned.kernel.faults import fault_point
from zoned.kernel.hierarchy import v1_roots
from zoned.kernel.roots import PROC_ROOT, SYS_ROOT
from zoned.kernel.v1events import Registration, Watch
from zoned.model.host import CgroupState, Event, EventKind, OpKind, Usage, is_internal
from zoned.model.nodelist import format_nodelist, parse_nodelist
from zoned.model.process import container_path

log = logging.getLogger(__name__)

_EMPTY_PROCS: tuple[int, ...] = ()

# How late a cpuset-constrained OOM kill may be reported (no eventfd signals it).
OOM_POLL_S = 2.0
# The tripwire's limit sits this far above its threshold (and above usage, when the
# tripwire is below what cannot be reclaimed).
LIMIT_SLACK = 4 * 1024 * 1024
# memory.limit_in_bytes of a cgroup without a limit reads as a huge number.
UNLIMITED = 1 << 62
# Writes of the original memory.limit_in_bytes after a directed reclaim before giving up.
RESTORE_TRIES = 3


def _mems_text(nodes: frozenset[int]) -> str:
    # A zero-length write is a no-op (it never reaches the kernel); "\n" means "empty".
    return format_nodelist(nodes) or "\n"


@dataclass
class _Managed:
    """A container this backend watches."""

    name: str
    path: str
    owned: bool  # zoned's own <parent>/<name>: release() may remove it
    tripwire: int | None = None
    regs: dict[Watch, Registration] = field(default_factory=dict)
    oom_kills: int = 0  # last seen memory.oom_control oom_kill
    limit: int | None = None  # the tripwire's memcg limit, when zoned set one
    saved: tuple[str, str] | None = None  # limit_in_bytes and oom_kill_disable before it


class Cgroup1Backend(FdLoopBackend):
    """cgroup v1 cpuset + memory. Only the engine's thread may call it (see Backend)."""

    name = "cgroup1"

    def __init__(
        self,
        *,
        parent: str = "zoned",
        cpuset_root: Path | None = None,
        memory_root: Path | None = None,
        proc_root: Path = PROC_ROOT,
        sys_root: Path = SYS_ROOT,
        adopt: Mapping[str, str] = MappingProxyType({}),
        enable_memory_pressure: bool = False,
        state_dir: Path | None = None,
        pressure_level: str | None = "low",
        # "hierarchy": the container hears reclaim in any of its sub-cgroups, whoever else
        # listens there ("default" stops at the first listener on the way up).
        pressure_mode: str = "hierarchy",
        watch_oom: bool = True,
        tripwire_limit: bool = True,
        reclaim_steps: int = 4,
        page_size: int | None = None,
        workers: int = 2,
        clock: Callable[[], float] = time.monotonic,
        fs_factory: Callable[[Path], CgroupFs] = CgroupFs,
    ) -> None:
        """Roots not given are found in ``<proc_root>/self/mountinfo`` (Unsupported if a
        controller is not mounted on v1). ``adopt`` maps container names to existing cgroup
        paths. ``enable_memory_pressure`` sets the root's ``cpuset.memory_pressure_enabled``
        (a host-wide switch, opt-in: ``zoned.backends.v1rootflag``; ``close`` restores it),
        keeping the old value under ``state_dir``, where the reclaim's limit notes go too
        (``zoned.backends.v1limits``; None: not kept across a crash). ``fs_factory`` builds
        the file access for each root (tests hand in a fake that acts like kernfs).
        ``tripwire_limit`` makes each tripwire a memcg limit with the OOM killer off as
        well as a threshold (the module docstring)."""
        if cpuset_root is None or memory_root is None:
            found_cpuset, found_memory = v1_roots(proc_root)
            cpuset_root = cpuset_root or found_cpuset
            memory_root = memory_root or found_memory
        if pressure_level is not None and pressure_level not in v1events.PRESSURE_LEVELS:
            raise ValueError(f"bad pressure level {pressure_level!r}")
        if pressure_mode not in v1events.PRESSURE_MODES:
            raise ValueError(f"bad pressure mode {pressure_mode!r}")
        if reclaim_steps < 1:
            raise ValueError("reclaim_steps must be >= 1")
        self.cpuset = fs_factory(cpuset_root)
        self.memory = fs_factory(memory_root)
        self.parent = parent.strip("/")
        self._adopt = dict(adopt)
        self._pressure_level = pressure_level
        self._pressure_mode = pressure_mode
        self._watch_oom = watch_oom
        self._tripwire_limit = tripwire_limit
        self._next_oom_poll = 0.0
        self._reclaim_steps = reclaim_steps
        self.page_size = page_size or os.sysconf("SC_PAGE_SIZE")
        loop = FdLoop(workers=workers, clock=clock, name="zoned-v1-op")
        super().__init__(loop, sys_root=sys_root, proc_root=proc_root)
        self._managed: dict[str, _Managed] = {}
        # Older kernels mounted with cpuset_v2_mode, or without the effective files, only
        # have cpuset.mems; it then is what the kernel holds.
        self._effective_mems = (
            "cpuset.effective_mems"
            if self.cpuset.has_file("", "cpuset.effective_mems")
            else "cpuset.mems"
        )
        self._proc_root = proc_root
        self.root_flag = RootFlag(self.cpuset, state_dir / NOTE_NAME if state_dir else None)
        self._limits = LimitNotes(self.memory, state_dir)
        if enable_memory_pressure:
            self.root_flag.enable()
        else:
            self.root_flag.recover()  # a crashed predecessor's 1, if it noted one

    # -- paths -----------------------------------------------------------------------

    def path_of(self, name: str) -> str:
        """The cgroup path (relative to both roots) of a container."""
        if name in self._managed:
            return self._managed[name].path
        return container_path(self.parent, name, self._adopt.get(name))

    def _effective(self, path: str) -> frozenset[int]:
        return parse_nodelist(self.cpuset.read(path, self._effective_mems))

    # -- containers ------------------------------------------------------------------

    def existing(self) -> Mapping[str, CgroupState]:
        found: dict[str, str] = {}
        if self.cpuset.exists(self.parent):
            for child in self.cpuset.children(self.parent):
                base = child.rsplit("/", 1)[-1]
                if not is_internal(base):
                    found[base] = child
        found.update({n: p.strip("/") for n, p in self._adopt.items()})
        found.update({m.name: m.path for m in self._managed.values() if not is_internal(m.name)})
        out: dict[str, CgroupState] = {}
        for name, path in sorted(found.items()):
            if not (self.cpuset.exists(path) and self.memory.exists(path)):
                continue
            try:
                out[name] = self._state(name, path)
            except CgroupGone:
                log.info("cgroup %s vanished while listing, ignoring", path)
        return out

    def ensure(self, decl: ContainerDecl, nodes: frozenset[int]) -> CgroupState:
        """Create or adopt; see Backend.ensure. Writes cpus → memory_migrate → mems, each
        only if it differs, then checks ``cpuset.effective_mems`` (EffectiveMismatch).

        Adopting a populated cgroup whose mems differ migrates its pages here, synchronously;
        the engine should move populated containers with ``start_set_nodes`` instead.
        """
        path = decl.cgroup.strip("/") if decl.cgroup else self.path_of(decl.name)
        owned = decl.cgroup is None and decl.name not in self._adopt
        made: list[tuple[CgroupFs, str]] = []  # what this call created, newest last
        try:
            self._create(path, owned, nodes, made)
        except BackendError:
            self._remove_made(made)
            raise
        self._limits.restore(path)
        finish_split(self.cpuset, self.memory, self._proc_root, path)
        m = self._managed.get(decl.name)
        if m is None or m.path != path:
            if m is not None:
                self._unwatch(m)
            m = _Managed(decl.name, path, owned)
            self._managed[decl.name] = m
        self._watch(m)
        return self._state(decl.name, path)

    def _create(
        self, path: str, owned: bool, nodes: frozenset[int], made: list[tuple[CgroupFs, str]]
    ) -> None:
        """ensure's writes, in the kernel's order; each cgroup created is added to ``made``."""
        if owned and self.parent:
            self._ensure_parent(made)
        if self.cpuset.mkdir(path):
            made.append((self.cpuset, path))
            log.info("created cpuset cgroup %s", path)
        fault_point("admit.cpuset_created")
        self._ensure_cpus(path)
        fault_point("admit.cpus_written")
        self.cpuset.write_if_changed(path, "cpuset.memory_migrate", "1")
        if parse_nodelist(self.cpuset.read(path, "cpuset.mems")) != nodes:
            self.cpuset.write(path, "cpuset.mems", _mems_text(nodes))
        fault_point("admit.mems_written")
        effective = self._effective(path)
        if effective != nodes:
            raise EffectiveMismatch(nodes, effective)
        if self.memory.mkdir(path):
            made.append((self.memory, path))
            log.info("created memory cgroup %s", path)
        fault_point("admit.memory_created")

    def _remove_made(self, made: list[tuple[CgroupFs, str]]) -> None:
        """After a failed ensure: remove the cgroups it created (children first), so a
        container whose admission failed leaves nothing behind; a cgroup that cannot be
        removed is logged and left."""
        for fs, path in reversed(made):
            try:
                if fs.rmdir(path):
                    log.info("removed %s from %s (its admission failed)", path, fs.root)
            except BackendError as exc:
                log.warning(
                    "cannot remove %s from %s after a failed admission: %s", path, fs.root, exc
                )

    def _ensure_parent(self, made: list[tuple[CgroupFs, str]]) -> None:
        """zoned's parent: created with all of its own parent's CPUs and nodes when missing
        or empty; left alone when already set."""
        if self.cpuset.mkdir(self.parent):
            made.append((self.cpuset, self.parent))
            log.info("created cpuset cgroup %s", self.parent)
        self._ensure_cpus(self.parent)
        if not self.cpuset.read(self.parent, "cpuset.mems").strip():
            up = self.parent.rsplit("/", 1)[0] if "/" in self.parent else ""
            self.cpuset.write(
                self.parent, "cpuset.mems", self.cpuset.read(up, self._effective_mems)
            )
        if self.memory.mkdir(self.parent):
            made.append((self.memory, self.parent))
            log.info("created memory cgroup %s", self.parent)
        fault_point("admit.parent_created")

    def _ensure_cpus(self, path: str) -> None:
        if self.cpuset.read(path, "cpuset.cpus").strip():
            return  # adopted or already set: the CPUs are not zoned's business
        up = path.rsplit("/", 1)[0] if "/" in path else ""
        self.cpuset.write(path, "cpuset.cpus", self.cpuset.read(up, "cpuset.effective_cpus"))

    def release(self, name: str) -> None:
        m = self._managed.pop(name, None)
        if m is not None:
            self._unwatch(m)
            self._unlimit(m)
        path = m.path if m is not None else self.path_of(name)
        owned = m.owned if m is not None else name not in self._adopt
        if not owned:
            return
        for fs in (self.memory, self.cpuset):
            try:
                if fs.rmdir(path):
                    log.info("removed cgroup %s from %s", path, fs.root)
            except WriteRefused as exc:
                if exc.errno != errno.EBUSY:
                    raise
                log.info("cgroup %s in %s is not empty, leaving it", path, fs.root)
            if fs is self.memory:
                fault_point("release.memory_removed")

    def attach(self, name: str, pid: int) -> None:
        """Move a process into the container in both hierarchies, or leave it where it was
        (``zoned.backends.v1moves.attach_both``: never split). Raises CgroupGone (also for a
        dead pid: ESRCH)."""
        attach_both(self.cpuset, self.memory, self._proc_root, self.path_of(name), pid)

    def state(self, name: str) -> CgroupState:
        return self._state(name, self.path_of(name))

    def _state(self, name: str, path: str) -> CgroupState:
        m = self._managed.get(name)
        return CgroupState(
            name=name,
            path=path,
            nodes=self._effective(path),
            pids=self.cpuset.pids(path),
            tripwire=m.tripwire if m is not None else None,
        )

    def processes(self, name: str) -> Sequence[int]:
        try:
            return self.cpuset.pids(self.path_of(name))
        except CgroupGone:
            return _EMPTY_PROCS

    def usage(self, name: str) -> Usage:
        path = self.path_of(name)
        current = self.memory.read_int(path, "memory.usage_in_bytes") or 0
        stat = self.memory.read_keyed(path, "memory.stat")
        numa = memstat.parse_numa_stat_v1(
            self.memory.read(path, "memory.numa_stat"), self.page_size
        )
        # total_* count the whole subtree (an adopted cgroup may have children).
        return Usage(
            current=current,
            anon=stat.get("total_rss", stat.get("rss", 0)),
            file=stat.get("total_cache", stat.get("cache", 0)),
            per_node=memstat.per_node_usage(numa),
            shmem=stat.get("total_shmem", stat.get("shmem", 0)),
        )

    def memory_pressure(self, name: str) -> int | None:
        """``cpuset.memory_pressure``: direct-reclaim rate x1000 (10 s half-life); None
        while the root's ``cpuset.memory_pressure_enabled`` is off (the kernel then keeps
        it at 0, which would read as "no pressure"). Reporting only: no decision uses it."""
        if self.cpuset.read("", FLAG).strip() != "1":
            return None
        value = self.cpuset.read_int(self.path_of(name), "cpuset.memory_pressure")
        return value or 0

    def oom_control(self, name: str) -> dict[str, int]:
        """``memory.oom_control``: oom_kill_disable, under_oom, oom_kill."""
        return self.memory.read_keyed(self.path_of(name), "memory.oom_control")

    # -- slow operations -------------------------------------------------------------

    def start_set_nodes(self, name: str, nodes: frozenset[int], deadline_s: float) -> int:
        """See Backend.start_set_nodes. The result's ``nodes`` is ``cpuset.effective_mems``
        after the write; a different set fails the op (EffectiveMismatch's message);
        ``left_behind`` counts the subtree's pages still on nodes outside it."""
        path = self.path_of(name)

        def run() -> Outcome:
            fault_point("set_nodes.started")
            if parse_nodelist(self.cpuset.read(path, "cpuset.mems")) != nodes:
                self.cpuset.write(path, "cpuset.mems", _mems_text(nodes))
            fault_point("set_nodes.mems_written")
            effective = self._effective(path)
            left = self._left_behind(path, effective)
            if effective != nodes:
                err = EffectiveMismatch(nodes, effective)
                return Outcome(ok=False, nodes=effective, left_behind=left, error=str(err))
            return Outcome(ok=True, nodes=effective, left_behind=left)

        return self._loop.submit(OpKind.SET_NODES, name, run, deadline_s)

    def _left_behind(self, path: str, allowed: frozenset[int]) -> int:
        numa = memstat.parse_numa_stat_v1(
            self.memory.read(path, "memory.numa_stat"), self.page_size
        )
        line = numa.get("hierarchical_total") or numa.get("total")
        if line is None:
            return 0
        return sum(b for n, b in line.nodes.items() if n not in allowed)

    def start_reclaim(self, name: str, nbytes: int, deadline_s: float) -> int:
        """See Backend.start_reclaim and the module docstring (limit lowered in steps,
        restored in ``finally``). Ends with ok=False, errno EBUSY when the kernel could not
        reclaim that far; ``reclaimed`` is the usage drop either way."""
        if nbytes <= 0:
            raise ValueError(f"nbytes must be positive, not {nbytes}")
        path = self.path_of(name)
        return self._loop.submit(
            OpKind.RECLAIM, name, lambda: self.reclaim_now(path, nbytes), deadline_s
        )

    def reclaim_now(self, path: str, nbytes: int) -> Outcome:
        """Directed reclaim of ``nbytes`` from ``path``, synchronously (a worker runs it)."""
        fs = self.memory
        original = fs.read(path, "memory.limit_in_bytes").strip()
        self._limits.keep(path, original)  # restored at the next start if killed meanwhile
        before = fs.read_int(path, "memory.usage_in_bytes") or 0
        target = max(0, before - nbytes)
        step = max(self.page_size, math.ceil(nbytes / self._reclaim_steps))
        refused: WriteRefused | None = None
        try:
            limit = before
            while limit > target:
                limit = max(target, limit - step)
                try:
                    fs.write(path, "memory.limit_in_bytes", str(limit))
                except WriteRefused as exc:
                    if exc.errno != errno.EBUSY:
                        raise
                    refused = exc  # the kernel could not reclaim to this limit: stop here
                    break
                fault_point("reclaim.limit_lowered")
        finally:
            self._restore_limit(path, original)
        fault_point("reclaim.limit_restored")
        after = fs.read_int(path, "memory.usage_in_bytes") or 0
        reclaimed = max(0, before - after)
        if refused is not None:
            return Outcome(ok=False, reclaimed=reclaimed, error=str(refused), errno=refused.errno)
        return Outcome(ok=True, reclaimed=reclaimed)

    def _restore_limit(self, path: str, original: str) -> None:
        """Put back the limit the reclaim lowered: tried up to RESTORE_TRIES times (a
        container must not stay capped); if it still fails, the note stays, so the next
        start restores it, and the error is raised."""
        error: BackendError | None = None
        for _ in range(RESTORE_TRIES):
            try:
                self.memory.write(path, "memory.limit_in_bytes", original)
            except CgroupGone:
                self._limits.done(path)
                raise
            except BackendError as exc:
                error = exc
                log.warning("%s: restoring memory.limit_in_bytes failed: %s", path, exc)
                continue
            self._limits.done(path)
            return
        assert error is not None
        raise error

    # -- notifications ---------------------------------------------------------------

    def arm_tripwire(self, name: str, nbytes: int) -> None:
        """See Backend.arm_tripwire. The kernel only reports *crossings*: if usage is
        already at or above ``nbytes`` when armed, the TRIPWIRE event comes at the next
        ``wait`` at once."""
        m = self._managed.get(name)
        if m is None:
            raise BackendError(f"container {name} is not managed (call ensure first)")
        self._drop(m, Watch.THRESHOLD)
        m.tripwire = None
        if self._tripwire_limit:
            self._limit(m, nbytes)
        reg = v1events.usage_threshold(self.memory, m.path, nbytes)
        self._add(m, reg)
        m.tripwire = nbytes
        usage = self.memory.read_int(m.path, "memory.usage_in_bytes") or 0
        if usage >= nbytes:
            self._drop(m, Watch.THRESHOLD)
            m.tripwire = None
            self._loop.post(self._tripwire_event(m, usage, nbytes))

    def _limit(self, m: _Managed, nbytes: int) -> None:
        """The memcg limit just above ``nbytes`` with the OOM killer off (saving what was
        there). Below usage the kernel reclaims to fit, and answers EBUSY when it cannot
        (anon): the limit then goes just above usage, and the container waits there for
        its next node instead of at the tripwire. A lower limit someone else set (before
        zoned, or since its last write) is theirs: zoned never raises it, and holds no
        task at it (the OOM killer stays as they had it)."""
        fs = self.memory
        current = fs.read(m.path, "memory.limit_in_bytes").strip()
        if m.saved is None:
            # An earlier run that died while holding left what it replaced in a note.
            m.saved = self._limits.hold_of(m.path)
        if m.saved is None:
            old_disable = str(self.oom_control(m.name).get("oom_kill_disable", 0))
            m.saved = (current, old_disable)
        elif m.limit is not None and current != str(m.limit):
            m.saved = (current, m.saved[1])  # changed behind zoned's back: theirs now
        # A little above the threshold: the kernel checks thresholds only as charges
        # succeed, so a limit right at it could hold the task before it is seen crossing.
        want = -(-(nbytes + LIMIT_SLACK) // self.page_size) * self.page_size
        theirs = int(m.saved[0]) if m.saved[0].isdigit() else UNLIMITED
        if theirs < min(want, UNLIMITED):
            self._unhold(m)
            return
        if m.limit is None:
            self._limits.keep_hold(m.path, *m.saved)
            fs.write(m.path, "memory.oom_control", "1")
        try:
            fs.write(m.path, "memory.limit_in_bytes", str(want))
        except WriteRefused as exc:
            if exc.errno != errno.EBUSY:
                raise
            usage = fs.read_int(m.path, "memory.usage_in_bytes") or 0
            want = -(-(usage + LIMIT_SLACK) // self.page_size) * self.page_size
            fs.write(m.path, "memory.limit_in_bytes", str(want))
            log.info(
                "%s: usage %d is over the tripwire %d and cannot be reclaimed; limit at %d",
                m.name,
                usage,
                nbytes,
                want,
            )
        m.limit = want

    def _unhold(self, m: _Managed) -> None:
        """Stop holding tasks at zoned's limit: the limit and the OOM killer as they were
        (a limit changed behind zoned's back is left as it is)."""
        if m.saved is None:
            return
        limit, disable = m.saved
        try:
            if m.limit is not None:
                current = self.memory.read(m.path, "memory.limit_in_bytes").strip()
                if current == str(m.limit):
                    self.memory.write(m.path, "memory.limit_in_bytes", limit)
            self.memory.write(m.path, "memory.oom_control", disable)
            self._limits.drop_hold(m.path)
        finally:
            m.limit = None

    def held_limit(self, name: str) -> int | None:
        """The memcg limit zoned's tripwire holds the container at, if it holds it."""
        m = self._managed.get(name)
        return m.limit if m is not None else None

    def release_hold(self, name: str) -> bool:
        """See Backend.release_hold: the limit and OOM killer as they were; the threshold
        stays armed."""
        m = self._managed.get(name)
        if m is None or m.limit is None:
            return False
        self._unhold(m)
        log.info("%s: no longer held at its tripwire", name)
        return True

    def _foreign_oom(self, m: _Managed) -> bool:
        """Tasks wait under OOM at a limit zoned did not set (someone lowered it after
        zoned's write): give them back the OOM killer they had. True when it did."""
        current = self.memory.read(m.path, "memory.limit_in_bytes").strip()
        if m.limit is None or current == str(m.limit):
            return False
        log.info(
            "%s: under OOM at a limit of %s that zoned did not set; not holding", m.name, current
        )
        self._unhold(m)
        return True

    def _unlimit(self, m: _Managed) -> None:
        """Put back the limit and OOM killer the tripwire replaced (best effort: the
        cgroup may be gone)."""
        try:
            self._unhold(m)
        except BackendError as exc:
            log.info("%s: restoring its memcg limit: %s", m.name, exc)
        m.saved = None

    def _tripwire_event(self, m: _Managed, usage: int, nbytes: int) -> Event:
        return Event(
            EventKind.TRIPWIRE,
            self.now(),
            container=m.name,
            detail=f"usage {usage} >= tripwire {nbytes}",
            value=usage,
        )

    def _watch(self, m: _Managed) -> None:
        """Register the OOM and pressure eventfds not yet registered; read the baseline
        ``oom_kill`` count."""
        m.oom_kills = self.oom_control(m.name).get("oom_kill", 0)
        if self._watch_oom and Watch.OOM not in m.regs:
            self._add(m, v1events.oom(self.memory, m.path))
        if self._pressure_level is not None and Watch.PRESSURE not in m.regs:
            reg = v1events.pressure_level(
                self.memory, m.path, self._pressure_level, self._pressure_mode
            )
            self._add(m, reg)

    def _add(self, m: _Managed, reg: Registration) -> None:
        m.regs[reg.watch] = reg
        self._loop.add_fd(reg.fd, IN, lambda revents: self._on_signal(m, reg))

    def _drop(self, m: _Managed, watch: Watch) -> None:
        reg = m.regs.pop(watch, None)
        if reg is not None:
            self._loop.remove_fd(reg.fd)
            reg.close()

    def _unwatch(self, m: _Managed) -> None:
        for watch in list(m.regs):
            self._drop(m, watch)
        m.tripwire = None

    def _on_signal(self, m: _Managed, reg: Registration) -> list[Event]:
        """An eventfd became readable: turn it into events (consumes the counter)."""
        count = reg.consume()
        now = self.now()
        if not self.memory.exists(m.path):
            # rmdir signals every registration once; report GONE once and stop watching.
            self._unwatch(m)
            if self._managed.get(m.name) is m:
                del self._managed[m.name]
            return [Event(EventKind.GONE, now, container=m.name, detail=f"{m.path} removed")]
        try:
            return self._events_for(m, reg, count, now)
        except CgroupGone:
            self._unwatch(m)
            self._managed.pop(m.name, None)
            return [Event(EventKind.GONE, now, container=m.name, detail=f"{m.path} removed")]

    def _events_for(self, m: _Managed, reg: Registration, count: int, now: float) -> list[Event]:
        out: list[Event] = []
        if reg.watch is Watch.THRESHOLD:
            usage = self.memory.read_int(m.path, "memory.usage_in_bytes") or 0
            # The kernel signals crossings both ways; only upward ones trip the wire.
            if m.tripwire is not None and usage >= m.tripwire:
                out.append(self._tripwire_event(m, usage, m.tripwire))
                self._drop(m, Watch.THRESHOLD)
                m.tripwire = None
        elif reg.watch is Watch.PRESSURE:
            detail = f"v1 {reg.args} x{count}"
            out.append(Event(EventKind.PRESSURE, now, container=m.name, detail=detail, value=count))
        else:
            oc = self.oom_control(m.name)
            detail = f"under_oom {oc.get('under_oom', 0)}"
            out.append(Event(EventKind.OOM, now, container=m.name, detail=detail, value=count))
            if m.limit is not None and oc.get("under_oom", 0) and not self._foreign_oom(m):
                out.append(self._held_event(m, now))
        # Every signal (including a threshold crossed downwards when a kill freed memory)
        # is a chance to notice kills: a cpuset-constrained OOM kill signals no eventfd.
        kills = self.oom_control(m.name).get("oom_kill", 0)
        if kills > m.oom_kills:
            out.append(
                Event(
                    EventKind.OOM_KILL,
                    now,
                    container=m.name,
                    detail=f"oom_kill {kills}",
                    value=kills - m.oom_kills,
                )
            )
            m.oom_kills = kills
        return out

    def wait(self, timeout_s: float | None) -> list[Event]:
        """Events from the eventfds and workers; plus OOM kills found by the fallback poll
        of ``oom_kill`` counters (see the module docstring), at most ``OOM_POLL_S`` late."""
        polling = self._watch_oom
        deadline = None if timeout_s is None else self.now() + timeout_s
        while True:
            now = self.now()
            slice_s: float | None = None
            if polling and self._managed:
                slice_s = max(0.0, self._next_oom_poll - now)
            if deadline is not None:
                left = max(0.0, deadline - now)
                slice_s = left if slice_s is None else min(slice_s, left)
            events = self._loop.wait(slice_s)
            if polling and self._managed and self.now() >= self._next_oom_poll:
                events.extend(self._poll_oom_kills())
                self._next_oom_poll = self.now() + OOM_POLL_S
            if events or (deadline is not None and self.now() >= deadline):
                return events

    def _held_event(self, m: _Managed, now: float) -> Event:
        """A container's tasks wait at the tripwire's limit: a real stall, reported as
        PRESSURE (level-triggered, again at each poll while they wait; the TRIPWIRE
        itself fires once per arming)."""
        return Event(
            EventKind.PRESSURE,
            now,
            container=m.name,
            detail=f"waiting at its limit {m.limit} (under_oom)",
            value=0,
        )

    def _poll_oom_kills(self) -> list[Event]:
        """The fallback poll: OOM kills, tasks waiting at a tripwire's limit (PRESSURE),
        and crossings of an armed threshold that its eventfd missed (TRIPWIRE)."""
        out: list[Event] = []
        now = self.now()
        for m in list(self._managed.values()):
            try:
                oc = self.oom_control(m.name)
                kills = oc.get("oom_kill", 0)
                if m.limit is not None and oc.get("under_oom", 0) and not self._foreign_oom(m):
                    out.append(self._held_event(m, now))
                if m.tripwire is not None:
                    usage = self.memory.read_int(m.path, "memory.usage_in_bytes") or 0
                    if usage >= m.tripwire:
                        out.append(self._tripwire_event(m, usage, m.tripwire))
                        self._drop(m, Watch.THRESHOLD)
                        m.tripwire = None
            except CgroupGone:
                self._unwatch(m)
                self._managed.pop(m.name, None)
                out.append(Event(EventKind.GONE, now, container=m.name, detail=f"{m.path} removed"))
                continue
            if kills > m.oom_kills:
                detail = f"oom_kill {kills} (polled)"
                value = kills - m.oom_kills
                out.append(Event(EventKind.OOM_KILL, now, m.name, detail=detail, value=value))
                m.oom_kills = kills
        return out

    def close(self) -> None:
        """Stop watching; put back each container's limit and OOM killer (without zoned
        a task must not wait at a tripwire nobody will raise) and the root flag if zoned
        set it (a failure is logged)."""
        for m in self._managed.values():
            self._unwatch(m)
            self._unlimit(m)
        self._loop.close()
        try:
            self.root_flag.restore()
        except BackendError as exc:
            log.warning("cannot restore %s: %s", self.root_flag.fs.root, exc)
