"""A zoned daemon on the paced simulator, in a thread: no root, no cgroups.

``running(tmp_path, config=...)`` starts ``Daemon`` (start + run on one thread, as in
production) with a recording notifier, waits (with a deadline) until it is ready, and
stops it at the end. Waiting is always "poll a condition until a deadline".
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.waiting import wait_for as support_wait_for
from zoned.kernel.roots import PROC_ROOT, HostRoots
from zoned.service.controlclient import request
from zoned.service.daemon import Daemon, Options
from zoned.service.systemd import Notifier

# Four nodes of 256M: node 0 reserved; web and batch get one node each; one is free.
SCENARIO = """\
name: test
duration_s: 100000
topology:
  count: 4
  size: 256M
config:
  host: {reserved_nodes: [0]}
  containers:
    web:   {min: {nodes: 1}, max: {nodes: 2}, priority: 10}
    batch: {min: {nodes: 1}, max: {nodes: 2}, priority: 0}
workloads:
  web:
    - {idle_s: 100000}
  batch:
    - {idle_s: 100000}
"""

CONFIG = """\
host:
  reserved_nodes: [0]
policy:
  cooldown_s: 1
containers:
  web:   {min: {nodes: 1}, max: {nodes: 2}, priority: 10}
  batch: {min: {nodes: 1}, max: {nodes: 2}, priority: 0}
"""


def wait_for(cond: Callable[[], Any], what: str, deadline_s: float = 10.0) -> Any:
    """Poll ``cond`` (20 ms apart) until it returns something true, or fail after the deadline."""
    return support_wait_for(cond, what, deadline_s, poll_s=0.02)


@dataclass
class Running:
    daemon: Daemon
    socket: Path
    config: Path
    state_dir: Path
    sent: list[str] = field(default_factory=list)
    error: list[BaseException] = field(default_factory=list)

    def call(self, **req: Any) -> dict[str, Any]:
        return request(self.socket, req, timeout_s=10.0)

    def status(self) -> dict[str, Any]:
        resp = self.call(cmd="status", decisions=50)
        assert resp["ok"], resp
        doc: dict[str, Any] = resp["result"]
        return doc

    def owners(self) -> dict[int, str]:
        return {n["node"]: n["owner"] for n in self.status()["nodes"]}


@contextmanager
def running(
    tmp_path: Path,
    *,
    config: str | None = CONFIG,
    scenario: str = SCENARIO,
    speed: float = 5.0,
    state: str | None = None,
    fallback_poll_s: float = 0.5,
    metrics: str | None = None,
    release_on_stop: bool = False,
    proc_root: Path = PROC_ROOT,
    **hooks: Any,
) -> Iterator[Running]:
    """``hooks``: the daemon's injected parts (``mover_factory``, ``node_events``,
    ``rewarm_fn``, ``tmpfs_mount``); ``proc_root``: a fake /proc (its mountinfo)."""
    sc = tmp_path / "scenario.yaml"
    sc.write_text(scenario)
    cfg = tmp_path / "zoned.yaml"
    if config is not None:
        cfg.write_text(config)
    state_dir = tmp_path / "run"
    if state is not None:
        state_dir.mkdir()
        (state_dir / "state.json").write_text(state)
    sock = tmp_path / "control.sock"
    sent: list[str] = []

    def send(msg: str) -> bool:
        sent.append(msg)
        return True

    opts = Options(
        config=cfg if config is not None else None,
        backend=f"sim:{sc}",
        sim_speed=speed,
        socket=sock,
        state_dir=state_dir,
        fallback_poll_s=fallback_poll_s,
        metrics=metrics,
        release_on_stop=release_on_stop,
        roots=HostRoots(proc=proc_root),
    )
    d = Daemon(opts, notifier=Notifier(env={}, send=send), install_signals=False, **hooks)
    r = Running(d, sock, cfg, state_dir, sent)
    ready = threading.Event()

    def main() -> None:
        try:
            d.start()
            ready.set()
            d.run()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread, re-raised there
            r.error.append(exc)
            ready.set()

    t = threading.Thread(target=main, name="zoned-test-daemon", daemon=True)
    t.start()
    assert ready.wait(15.0), "daemon did not start"
    if r.error:
        raise r.error[0]
    try:
        yield r
    finally:
        d.stop()
        t.join(10.0)
        assert not t.is_alive(), "daemon did not stop"
    if r.error:
        raise r.error[0]


@contextmanager
def daemon(tmp: Path, config: str, speed: float = 5.0, **hooks: Any) -> Iterator[Daemon]:
    """``running`` yielding the ``Daemon`` itself; an error in its thread also fails the
    test when the daemon stops."""
    with running(tmp, config=config, speed=speed, **hooks) as r:
        yield r.daemon
    if r.error:
        raise r.error[0]


def reload_via_socket(d: Daemon) -> dict[str, object] | None:
    """``zoned reload`` through the control socket: the result, or None when refused."""
    resp = request(d.opts.socket, {"cmd": "reload"}, timeout_s=10.0)
    return resp["result"] if resp.get("ok") else None


def shared_config(tmp: Path, interval_s: float, mib_s: float) -> str:
    (tmp / "lib.so").write_bytes(b"x" * 4096)
    return (
        f"host: {{reserved_nodes: [0], shared: 1, shared_paths: [{tmp / 'lib.so'}]}}\n"
        f"policy: {{rewarm_interval_s: {interval_s}, rewarm_mib_s: {mib_s}}}\n"
        "containers:\n"
        "  web:   {min: {nodes: 1}, max: {nodes: 1}}\n"
        "  batch: {min: {nodes: 1}, max: {nodes: 1}}\n"
    )
