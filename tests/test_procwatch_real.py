"""Rules on exec against the real process connector and v1 hierarchies (root only).

The mover runs in the test's thread: each wait is a select() on its fd with a deadline,
then ``on_readable()``, then a look at the container's ``cgroup.procs``.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.procs import descendants
from tests.support.realhost import V1_MEMORY
from tests.support.sandbox import Box, box_fixture
from tests.support.waiting import run_until, wait_until
from zoned.config.load import load
from zoned.kernel.procwatch import ProcWatch
from zoned.policy.rules import RuleSet
from zoned.service.mover import RuleMover

pytestmark = pytest.mark.root
__all__ = ["box_fixture"]
SLEEP = shutil.which("sleep") or "/bin/sleep"
SH = shutil.which("sh") or "/bin/sh"
BASH = shutil.which("bash") or "/bin/bash"  # exec -a: argv[0] = the marker


@pytest.fixture
def mover(box: Box) -> Iterator[Callable[[str], RuleMover]]:
    made: list[RuleMover] = []

    def make(match: str) -> RuleMover:
        box.create(match)
        m = RuleMover(box.backend, RuleSet.from_declarations(load(box.config)), watch=ProcWatch())
        m.start()
        made.append(m)
        return m

    yield make
    for m in made:
        m.close()


def real_exe(path: str) -> str:
    return str(Path(path).resolve())


def test_a_rule_moves_a_freshly_execd_process(box: Box, mover: Callable[[str], RuleMover]) -> None:
    m = mover(f'[{{exe: {real_exe(SLEEP)}, cmdline: "re:^{box.marker} "}}]')
    p = box.spawn([box.marker, "30"], executable=SLEEP)
    took = run_until(m, lambda: p.pid in box.pids(box.path("web")), 5, "sleep moved into web")
    assert p.pid in box.pids(box.path("web"), V1_MEMORY)
    print(f"\nexec -> in container: {took * 1000:.1f} ms (poll included); stats {m.stats}")
    # Another sleep without the marker is left alone.
    q = box.spawn(["sleep", "30"])
    run_until(m, lambda: m.stats.execs >= 2, 5, "second exec seen")
    assert q.pid not in box.pids(box.path("web"))


def test_forked_children_follow(box: Box, mover: Callable[[str], RuleMover]) -> None:
    m = mover(f'[{{cmdline: "re:^{box.marker} -c"}}]')
    p = box.spawn([box.marker, "-c", "sleep 30 & sleep 30"], executable=SH)

    def all_inside() -> bool:
        family = {p.pid} | descendants(p.pid)
        return len(family) >= 2 and family <= box.pids(box.path("web"))

    run_until(m, all_inside, 5, "the shell and its sleeps in web")
    family = {p.pid} | descendants(p.pid)
    assert family <= box.pids(box.path("web"), V1_MEMORY)
    print(f"\nfamily {sorted(family)} in web; stats {m.stats}")


def test_running_processes_are_classified_at_start(box: Box) -> None:
    box.create(f'[{{cmdline: "re:^{box.marker} "}}]')
    p = box.spawn([box.marker, "30"], executable=SLEEP)
    # Wait until the exec happened (the marker shows in cmdline), then start the mover.
    cmdline = Path(f"/proc/{p.pid}/cmdline")
    wait_until(lambda: cmdline.read_bytes().startswith(box.marker.encode()), 5, "spawned")
    m = RuleMover(box.backend, RuleSet.from_declarations(load(box.config)), watch=ProcWatch())
    try:
        lines = m.start()
        assert any(f"moved pid {p.pid}" in line for line in lines)
        assert p.pid in box.pids(box.path("web"))
    finally:
        m.close()


def test_an_overrun_costs_latency_never_a_misplaced_process(box: Box) -> None:
    # A receive buffer far too small for the burst, and nobody reading while it runs: the
    # kernel drops events (ENOBUFS). The rescan that follows must place every process.
    box.create(f'[{{cmdline: "re:^{box.marker} "}}]')
    m = RuleMover(
        box.backend, RuleSet.from_declarations(load(box.config)), watch=ProcWatch(rcvbuf=1024)
    )
    try:
        m.start()
        # One shell forks 200 marked sleeps (each an exec event, plus fork and exit).
        script = f"for i in $(seq 200); do (exec -a {box.marker} {SLEEP} 30) & done; wait"
        p = box.spawn([BASH, "-c", script])
        wait_until(lambda: len(marked(box.marker)) == 200, 10, "200 sleeps running")
        sleeps = marked(box.marker)
        run_until(m, lambda: sleeps <= box.pids(box.path("web")), 10, "every sleep in web")
        assert m.stats.overruns > 0  # the burst did overrun the buffer
        assert sleeps <= box.pids(box.path("web"), V1_MEMORY)
        assert p.poll() is None  # the shell waits: none of the sleeps ended early
    finally:
        m.close()


def marked(marker: str) -> set[int]:
    """The pids whose argv[0] is ``marker``."""
    out: set[int] = set()
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if (d / "cmdline").read_bytes().split(b"\0", 1)[0] == marker.encode():
                    out.add(int(d.name))
            except OSError:
                continue
    return out
