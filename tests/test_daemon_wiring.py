"""What the daemon runs beside the engine: rules on exec, node hot-plug, shared re-warm.

Unit level: the daemon on the paced simulator, with a fake mover, a uevent source on a
socketpair and a fake re-warm function injected. One test as root drives the daemon's
rule wiring (``RuleWiring``) with a real RuleMover, the real process connector and a real
v1 backend's FdLoop against a test-created cgroup (``zoned run`` itself cannot manage
containers on this one-node machine: it only reports there).
"""

from __future__ import annotations

import itertools
import logging
import shutil
import socket
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from tests.support.daemon import daemon, reload_via_socket, shared_config, wait_for
from tests.support.sandbox import Box, box_fixture
from zoned.backends.base import Backend
from zoned.config.load import load
from zoned.errors import Unsupported
from zoned.kernel.uevents import UeventSource
from zoned.model.sizes import MIB
from zoned.model.zonemap import NodeInfo, Topology, ZoneMap
from zoned.policy.rules import RuleSet
from zoned.service.sidecars import Mover, RuleWiring, topology_change

__all__ = ["box_fixture"]

PLAIN = """\
host: {reserved_nodes: [0]}
containers:
  web:   {min: {nodes: 1}, max: {nodes: 2}, priority: 10}
  batch: {min: {nodes: 1}, max: {nodes: 2}}
"""

MATCHED = """\
host: {reserved_nodes: [0]}
containers:
  web:   {min: {nodes: 1}, max: {nodes: 2}, priority: 10, match: [{exe: /usr/bin/nginx}]}
  batch: {min: {nodes: 1}, max: {nodes: 2}}
"""


# -- rules on exec -----------------------------------------------------------------------


class FakeMover:
    """A RuleMover stand-in: its fd is one end of a socketpair; each byte sent to the
    other end is one "moved" line on the next on_readable()."""

    def __init__(self, rules: RuleSet, *, fail: bool = False) -> None:
        self.rules = rules
        self.fail = fail
        self.ours, self.theirs = socket.socketpair()
        self.ours.setblocking(False)
        self.started = self.closed = False
        self.rule_sets: list[RuleSet] = []

    def start(self) -> list[str]:
        if self.fail:
            raise Unsupported("the process connector is not available (EPERM)")
        self.started = True
        return ["watching process events (receive buffer 1 bytes)"]

    def fileno(self) -> int:
        return self.ours.fileno()

    def on_readable(self) -> list[str]:
        n = len(self.ours.recv(4096))
        return [
            f"moved pid {4200 + i} (/usr/bin/nginx) to web: exe /usr/bin/nginx" for i in range(n)
        ]

    def set_rules(self, rules: RuleSet) -> None:
        self.rule_sets.append(rules)

    def close(self) -> None:
        self.closed = True
        self.ours.close()
        self.theirs.close()


def factory(made: list[FakeMover], *, fail: bool = False) -> Callable[..., Mover]:
    def make(backend: Backend, rules: RuleSet, proc_root: Path) -> Mover:
        m = FakeMover(rules, fail=fail)
        made.append(m)
        return m

    return make


