"""``zoned oci-hook``: run by the OCI runtime at ``createRuntime``, OCI state on stdin.

The runtime (crun, runc) runs it as root after the container's cgroup is made and its
process placed there, before the container's first instruction. The hook finds that cgroup
(``/proc/PID/cgroup``) and asks the daemon to admit it (``engine-admit``): the daemon
matches the container to a declaration (``engine:``) and writes its nodes into that cgroup
in place. When zoned refuses (no room) the declaration's ``on_refusal`` applies; when no
daemon answers, ``--when-down`` does. ``fail``: one line on stderr and exit 1 (the runtime
fails the start); ``unzoned``: exit 0, the container starts without a zone.

stdin is untrusted: at most ``MAX_STATE`` bytes of one JSON object; a malformed state is
a one-line error naming the key (config/oci-hooks.d/zoned.json installs the hook).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoned.cli.argtypes import seconds
from zoned.cli.commands._client import add_socket
from zoned.cli.commands._index import describe
from zoned.errors import ControlError, EngineError
from zoned.kernel.enginecg import cgroup_of, conmon_name
from zoned.kernel.roots import PROC_ROOT

MAX_STATE = 1 << 20  # the state holds the annotations; a runtime's is a few KiB
MAX_CONFIG = 8 << 20  # the bundle's config.json
ANNOTATIONS_MAX = 1024
RETRY_S = 0.2
# The runtime holds the container's start meanwhile; lend --wait's default (a hand-over's
# migration deadline, retried, with its drain) is the longest a wait for nodes can sense.
MAX_WAIT_S = 600.0


@dataclass(frozen=True)
class OciState:
    """What the hook uses of the OCI state (runtime-spec "State")."""

    id: str
    pid: int
    bundle: str
    annotations: dict[str, str]


def _strings(v: object, where: str) -> dict[str, str]:
    if v is None:
        return {}
    if not isinstance(v, dict) or len(v) > ANNOTATIONS_MAX:
        raise EngineError(f"{where}: expected an object of at most {ANNOTATIONS_MAX} strings")
    bad = next((k for k, x in v.items() if not isinstance(x, str)), None)
    if bad is not None:
        raise EngineError(f"{where}.{str(bad)[:60]}: expected a string")
    return dict(v)


def parse_state(raw: bytes) -> OciState:
    """The OCI state on stdin; EngineError (one line, naming the key) when malformed."""
    if len(raw) > MAX_STATE:
        raise EngineError(f"stdin: OCI state longer than {MAX_STATE} bytes")
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise EngineError(
            f"stdin: not a JSON OCI state ({' '.join(str(exc).split())[:120]})"
        ) from exc
    if not isinstance(doc, dict):
        raise EngineError("stdin: expected a JSON object (the OCI state)")
    cid, pid, bundle = doc.get("id"), doc.get("pid"), doc.get("bundle", "")
    if not isinstance(cid, str) or not cid or len(cid) > 1024:
        raise EngineError("stdin: key 'id': expected the container id (a non-empty string)")
    if isinstance(pid, bool) or not isinstance(pid, int) or not 0 < pid < 1 << 22:
        raise EngineError("stdin: key 'pid': expected the container's process id (> 0)")
    if not isinstance(bundle, str) or len(bundle) > 4096:
        raise EngineError("stdin: key 'bundle': expected a path")
    return OciState(cid, pid, bundle, _strings(doc.get("annotations"), "stdin: key 'annotations'"))


def bundle_annotations(bundle: str) -> dict[str, str]:
    """``annotations`` of the bundle's config.json ({} when there is none to read)."""
    p = Path(bundle) / "config.json"
    try:
        with p.open("rb") as f:
            raw = f.read(MAX_CONFIG + 1)
    except OSError:
        return {}
    if len(raw) > MAX_CONFIG:
        raise EngineError(f"{p}: longer than {MAX_CONFIG} bytes")
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise EngineError(f"{p}: not JSON ({' '.join(str(exc).split())[:120]})") from exc
    return _strings(doc.get("annotations") if isinstance(doc, dict) else None, f"{p}: annotations")


def request_of(state: OciState, proc_root: Path, hook_pid: int) -> dict[str, Any]:
    """The ``engine-admit`` request for this container."""
    ann = state.annotations or (bundle_annotations(state.bundle) if state.bundle else {})
    engine = "podman" if ann.get("io.container.manager") == "libpod" else "oci"
    name = conmon_name(proc_root, hook_pid) or ""
    if name:
        engine = "podman"
    return {
        "cmd": "engine-admit",
        "cgroup": cgroup_of(proc_root, state.pid),
        "engine": engine,
        "id": state.id,
        "name": name,
        "annotations": ann,
    }


DESCRIPTION = """\
Run by an OCI runtime (crun, runc) at the createRuntime stage, not by hand: reads the
container's OCI state (id, pid, annotations) on stdin, finds its cgroup in
/proc/PID/cgroup and asks the running daemon to give that cgroup its zone in place,
before the container's first instruction. The declaration is the one the annotation
io.zoned.container names, or the one whose engine: rule matches the container's name
or labels. Install the hook file from config/oci-hooks.d/ (docs/containers.md).

examples:
  zoned oci-hook --when-down unzoned < state.json   (as the hook file runs it)
  cp config/oci-hooks.d/zoned.json /usr/share/containers/oci/hooks.d/
  podman run --annotation io.zoned.container=web ...
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("oci-hook", **describe("oci-hook", DESCRIPTION))
    p.add_argument(
        "--when-down",
        choices=("fail", "unzoned"),
        default="fail",
        help="when no daemon answers: fail the container's start (default) or start it unzoned",
    )
    p.add_argument(
        "--wait",
        type=seconds(most=MAX_WAIT_S, zero=True),  # 0: ask once
        default=10.0,
        metavar="SECONDS",
        help=f"retry this long while zoned is moving nodes (default 10, at most {MAX_WAIT_S:g})",
    )
    p.add_argument("--proc-root", type=Path, default=PROC_ROOT, help=argparse.SUPPRESS)
    add_socket(p)
    p.set_defaults(func=run)


def _say(msg: str) -> None:
    print(f"zoned oci-hook: {' '.join(msg.split())[:400]}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from zoned.service.client import request

    state = parse_state(sys.stdin.buffer.read(MAX_STATE + 1))
    req = request_of(state, args.proc_root, os.getppid())
    deadline = time.monotonic() + args.wait
    while True:
        try:
            resp = request(args.socket, req, timeout_s=30.0)
        except ControlError as exc:
            if args.when_down == "unzoned":
                _say(f"{state.id[:12]} starts unzoned: {exc}")
                return 0
            raise ControlError(f"{state.id[:12]}: no zone (zoned is not answering: {exc})") from exc
        if resp.get("ok") or not resp.get("busy") or time.monotonic() >= deadline:
            break
        time.sleep(RETRY_S)
    if resp.get("ok"):
        return 0
    why = str(resp.get("error", "refused"))
    if resp.get("on_refusal") == "unzoned":
        _say(f"{state.id[:12]} starts unzoned: {why}")
        return 0
    raise ControlError(f"{state.id[:12]}: no zone: {why}")
