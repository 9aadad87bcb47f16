"""Prometheus metrics from a real engine run on the simulator, and the unix-socket server."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

from tests.support.daemon import wait_for
from zoned.backends.sim import load_scenario
from zoned.cli.commands.run import check_address
from zoned.engine import Engine
from zoned.policy.placement import place
from zoned.service.metrics import Metrics, serve

DEMO = Path(__file__).parent.parent / "config" / "scenarios" / "demo.yaml"


def run_demo(until: float) -> tuple[Engine, Metrics]:
    sc = load_scenario(DEMO)
    b = sc.backend()
    e = Engine(b, sc.decls, place(b.topology(), sc.decls).zonemap)
    m = Metrics()
    e.admit()

    def observe(engine: Engine, events: object) -> None:
        for ev in events:  # type: ignore[attr-defined]
            if ev.kind.value == "tripwire" and ev.container:
                m.tripwire(ev.container, ev.at)
        m.update(engine)

    e.run(until, observer=observe)
    return e, m


def test_metrics_follow_the_engine() -> None:
    e, m = run_demo(90.0)
    g = m.registry.get_sample_value
    for a in e.zonemap:
        assert (
            g(
                "zoned_node_owner",
                {"node": str(a.node), "owner": str(a.owner), "kind": a.owner.kind.value},
            )
            == 1.0
        )
    # exactly one owner series per node, old owners removed
    owners = [s for f in m.registry.collect() if f.name == "zoned_node_owner" for s in f.samples]
    assert len(owners) == len(e.zonemap.assignments)
    snap = e.last_snapshot
    assert snap is not None
    web = snap.containers["web"]
    assert g("zoned_container_memory_bytes", {"container": "web"}) == web.current
    assert g("zoned_container_nodes", {"container": "web"}) == len(web.nodes)
    lends = g("zoned_decisions_total", {"kind": "lend", "outcome": "started", "reason": "tripwire"})
    assert lends is not None and lends >= 2
    count = g("zoned_tripwire_to_action_seconds_count")
    assert count is not None and count >= 2
    assert g("zoned_tripwire_to_action_seconds_sum") is not None


def test_metrics_served_on_a_unix_socket(tmp_path: Path) -> None:
    _, m = run_demo(30.0)
    path = tmp_path / "m.sock"
    srv = serve(m, f"unix:{path}")
    assert srv is not None
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)
            s.connect(str(path))
            s.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        text = data.decode()
        assert text.startswith("HTTP/1.0 200")
        assert "zoned_node_owner{" in text and "zoned_decisions_total{" in text
        assert path.stat().st_mode & 0o777 == 0o600
    finally:
        srv.close()


def test_metrics_address_checked() -> None:
    assert check_address("127.0.0.1:9799") is None
    assert check_address("unix:/run/zoned/metrics.sock") is None
    assert check_address("unix:relative") is not None
    assert check_address("9799") is not None
    assert check_address("host:99999") is not None


def scrape(path: Path) -> str:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(str(path))
        s.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data.decode()


def test_daemon_serves_metrics_and_counts_an_override(tmp_path: Path) -> None:
    from tests.support.daemon import running, wait_for

    path = tmp_path / "metrics.sock"
    with running(tmp_path, metrics=f"unix:{path}") as r:
        text = scrape(path)
        assert 'zoned_node_owner{kind="reserved",node="0",owner="reserved"} 1.0' in text
        assert 'zoned_container_nodes{container="web"} 1.0' in text
        assert r.call(cmd="lend", node=3, container="web")["ok"]
        wait_for(lambda: r.owners()[3] == "web" and not r.status()["pending"], "lent")
        text = scrape(path)
        assert 'zoned_node_owner{kind="container",node="3",owner="web"} 1.0' in text
        assert 'zoned_node_owner{kind="free",node="3",owner="free"}' not in text
        assert 'zoned_decisions_total{kind="lend",outcome="started",reason="operator"} 1.0' in text
    assert not path.exists()  # the daemon removed its metrics socket on stop


def test_daemon_serves_metrics_over_tcp_and_frees_the_port_on_stop(tmp_path: Path) -> None:
    import socket
    import urllib.request

    from tests.support.daemon import running

    with socket.socket() as probe:  # a port free right now
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with running(tmp_path, metrics=f"127.0.0.1:{port}"):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            text = resp.read().decode()
        assert 'zoned_container_nodes{container="web"} 1.0' in text
    with socket.socket() as again:  # shut down with the daemon: the port binds again
        # SO_REUSEADDR: the scrape's closed connection may sit in TIME-WAIT; Linux still
        # refuses the bind while anything listens there.
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))


def _scrape(path: Path) -> bytes:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(str(path))
        s.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data


def test_metrics_connections_are_bounded_and_time_out(tmp_path: Path) -> None:
    """Idle connections past the cap are refused at once; those under it are closed at
    their timeout (on a clock the test moves); a fresh scrape is answered afterwards, and
    no thread was started for any of them."""
    path = tmp_path / "m.sock"
    now = [1000.0]
    threads = threading.active_count()
    srv = serve(Metrics(), f"unix:{path}", max_conns=4, timeout_s=0.2, clock=lambda: now[0])
    try:
        assert threading.active_count() <= threads + 1  # the server's one thread
        idle = []
        for _ in range(10):
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(10)
            s.connect(str(path))
            idle.append(s)
        wait_for(lambda: srv.open_connections == 4 and srv.refused == 6, "4 held, 6 refused")
        assert threading.active_count() <= threads + 1
        now[0] += 1  # past the timeout: the server sees it within 0.2 s of real time
        answers = [s.recv(65536) for s in idle]
        assert sum(a.startswith(b"HTTP/1.0 503") for a in answers) == 6
        assert answers.count(b"") == 4
        assert _scrape(path).startswith(b"HTTP/1.0 200")
        assert srv.open_connections == 0
        for s in idle:
            s.close()
    finally:
        srv.close()
    assert threading.active_count() <= threads


def test_metrics_server_starts_no_thread_per_connection() -> None:
    """The old server (prometheus_client's) started one per connection: ~1,100 idle
    connections took the daemon's fds. Held connections here cost no thread."""
    threads = threading.active_count()
    srv = serve(Metrics(), "127.0.0.1:0")
    try:
        assert isinstance(srv.address, tuple)
        held = [socket.create_connection(srv.address[:2], timeout=10) for _ in range(30)]
        wait_for(lambda: srv.open_connections + srv.refused == 30, "all 30 accepted")
        assert threading.active_count() <= threads + 1
        for s in held:
            s.close()
    finally:
        srv.close()


def test_metrics_answers_bad_requests_and_survives(tmp_path: Path) -> None:
    path = tmp_path / "m.sock"
    srv = serve(Metrics(), f"unix:{path}")
    try:
        for line, status in (
            (b"POST / HTTP/1.0\r\n\r\n", b"HTTP/1.0 405"),
            (b"GET /" + b"a" * 10000, b"HTTP/1.0 431"),
        ):
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(10)
                s.connect(str(path))
                s.sendall(line)
                assert s.recv(65536).startswith(status)
        assert _scrape(path).startswith(b"HTTP/1.0 200")
    finally:
        srv.close()