def test_match_declared_starts_a_mover_in_the_loop_and_logs_moves_with_fields(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    made: list[FakeMover] = []
    caplog.set_level(logging.INFO)
    with daemon(tmp_path, MATCHED, mover_factory=factory(made)) as d:
        assert len(made) == 1 and made[0].started
        assert set(made[0].rules.containers()) == {"web"}
        assert d._fdloop is not None and made[0].fileno() in d._fdloop.watched()
        made[0].theirs.send(b"x")
        rec = wait_for(
            lambda: next((r for r in caplog.records if "moved pid 4200" in r.getMessage()), None),
            "the move logged",
        )
        assert rec.levelno == logging.INFO
        assert (rec.CONTAINER, rec.PID, rec.ACTION) == ("web", "4200", "rule-move")
    assert made[0].closed  # on stop


def test_reload_updates_then_turns_off_the_rules(tmp_path: Path) -> None:
    made: list[FakeMover] = []
    with daemon(tmp_path, MATCHED, mover_factory=factory(made)) as d:
        fd = made[0].fileno()
        changed = MATCHED.replace("/usr/bin/nginx", "/usr/sbin/nginx")
        (tmp_path / "zoned.yaml").write_text(changed)
        resp = wait_for(lambda: reload_via_socket(d), "reload")
        assert "web: match changed" in resp["changes"]
        assert len(made[0].rule_sets) == 1 and len(made) == 1
        (tmp_path / "zoned.yaml").write_text(PLAIN)
        wait_for(lambda: reload_via_socket(d), "reload")
        assert made[0].closed and d._fdloop is not None and fd not in d._fdloop.watched()


def test_no_match_no_mover(tmp_path: Path) -> None:
    made: list[FakeMover] = []
    with daemon(tmp_path, PLAIN, mover_factory=factory(made)) as d:
        assert made == [] and d.rules is not None and d.rules.mover is None


def test_a_connector_that_cannot_open_turns_rules_off_with_a_warning(tmp_path: Path) -> None:
    made: list[FakeMover] = []
    with daemon(tmp_path, MATCHED, mover_factory=factory(made, fail=True)) as d:
        assert d.rules is not None and d.rules.mover is None and made[0].closed
        assert any("process rules are off" in w and "CAP_NET_ADMIN" in w for w in d.warnings)
        assert any("match: rules of web" in w for w in d.warnings)


# -- node hot-plug -----------------------------------------------------------------------


def test_a_node_uevent_rereads_the_topology_and_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    kernel, ours = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with daemon(tmp_path, PLAIN, node_events=lambda: UeventSource(sock=ours)) as d:
        assert d.node_events is not None and d._fdloop is not None
        assert ours.fileno() in d._fdloop.watched()
        kernel.send(
            b"add@/devices/system/node/node4\0ACTION=add\0DEVPATH=/devices/system/node/node4\0"
            b"SUBSYSTEM=node\0SEQNUM=1\0"
        )
        wait_for(lambda: d.topology_reads == 1, "topology re-read")
        line = wait_for(
            lambda: next(
                (r.getMessage() for r in caplog.records if "node change" in r.getMessage()), None
            ),
            "logged",
        )
        assert line == "node change (node4 add): topology re-read: 4 memory node(s) (0-3)"
    kernel.close()


def test_topology_change_says_what_the_zone_map_loses_and_gains() -> None:
    def topo(*sizes: tuple[int, int]) -> Topology:
        return Topology(tuple(NodeInfo(i, s, s, 0) for i, s in sizes))

    from zoned.model.zonemap import FREE, Assignment, Owner

    zmap = ZoneMap({0: Assignment(0, FREE, ""), 1: Assignment(1, Owner.of("web"), "")})
    info, warns = topology_change(
        topo((0, 1 << 30), (1, 1 << 30)), topo((0, 1 << 30), (2, 1 << 30)), zmap
    )
    assert info == ["topology re-read: 2 memory node(s) (0,2); offline: 1; new: 2"]
    assert warns[0].startswith("node(s) went offline: 1 (held by web)")
    assert "restart" in warns[0] and "new memory node(s) 2" in warns[1]


# -- shared zone re-warm -----------------------------------------------------------------


def test_rewarm_runs_on_the_worker_pool_at_the_interval_with_the_budget(tmp_path: Path) -> None:
    calls: list[tuple[float, frozenset[int], tuple[str, ...], float, str]] = []

    def fake(
        backend: Backend, nodes: frozenset[int], paths: Sequence[str], budget: float
    ) -> object:
        calls.append((backend.now(), nodes, tuple(paths), budget, threading.current_thread().name))
        return "fake report"

    # 20 simulated seconds between re-warms at 20x: 1 s of real time. The simulated clock
    # follows the real one, so a busy machine stretches it: at 100x a 0.1 s stall was 10
    # simulated seconds and failed the bounds below; at 20x it takes a 1 s stall.
    with daemon(tmp_path, shared_config(tmp_path, 20, 8), speed=20, rewarm_fn=fake):
        wait_for(lambda: len(calls) >= 4, "four re-warms", deadline_s=15)
    first = calls[0]
    assert len(first[1]) == 1  # the one shared node
    assert first[2] == (str(tmp_path / "lib.so"),)
    assert first[3] == 8 * MIB
    assert all(c[4].startswith("zoned-sim") for c in calls)  # the FdLoop's workers
    assert first[0] < 20 + 20  # once right after admission, not an interval later
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(calls)]
    assert all(20 <= g < 20 + 20 for g in gaps), gaps  # never early, no interval skipped


def test_no_shared_paths_no_rewarm(tmp_path: Path) -> None:
    calls: list[float] = []
    with daemon(tmp_path, PLAIN, speed=100, rewarm_fn=lambda *a: calls.append(1)) as d:
        time.sleep(0.3)
        assert d.rewarm.next_at is None and d.rewarm.runs == 0
    assert calls == []


# -- real: the daemon's rule wiring with the real connector (root, v1) -------------------


SLEEP = shutil.which("sleep") or "/bin/sleep"


@pytest.mark.root
def test_rule_wiring_moves_a_real_exec_through_the_backends_loop(box: Box) -> None:
    box.create(f'[{{exe: {Path(SLEEP).resolve()}, cmdline: "re:^{box.marker} "}}]')
    decls = load(box.config)
    wiring = RuleWiring(box.backend, Path("/proc"))
    loop = box.backend.loop
    wiring.apply(decls, loop)
    try:
        assert wiring.mover is not None, wiring.warnings
        assert wiring.mover.fileno() in loop.watched()
        p = box.spawn([box.marker, "30"], executable=SLEEP)
        end = time.monotonic() + 5
        while p.pid not in box.pids(box.path("web")):
            assert time.monotonic() < end, "sleep not moved into web through the loop"
            loop.poll_once(0.05)
    finally:
        wiring.close(loop)
    assert wiring.mover is None
