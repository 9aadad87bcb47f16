"""The pure policy: ``decide(snapshot, decls, zonemap, state, now) -> Decision``.

A function of plain frozen data: it reads no files, asks no backend, keeps no state of its
own. The engine builds the snapshot, keeps ``PolicyState`` and carries out the actions.

The ladder (DESIGN.md, "How the daemon juggles"), in the order ``decide`` applies it:

1. **Record OOM kills.** The kernel's OOM inside a zone is the last resort; each kill is
   recorded (``RecordOom``) with why nothing could be lent. zoned never kills by itself.
2. **Grow who needs it**, most important first (priority, then how far over). A container
   *needs* a node when what cannot be dropped (anon plus kernel memory) reaches
   ``tripwire_pct`` of its zones' capacity, or when it reports real stall (a PSI trigger)
   while its zones are full, anon fills at least ``shrink_below_pct`` of them, and it is
   out of its cooldown. Page cache alone never grows a container: the kernel reclaims
   cache inside the zone by itself (and a cache reader stalls on that reclaim, and on
   memory.high throttling, without more nodes helping it). Tripwire and pressure
   events only wake the engine; the decision is on levels in the snapshot, never on how
   often a counter moved (KERNEL-NOTES, "Pressure and OOM signals"). It also needs one
   when its anon grows so fast that, at the rate it grew since its rate sample
   (``PolicyState.seen``, at least ``RATE_WINDOW_S`` old), it would fill its zones
   before the next look, taken to come as long after as the sample was.

   a. ``Lend`` free pool nodes (lowest ids that keep the container within ``max``): as
      many as bring its anon, projected one sample span ahead, under the tripwire;
   b. else ``Reclaim`` one from the best donor: a container above its ``min``, not in need,
      out of its cooldown (unless its last change was losing a node and the receiver's
      anon is still rising: the same ramp going on), whose anon still fits its remaining
      nodes with
      ``host.headroom_pct`` kept free, and whose priority is not above the receiver's
      unless it has been idle for ``idle_return_s``. Best = lowest priority, then idlest
      (longest since it last needed memory), then name. Its least-used node is evacuated
      first, after a ``DirectedReclaim`` when its pages would not fit under the tripwire
      of the nodes it keeps;
   c. else nothing can be lent: a reason says why (and an OOM, if it comes, is recorded).
3. **Give idle nodes back.** A container above its ``min`` that has neither needed memory
   nor changed for ``idle_return_s`` (nor changed within ``cooldown_s``), and whose anon
   would use less than
   ``shrink_below_pct`` of its nodes without one, ``Return``s its least-used node.
4. **Keep tripwires at** ``tripwire_pct`` of each settled container's capacity
   (``SetTripwire``, only when the value changes: nothing is rewritten every tick).

``Decision.seen`` hands back the rate samples for the next call: each kept until it is a
window old, then renewed with the current anon, stamped with when it was read
(``ContainerView.read_at``: a figure kept from an earlier read is no new sample).
Cost: linear in containers plus nodes (indexes built once per call; the best donor for
each receiver found without rescanning); tests/test_policy_perf_shape.py counts it.

Never beyond ``max``, never below ``min`` (both in nodes, or in bytes of usable capacity:
capacity less ``host.headroom_pct``, as placement counts them). Containers with an
operation in flight are left alone; nodes in flight are taken by nobody.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from zoned.config.decl import AmountUnit, ContainerDecl, Declarations
from zoned.model.actions import (
    Action,
    DirectedReclaim,
    Lend,
    Reclaim,
    RecordOom,
    Return,
    SetTripwire,
)
from zoned.model.nodelist import nodes_word
from zoned.model.sizes import format_size
from zoned.model.snapshot import ContainerView, Snapshot
from zoned.model.zonemap import FREE, ZoneMap
from zoned.policy.donors import Donors
from zoned.policy.placement import usable


def _empty() -> Mapping[str, float]:
    return MappingProxyType({})


def _empty_blocked() -> Mapping[str, tuple[float, str]]:
    return MappingProxyType({})


def _empty_seen() -> Mapping[str, tuple[float, int]]:
    return MappingProxyType({})


# Anon's rate of growth is measured over at least this long: allocation comes in bursts
# (a burst seen 10 ms in would project as if it went on for the whole horizon).
RATE_WINDOW_S = 1.0


@dataclass(frozen=True)
class PolicyState:
    """What the policy remembers between steps; the engine keeps it and passes it in.

    ``last_need``: when each container last needed memory (idleness counts from there, or
    from ``started`` for one that never did). ``blocked``: containers the engine gave up on
    after failed writes, with until when and why; the policy leaves them alone till then.
    ``seen``: each container's (time, anon) that its rate of growth is measured from: the
    previous decision's ``Decision.seen``, passed back unchanged.
    """

    started: float = 0.0
    last_need: Mapping[str, float] = field(default_factory=_empty)
    blocked: Mapping[str, tuple[float, str]] = field(default_factory=_empty_blocked)
    seen: Mapping[str, tuple[float, int]] = field(default_factory=_empty_seen)


@dataclass(frozen=True)
class Decision:
    """The actions, in the order to start them, and notes on signals that led to no action
    (``reasons``). ``needy`` names the containers found in need this step; ``stuck``
    those of them nothing could be lent to, each with why (and whether it is at its max,
    where waiting cannot help)."""

    actions: tuple[Action, ...] = ()
    reasons: tuple[str, ...] = ()
    needy: frozenset[str] = frozenset()
    seen: Mapping[str, tuple[float, int]] = field(default_factory=_empty_seen)
    stuck: Mapping[str, tuple[str, bool]] = field(default_factory=lambda: MappingProxyType({}))


# ---------------------------------------------------------------------------------------
# min and max


def keeps_min(decl: ContainerDecl, caps: list[int], headroom_pct: float) -> bool:
    """Whether nodes of sizes ``caps`` still satisfy ``decl.min``."""
    return _keeps_min(decl, len(caps), sum(caps), headroom_pct)


def _keeps_min(decl: ContainerDecl, count: int, total: int, headroom_pct: float) -> bool:
    """``keeps_min`` for ``count`` nodes of ``total`` bytes."""
    if decl.min.unit is AmountUnit.NODES:
        return count >= decl.min.value
    return usable(total, headroom_pct) >= decl.min.value


def may_grow(decl: ContainerDecl, caps: list[int], headroom_pct: float) -> bool:
    """Whether a container holding nodes of sizes ``caps`` may take one more: in nodes,
    while below ``max``; in bytes, while its usable capacity is below ``max``."""
    if decl.max.unit is AmountUnit.NODES:
        return len(caps) < decl.max.value
    return usable(sum(caps), headroom_pct) < decl.max.value


def _pct(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.0f}%" if whole else "-"


# ---------------------------------------------------------------------------------------


class Ctx:
    """One decision's working data: what has been promised so far in this decision."""

    def __init__(
        self,
        snap: Snapshot,
        decls: Declarations,
        zonemap: ZoneMap,
        state: PolicyState,
        now: float,
    ) -> None:
        self.snap = snap
        self.decls = decls
        self.p = decls.policy
        self.headroom = decls.host.headroom_pct
        self.zonemap = zonemap
        self.state = state
        self.now = now
        self.taken: set[int] = set(snap.busy_nodes)  # nodes promised or in flight
        self.touched: set[str] = set()  # containers given an action that changes nodes
        self.actions: list[Action] = []
        self.reasons: list[str] = []
        self.needy: dict[str, str] = {}  # name → why it needs a node
        self.why_not: dict[str, str] = {}  # name → why it could not get one
        self.at_max: set[str] = set()
        # Indexes built once per decision, so that no step rescans every container or
        # every node for each candidate: the cost of a decision grows linearly with the
        # containers and nodes (bench/decision_cost.py, tests/test_policy_perf_shape.py).
        self._decl: dict[str, ContainerDecl] = {}
        for d in decls.containers:
            self._decl.setdefault(d.name, d)  # Declarations.container: the first wins
        self._noted: set[str] = set()
        self._caps_of: dict[str, tuple[list[int], int]] = {}
        self._settled: dict[str, bool] = {}
        self._trip_pct = self.p.tripwire_pct
        self._size = {n: v.usable for n, v in snap.nodes.items()}
        self._free: list[int] | None = None  # free pool nodes, ascending; see free_node
        self._free_at = 0
        self._donors: Donors | None = None
        self.by_name: list[ContainerView] = []  # the containers in name order

    # -- facts about containers ------------------------------------------------------

    def decl(self, name: str) -> ContainerDecl | None:
        return self._decl.get(name)

    def priority(self, name: str) -> int:
        return self._decl[name].priority

    def caps(self, nodes: frozenset[int] | set[int]) -> list[int]:
        return [self.snap.nodes[n].usable for n in sorted(nodes) if n in self.snap.nodes]

    def cap(self, nodes: frozenset[int] | set[int]) -> int:
        return sum(self.caps(nodes))

    def _caps_sum(self, c: ContainerView) -> tuple[list[int], int]:
        got = self._caps_of.get(c.name)
        if got is None:
            size = self._size
            # Unsorted: only the count and the sum are used (may_grow, keeps_min).
            caps = [size[n] for n in c.nodes if n in size]
            got = self._caps_of[c.name] = (caps, sum(caps))
        return got

    def caps_of(self, c: ContainerView) -> list[int]:
        """``caps(c.nodes)``, computed once per container per decision."""
        return self._caps_sum(c)[0]

    def cap_of(self, c: ContainerView) -> int:
        """``cap(c.nodes)``, computed once per container per decision."""
        return self._caps_sum(c)[1]

    def trip_level(self, cap: int) -> int:
        return int(cap * self._trip_pct / 100.0)

    def in_cooldown(self, c: ContainerView) -> bool:
        return c.last_change is not None and self.now - c.last_change < self.p.cooldown_s

    def idle_s(self, name: str) -> float:
        return self.now - self.state.last_need.get(name, self.state.started)

    def blocked(self, name: str) -> str | None:
        b = self.state.blocked.get(name)
        if b is not None and self.now < b[0]:
            return b[1]
        return None

    def settled(self, c: ContainerView) -> bool:
        """No operation in flight, not given up on, still declared."""
        got = self._settled.get(c.name)
        if got is None:
            got = self._settled[c.name] = (
                not c.pending
                and c.name in self._decl
                and (not self.state.blocked or self.blocked(c.name) is None)
            )
        return got

    def need(self, c: ContainerView) -> str | None:
        """Why ``c`` needs another node now, or None."""
        cap = self.cap_of(c)
        trip = self.trip_level(cap)
        if not cap:
            return None
        if c.unreclaimable < trip and not c.stalled and not c.tripped:
            ahead = self.projected(c)
            if ahead is not None and ahead >= cap:
                # Growing so fast that it would fill its zones before the next look: the
                # kernel OOM-kills within ~10 ms of a full zone, and without memory.high
                # (v1's threshold only notifies) nothing slows it at the tripwire.
                t0, u0 = self.state.seen[c.name]
                span = c.read_time(self.now) - t0
                rate = (c.unreclaimable - u0) / span
                return (
                    f"{c.name}: anon {format_size(c.unreclaimable)} of {format_size(cap)} "
                    f"capacity, rising {format_size(int(rate))}/s, would fill its zones "
                    f"within {span:.1f}s"
                )
            return None  # the common case, quiet: nothing to say
        pct = f"{self.p.tripwire_pct:g}%"
        if c.unreclaimable >= trip:
            return (
                f"{c.name}: anon {format_size(c.unreclaimable)} of {format_size(cap)} "
                f"capacity crossed tripwire {pct}"
            )
        # Stall counts only when what cannot be dropped fills a good part of the zones:
        # a cache reader stalls too (reclaim, and our own memory.high throttling), and
        # more nodes would only hold more cache.
        squeezed = c.unreclaimable >= cap * self.p.shrink_below_pct / 100.0
        if c.stalled and cap and c.current >= trip and squeezed:
            if self.in_cooldown(c):
                # PSI averages over a window: a stall seen right after a change is likely
                # from before it. Let the cooldown absorb it.
                self.note(
                    f"{c.name}: stalled, but it changed {self.now - (c.last_change or 0):.1f}s "
                    f"ago (cooldown {self.p.cooldown_s:g}s); waiting"
                )
                return None
            stall = f" {c.stall_ms}ms per {self.p.psi_window_ms}ms" if c.stall_ms else ""
            return (
                f"{c.name}: stalled{stall} with its zones full ({format_size(c.current)} of "
                f"{format_size(cap)}) and anon {format_size(c.unreclaimable)} at "
                f"{_pct(c.unreclaimable, cap)} of them (>= {self.p.shrink_below_pct:g}%)"
            )
        ahead = self.projected(c)
        if (c.tripped or c.stalled) and ahead is not None and ahead >= trip:
            # Cache filled the rest, but anon is still rising and will cross within the
            # next window: this crossing is the last warning there will be (v1's
            # threshold fires once; a fast grower fills a node in well under a second).
            return (
                f"{c.name}: anon {format_size(c.unreclaimable)} of {format_size(cap)} "
                f"capacity with the tripwire {pct} reached, rising to "
                f"{format_size(ahead)} within "
                f"{c.read_time(self.now) - self.state.seen[c.name][0]:.1f}s"
            )
        if (c.tripped or c.stalled) and cap and c.current >= trip:
            self.note(
                f"{c.name}: usage {format_size(c.current)} of {format_size(cap)} reached the "
                f"tripwire, but {format_size(c.file)} of it is page cache the kernel reclaims "
                f"inside its zones; anon {format_size(c.unreclaimable)} is under tripwire "
                f"{pct} and there is no real stall: not growing"
            )
        return None

    def projected(self, c: ContainerView) -> int | None:
        """``c``'s anon one measuring window ahead at the rate it grew over the last one,
        if it grew: the next look is expected about as long after this one as this one
        came after the sample (ticks, polls). None when there is no rate to go by."""
        got = self.state.seen.get(c.name)
        if got is None:
            return None
        t0, u0 = got
        span = c.read_time(self.now) - t0  # a stale figure is not a later sample
        if span < RATE_WINDOW_S or c.unreclaimable <= u0:
            return None
        return c.unreclaimable + (c.unreclaimable - u0)  # rate x span, over span again

    def note(self, text: str) -> None:
        if text not in self._noted:
            self._noted.add(text)
            self.reasons.append(text)

    # -- the ladder ------------------------------------------------------------------

    def free_node(self, c: ContainerView, decl: ContainerDecl) -> int | None:
        """The lowest free pool node nobody has been promised, if ``c`` may grow."""
        if not may_grow(decl, self.caps_of(c), self.headroom):
            return None
        if self._free is None:
            self._free = sorted(n for n in self.zonemap.nodes_with(FREE) if n in self.snap.nodes)
        # ``taken`` only grows within a decision: skip what it holds for good.
        while self._free_at < len(self._free) and self._free[self._free_at] in self.taken:
            self._free_at += 1
        return self._free[self._free_at] if self._free_at < len(self._free) else None

    def donors(self) -> Donors:
        """Every container's standing as a donor, worked out once per decision (after the
        needy are known): what can change later is only who has been touched since."""
        if self._donors is None:
            self._donors = Donors(self)
        return self._donors

    def donor_for(
        self, recv: ContainerView, rdecl: ContainerDecl
    ) -> tuple[ContainerView, int, str] | str:
        """The best donor with the node it gives and words on why it was chosen, or words
        on why nobody can give.

        Donors are containers above their ``min``, settled, not in need, out of cooldown,
        whose anon fits their other nodes with headroom, and not of higher priority than
        ``recv`` unless idle for ``idle_return_s``. Best = lowest priority, idlest, least
        full after giving, then name."""
        # A receiver still rising past its tripwire may take a second node from a donor
        # that just gave it one (that donor is in its cooldown): the ramp goes on, and
        # waiting out the cooldown leaves it throttled at memory.high meanwhile.
        rising = recv.name in self.needy and self.projected(recv) is not None
        found = self.donors().best(recv.name, rdecl.priority, rising)
        if found is None:
            return self.donors().rejections(recv.name, rdecl.priority, rising)
        d, node = found
        why = f"{d.name} (priority {self._decl[d.name].priority}"
        why += f", idle {self.idle_s(d.name):.0f}s)"
        return d, node, why

    def node_to_give(self, d: ContainerView, ddecl: ContainerDecl) -> int | None:
        """``d``'s least-used node whose removal keeps its min, or None."""
        known = self.caps_of(d)
        total, count = sum(known), len(known)
        options = []
        for n in d.nodes:
            if n in self.taken:
                continue
            size = self.snap.nodes[n].usable if n in self.snap.nodes else None
            rest_n, rest_b = (count, total) if size is None else (count - 1, total - size)
            if _keeps_min(ddecl, rest_n, rest_b, self.headroom):
                options.append(n)
        if not options:
            return None
        return min(options, key=lambda n: (d.per_node.get(n, 0), n))

    def evacuate(self, d: ContainerView, node: int) -> list[Action]:
        """The directed reclaim that must precede evacuating ``node`` from ``d``, if any:
        when its pages would not fit under the tripwire of the nodes it keeps."""
        rest = self.cap(d.nodes - {node})
        target = self.trip_level(rest)
        excess = d.current - target
        if excess <= 0 or not self.p.reclaim_before_evacuate:
            return []
        nbytes = min(excess, d.file)
        if nbytes <= 0:
            return []
        return [
            DirectedReclaim(
                d.name,
                nbytes,
                f"{d.name}: {format_size(d.current)} would not fit under the tripwire "
                f"({format_size(target)}) of {nodes_word(d.nodes - {node})}; dropping "
                f"{format_size(nbytes)} of page cache before evacuating node {node}",
            )
        ]

    def grow(self, c: ContainerView, why: str) -> None:
        decl = self._decl[c.name]
        if not may_grow(decl, self.caps_of(c), self.headroom):
            self.why_not[c.name] = f"at its max ({decl.max})"
            self.at_max.add(c.name)
            self.note(f"{why}; at its max ({decl.max}), cannot grow")
            return
        node = self.free_node(c, decl)
        if node is not None:
            # As many free nodes as bring the projected anon under the tripwire, in one
            # decision: the container is busy until its first node arrives, and a fast
            # ramp would cross the next tripwire before the policy could look again.
            caps = list(self.caps_of(c))
            want = max(c.unreclaimable, self.projected(c) or 0)
            while node is not None:
                self.taken.add(node)
                self.touched.add(c.name)
                caps.append(self._size[node])
                self.actions.append(Lend(node, c.name, f"{why}; lent node {node} (free)"))
                if want < self.trip_level(sum(caps)) or not may_grow(decl, caps, self.headroom):
                    break
                node = self.free_node(c, decl)
            return
        found = self.donor_for(c, decl)
        if isinstance(found, str):
            self.why_not[c.name] = f"no free node; no donor ({found})"
            self.note(f"{why}; nothing can be lent: no free node; no donor ({found})")
            return
        d, node, dwhy = found
        self.taken.add(node)
        self.touched.update((c.name, d.name))
        self.actions.extend(self.evacuate(d, node))
        self.actions.append(
            Reclaim(
                node,
                d.name,
                c.name,
                f"{why}; no free node; reclaimed node {node} from {dwhy}, evacuated first",
            )
        )

    def oom(self, c: ContainerView) -> RecordOom:
        """Record a kernel OOM kill in ``c`` with why nothing was lent in time. The snapshot
        is from after the kill (the killed process's memory is gone), so the words are about
        what could have been lent, not about its usage."""
        why = self.why_not.get(c.name)
        if why is None and c.pending:
            why = "a node was on its way but came too late"
        elif why is None:
            decl = self.decl(c.name)
            if decl is None:
                why = "it is not declared"
            elif not may_grow(decl, self.caps_of(c), self.headroom):
                why = f"at its max ({decl.max}): nothing may be lent"
            elif (free := self.free_node(c, decl)) is not None:
                why = f"node {free} was free: the fill came faster than zoned saw it"
            else:
                found = self.donor_for(c, decl)
                why = (
                    f"no free node; no donor ({found})"
                    if isinstance(found, str)
                    else f"no free node; {found[0].name} could have given one: "
                    "the fill came faster than zoned saw it"
                )
        n = c.oom_kills
        return RecordOom(
            c.name,
            f"{c.name}: the kernel OOM-killed {n} process{'es' if n > 1 else ''} inside its "
            f"zones ({nodes_word(c.nodes)}, {format_size(self.cap_of(c))}); {why}",
            n,
        )

    def idle_return(self, d: ContainerView) -> None:
        ddecl = self._decl[d.name]
        idle = self.idle_s(d.name)
        if idle < self.p.idle_return_s:
            return
        # Neither within idle_return_s nor within cooldown_s of its last change: cooldown
        # bounds every move, returns included (a short idle_return_s must not undo a
        # lend a moment after it was made).
        if d.last_change is not None and self.now - d.last_change < max(
            self.p.idle_return_s, self.p.cooldown_s
        ):
            return
        node = self.node_to_give(d, ddecl)
        if node is None:
            return
        rest = self.cap(d.nodes - {node})
        limit = int(rest * self.p.shrink_below_pct / 100.0)
        if d.unreclaimable >= limit:
            return
        self.taken.add(node)
        self.touched.add(d.name)
        self.actions.extend(self.evacuate(d, node))
        self.actions.append(
            Return(
                node,
                d.name,
                f"{d.name}: no need for more memory for {idle:.0f}s "
                f"(idle_return_s {self.p.idle_return_s:g}s) and anon "
                f"{format_size(d.unreclaimable)} would use {_pct(d.unreclaimable, rest)} of "
                f"{nodes_word(d.nodes - {node})} (< {self.p.shrink_below_pct:g}%); "
                f"returned node {node} to the pool",
            )
        )

    def tripwire(self, c: ContainerView) -> None:
        cap = self.cap_of(c)
        want = self.trip_level(cap)
        if cap and c.tripwire != want:
            self.actions.append(
                SetTripwire(
                    c.name,
                    want,
                    f"{c.name}: capacity {format_size(cap)} ({nodes_word(c.nodes)}); "
                    f"tripwire at {self.p.tripwire_pct:g}% = {format_size(want)}",
                )
            )


