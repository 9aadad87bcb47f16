"""Workloads: what a simulated container's process does with memory, phase by phase.

A workload is a list of phases run in order by one simulated process. Amounts are sizes
(``600M``, ``1.5G``), times are seconds of virtual time. Phases::

    {anon: 300M}                      allocate (and touch) 300M of anonymous memory
    {file: 200M}                      read 200M of files: page cache charged to the container
    {alloc: {anon: 300M, file: 50M, rate: 100M}}   both, at 100M/s instead of the host's rate
    {ramp: {anon: 600M, file: 0, over_s: 30}}       spread the allocation evenly over 30 s
    {free: {anon: 300M}}              free anonymous memory (``file:`` drops that much cache,
                                      ``{free: all}`` frees all anon and drops all cache)
    {hold_s: 20}                      keep everything for 20 s, active
    {idle_s: 100}                     keep everything for 100 s, idle (recorded as idle)
    {walk: {anon_mean: 300M, sd: 50M, seed: 3, for_s: 60, every_s: 1, rho: 0.8}}
                                      every ``every_s`` pick a new anonymous target from a
                                      mean-reverting random walk (AR(1) with stationary
                                      deviation ``sd``), then allocate or free toward it
    {exit: true}                      the process exits: its anon is freed, its cache stays

A phase that allocates ends when its allocation is done: a throttled or stalled
allocation makes the whole workload later, as it would a real program. When the phases
run out the process stays alive holding its memory (``loop: true`` starts them again).

A workload is either that list, or a mapping::

    web:
      start_s: 5            # the process starts 5 s after the clock's zero (or when its
                            # cgroup is created, if later)
      restart: true         # after an OOM kill, start again from the first phase...
      restart_delay_s: 2    # ...this long after the kill
      restart_max_s: 60     # and doubling for each kill in a row up to this (a crash-loop
                            # backoff, reset by a life of 2 x restart_max_s); default: no
                            # doubling
      loop: false
      phases: [...]
"""

from __future__ import annotations

import math
import random
import zlib
from dataclasses import dataclass

from zoned.config.plain import (
    Doc,
    as_bool,
    as_int,
    as_list,
    as_mapping,
    as_number,
    as_rate,
    as_seconds,
    as_size,
    check_keys,
    empty_doc,
)


@dataclass(frozen=True)
class Alloc:
    """Allocate ``anon`` and read ``file`` bytes, at ``rate`` bytes/s (None: the host's)."""

    anon: int = 0
    file: int = 0
    rate: int | None = None


@dataclass(frozen=True)
class Ramp:
    """Allocate ``anon`` and ``file`` evenly over ``over_s`` seconds."""

    over_s: float
    anon: int = 0
    file: int = 0


@dataclass(frozen=True)
class Free:
    """Free anonymous memory and drop page cache (None: all of it)."""

    anon: int | None = 0
    file: int | None = 0


@dataclass(frozen=True)
class Hold:
    """Keep everything for ``seconds``; ``active=False`` is an idle period."""

    seconds: float
    active: bool = True


@dataclass(frozen=True)
class Walk:
    """A seeded mean-reverting random walk of the anonymous target."""

    anon_mean: int
    sd: int
    for_s: float
    seed: int | None = None  # None: derived from the container's name and the phase index
    every_s: float = 1.0
    rho: float = 0.8  # correlation between consecutive targets


@dataclass(frozen=True)
class Exit:
    """The process exits (not a kill): anon freed, cache stays charged."""


Phase = Alloc | Ramp | Free | Hold | Walk | Exit


@dataclass(frozen=True)
class WorkloadSpec:
    """One container's workload."""

    phases: tuple[Phase, ...]
    restart: bool = False
    restart_delay_s: float = 1.0
    restart_max_s: float | None = None  # None: every restart after restart_delay_s
    start_s: float = 0.0
    loop: bool = False


