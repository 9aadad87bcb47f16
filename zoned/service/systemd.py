"""systemd glue: readiness, one-line status, the watchdog (sd_notify).

Everything is a no-op when systemd did not ask for it (no ``NOTIFY_SOCKET``), so the
daemon runs the same by hand. The watchdog interval is half of ``WATCHDOG_USEC`` (only
when ``WATCHDOG_PID`` is absent or ours), and ``WATCHDOG=1`` is sent *from the event loop*
so a hung loop is what systemd detects. ``systemd_conflicts`` says whether systemd would
fight zoned over an adopted cgroup.
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Callable, Mapping, Sequence

from zoned.model.process import norm_cgroup

log = logging.getLogger(__name__)

Sender = Callable[[str], bool]


def _sd_notify(state: str) -> bool:
    from systemd.daemon import notify

    return bool(notify(state))


def watchdog_interval(env: Mapping[str, str], pid: int) -> float | None:
    """Seconds between ``WATCHDOG=1`` pings (half the configured timeout), or None."""
    usec = env.get("WATCHDOG_USEC")
    if not usec:
        return None
    wpid = env.get("WATCHDOG_PID")
    if wpid and wpid != str(pid):
        return None
    try:
        value = int(usec)
    except ValueError:
        log.warning("WATCHDOG_USEC=%r is not a number, ignoring", usec)
        return None
    return value / 2e6 if value > 0 else None


class Notifier:
    """sd_notify for the daemon. ``send`` is injectable (tests record the messages)."""

    def __init__(
        self,
        env: Mapping[str, str] = os.environ,
        send: Sender | None = None,
        pid: int | None = None,
    ) -> None:
        self.enabled = bool(env.get("NOTIFY_SOCKET")) or send is not None
        self._send = send or _sd_notify
        self.watchdog_s = watchdog_interval(env, os.getpid() if pid is None else pid)
        self._status: str | None = None
        self.sent: list[str] = []  # what was sent, newest last (bounded)

    def _notify(self, state: str) -> None:
        if not self.enabled:
            return
        if not self._send(state):
            log.debug("sd_notify %r not delivered, ignoring", state)
        self.sent.append(state)
        del self.sent[:-64]

    def ready(self, status: str) -> None:
        self._status = status
        self._notify(f"READY=1\nSTATUS={status}\nMAINPID={os.getpid()}")

    def status(self, text: str) -> bool:
        """Send ``STATUS=text`` if it changed; returns whether it was sent."""
        if text == self._status:
            return False
        self._status = text
        self._notify(f"STATUS={text}")
        return True

    def reloading(self) -> None:
        self._notify("RELOADING=1")

    def reloaded(self) -> None:
        self._notify("READY=1")

    def watchdog(self) -> None:
        self._notify("WATCHDOG=1")

    def stopping(self) -> None:
        self._notify("STOPPING=1\nSTATUS=stopping")


Runner = Callable[[Sequence[str]], str]
UNIT_SUFFIXES = (".service", ".scope", ".slice")


def _systemctl(argv: Sequence[str]) -> str:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=10, check=True)
    return done.stdout


def systemd_conflicts(
    cgroup_path: str, runner: Runner = _systemctl, config_name: str = "zoned.yaml"
) -> list[str]:
    """Why systemd would fight zoned over an adopted cgroup (v2), each with what to do.

    Every unit along the path (``system.slice``, ``nginx.service``) is asked with
    ``systemctl show -p AllowedMemoryNodes,Delegate UNIT``. A unit with
    ``AllowedMemoryNodes=`` set makes systemd write ``cpuset.mems`` itself (a slice's
    narrows everything below it). A path *below* a unit that is not delegated is a
    cgroup systemd does not expect anyone to manage. Empty: no conflict found.
    """
    parts = [p for p in norm_cgroup(cgroup_path).split("/") if p]
    out: list[str] = []
    for i, unit in enumerate(parts):
        if not unit.endswith(UNIT_SUFFIXES):
            continue
        try:
            text = runner(["systemctl", "show", "-p", "AllowedMemoryNodes,Delegate", unit])
        except (OSError, subprocess.SubprocessError) as exc:
            out.append(
                f"cannot ask systemd about {unit} ({exc}); check that it has no"
                f" AllowedMemoryNodes= before letting zoned manage {cgroup_path}"
            )
            break  # one failure says it: the others would fail alike
        props = dict(line.partition("=")[::2] for line in text.splitlines() if "=" in line)
        allowed = props.get("AllowedMemoryNodes", "").strip()
        if allowed:
            out.append(
                f"{unit} has AllowedMemoryNodes={allowed}: systemd sets its memory nodes"
                f" too; remove AllowedMemoryNodes= from {unit} or drop {cgroup_path} from"
                f" {config_name}"
            )
        below = i < len(parts) - 1 and not unit.endswith(".slice")  # slices hold units
        if below and props.get("Delegate", "no").strip() != "yes":
            out.append(
                f"{cgroup_path} is below {unit}, which is not delegated (Delegate=no):"
                f" systemd may remove or rewrite it; adopt {'/'.join(parts[: i + 1])}"
                f" itself or set Delegate=yes on {unit}"
            )
    return out
