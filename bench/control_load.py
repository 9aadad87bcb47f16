"""A connection flood against the daemon (issue 14): idle connections + concurrent status.

    sudo .venv/bin/python bench/control_load.py [--idle 1100] [--calls 100] [--nofile 1024]

Starts ``zoned run`` on the paced simulator (``--backend sim:``) with ``--group 4242``
and ``--metrics 127.0.0.1:0``, its fd limit set to ``--nofile`` (systemd's default soft
limit is 1024). A child process running as uid 65534 in group 4242 (a local user who
may reach the control socket, as with ``--group``) opens ``--idle`` connections to the
control socket and as many to the metrics port, and holds them. Then ``--calls`` threads
of this process (root) ask ``status`` at once, each through the project's client. The
flood is held ``--hold`` seconds more, then released, and one last ``status`` is asked.

Prints: the status calls answered / failed (and the slowest), how the idle connections
fared (held by the daemon, refused with a one-line answer, failed to connect), the
daemon's CPU seconds and log lines during the flood, its threads at the peak, and
whether it still answers afterwards. Root only (uid switch); numbers only, no asserts.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench import runinfo  # noqa: E402
from tests.support.daemon import SCENARIO  # noqa: E402  (the tests' idle 4-node host)

GROUP = 4242
NOBODY = 65534


def client() -> Callable[..., dict[str, Any]]:
    """The project's ``request`` (before issue 14's limits it lived in control.py)."""
    try:
        from zoned.service.client import request
    except ImportError:
        from zoned.service.control import request  # type: ignore[attr-defined,no-redef]
    return request


def header() -> str:
    return runinfo.header()


def cpu_s(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    rest = stat[stat.rindex(")") + 2 :].split()
    return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")


def threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return 0


def lines(path: Path) -> int:
    return path.read_bytes().count(b"\n")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_daemon(tmp: Path, nofile: int, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    (tmp / "sim.yaml").write_text(SCENARIO)
    run = tmp / "run"
    run.mkdir(mode=0o755)
    argv = [
        sys.executable,
        "-m",
        "zoned",
        "run",
        "--backend",
        f"sim:{tmp / 'sim.yaml'}",
        "--socket",
        str(run / "control.sock"),
        "--state-dir",
        str(tmp / "state"),
        "--group",
        str(GROUP),
        "--metrics",
        f"127.0.0.1:{free_port()}",
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, stderr=out, stdout=out)
    # systemd's default soft limit; set before the interpreter has even started up
    resource.prlimit(proc.pid, resource.RLIMIT_NOFILE, (nofile, nofile))
    end = time.monotonic() + 60
    while time.monotonic() < end:
        if proc.poll() is not None:
            sys.exit(f"zoned exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
        for line in log.read_text().splitlines():
            if "metrics on http://" in line and (run / "control.sock").exists():
                port = int(line.rsplit(":", 1)[1].split("/")[0])
                with contextlib.suppress(Exception):
                    client()(run / "control.sock", {"cmd": "status"}, timeout_s=2)
                    return proc, port
        time.sleep(0.1)
    proc.kill()
    sys.exit(f"zoned did not become ready:\n{log.read_text()[-2000:]}")


def _fared(socks: list[socket.socket]) -> tuple[int, int]:
    """(still open and silent, answered or closed by the daemon)."""
    alive = gone = 0
    for s in socks:
        s.setblocking(False)
        try:
            s.recv(4096)  # a busy line, a 503, or EOF: the daemon turned it away
            gone += 1
        except BlockingIOError:
            alive += 1
        except OSError:
            gone += 1
    return alive, gone


def flood_as_nobody(sock: Path, port: int, n: int) -> tuple[int, int, list[int]]:
    """Fork a uid-65534 child that opens ``n`` control and ``n`` metrics connections and
    holds them until told (a byte on the returned fd). Returns its pid, that fd, and
    [control held, control turned away, metrics held, metrics turned away, failed]."""
    report_r, report_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([GROUP])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            control: list[socket.socket] = []
            metrics: list[socket.socket] = []
            failed = 0
            give_up = time.monotonic() + 20  # a daemon that stops accepting: count, move on
            for i in range(2 * n):
                if time.monotonic() > give_up:
                    failed += 1
                    continue
                s = socket.socket(socket.AF_UNIX if i < n else socket.AF_INET)
                s.settimeout(0.5)
                while True:
                    try:
                        s.connect(str(sock) if i < n else ("127.0.0.1", port))
                        (control if i < n else metrics).append(s)
                    except BlockingIOError:  # a full unix backlog: a flood insists
                        if time.monotonic() < give_up:
                            time.sleep(0.001)
                            continue
                        failed += 1
                        s.close()
                    except OSError:
                        failed += 1
                        s.close()
                    break
            time.sleep(1.0)  # let the daemon accept, answer or close them
            counts = [*_fared(control), *_fared(metrics), failed]
            os.write(report_w, " ".join(map(str, counts)).encode())
            os.read(go_r, 1)
        finally:
            os._exit(0)
    os.close(report_w)
    os.close(go_r)
    counts = [int(x) for x in os.read(report_r, 200).split()]
    os.close(report_r)
    return pid, go_w, counts


def flood(args: argparse.Namespace) -> dict[str, Any]:
    """Start the daemon, flood it, ask status; what happened, for ``report``."""
    request = client()
    with tempfile.TemporaryDirectory(prefix="zoned-load-") as t:
        tmp = Path(t)
        tmp.chmod(0o711)  # uid 65534 reaches the socket (0660, group 4242), nothing else
        log = tmp / "zoned.log"
        proc, port = start_daemon(tmp, args.nofile, log)
        sock = tmp / "run" / "control.sock"
        try:
            cpu0, lines0 = cpu_s(proc.pid), lines(log)
            child, go, fared = flood_as_nobody(sock, port, args.idle)
            peak = threads(proc.pid)
            results: list[float | str] = []
            barrier = threading.Barrier(args.calls)

            def one() -> None:
                barrier.wait()
                t0 = time.monotonic()
                try:
                    ok = request(sock, {"cmd": "status"})["ok"]
                    results.append(time.monotonic() - t0 if ok else "not ok")
                except Exception as exc:  # noqa: BLE001 - counted, not raised
                    results.append(" ".join(str(exc).split())[:100])

            calls = [threading.Thread(target=one) for _ in range(args.calls)]
            for c in calls:
                c.start()
            for c in calls:
                c.join(60)
            peak = max(peak, threads(proc.pid))
            time.sleep(args.hold)
            peak = max(peak, threads(proc.pid))
            cpu, logged = cpu_s(proc.pid) - cpu0, lines(log) - lines0
            os.write(go, b"x")
            os.close(go)
            os.waitpid(child, 0)
            try:
                request(sock, {"cmd": "status"}, timeout_s=5)
                after = "answers"
            except Exception as exc:  # noqa: BLE001 - reported
                after = f"does not answer: {exc}"
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
    return {
        "results": results,
        "fared": fared,
        "cpu": cpu,
        "logged": logged,
        "peak": peak,
        "after": after,
    }


def report(args: argparse.Namespace, r: dict[str, Any]) -> None:
    answered = [x for x in r["results"] if isinstance(x, float)]
    errors = [x for x in r["results"] if isinstance(x, str)]
    fared = r["fared"]
    print(f"idle flood: {args.idle} control + {args.idle} metrics connections from uid 65534")
    print(f"daemon fd limit {args.nofile}; flood held {args.hold:g} s after the status calls")
    print()
    print("| what | value |")
    print("|---|---|")
    print(f"| status calls answered | {len(answered)} of {args.calls} |")
    if answered:
        print(f"| slowest answer | {max(answered):.2f} s |")
    print(f"| status calls failed | {len(errors)} |")
    print(f"| idle control connections held open / turned away | {fared[0]} / {fared[1]} |")
    print(f"| idle metrics connections held open / turned away | {fared[2]} / {fared[3]} |")
    print(f"| idle connections that could not connect | {fared[4]} |")
    print(f"| daemon CPU during the flood | {r['cpu']:.2f} s |")
    print(f"| daemon log lines during the flood | {r['logged']} |")
    print(f"| daemon threads at the peak | {r['peak']} |")
    print(f"| afterwards | {r['after']} |")
    for e in sorted(set(errors))[:3]:
        print(f"  e.g. {e}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--idle", type=int, default=1100, help="idle connections to each socket")
    ap.add_argument("--calls", type=int, default=100, help="concurrent status calls")
    ap.add_argument("--nofile", type=int, default=1024, help="the daemon's RLIMIT_NOFILE")
    ap.add_argument("--hold", type=float, default=5.0, help="seconds to hold the flood")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("control_load.py: run as root (the flood runs as uid 65534)")
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # this side holds ~2 x idle
    print(header())
    report(args, flood(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
