"""Which declared container a process belongs in, by its container's ``match:`` rules. Pure.

A container's ``match:`` is a list of rules; a process matches the container when *any*
rule holds, and a rule holds when *all* of its keys do::

    match:
      - exe: /usr/bin/stress-ng                 # the executable, as /proc/PID/exe names it
      - cmdline: "re:^python3? .*train"         # argv joined by single spaces
      - user: batch                             # real uid: a user name or a number
      - parent_cgroup: system.slice/foo.service # started inside this cgroup or below it
      - {exe: /usr/bin/python3, user: batch}    # both must hold

``exe`` and ``cmdline`` are patterns: plain text is compared whole, ``glob:`` uses shell
wildcards (``glob:/opt/*/bin/*``), ``re:`` is a Python regular expression searched
anywhere in the text (anchor it with ``^``/``$``).

Containers are tried in declaration order; the first whose rules match wins. A process
already inside a declared container is never moved by rules (it was put there on purpose:
``zoned exec``, ``zoned adopt``, an adopted service); ``classify`` answers None for it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from zoned.config.decl import Declarations
from zoned.config.match import MatchRule
from zoned.model.process import ProcInfo, cgroup_within, container_path, norm_cgroup


@dataclass(frozen=True)
class Verdict:
    """A process matched ``container`` by ``rule``."""

    container: str
    rule: MatchRule


class RuleSet:
    """Every container's rules, in declaration order, and where each container lives.

    ``paths`` maps every declared container (with rules or not) to its cgroup path; a
    process inside any of them is left where it is.
    """

    def __init__(
        self,
        rules: Sequence[tuple[str, Sequence[MatchRule]]],
        paths: Mapping[str, str],
    ) -> None:
        self.rules = tuple((name, tuple(rs)) for name, rs in rules if rs)
        # Longest path first, so a nested declared cgroup wins over its ancestor.
        self.paths = dict(
            sorted(((n, norm_cgroup(p)) for n, p in paths.items()), key=lambda item: -len(item[1]))
        )

    @classmethod
    def from_declarations(cls, decls: Declarations) -> RuleSet:
        """Rules from ``decls``; containers live at ``cgroup`` or ``<host.parent>/<name>``."""
        return cls(
            [(c.name, c.match) for c in decls.containers],
            {c.name: container_path(decls.host.parent, c.name, c.cgroup) for c in decls.containers},
        )

    def __bool__(self) -> bool:
        return bool(self.rules)

    def containers(self) -> Iterable[str]:
        return (name for name, _ in self.rules)

    def container_at(self, cgroup: str) -> str | None:
        """The declared container whose cgroup holds ``cgroup`` (itself or an ancestor)."""
        for name, path in self.paths.items():
            if path and cgroup_within(cgroup, path):
                return name
        return None

    def classify(self, p: ProcInfo) -> Verdict | None:
        """Where ``p`` belongs; None if no rule matches or it already is in a container."""
        if p.cgroup is not None and self.container_at(p.cgroup) is not None:
            return None
        for name, rules in self.rules:
            for rule in rules:
                if rule.matches(p):
                    return Verdict(name, rule)
        return None
