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

import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from zoned.config.decl import Declarations

PatternKind = Literal["exact", "glob", "re"]
_PREFIXES: tuple[tuple[str, PatternKind], ...] = (("re:", "re"), ("glob:", "glob"))


@dataclass(frozen=True)
class Pattern:
    """A test on a string: exact, shell glob, or regular expression (searched)."""

    kind: PatternKind
    text: str
    _regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False, hash=False)

    def __post_init__(self) -> None:
        if self.kind == "re":
            object.__setattr__(self, "_regex", re.compile(self.text))
        elif self.kind == "glob":
            object.__setattr__(self, "_regex", re.compile(fnmatch.translate(self.text)))

    @classmethod
    def parse(cls, spec: str) -> Pattern:
        """``re:…``, ``glob:…`` or plain text. Raises ValueError for a bad regex."""
        for prefix, kind in _PREFIXES:
            if spec.startswith(prefix):
                try:
                    return cls(kind, spec[len(prefix) :])
                except re.error as exc:
                    raise ValueError(f"bad regular expression {spec!r}: {exc}") from exc
        return cls("exact", spec)

    def matches(self, value: str) -> bool:
        if self._regex is None:
            return value == self.text
        if self.kind == "glob":
            return self._regex.match(value) is not None
        return self._regex.search(value) is not None

    def __str__(self) -> str:
        return self.text if self.kind == "exact" else f"{self.kind}:{self.text}"


@dataclass(frozen=True)
class ProcInfo:
    """What the rules look at, as read from ``/proc/PID`` (see ``zoned.classify``).

    ``cgroup`` is the process's cgroup relative to the hierarchy root, without a leading
    slash (``""`` is the root); on v1 the cpuset hierarchy's. None fields were unreadable.
    """

    pid: int
    exe: str | None
    cmdline: tuple[str, ...] = ()
    uid: int | None = None
    user: str | None = None
    cgroup: str | None = None

    @property
    def command(self) -> str:
        """argv joined by single spaces (what ``cmdline`` patterns see)."""
        return " ".join(self.cmdline)


def norm_cgroup(path: str) -> str:
    """A cgroup path without leading or trailing slashes."""
    return path.strip("/")


def cgroup_within(path: str, top: str) -> bool:
    """Whether cgroup ``path`` is ``top`` or below it (both relative to the root)."""
    path, top = norm_cgroup(path), norm_cgroup(top)
    return not top or path == top or path.startswith(top + "/")


@dataclass(frozen=True)
class MatchRule:
    """One rule: every key given must hold (AND). At least one key is given."""

    exe: Pattern | None = None
    cmdline: Pattern | None = None
    user: str | int | None = None  # a name, or a uid
    parent_cgroup: str | None = None

    def __post_init__(self) -> None:
        if all(v is None for v in (self.exe, self.cmdline, self.user, self.parent_cgroup)):
            raise ValueError("a match rule needs at least one of exe, cmdline, user, parent_cgroup")

    def matches(self, p: ProcInfo) -> bool:
        if self.exe is not None and (p.exe is None or not self.exe.matches(p.exe)):
            return False
        if self.cmdline is not None and (not p.cmdline or not self.cmdline.matches(p.command)):
            return False
        if self.user is not None:
            if isinstance(self.user, int):
                if p.uid != self.user:
                    return False
            elif p.user != self.user:
                return False
        return self.parent_cgroup is None or (
            p.cgroup is not None and cgroup_within(p.cgroup, self.parent_cgroup)
        )

    def __str__(self) -> str:
        parts = [
            f"{k} {v}"
            for k, v in (
                ("exe", self.exe),
                ("cmdline", self.cmdline),
                ("user", self.user),
                ("parent_cgroup", self.parent_cgroup),
            )
            if v is not None
        ]
        return ", ".join(parts)


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


def container_path(parent: str, name: str, cgroup: str | None) -> str:
    """A container's cgroup path relative to the root: the adopted one or ``parent/name``."""
    if cgroup:
        return norm_cgroup(cgroup)
    parent = norm_cgroup(parent)
    return f"{parent}/{name}" if parent else name
