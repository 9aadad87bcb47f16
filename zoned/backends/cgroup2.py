"""The real backend on the cgroup v2 unified hierarchy (cpuset + memory controllers).

Layout (``parent`` is zoned's cgroup, ``zoned`` by default)::

    <root>/<parent>/                 +cpuset +memory in cgroup.subtree_control
    <root>/<parent>/zoned.daemon/    zoned's own process (the no-internal-process rule:
                                     a cgroup with processes cannot enable controllers
                                     for its children; the root is exempt)
    <root>/<parent>/<container>/     one leaf per container (or an adopted path)

What it writes, and why:

- ``cpuset.mems``: the container's nodes. v2 migrates the tasks' pages on the write and the
  write **blocks until migration is done**, so ``start_set_nodes`` runs it on an
  :class:`~zoned.backends.fdloop.FdLoop` worker with a deadline. Afterwards
  ``cpuset.mems.effective`` is compared with the request (a parent can silently widen or
  narrow it: a failed op carrying ``EffectiveMismatch``'s text and the granted nodes), and
  ``memory.numa_stat`` gives the bytes left on other nodes (``OpResult.left_behind``).
- ``memory.high``: the tripwire. The kernel counts ``high`` in ``memory.events`` and
  throttles the container above it, which buys the engine time. One TRIPWIRE event per
  arming, decided on ``memory.current`` against the armed bytes when ``memory.events``
  changes, not on counter deltas (measured: ``high`` climbs 1 → 8 within 30 ms while a task
  is throttled). After it fires, ``memory.high`` stays in place (still throttling) until
  re-armed or :meth:`Cgroup2Backend.disarm_tripwire`.
- ``memory.reclaim``: directed reclaim; EAGAIN means less was reclaimed than asked.

What it watches, per container, on the loop (no periodic polling):

- ``memory.events`` (POLLPRI, then re-read from offset 0 on the same fd, which also clears
  the condition): ``oom`` / ``oom_kill`` increases → OOM / OOM_KILL (a cpuset-constrained
  OOM shows ``oom_kill`` with ``oom`` unchanged), tripwire checks, and ENODEV → GONE;
- a PSI trigger on ``memory.pressure`` (POLLPRI → PRESSURE; POLLERR → GONE).

Adoption: :meth:`existing` only reads; :meth:`ensure` writes nothing that already holds
the right value and never moves a process, so a restart migrates no page.

Every path is under injected roots (cgroup root, sys root, proc root); all cgroup file
I/O goes through :class:`~zoned.kernel.cgroupfs.CgroupFs` and its errno translation.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from zoned.backends.fdloop import ERR, PRI, FdLoop, Outcome
from zoned.backends.realhost import FdLoopBackend
from zoned.backends.v2freeze import FREEZE_WAIT_S, HOLD_S, Freezer, stopped
from zoned.config.decl import ContainerDecl, Declarations
from zoned.errors import (
    BackendError,
    CgroupGone,
    EffectiveMismatch,
    Unsupported,
    WriteRefused,
)
from zoned.kernel.cgroupfs import CgroupFs, translated
from zoned.kernel.faults import fault_point
from zoned.kernel.proc import mems_allowed
from zoned.kernel.psi import PsiTrigger, check_spec, describe, open_trigger, trigger_spec
from zoned.kernel.roots import PROC_ROOT, SYS_ROOT
from zoned.kernel.v2stat import (
    bytes_outside,
    parse_controllers,
    parse_flat_keyed,
    parse_numa_stat,
    per_node_usage,
)
from zoned.model.host import CgroupState, Event, EventKind, OpKind, Usage, is_internal
from zoned.model.nodelist import format_nodelist, parse_nodelist
from zoned.model.process import container_path
from zoned.model.sizes import format_size

log = logging.getLogger(__name__)

CONTROLLERS = ("cpuset", "memory")
DEFAULT_DAEMON_LEAF = "zoned.daemon"
DEFAULT_PSI = "some 100000 1000000"  # 100 ms of some-stall per 1 s window

_READ_CHUNK = 65536


def _join(a: str, b: str) -> str:
    return f"{a}/{b}" if a else b


@dataclass
class _Container:
    """What the backend tracks for one managed container (engine thread only)."""

    name: str
    path: str
    owned: bool  # created under zoned's parent: release() may remove it
    events_fd: int = -1
    psi: PsiTrigger | None = None
    counters: dict[str, int] = field(default_factory=dict)  # last memory.events
    tripwire: int | None = None
    armed: bool = False
    gone: bool = False


class Cgroup2Backend(FdLoopBackend):
    """Containers as leaf cgroups under ``parent`` on the v2 hierarchy at ``cgroup_root``.

    Construction writes nothing; :meth:`prepare` (called by the first :meth:`ensure`)
    enables the controllers and places zoned's own process.
    """

    name = "cgroup2"
    raise_tripwire_before_give = True  # memory.high throttles inside MAP_POPULATE

    def __init__(
        self,
        cgroup_root: Path,
        parent: str = "zoned",
        *,
        sys_root: Path = SYS_ROOT,
        proc_root: Path = PROC_ROOT,
        daemon_leaf: str | None = DEFAULT_DAEMON_LEAF,
        adopted: Mapping[str, str] | None = None,
        psi: str | None = DEFAULT_PSI,
        workers: int = 2,
        clock: Callable[[], float] = time.monotonic,
        fs: CgroupFs | None = None,
        pid: int | None = None,
        loop: FdLoop | None = None,
        state_dir: Path | None = None,
        freeze_to_widen: bool = True,
        freeze_wait_s: float = FREEZE_WAIT_S,
        freeze_hold_s: float = HOLD_S,
        delegated: str | None = None,
    ) -> None:
        """``daemon_leaf``: zoned's own cgroup under ``parent``, where :meth:`prepare`
        moves this process unless it is already there; None: never move it (then zoned
        must not live in ``parent`` itself, or enabling controllers fails with EBUSY).
        ``adopted``: container name → existing cgroup path to manage in place.
        ``psi``: the trigger written to each container's ``memory.pressure`` (None: no
        PSI). ``pid``: the process :meth:`prepare` places (default: this one).
        ``fs`` and ``loop`` replace the defaults (tests: a fake kernel, a recording loop).
        ``freeze_to_widen``: freeze a populated container while a write adds nodes to it
        (``zoned.backends.v2freeze``), with undo notes under ``state_dir``: the write
        waits at most ``freeze_wait_s`` for its tasks to stop, and the ones stopped stay
        frozen at most ``freeze_hold_s`` more while it is in the kernel.
        ``delegated``: the cgroup systemd delegated to zoned (``parent`` or above it):
        nothing above it is created or written; the controllers must reach it already.
        """
        self.fs = fs or CgroupFs(cgroup_root)
        self._freezer = Freezer(self.fs, state_dir, proc_root, freeze_wait_s, freeze_hold_s)
        self._freeze_to_widen = freeze_to_widen
        self.parent = parent.strip("/")
        if not self.parent:
            raise ValueError("zoned's parent cgroup cannot be the root")
        self.daemon_leaf = daemon_leaf
        self.delegated = None if delegated is None else delegated.strip("/")
        self.adopted = {n: p.strip("/") for n, p in (adopted or {}).items()}
        self.psi = None if psi is None else check_spec(psi)
        self.pid = pid
        loop = loop or FdLoop(workers=workers, clock=clock, name="zoned-cg2")
        super().__init__(loop, sys_root=sys_root, proc_root=proc_root)
        self._containers: dict[str, _Container] = {}
        self._prepared = False

    @classmethod
    def from_declarations(
        cls,
        decls: Declarations,
        *,
        sys_root: Path = SYS_ROOT,
        proc_root: Path = PROC_ROOT,
        daemon_leaf: str | None = DEFAULT_DAEMON_LEAF,
        workers: int = 2,
    ) -> Cgroup2Backend:
        """A backend for a configuration: its root, parent, adopted paths, PSI knobs."""
        pol = decls.policy
        return cls(
            Path(decls.host.cgroup_root),
            decls.host.parent,
            sys_root=sys_root,
            proc_root=proc_root,
            adopted={c.name: c.cgroup for c in decls.containers if c.cgroup},
            psi=trigger_spec("some", pol.psi_some_ms * 1000, pol.psi_window_ms * 1000),
            daemon_leaf=daemon_leaf,
            workers=workers,
        )

    # -- setup ---------------------------------------------------------------------------

    def prepare(self) -> None:
        """Enable ``+cpuset +memory`` from the root down to ``parent`` (only where
        missing), create ``parent`` and the daemon leaf, move zoned's process there.
        Idempotent; writes nothing already right.

        Raises Unsupported when the hierarchy is not v2 or lacks the controllers, and
        WriteRefused (EBUSY) when an ancestor with processes blocks enabling them.
        """
        if self._prepared:
            return
        fs = self.fs
        if not fs.has_file("", "cgroup.controllers"):
            raise Unsupported(f"{fs.root} is not a cgroup v2 hierarchy (no cgroup.controllers)")
        available = parse_controllers(fs.read("", "cgroup.controllers"))
        missing = [c for c in CONTROLLERS if c not in available]
        if missing:
            raise Unsupported(
                f"{fs.root}: controllers {' '.join(missing)} are not available on the v2 "
                "hierarchy (bound to a v1 hierarchy?)"
            )
        cur = ""
        for part in self.parent.split("/"):
            self._enable_controllers(cur)
            cur = _join(cur, part)
            if not self._may_write(cur) and not fs.exists(cur):
                raise Unsupported(f"{fs.path(cur)} does not exist: {self._not_ours(cur)}")
            if fs.mkdir(cur):
                log.info("created %s", fs.path(cur))
        if self.daemon_leaf:
            leaf = _join(self.parent, self.daemon_leaf)
            fs.mkdir(leaf)
            self._place_self(leaf)
        self._enable_controllers(self.parent)
        self._prepared = True

    def _may_write(self, cgroup: str) -> bool:
        """Whether ``cgroup`` is inside what zoned may write (all of it, undelegated)."""
        top = self.delegated
        return top is None or cgroup == top or cgroup.startswith(top + "/")

    def _not_ours(self, cgroup: str) -> str:
        return (
            f"it is above {self.fs.path(self.delegated or '')}, the cgroup systemd delegated"
            " to zoned, and zoned writes nothing there"
        )

    def _enable_controllers(self, cgroup: str) -> None:
        have = parse_controllers(self.fs.read(cgroup, "cgroup.subtree_control"))
        need = [c for c in CONTROLLERS if c not in have]
        if not need:
            return
        if not self._may_write(cgroup):
            raise Unsupported(
                f"{self.fs.path(cgroup, 'cgroup.subtree_control')} lacks {' '.join(need)}:"
                f" {self._not_ours(cgroup)} (systemd enables delegated controllers itself)"
            )
        try:
            self.fs.write(cgroup, "cgroup.subtree_control", " ".join(f"+{c}" for c in need))
        except WriteRefused as exc:
            if exc.errno == errno.EBUSY:
                raise WriteRefused(
                    f"{exc}; {self.fs.path(cgroup)} has processes of its own and so cannot "
                    "enable controllers for its children (no-internal-process rule): move "
                    "them into a leaf",
                    exc.errno,
                ) from exc
            raise
        log.info("enabled %s in %s", " ".join(need), self.fs.path(cgroup, "cgroup.subtree_control"))

    def _own_cgroup(self) -> str | None:
        """This process's v2 cgroup path (relative to the root), from ``/proc/PID/cgroup``."""
        p = self.proc_root / (str(self.pid) if self.pid else "self") / "cgroup"
        with translated(f"read {p}"):
            text = p.read_text()
        for line in text.splitlines():
            if line.startswith("0::"):
                return line[3:].strip().strip("/")
        return None

    def _place_self(self, leaf: str) -> None:
        if self._own_cgroup() == leaf:
            return
        pid = self.pid or os.getpid()
        self.fs.move_pid(leaf, pid)
        log.info("moved zoned (pid %d) into %s", pid, self.fs.path(leaf))

    # -- naming --------------------------------------------------------------------------

    def _path(self, name: str) -> str:
        c = self._containers.get(name)
        if c is not None:
            return c.path
        return container_path(self.parent, name, self.adopted.get(name))

    def _track(self, name: str) -> _Container:
        c = self._containers.get(name)
        if c is None:
            c = _Container(name, self._path(name), owned=name not in self.adopted)
            self._containers[name] = c
        return c

    # -- reading -------------------------------------------------------------------------

    def _read_state(self, name: str, path: str) -> CgroupState:
        fs = self.fs
        nodes = parse_nodelist(fs.read(path, "cpuset.mems.effective"))
        pids = fs.pids(path)
        high = fs.read_int(path, "memory.high")
        return CgroupState(name=name, path=path, nodes=nodes, pids=pids, tripwire=high)

    def existing(self) -> Mapping[str, CgroupState]:
        """Children of ``parent`` (but zoned's own: the daemon leaf, ``zoned.*``) and the
        adopted paths; read only.

        A cgroup removed while being read is left out (an ordinary race).
        """
        out: dict[str, CgroupState] = {}
        found: list[tuple[str, str]] = []
        if self.fs.exists(self.parent):
            for child in self.fs.children(self.parent):
                base = child.rsplit("/", 1)[-1]
                if base != self.daemon_leaf and not is_internal(base):
                    found.append((base, child))
        found += [(n, p) for n, p in self.adopted.items() if self.fs.exists(p)]
        for name, path in found:
            try:
                out[name] = self._read_state(name, path)
            except CgroupGone:
                log.info("%s vanished while being read, ignoring", self.fs.path(path))
        return out

    def state(self, name: str) -> CgroupState:
        return self._read_state(name, self._path(name))

    def usage(self, name: str) -> Usage:
        path, fs = self._path(name), self.fs
        current = fs.read_int(path, "memory.current") or 0
        stat = parse_flat_keyed(fs.read(path, "memory.stat"), str(fs.path(path, "memory.stat")))
        numa = parse_numa_stat(
            fs.read(path, "memory.numa_stat"), str(fs.path(path, "memory.numa_stat"))
        )
        return Usage(
            current=current,
            anon=stat.get("anon", 0),
            file=stat.get("file", 0),
            per_node=per_node_usage(numa),
            shmem=stat.get("shmem", 0),
        )

    def processes(self, name: str) -> Sequence[int]:
        try:
            return self.fs.pids(self._path(name))
        except CgroupGone:
            return ()

    def mems_reached(self, name: str, nodes: frozenset[int]) -> bool:
        """Every thread in the container's subtree that can allocate is allowed ``nodes``
        (threads that exited meanwhile do not count, nor threads stopped in a freeze
        zoned holds until the write returns). False when the cgroup is gone."""
        top = self._path(name)
        tids: list[int] = []
        todo = [top]
        try:
            while todo:
                path = todo.pop()
                tids.extend(self.fs.pids(path, "cgroup.threads"))
                todo.extend(self.fs.children(path))
        except CgroupGone:
            return False
        frozen = self._freezer.holds_frozen(top)
        for tid in tids:
            allowed = mems_allowed(self.proc_root, tid)
            moved = allowed is None or nodes <= allowed
            if not moved and not (frozen and stopped(self.proc_root, tid)):
                return False
        return True

    # -- containers ----------------------------------------------------------------------

    def ensure(self, decl: ContainerDecl, nodes: frozenset[int]) -> CgroupState:
        """Create (or adopt) the container's cgroup with ``nodes`` and watch it.

        Writes ``cpuset.mems`` only when it differs; synchronous (a new cgroup has no
        pages; an adopted one whose nodes differ migrates here). Raises EffectiveMismatch
        when the kernel grants other nodes, CgroupGone when an adopted path is missing,
        Unsupported when it lacks the controllers.
        """
        if not nodes:
            raise ValueError(f"{decl.name}: a container needs at least one node")
        self.prepare()
        fs = self.fs
        if decl.cgroup:
            self.adopted[decl.name] = decl.cgroup.strip("/")
        c = self._track(decl.name)
        created = False
        if not c.owned:
            if not fs.exists(c.path):
                raise CgroupGone(f"{decl.name}: adopted cgroup {fs.path(c.path)} does not exist")
            have = parse_controllers(fs.read(c.path, "cgroup.controllers"))
            if not set(CONTROLLERS) <= have:
                raise Unsupported(
                    f"{decl.name}: {fs.path(c.path)} lacks {' '.join(CONTROLLERS)}: enable "
                    "them in its parent's cgroup.subtree_control"
                )
        elif fs.mkdir(c.path):
            created = True
            log.info("created %s", fs.path(c.path))
        if not created:
            self._freezer.heal(c.path)  # a zoned killed mid-write left it frozen
        fault_point("admit.cpuset_created")
        try:
            if parse_nodelist(fs.read(c.path, "cpuset.mems")) != nodes:
                fs.write(c.path, "cpuset.mems", format_nodelist(nodes))
        except BackendError:
            if created:  # a failed admission leaves nothing behind
                self._containers.pop(decl.name, None)
                self._remove_made(c.path)
            raise
        fault_point("admit.mems_written")
        self._watch(c)
        st = self._read_state(decl.name, c.path)
        if st.nodes != nodes:
            raise EffectiveMismatch(nodes, st.nodes)
        if c.tripwire is None and st.tripwire is not None:
            # A restart finds its own earlier tripwire in memory.high: keep watching it.
            c.tripwire, c.armed = st.tripwire, True
        return st

    def _remove_made(self, path: str) -> None:
        try:
            if self.fs.rmdir(path):
                log.info("removed %s (its admission failed)", self.fs.path(path))
        except BackendError as exc:
            log.warning("cannot remove %s after a failed admission: %s", self.fs.path(path), exc)

    def release(self, name: str) -> None:
        c = self._containers.pop(name, None)
        if c is not None:
            self._unwatch(c)
        if name in self.adopted:
            return  # adopted: left as it is
        path = c.path if c else _join(self.parent, name)
        try:
            if self.fs.rmdir(path):
                log.info("removed %s", self.fs.path(path))
        except WriteRefused as exc:
            if exc.errno != errno.EBUSY:
                raise
            log.info("%s still has processes or children, leaving it", self.fs.path(path))

    def attach(self, name: str, pid: int) -> None:
        """Move a process, all its threads, into the container: one write of the pid to
        its ``cgroup.procs`` (v2 moves the whole thread group). Raises CgroupGone (the
        cgroup or the process is gone: ESRCH), WriteRefused (e.g. EBUSY: a cgroup whose
        children have controllers enabled cannot take processes)."""
        self.fs.move_pid(self._path(name), pid)

    # -- slow operations -----------------------------------------------------------------

    def start_set_nodes(self, name: str, nodes: frozenset[int], deadline_s: float) -> int:
        """Write ``cpuset.mems`` on a worker (it blocks while pages migrate), then check
        ``.effective`` and ``memory.numa_stat``. The OpResult carries the granted nodes
        and ``left_behind`` (anon + file bytes on nodes outside them)."""
        if not nodes:
            raise ValueError(f"{name}: a container needs at least one node")
        fs, path = self.fs, self._path(name)

        def op() -> Outcome:
            fault_point("set_nodes.started")
            current = parse_nodelist(fs.read(path, "cpuset.mems"))
            if current != nodes:
                # Adding nodes: frozen, no task fills the old ones while the write walks
                # them one by one (zoned.backends.v2freeze). Taking nodes away migrates
                # pages for seconds: the donor is not growing and is left running.
                widen = self._freeze_to_widen and nodes > current
                with self._freezer.around_write(path) if widen else nullcontext(False):
                    began = time.monotonic()
                    fs.write(path, "cpuset.mems", format_nodelist(nodes))
                log.info(
                    "%s: cpuset.mems %s written in %.2fs",
                    path,
                    format_nodelist(nodes),
                    time.monotonic() - began,
                )
            fault_point("set_nodes.mems_written")
            granted = parse_nodelist(fs.read(path, "cpuset.mems.effective"))
            numa = parse_numa_stat(fs.read(path, "memory.numa_stat"))
            left = bytes_outside(numa, granted)
            if granted != nodes:
                err = EffectiveMismatch(nodes, granted)
                return Outcome(ok=False, nodes=granted, left_behind=left, error=str(err))
            return Outcome(nodes=granted, left_behind=left)

        return self._loop.submit(OpKind.SET_NODES, name, op, deadline_s)

    def start_reclaim(self, name: str, nbytes: int, deadline_s: float) -> int:
        """Write ``nbytes`` to ``memory.reclaim`` on a worker. ``reclaimed`` is
        ``memory.current`` before minus after (the workload may allocate meanwhile, so it
        is a lower bound); EAGAIN (less reclaimed than asked) is a failed op with it."""
        if nbytes <= 0:
            raise ValueError("reclaim needs a positive byte count")
        fs, path = self.fs, self._path(name)

        def op() -> Outcome:
            before = fs.read_int(path, "memory.current") or 0
            short: WriteRefused | None = None
            try:
                fs.write(path, "memory.reclaim", str(nbytes))
            except WriteRefused as exc:
                if exc.errno != errno.EAGAIN:
                    raise
                short = exc
            after = fs.read_int(path, "memory.current") or 0
            got = max(0, before - after)
            if short is not None:
                msg = f"reclaimed {format_size(got)} of {format_size(nbytes)} (EAGAIN)"
                return Outcome(ok=False, reclaimed=got, error=msg, errno=errno.EAGAIN)
            return Outcome(reclaimed=got)

        return self._loop.submit(OpKind.RECLAIM, name, op, deadline_s)

    # -- tripwire ------------------------------------------------------------------------

    def arm_tripwire(self, name: str, nbytes: int) -> None:
        """Set ``memory.high`` to ``nbytes`` (if different) and fire one TRIPWIRE when
        ``memory.current`` is at or above it on a ``memory.events`` change. If usage is
        already there, the event is posted at once.

        Note: lowering ``memory.high`` below usage makes the kernel reclaim in the writer
        (this thread) before the write returns (bounded retries; quick without swap).
        """
        if nbytes <= 0:
            raise ValueError("a tripwire needs a positive byte count")
        c = self._track(name)
        if c.tripwire is not None and nbytes > c.tripwire:
            # A raise while a widening write is in flight (mems_reached): its stopped
            # tasks stay frozen until it returns, or the timer's thaw would let one the
            # write has not reached fill the old node at the raised tripwire.
            self._freezer.keep(c.path)
        self.fs.write_if_changed(c.path, "memory.high", str(nbytes))
        self._watch(c)
        c.tripwire, c.armed = nbytes, True
        current = self.fs.read_int(c.path, "memory.current") or 0
        if current >= nbytes:
            c.armed = False
            self._loop.post(self._tripwire_event(c, current, "already at arming"))

    def disarm_tripwire(self, name: str) -> None:
        """``memory.high`` back to ``max``; no TRIPWIRE until armed again."""
        c = self._track(name)
        self.fs.write_if_changed(c.path, "memory.high", "max")
        c.tripwire, c.armed = None, False

    def _tripwire_event(self, c: _Container, current: int, why: str) -> Event:
        assert c.tripwire is not None
        return Event(
            EventKind.TRIPWIRE,
            self.now(),
            container=c.name,
            detail=f"usage {format_size(current)} >= tripwire {format_size(c.tripwire)} ({why})",
            value=current,
        )

    # -- watching ------------------------------------------------------------------------

    def _watch(self, c: _Container) -> None:
        """Open and register memory.events and the PSI trigger, once per container."""
        fs = self.fs
        if c.events_fd < 0:
            p = fs.path(c.path, "memory.events")
            with translated(f"open {p}"):
                fd = os.open(p, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
            try:
                c.counters = parse_flat_keyed(self._read_fd(fd, str(p)), str(p))
            except BackendError:
                os.close(fd)
                raise
            c.events_fd = fd
            self._loop.add_fd(fd, PRI, partial(self._on_events, c))
        if self.psi and c.psi is None:
            if not fs.has_file(c.path, "memory.pressure"):
                log.warning("%s: no memory.pressure (PSI disabled?), continuing without it", c.name)
                return
            try:
                c.psi = open_trigger(fs, c.path, self.psi)
            except WriteRefused as exc:
                log.warning("%s: PSI trigger refused (%s), continuing without it", c.name, exc)
                return
            self._loop.add_fd(c.psi.fd, PRI, partial(self._on_psi, c))

    def _unwatch(self, c: _Container) -> None:
        if c.events_fd >= 0:
            self._loop.remove_fd(c.events_fd)
            os.close(c.events_fd)
            c.events_fd = -1
        if c.psi is not None:
            self._loop.remove_fd(c.psi.fd)
            c.psi.close()
            c.psi = None

    @staticmethod
    def _read_fd(fd: int, what: str) -> str:
        """The whole file from offset 0 on ``fd`` (re-reading clears kernfs's POLLPRI)."""
        chunks: list[bytes] = []
        with translated(f"read {what}"):
            os.lseek(fd, 0, os.SEEK_SET)
            while chunk := os.read(fd, _READ_CHUNK):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def _gone(self, c: _Container, why: str) -> list[Event]:
        self._unwatch(c)
        if c.gone:
            return []
        c.gone = True
        log.info("%s: cgroup %s is gone (%s)", c.name, c.path, why)
        return [Event(EventKind.GONE, self.now(), container=c.name, detail=why)]

    def _on_events(self, c: _Container, revents: int) -> list[Event]:
        where = str(self.fs.path(c.path, "memory.events"))
        try:
            new = parse_flat_keyed(self._read_fd(c.events_fd, where), where)
        except CgroupGone:
            return self._gone(c, "memory.events unreadable")
        old, c.counters = c.counters, new
        now = self.now()
        out: list[Event] = []
        for key, kind in (("oom", EventKind.OOM), ("oom_kill", EventKind.OOM_KILL)):
            delta = new.get(key, 0) - old.get(key, 0)
            if delta > 0:
                out.append(
                    Event(kind, now, container=c.name, detail=f"{key} +{delta}", value=delta)
                )
        if c.armed and c.tripwire is not None:
            try:
                current = self.fs.read_int(c.path, "memory.current") or 0
            except CgroupGone:
                return out + self._gone(c, "memory.current unreadable")
            if current >= c.tripwire:
                c.armed = False
                high = new.get("high", 0)
                out.append(self._tripwire_event(c, current, f"memory.events high {high}"))
        return out

    def _on_psi(self, c: _Container, revents: int) -> list[Event]:
        if revents & ERR:
            return self._gone(c, "memory.pressure POLLERR")
        spec = c.psi.spec if c.psi else ""
        return [Event(EventKind.PRESSURE, self.now(), container=c.name, detail=describe(spec))]

    # -- loop ----------------------------------------------------------------------------

    def wait(self, timeout_s: float | None) -> list[Event]:
        return self._loop.wait(timeout_s)

    def close(self) -> None:
        for c in self._containers.values():
            self._unwatch(c)
        self._loop.close()
