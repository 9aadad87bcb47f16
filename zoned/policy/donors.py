"""Who can give a node in one decision: donors indexed once per ``decide`` call."""

from __future__ import annotations

from typing import TYPE_CHECKING

from zoned.model.snapshot import ContainerView
from zoned.policy.placement import usable

if TYPE_CHECKING:
    from zoned.policy.decide import Ctx

_Key = tuple[int, float, float, str]  # a donor's rank: priority, -idle, fullness, name
_Entry = tuple[_Key, ContainerView, int]  # rank, donor, the node it would give


class Donors:
    """Who can give a node in one decision, indexed once so that finding the best donor
    for each receiver does not rescan every container (``Ctx.donor_for``).

    Everything about a container's standing is fixed once the needy are known, except
    whether it has been touched since (given or taken a node in this decision, which only
    ever grows) and what depends on the receiver: the priority rule, and whether a donor
    in its cooldown may give (only one whose last change was losing a node, and only to a
    receiver whose anon is still rising: the same hand-over going on, not a ping-pong).

    Candidates are kept in the order of preference (priority, then idlest, then least
    full after giving, then name), in four lists: out of cooldown or cooling, each all
    and idle only. In each group the best for a receiver is the first untouched one if
    its priority is not above the receiver's, else the first untouched idle one.
    """

    # A "no donor" reason names every container up to ALL_LISTED of them, else the first
    # MAX_LISTED and counts the rest: on a host of thousands of containers a reason naming
    # each one is neither readable nor cheap (one per receiver).
    ALL_LISTED = 12
    MAX_LISTED = 8

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self.declared = [v for v in ctx.by_name if v.name in ctx._decl]
        idle_return_s = ctx.p.idle_return_s
        groups: tuple[list[_Entry], list[_Entry]] = ([], [])  # out of cooldown; cooling
        for d in self.declared:
            # Only what makes a candidate is worked out here; the words on why the others
            # are not, only for the few a reason names (``_rejected``).
            if not d.nodes or self._before(d, cooling_ok=True) is not None:
                continue
            node = ctx.node_to_give(d, ctx._decl[d.name])
            if node is None:
                continue
            rest = ctx.cap_of(d) - ctx._size.get(node, 0)
            if d.unreclaimable > usable(rest, ctx.headroom):
                continue
            frac = d.unreclaimable / rest if rest else 1.0
            key = (ctx._decl[d.name].priority, -ctx.idle_s(d.name), frac, d.name)
            groups[1 if ctx.in_cooldown(d) else 0].append((key, d, node))
        self.lists: list[list[_Entry]] = []
        for g in groups:
            g.sort(key=lambda t: t[0])
            self.lists += [g, [e for e in g if ctx.idle_s(e[1].name) >= idle_return_s]]
        self.heads = [0] * len(self.lists)  # per list: entries before it are touched

    def _lost_last(self, d: ContainerView) -> bool:
        """Whether ``d``'s last change was losing a node: the engine marks a gain as a
        need at the same instant, so a change after the last need was a loss."""
        last = self.ctx.state.last_need.get(d.name)
        return d.last_change is not None and (last is None or last < d.last_change)

    def _before(self, d: ContainerView, cooling_ok: bool) -> str | None:
        """Why ``d`` cannot give (checked before the priority rule), or None.
        ``cooling_ok``: the receiver is still rising, so a donor that lost its last
        node may give again during its cooldown."""
        ctx = self.ctx
        if d.pending or d.name in ctx.touched:
            return f"{d.name} busy"
        if ctx.state.blocked and ctx.blocked(d.name) is not None:
            return f"{d.name} on hold"
        if d.name in ctx.needy:
            return f"{d.name} needs its nodes"
        if ctx.in_cooldown(d) and not (cooling_ok and self._lost_last(d)):
            return f"{d.name} in cooldown"
        return None

    def _rejected(self, d: ContainerView, priority: int, rising: bool) -> str:
        """Why ``d`` cannot give to a receiver of ``priority`` (it is not a donor for it)."""
        ctx = self.ctx
        before = self._before(d, rising)
        if before is not None:
            return before
        if ctx.priority(d.name) > priority and ctx.idle_s(d.name) < ctx.p.idle_return_s:
            return f"{d.name} has higher priority and is active"
        node = ctx.node_to_give(d, ctx._decl[d.name])
        if node is None:
            return f"{d.name} at its min"
        return f"{d.name}'s anon would not fit without a node"

    def _first(self, which: int, recv: str) -> tuple[ContainerView, int, _Key] | None:
        lst = self.lists[which]
        touched = self.ctx.touched
        i = self.heads[which]
        while i < len(lst) and lst[i][1].name in touched:
            i += 1
        self.heads[which] = i
        for key, d, node in lst[i:]:
            if d.name != recv and d.name not in touched:
                return d, node, key
        return None

    def _best_in(
        self, group: int, recv: str, priority: int
    ) -> tuple[ContainerView, int, _Key] | None:
        first = self._first(2 * group, recv)
        if first is None or self.ctx.priority(first[0].name) <= priority:
            return first
        # Every untouched candidate is of higher priority: only idle ones may give.
        return self._first(2 * group + 1, recv)

    def best(self, recv: str, priority: int, rising: bool) -> tuple[ContainerView, int] | None:
        """The best donor for ``recv`` (of ``priority``; ``rising``: its anon still grows)
        with the node it gives, or None."""
        found = [self._best_in(0, recv, priority)]
        if rising:
            found.append(self._best_in(1, recv, priority))
        got = [f for f in found if f is not None]
        if not got:
            return None
        d, node, _ = min(got, key=lambda f: f[2])
        return d, node

    def rejections(self, recv: str, priority: int, rising: bool) -> str:
        """Why no container can give to ``recv``, in name order (only when ``best`` found
        none: then every other declared container is rejected)."""
        listed: list[str] = []
        others = len(self.declared) - (1 if self.ctx.decl(recv) is not None else 0)
        most = others if others <= self.ALL_LISTED else self.MAX_LISTED
        for d in self.declared:
            if len(listed) == most:
                break
            if d.name == recv:
                continue
            listed.append(self._rejected(d, priority, rising))
        if not listed:
            return "no other container"
        more = others - len(listed)
        return "; ".join(listed) + (f"; and {more} more" if more > 0 else "")