def phase_label(p: Phase) -> str:
    """A short word for plots and samples."""
    if isinstance(p, Hold):
        return "hold" if p.active else "idle"
    return type(p).__name__.lower()


# ---------------------------------------------------------------------------------------
# Parsing


def parse_workload(value: object, path: str = "workload", doc: Doc | None = None) -> WorkloadSpec:
    """A WorkloadSpec from the YAML form above; ConfigError names the bad field."""
    d = doc or empty_doc()
    if isinstance(value, list):
        return WorkloadSpec(phases=_phases(d, value, path))
    m = as_mapping(d, value, path)
    keys = ("phases", "restart", "restart_delay_s", "restart_max_s", "start_s", "loop")
    check_keys(d, m, path, keys, ("phases",))
    phases = _phases(d, as_list(d, m["phases"], f"{path}.phases"), f"{path}.phases")
    spec = WorkloadSpec(
        phases=phases,
        restart=as_bool(d, m.get("restart", False), f"{path}.restart"),
        restart_delay_s=as_seconds(d, m.get("restart_delay_s", 1.0), f"{path}.restart_delay_s"),
        restart_max_s=(
            as_seconds(d, m["restart_max_s"], f"{path}.restart_max_s")
            if "restart_max_s" in m
            else None
        ),
        start_s=as_seconds(d, m.get("start_s", 0.0), f"{path}.start_s"),
        loop=as_bool(d, m.get("loop", False), f"{path}.loop"),
    )
    if spec.restart_max_s is not None and spec.restart_max_s < spec.restart_delay_s:
        raise d.fail(f"{path}.restart_max_s", "must be at least restart_delay_s")
    if spec.loop and all(isinstance(p, (Alloc, Free, Exit)) and not _takes_time(p) for p in phases):
        raise d.fail(f"{path}.loop", "a looping workload needs a phase that takes time")
    return spec


def _takes_time(p: Phase) -> bool:
    return isinstance(p, (Hold, Walk, Ramp)) and (not isinstance(p, Hold) or p.seconds > 0)


_PHASES = ("anon", "file", "alloc", "ramp", "free", "hold_s", "idle_s", "walk", "exit")


def _phases(d: Doc, items: list[object], path: str) -> tuple[Phase, ...]:
    out: list[Phase] = []
    for i, item in enumerate(items):
        p = f"{path}[{i}]"
        m = as_mapping(d, item, p)
        if len(m) != 1:
            raise d.fail(p, f"a phase is one of {', '.join(_PHASES)} (one key per phase)")
        ((key, val),) = m.items()
        sub = f"{p}.{key}"
        if key == "anon":
            out.append(Alloc(anon=as_size(d, val, sub)))
        elif key == "file":
            out.append(Alloc(file=as_size(d, val, sub)))
        elif key == "alloc":
            a = as_mapping(d, val, sub)
            check_keys(d, a, sub, ("anon", "file", "rate"))
            rate = as_rate(d, a["rate"], f"{sub}.rate") if "rate" in a else None
            if rate == 0:
                raise d.fail(f"{sub}.rate", "a rate must be above zero")
            out.append(
                Alloc(
                    anon=as_size(d, a.get("anon", 0), f"{sub}.anon"),
                    file=as_size(d, a.get("file", 0), f"{sub}.file"),
                    rate=rate,
                )
            )
        elif key == "ramp":
            a = as_mapping(d, val, sub)
            check_keys(d, a, sub, ("anon", "file", "over_s"), ("over_s",))
            out.append(
                Ramp(
                    over_s=as_seconds(d, a["over_s"], f"{sub}.over_s"),
                    anon=as_size(d, a.get("anon", 0), f"{sub}.anon"),
                    file=as_size(d, a.get("file", 0), f"{sub}.file"),
                )
            )
        elif key == "free":
            if val == "all":
                out.append(Free(anon=None, file=None))
                continue
            a = as_mapping(d, val, sub)
            check_keys(d, a, sub, ("anon", "file"))
            out.append(
                Free(
                    anon=None
                    if a.get("anon") == "all"
                    else as_size(d, a.get("anon", 0), f"{sub}.anon"),
                    file=None
                    if a.get("file") == "all"
                    else as_size(d, a.get("file", 0), f"{sub}.file"),
                )
            )
        elif key in ("hold_s", "idle_s"):
            out.append(Hold(seconds=as_seconds(d, val, sub), active=key == "hold_s"))
        elif key == "walk":
            a = as_mapping(d, val, sub)
            check_keys(
                d,
                a,
                sub,
                ("anon_mean", "sd", "seed", "for_s", "every_s", "rho"),
                ("anon_mean", "sd", "for_s"),
            )
            every = as_seconds(d, a.get("every_s", 1.0), f"{sub}.every_s")
            if every <= 0:
                raise d.fail(f"{sub}.every_s", "must be above zero")
            rho = as_number(d, a.get("rho", 0.8), f"{sub}.rho")
            if not 0.0 <= rho < 1.0:
                raise d.fail(f"{sub}.rho", f"found {rho}; expected 0 <= rho < 1")
            out.append(
                Walk(
                    anon_mean=as_size(d, a["anon_mean"], f"{sub}.anon_mean"),
                    sd=as_size(d, a["sd"], f"{sub}.sd"),
                    for_s=as_seconds(d, a["for_s"], f"{sub}.for_s"),
                    seed=as_int(d, a["seed"], f"{sub}.seed") if "seed" in a else None,
                    every_s=every,
                    rho=rho,
                )
            )
        elif key == "exit":
            if val is not True:
                raise d.fail(sub, "write {exit: true}")
            out.append(Exit())
        else:
            raise d.fail(sub, f"unknown phase; expected one of {', '.join(_PHASES)}")
    return tuple(out)