def decide(
    snapshot: Snapshot,
    decls: Declarations,
    zonemap: ZoneMap,
    state: PolicyState,
    now: float,
) -> Decision:
    """Decide what to do now; see the module docstring for the rules. Pure."""
    ctx = Ctx(snapshot, decls, zonemap, state, now)
    views = snapshot.containers
    ctx.by_name = by_name = sorted(views.values(), key=lambda v: v.name)

    for c in views.values():
        if ctx.settled(c):
            if not c.nodes:
                continue  # no zones, nothing to fill (a min of 0 not yet grown)
            why = ctx.need(c)
            if why is not None:
                ctx.needy[c.name] = why
        elif c.tripped or c.stalled:
            # A signal during a hand-over is expected (the tripwire fires again while the
            # container waits for its node); only a hold is worth a note.
            held = ctx.blocked(c.name)
            if held:
                ctx.note(f"{c.name}: short of memory but on hold ({held}); waiting")

    def urgency(name: str) -> tuple[int, float, str]:
        c = views[name]
        cap = ctx.cap_of(c)
        return (-ctx.priority(name), -(c.unreclaimable / cap if cap else 1.0), name)

    for name in sorted(ctx.needy, key=urgency):
        ctx.grow(views[name], ctx.needy[name])

    for c in by_name:
        if c.oom_kills:
            ctx.actions.insert(0, ctx.oom(c))

    # The last two passes see every container: the cheap tests come first.
    last_need, started, idle_return_s = state.last_need, state.started, decls.policy.idle_return_s
    for c in by_name:
        if (
            c.nodes
            and now - last_need.get(c.name, started) >= idle_return_s
            and ctx.settled(c)
            and c.name not in ctx.needy
            and c.name not in ctx.touched
        ):
            ctx.idle_return(c)

    for c in by_name:
        if c.nodes and ctx.settled(c) and c.name not in ctx.touched:
            ctx.tripwire(c)

    # The samples rates are measured from: kept until a window old, then renewed, each at
    # the time its figure was read (a figure kept from an earlier read is no new sample).
    seen = dict(state.seen)
    for c in by_name:
        old = seen.get(c.name)
        at = c.read_time(now)
        if old is None or at - old[0] >= RATE_WINDOW_S:
            seen[c.name] = (at, c.unreclaimable)
    for name in [n for n in seen if n not in views]:
        del seen[name]
    stuck = {n: (why, n in ctx.at_max) for n, why in ctx.why_not.items() if n in ctx.needy}
    return Decision(
        tuple(ctx.actions),
        tuple(ctx.reasons),
        frozenset(ctx.needy),
        MappingProxyType(seen),
        MappingProxyType(stuck),
    )
