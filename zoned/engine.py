"""The engine: owns the zone map, turns the policy's actions into backend operations.

``Engine(backend, decls, zonemap, dry_run=False)``; ``admit()`` once, then ``step(events)``
for each batch the backend's ``wait`` returns (``run(until)`` does that loop).

Each step: handle events (finished operations advance their hand-overs), build a
``Snapshot``, ``policy.decide``, start the actions. The snapshot re-reads usage only for
the containers this step's signals name, those in a hand-over and the sweep's share
(``zoned.usagecache``: every container at least every ``sweep_s``, 5 s); the others keep
their last figures, with when they were read. A hand-over the policy chose on a kept
figure is decided again once its containers are re-read. Nothing here blocks: a hand-over is a
small state machine (``zoned.handover``: directed reclaim → evacuate the node from the
donor → drain → reclaim the node alone where the kernel can → give it to the receiver)
whose next phase starts when the backend reports
``OP_FINISHED`` for the last.

Contracts:

* Each node has one owner in the map. While a node is in flight it is "busy": the policy
  takes it for nobody else, and the containers involved are left alone.
* When no operation is in flight, the map equals what the backend holds. After a failed
  or refused write the engine re-reads ``backend.state`` of the containers involved and
  makes the map say what the host really holds, then retries the phase (at most
  ``max_attempts`` times) or gives up with a logged reason and puts the containers on hold
  for ``cooldown_s``.
* A vanished cgroup is an ordinary outcome: its nodes go back to the pool, logged (found
  by its GONE event, or at its next read: within ``sweep_s``).
* ``dry_run``: decide and log "would have …", write nothing.

Every decision and outcome is appended to ``log`` (``LogRecord``) and sent to the
``zoned.engine`` logger. Pressure events (PSI triggers, v1 pressure levels) are not
decisions: each one is logged at debug level ("<container>: pressure event (<detail>)").
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Mapping, MutableSet, Sequence, Set
from types import MappingProxyType

from zoned.backends.base import Backend
from zoned.config.decl import Declarations
from zoned.errors import BackendError, CgroupGone
from zoned.handover import HandOvers, Phase, Transfer
from zoned.model.actions import (
    Action,
    DirectedReclaim,
    Lend,
    Reclaim,
    RecordOom,
    Return,
    SetTripwire,
    kind_of,
    movers,
)
from zoned.model.decisions import ContainerStats, LogRecord
from zoned.model.host import Event, EventKind
from zoned.model.nodelist import nodes_word
from zoned.model.snapshot import ContainerView, NodeView, Snapshot
from zoned.model.zonemap import OwnerKind, ZoneMap
from zoned.policy.decide import Decision, PolicyState, decide
from zoned.usagecache import SWEEP_S, UsageCache

log = logging.getLogger("zoned.engine")


class Names(MutableSet[str]):
    """A set of container names that iterates in insertion order.

    ``Engine.managed`` is tested for every event of every step: a list made that O(C) per
    event (361 ms a step for a storm of 5,000 events at 10,000 containers). Insertion
    order keeps snapshots, status and logs in declaration order, as the list did.
    """

    def __init__(self, names: Sequence[str] = ()) -> None:
        self._d: dict[str, None] = dict.fromkeys(names)

    def __contains__(self, name: object) -> bool:
        return name in self._d

    def __iter__(self) -> Iterator[str]:
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)

    def add(self, name: str) -> None:
        self._d[name] = None

    def discard(self, name: str) -> None:
        self._d.pop(name, None)

    def __repr__(self) -> str:
        return f"Names({list(self._d)!r})"


_NUMBER = re.compile(r"\d+(\.\d+)?[KMGTB%s]?")


_NONE: frozenset[int] = frozenset()

# Re-decisions a step may take after re-reading the containers its hand-overs involve.
_REDECIDE = 2


class Engine(HandOvers):
    """Drives one backend; see the module docstring for the contracts."""

    def __init__(
        self,
        backend: Backend,
        decls: Declarations,
        zonemap: ZoneMap,
        dry_run: bool = False,
        *,
        max_attempts: int = 3,
        juggle: bool = True,
        sweep_s: float = SWEEP_S,
    ) -> None:
        """``juggle=False`` keeps the initial zones (static zones: tripwires and OOM records
        only), for comparison runs. ``sweep_s``: every container's usage is re-read at least
        this often (``zoned.usagecache``); signals and hand-overs re-read theirs at once."""
        self.backend = backend
        self.decls = decls
        self._map = zonemap
        self.dry_run = dry_run
        self.juggle = juggle
        self.max_attempts = max_attempts
        self.log: list[LogRecord] = []
        self.stats: dict[str, ContainerStats] = {c.name: ContainerStats() for c in decls.containers}
        self.managed: Names = Names()
        self._transfers: list[Transfer] = []
        self._by_op: dict[int, Transfer] = {}
        self._tripwires: dict[str, int] = {}
        self._last_change: dict[str, float] = {}
        self._last_need: dict[str, float] = {}
        self._blocked: dict[str, tuple[float, str]] = {}
        self._seen: Mapping[str, tuple[float, int]] = {}  # the policy's rate samples
        self._started = backend.now()
        self._noted: dict[str, float] = {}
        self._last_dry_keys: set[str] = set()
        self._stuck_since: dict[str, float] = {}
        self._released: set[str] = set()
        self.last_snapshot: Snapshot | None = None
        # Each container's last usage read; its ``sweep_s`` and ``min_slice`` set how much
        # of the rest a step re-reads (zoned.usagecache).
        self.reads = UsageCache(sweep_s)
        self._read_this_step: set[str] = set()  # whose usage this step has read
        self._views: dict[str, tuple[tuple[object, ...] | None, ContainerView]] = {}

    # -- public --------------------------------------------------------------------------

    @property
    def zonemap(self) -> ZoneMap:
        return self._map

    def pending(self) -> tuple[str, ...]:
        """Hand-overs in flight, in words."""
        return tuple(self._describe(t) for t in self._transfers)

    def policy_state(self) -> PolicyState:
        return PolicyState(
            started=self._started,
            last_need=MappingProxyType(dict(self._last_need)),
            blocked=MappingProxyType(dict(self._blocked)),
            seen=self._seen,
        )

    def admit(self) -> None:
        """Create or adopt every declared container with its nodes from the zone map and
        arm its tripwire. In a dry run, only containers that already exist are managed."""
        existing = self.backend.existing()
        for decl in self.decls.containers:
            nodes = self._map.nodes_of(decl.name)
            words = f"{decl.name} on {nodes_word(nodes)}"
            why = next(
                (self._map.assignments[n].reason for n in sorted(nodes)), "no nodes of its own"
            )
            if self.dry_run:
                have = existing.get(decl.name)
                if have is None or self._own(have.nodes) != nodes:
                    self._record(
                        "admit",
                        f"create {words}",
                        why,
                        "would have",
                        code="dry-run",
                        container=decl.name,
                    )
                if have is not None:
                    self.managed.add(decl.name)
                continue
            try:
                st = self.backend.ensure(decl, self._mems(decl.name, nodes))
            except BackendError as exc:
                self._record(
                    "admit",
                    f"create {words}",
                    why,
                    f"failed: {exc}",
                    code="failed",
                    container=decl.name,
                )
                continue
            self.managed.add(decl.name)
            outcome = "adopted" if decl.name in existing else "created"
            if self._own(st.nodes) != nodes:
                outcome += f"; host granted {nodes_word(st.nodes)}, map follows the host"
                self._reconcile({decl.name})
            self._record("admit", f"create {words}", why, outcome, code="done", container=decl.name)
        if not self.dry_run:
            snap = self._snapshot(self.backend.now(), set(), {}, {})
            state = self.policy_state()
            d = decide(snap, self.decls, self._map, state, snap.at)
            for a in d.actions:
                if isinstance(a, SetTripwire):
                    self._apply(a, snap.at)

    def step(self, events: Sequence[Event]) -> Decision:
        """Handle ``events``, decide, start the actions; returns the decision."""
        now = self.backend.now()
        tripped, stalled, ooms = self._take_events(events, now)
        for t in list(self._transfers):
            if t.phase is Phase.DRAIN:
                self._drain(t, now)
        self._raise_when_reached()
        self._read_this_step = set()
        snap = self._snapshot(now, tripped, stalled, ooms)
        decision = self._decide_fresh(snap, tripped, stalled, ooms)
        self._seen = decision.seen
        for name in decision.needy:
            self._last_need[name] = now
        if not self.dry_run:
            self._release_holds(decision, now)
        # The same note (numbers aside) is logged at most once per cooldown: a container
        # that stays short of memory is not news every tick.
        quiet = self.decls.policy.cooldown_s
        for note in decision.reasons:
            key = _NUMBER.sub("#", note)
            if now - self._noted.get(key, -quiet - 1.0) > quiet:
                # Policy reasons start with the container's name ("web: anon ...").
                who = note.split(":", 1)[0]
                self._record(
                    "note",
                    "no action",
                    note,
                    "noted",
                    code="noted",
                    container=who if who in self.managed else None,
                )
                self._noted[key] = now
        dry_keys: set[str] = set()
        actions = list(decision.actions)
        for i, a in enumerate(actions):
            if not self.juggle and not isinstance(a, SetTripwire | RecordOom):
                continue
            if self.dry_run and not isinstance(a, RecordOom):  # recording writes nothing
                dry_keys.add(a.describe())
                if a.describe() not in self._last_dry_keys:
                    self._record(
                        kind_of(a), a.describe(), a.reason, "would have", a, code="dry-run"
                    )
                continue
            follow = actions[i + 1] if i + 1 < len(actions) else None
            if (
                isinstance(a, DirectedReclaim)
                and isinstance(follow, Reclaim | Return)
                and follow.from_ == a.container
            ):
                continue  # the hand-over that follows starts with it
            prev = actions[i - 1] if i else None
            first = prev if isinstance(prev, DirectedReclaim) else None
            self._apply(a, now, first)
        self._last_dry_keys = dry_keys
        return decision

    def _decide_fresh(
        self,
        snap: Snapshot,
        tripped: set[str],
        stalled: Mapping[str, int],
        ooms: Mapping[str, int],
    ) -> Decision:
        """Decide on ``snap``; when a hand-over it starts involves a container whose usage
        was not read this step (a donor chosen on its last sweep), re-read those and decide
        again on what they hold now. A re-read that finds the same figures keeps the
        decision. At most ``_REDECIDE`` re-decisions: each one reads what it chose."""
        now = snap.at
        state = self.policy_state()
        decision = decide(snap, self.decls, self._map, state, now)
        for _ in range(_REDECIDE):
            stale = {
                n
                for a in decision.actions
                for n in movers(a)
                if n in snap.containers and n not in self._read_this_step
            }
            if not stale:
                break
            before = {n: self.reads.get(n) for n in stale}
            snap = self._snapshot(now, tripped, stalled, ooms, fresh=stale, sweep=False)
            if all(
                (got := self.reads.get(n)) is not None and b is not None and got[1] == b[1]
                for n, b in before.items()
            ):
                break
            decision = decide(snap, self.decls, self._map, state, now)
        return decision

    def _take_events(
        self, events: Sequence[Event], now: float
    ) -> tuple[set[str], dict[str, int], dict[str, int]]:
        """Finished operations advance their hand-overs; the rest become the snapshot's
        inputs: (tripped, container → stall ms its pressure event reported, OOM kills)."""
        tripped: set[str] = set()
        stalled: dict[str, int] = {}
        ooms: dict[str, int] = {}
        for ev in events:
            c = ev.container
            if ev.kind is EventKind.OP_FINISHED and ev.op is not None:
                self._finished(ev.op, now)
            elif c is None or c not in self.managed:
                if ev.kind is not EventKind.OP_FINISHED:
                    log.debug("event %s for unmanaged %s, ignoring", ev.kind.value, c)
            elif ev.kind is EventKind.TRIPWIRE:
                tripped.add(c)
            elif ev.kind is EventKind.PRESSURE:
                # A stall is an input, not a decision: it reaches the decision log only
                # through what the policy makes of it. The debug log keeps each one, so a
                # run can show that a PSI trigger or a v1 pressure level reached the engine.
                log.debug("%s: pressure event (%s)", c, ev.detail)
                stalled[c] = max(stalled.get(c, 0), ev.value or 0)
            elif ev.kind is EventKind.OOM_KILL:
                ooms[c] = ooms.get(c, 0) + 1
            elif ev.kind is EventKind.GONE:
                self._gone(c, now)
            else:
                log.debug("%s: %s event (%s), ignoring", c, ev.kind.value, ev.detail)
        return tripped, stalled, ooms

    def run(
        self,
        until: float,
        tick_s: float = 1.0,
        observer: Callable[[Engine, Sequence[Event]], None] | None = None,
    ) -> None:
        """Loop ``wait → step`` until the backend's clock reaches ``until``. ``tick_s`` bounds
        each wait so levels are re-read even when no event comes (a tripwire fires once)."""
        while self.backend.now() < until:
            events = self.backend.wait(min(tick_s, until - self.backend.now()))
            self.step(events)
            if observer is not None:
                observer(self, events)

    # -- for the daemon: operator overrides and reload -----------------------------------

    def override(self, action: Lend | Reclaim | Return) -> None:
        """Start ``action`` now, as if the policy had decided it (``zoned lend`` / ``zoned
        reclaim``). The caller checks it first (owner, min, max, nothing in flight); the
        hand-over then runs and is logged like any other."""
        self._apply(action, self.backend.now())

    def reconfigure(self, decls: Declarations, zonemap: ZoneMap) -> None:
        """Switch to ``decls`` and ``zonemap`` (a reload); only while nothing is in flight.

        Managed containers no longer declared are released (``backend.release``; the caller
        has freed their nodes in ``zonemap``); declared ones not managed yet are created
        with their nodes from ``zonemap``. Changed limits and policy apply from the next
        step (tripwires are re-armed when their value changes). Raises RuntimeError while a
        hand-over is in flight.
        """
        if self._transfers:
            raise RuntimeError("hand-overs in flight: " + "; ".join(self.pending()))
        names = {c.name for c in decls.containers}
        for name in [n for n in self.managed if n not in names]:
            self.managed.remove(name)
            self._tripwires.pop(name, None)
            if self.dry_run:
                self._record(
                    "release",
                    f"release {name}",
                    "no longer declared",
                    "would have",
                    code="dry-run",
                    container=name,
                )
                continue
            try:
                self.backend.release(name)
            except BackendError as exc:
                self._record(
                    "release",
                    f"release {name}",
                    "no longer declared",
                    f"failed: {exc}",
                    code="failed",
                    container=name,
                )
                continue
            self._record(
                "release",
                f"release {name}",
                "no longer declared",
                "released",
                code="done",
                container=name,
            )
        self.decls = decls
        self._map = zonemap
        existing = self.backend.existing()
        for decl in decls.containers:
            if decl.name in self.managed:
                continue
            self.stats.setdefault(decl.name, ContainerStats())
            words = f"{decl.name} on {nodes_word(zonemap.nodes_of(decl.name))}"
            if self.dry_run:
                self._record(
                    "admit",
                    f"create {words}",
                    "newly declared",
                    "would have",
                    code="dry-run",
                    container=decl.name,
                )
                if decl.name in existing:
                    self.managed.add(decl.name)
                continue
            try:
                self.backend.ensure(decl, self._mems(decl.name, zonemap.nodes_of(decl.name)))
            except BackendError as exc:
                self._record(
                    "admit",
                    f"create {words}",
                    "newly declared",
                    f"failed: {exc}",
                    code="failed",
                    container=decl.name,
                )
                continue
            self.managed.add(decl.name)
            outcome = "adopted" if decl.name in existing else "created"
            self._record(
                "admit",
                f"create {words}",
                "newly declared",
                outcome,
                code="done",
                container=decl.name,
            )

    def _release_holds(self, decision: Decision, now: float) -> None:
        """A container held at its tripwire that nothing can be lent to is let go: at its
        max at once, otherwise after ``cooldown_s`` of nothing to lend (a donor may come
        out of its cooldown). Holding it longer would stall it for good where the kernel
        would OOM-kill inside its zones without zoned."""
        for name in [n for n in self._stuck_since if n not in decision.stuck]:
            del self._stuck_since[name]
        for name, (why, at_max) in decision.stuck.items():
            since = self._stuck_since.setdefault(name, now)
            if name in self._released:
                continue
            if not at_max and now - since < self.decls.policy.cooldown_s:
                continue
            try:
                released = self.backend.release_hold(name)
            except BackendError as exc:
                log.warning("%s: releasing its hold: %s", name, exc)
                continue
            self._released.add(name)
            if released:
                self._record(
                    "tripwire",
                    f"release {name}'s hold at its tripwire",
                    f"{name}: nothing can be lent ({why}); its tasks no longer wait at the "
                    "tripwire: the kernel decides inside its zones",
                    "released",
                    code="done",
                    container=name,
                )

    # -- snapshot ------------------------------------------------------------------------

    def _snapshot(
        self,
        now: float,
        tripped: set[str],
        stalled: Mapping[str, int],
        ooms: Mapping[str, int],
        *,
        fresh: Set[str] = frozenset(),
        sweep: bool = True,
    ) -> Snapshot:
        """The host now. Usage is re-read only for the containers that must be fresh (named
        by this step's signals, in ``fresh``, in a hand-over, never read) and the sweep's
        share (``zoned.usagecache``); the others keep their last read, with its time in
        ``ContainerView.read_at``. ``sweep=False``: no sweep share (a re-read within a
        step)."""
        nodes = {
            n: NodeView(n, m.total, m.free, m.file, m.reserve)
            for n, m in self.backend.node_memory().items()
            if m.total > 0
        }
        views: dict[str, ContainerView] = {}
        # Who owns what, in one pass over the map: nodes_of() per container is a scan of
        # every node each (C x N: half a second a step at 1,000 containers on 1,024 nodes).
        owned: dict[str, set[int]] = {}
        for n, asg in self._map.assignments.items():
            if asg.owner.kind is OwnerKind.CONTAINER and asg.owner.container is not None:
                owned.setdefault(asg.owner.container, set()).add(n)
        holds = {name: frozenset(ns) for name, ns in owned.items()}
        pending: dict[str, tuple[str, ...]] = {}
        for t in self._transfers:
            words = self._describe(t)
            for name in {t.donor, t.receiver}:
                if name is not None:
                    pending[name] = (*pending.get(name, ()), words)
        signalled = tripped | stalled.keys() | ooms.keys()
        due = self.reads.due(now, self.managed, len(self.managed)) if sweep else set()
        due.update(signalled, fresh, pending)
        kept = self._views
        tripwires, changes = self._tripwires, self._last_change
        for name in list(self.managed):
            got = self.reads.get(name)
            if got is None or name in due:
                try:
                    u = self.backend.usage(name)
                except CgroupGone:
                    self._gone(name, now)
                    self.reads.drop(name)
                    kept.pop(name, None)
                    continue
                self.reads.put(name, now, u)
                self._read_this_step.add(name)
                st = self.stats.setdefault(name, ContainerStats())
                st.peak_current = max(st.peak_current, u.current)
                st.peak_anon = max(st.peak_anon, u.anon)
                at = now
            else:
                at, u = got
            # A quiet container whose figures and zones did not change keeps last step's
            # view: building 1,000 views was most of a step once the reads were cut.
            key: tuple[object, ...] = (
                at,
                holds.get(name, _NONE),
                tripwires.get(name),
                changes.get(name),
                *pending.get(name, ()),
            )
            old = kept.get(name)
            if old is not None and old[0] == key and name not in signalled:
                views[name] = old[1]
                continue
            views[name] = view = ContainerView(
                name=name,
                nodes=holds.get(name, _NONE),
                current=u.current,
                anon=u.anon,
                file=u.file,
                shmem=u.shmem,
                per_node=MappingProxyType({n: nu.total for n, nu in u.per_node.items()}),
                tripwire=tripwires.get(name),
                last_change=changes.get(name),
                stalled=name in stalled,
                stall_ms=stalled.get(name, 0),
                tripped=name in tripped,
                oom_kills=ooms.get(name, 0),
                pending=pending.get(name, ()),
                read_at=at,
            )
            # A signalled view holds this step's signals: never reused.
            kept[name] = (None if name in signalled else key, view)
        for name in [n for n in kept if n not in views]:
            del kept[name]
        busy = frozenset(t.node for t in self._transfers if t.node is not None)
        snap = Snapshot(now, MappingProxyType(views), MappingProxyType(nodes), busy)
        self.last_snapshot = snap
        return snap

    # -- applying actions ----------------------------------------------------------------

    def _apply(self, a: Action, now: float, first: DirectedReclaim | None = None) -> None:
        if isinstance(a, RecordOom):
            self.stats.setdefault(a.container, ContainerStats()).oom_kills += a.kills
            dry = " (dry run: zoned moved nothing)" if self.dry_run else ""
            self._record("oom", a.describe(), a.reason, "recorded" + dry, a, code="noted")
        elif isinstance(a, SetTripwire):
            try:
                self.backend.arm_tripwire(a.container, a.nbytes)
            except CgroupGone:
                self._gone(a.container, now)
                return
            except BackendError as exc:
                self._record("tripwire", a.describe(), a.reason, f"failed: {exc}", a, code="failed")
                return
            self._tripwires[a.container] = a.nbytes
            self._released.discard(a.container)
            self._record("tripwire", a.describe(), a.reason, "armed", a, code="done")
        elif isinstance(a, Lend):
            t = Transfer(a, Phase.GIVE, node=a.node, receiver=a.to, started=now)
            self._begin(t, now)
        elif isinstance(a, Reclaim | Return):
            nbytes = first.nbytes if first is not None and first.container == a.from_ else 0
            t = Transfer(
                a,
                Phase.RECLAIM if nbytes else Phase.EVACUATE,
                node=a.node,
                donor=a.from_,
                receiver=a.to if isinstance(a, Reclaim) else None,
                reclaim_bytes=nbytes,
                started=now,
                first=first if nbytes else None,
            )
            self._begin(t, now)
        else:
            t = Transfer(a, Phase.RECLAIM, donor=a.container, reclaim_bytes=a.nbytes, started=now)
            self._begin(t, now)
