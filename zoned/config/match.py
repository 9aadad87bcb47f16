"""``match:`` patterns and rules as declared: what a rule tests, not which container wins.

``exe`` and ``cmdline`` are patterns: plain text is compared whole, ``glob:`` uses shell
wildcards, ``re:`` is a Python regular expression searched anywhere in the text.
``zoned.policy.rules`` decides which container a process belongs in.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from typing import Literal

from zoned.model.process import ProcInfo, cgroup_within

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