# ---------------------------------------------------------------------------------------
# Running: the host calls these once per tick of its virtual clock.


@dataclass
class Frees:
    """What a phase frees this tick (None: all)."""

    anon: int | None = 0
    file: int | None = 0


class WorkloadRun:
    """One life of a workload's process, driven by the host in ticks of ``tick_s``.

    ``pending_anon``/``pending_file`` are bytes the process still means to allocate; the
    host allocates what it can each tick and calls ``allocated``. ``rate`` is the current
    phase's rate (None: the host's).
    """

    def __init__(self, spec: WorkloadSpec, container: str, tick_s: float, start_tick: int) -> None:
        self.spec = spec
        self.container = container
        self.tick_s = tick_s
        self.index = 0
        self.phase_start = start_tick
        self.entered = False
        self.pending_anon = 0
        self.pending_file = 0
        self.rate: int | None = None
        self.exited = False
        self.done = not spec.phases
        # ramp bookkeeping: how much of the current ramp has been issued so far
        self._issued_anon = 0
        self._issued_file = 0
        self._walk_rng: random.Random | None = None
        self._walk_x = 0.0
        self._walk_next = 0
        self.start_tick = start_tick

    def _ticks(self, seconds: float) -> int:
        return max(0, round(seconds / self.tick_s))

    @property
    def phase(self) -> Phase | None:
        return None if self.done or self.exited else self.spec.phases[self.index]

    @property
    def label(self) -> str:
        p = self.phase
        if self.exited:
            return "exited"
        return "done" if p is None else phase_label(p)

    @property
    def active(self) -> bool:
        p = self.phase
        return p is not None and not (isinstance(p, Hold) and not p.active)

    def busy(self) -> bool:
        """Whether the process has allocation work this tick (else it only waits)."""
        p = self.phase
        return self.pending_anon > 0 or self.pending_file > 0 or isinstance(p, Ramp)

    def next_wake(self, tick: int) -> int | None:
        """The next tick at which ``advance`` has work when nothing is pending."""
        p = self.phase
        if p is None:
            return None
        if not self.entered:
            return max(tick, self.phase_start)
        if isinstance(p, Hold):
            return self.phase_start + self._ticks(p.seconds)
        if isinstance(p, Walk):
            return min(self._walk_next, self.phase_start + self._ticks(p.for_s))
        return tick

    def advance(self, tick: int, held_anon: int) -> Frees:
        """Move through phases that are due at ``tick``; return what to free now."""
        frees = Frees()
        for _ in range(len(self.spec.phases) + 1):  # at most one full pass per tick
            p = self.phase
            if p is None or tick < self.phase_start:
                return frees
            if not self.entered:
                self.entered = True
                self._enter(p, tick, held_anon, frees)
            if not self._progress(p, tick, held_anon, frees):
                return frees
            self._next(tick)
        return frees

    def _enter(self, p: Phase, tick: int, held_anon: int, frees: Frees) -> None:
        self.rate = None
        if isinstance(p, Alloc):
            self.pending_anon += p.anon
            self.pending_file += p.file
            self.rate = p.rate
        elif isinstance(p, Ramp):
            self._issued_anon = self._issued_file = 0
        elif isinstance(p, Free):
            frees.anon = _add(frees.anon, p.anon)
            frees.file = _add(frees.file, p.file)
            self.pending_anon = 0 if p.anon is None else max(0, self.pending_anon - p.anon)
            self.pending_file = 0 if p.file is None else max(0, self.pending_file - p.file)
        elif isinstance(p, Walk):
            seed = p.seed
            if seed is None:
                seed = zlib.crc32(f"{self.container}:{self.index}".encode())
            self._walk_rng = random.Random(seed)
            self._walk_x = float(held_anon + self.pending_anon)
            self._walk_next = tick
        elif isinstance(p, Exit):
            self.exited = True

    def _progress(self, p: Phase, tick: int, held_anon: int, frees: Frees) -> bool:
        """Do the phase's work for ``tick``; True when the phase is over."""
        elapsed = tick - self.phase_start
        if isinstance(p, Alloc):
            return self.pending_anon == 0 and self.pending_file == 0
        if isinstance(p, Ramp):
            over = self._ticks(p.over_s)
            frac = 1.0 if over == 0 else min(1.0, (elapsed + 1) / over)
            want_anon, want_file = int(p.anon * frac), int(p.file * frac)
            self.pending_anon += want_anon - self._issued_anon
            self.pending_file += want_file - self._issued_file
            self._issued_anon, self._issued_file = want_anon, want_file
            return frac >= 1.0 and self.pending_anon == 0 and self.pending_file == 0
        if isinstance(p, Hold):
            return elapsed >= self._ticks(p.seconds)
        if isinstance(p, Walk):
            if elapsed >= self._ticks(p.for_s):
                return True
            if tick >= self._walk_next:
                assert self._walk_rng is not None
                noise = self._walk_rng.gauss(0.0, 1.0)
                x = p.anon_mean + p.rho * (self._walk_x - p.anon_mean)
                x += p.sd * math.sqrt(1.0 - p.rho * p.rho) * noise
                self._walk_x = max(0.0, x)
                target = int(self._walk_x)
                have = held_anon + self.pending_anon
                if target > have:
                    self.pending_anon += target - have
                elif target < have:
                    drop = have - target
                    cut = min(drop, self.pending_anon)
                    self.pending_anon -= cut
                    frees.anon = _add(frees.anon, drop - cut)
                self._walk_next = tick + max(1, self._ticks(p.every_s))
            return False
        return True  # Free and Exit take no time

    def _next(self, tick: int) -> None:
        self.index += 1
        self.entered = False
        self.phase_start = tick
        if self.index >= len(self.spec.phases):
            if self.spec.loop and not self.exited:
                self.index = 0
            else:
                self.done = True

    def allocated(self, anon: int = 0, file: int = 0) -> None:
        """The host placed this much of the pending allocation."""
        self.pending_anon -= anon
        self.pending_file -= file


def _add(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None else a + b
