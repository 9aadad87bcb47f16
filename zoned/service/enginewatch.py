"""The watcher: engine containers started without zoned's OCI hook get their zones too.

An engine cgroup appearing (:class:`~zoned.kernel.enginecg.CgroupDirWatch`, inotify, on
the daemon's loop) starts ``podman inspect`` / ``docker inspect`` for its id as a child
process whose output the loop reads as it comes (the loop never waits for it; a child
still running after ``INSPECT_TIMEOUT_S`` is killed, one printing more than
``INSPECT_MAX_BYTES`` too). Its answer (name, labels, annotations) is matched and
admitted like the hook's (``zoned.service.engines.admit``); a cgroup the hook admitted
meanwhile is left as it is. The engine is run as found on PATH, with the daemon's
environment (``CONTAINERS_CONF``, ``CONTAINERS_STORAGE_CONF``, ``DOCKER_HOST`` reach it).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from zoned.backends.fdloop import IN
from zoned.errors import BackendError, EngineError
from zoned.kernel.enginecg import CgroupDirWatch, parse_engine_cgroup
from zoned.model.engines import EngineContainer
from zoned.model.host import Event
from zoned.service import engines

if TYPE_CHECKING:
    from zoned.service.daemon import Daemon

log = logging.getLogger(__name__)

INSPECT_TIMEOUT_S = 20.0  # podman inspect takes 1-3 s under TCG on a busy host
INSPECT_MAX_BYTES = 1 << 20
INSPECT: dict[str, tuple[str, ...]] = {
    "podman": ("podman", "inspect", "--type", "container"),
    "docker": ("docker", "inspect", "--type", "container"),
}


def parse_inspect(engine: str, raw: bytes) -> EngineContainer:
    """The container ``podman inspect`` / ``docker inspect`` printed (a JSON list of one
    object with Id, Name, Config.Labels, Config.Annotations; docker's annotations are in
    HostConfig). Raises EngineError."""
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise EngineError(f"{engine} inspect: not JSON ({exc})") from exc
    if isinstance(doc, list) and len(doc) == 1:
        doc = doc[0]
    if not isinstance(doc, dict) or not isinstance(doc.get("Id"), str):
        raise EngineError(f"{engine} inspect: expected a list of one object with Id")
    cfg = doc.get("Config")
    host = doc.get("HostConfig")
    name = doc.get("Name")
    return EngineContainer(
        engine=engine,
        id=doc["Id"],
        name=name.lstrip("/") if isinstance(name, str) else "",
        labels=_strings(cfg.get("Labels") if isinstance(cfg, dict) else None),
        annotations={
            **_strings(host.get("Annotations") if isinstance(host, dict) else None),
            **_strings(cfg.get("Annotations") if isinstance(cfg, dict) else None),
        },
    )


def _strings(v: object) -> dict[str, str]:
    if not isinstance(v, dict):
        return {}
    return {k: x for k, x in v.items() if isinstance(k, str) and isinstance(x, str)}


@dataclass
class Inspection:
    """One ``inspect`` child in flight."""

    path: str  # the engine cgroup, relative to the root
    engine: str
    cid: str
    proc: subprocess.Popen[bytes]
    started: float
    out: bytearray = field(default_factory=bytearray)


def _leaf(root: Path, path: str) -> str:
    """systemd's manager: crun's processes are in the scope's ``container`` leaf."""
    return f"{path}/container" if (root / path / "container").is_dir() else path


def _admitted(d: Daemon, path: str) -> bool:
    e = d.engine
    assert e is not None
    return any(
        c.cgroup is not None and c.cgroup.strip("/") in (path, f"{path}/container")
        for c in e.decls.containers
    )


def watch_new(d: Daemon, paths: list[str]) -> None:
    """Start an inspection for each engine cgroup in ``paths`` not admitted yet."""
    e = d.engine
    if e is None or not e.decls.templates or d.engine_watch is None or d._host is None:
        return
    for path in paths:
        got = parse_engine_cgroup(path)
        if got is None or _admitted(d, path) or path in d.inspections:
            continue
        engine, cid = got
        argv = [*INSPECT[engine], cid]
        try:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
            )
        except OSError as exc:
            log.warning("watcher: %s: cannot run %s: %s, ignoring", path, argv[0], exc)
            continue
        assert proc.stdout is not None
        os.set_blocking(proc.stdout.fileno(), False)
        job = Inspection(path, engine, cid, proc, d.backend.now() if d.backend else 0.0)
        d.inspections[path] = job
        d._host.add_fd(proc.stdout.fileno(), IN, _reader(d, job))


def _reader(d: Daemon, job: Inspection) -> Callable[[int], list[Event]]:
    def on_ready(revents: int) -> list[Event]:
        return _on_output(d, job)

    return on_ready


def _on_output(d: Daemon, job: Inspection) -> list[Event]:
    assert job.proc.stdout is not None
    fd = job.proc.stdout.fileno()
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return []
        if not chunk:
            break
        job.out += chunk
        if len(job.out) > INSPECT_MAX_BYTES:
            job.proc.kill()
    _finish(d, job)
    return []


def _finish(d: Daemon, job: Inspection) -> None:
    assert job.proc.stdout is not None and d._host is not None
    d._host.remove_fd(job.proc.stdout.fileno())
    job.proc.stdout.close()
    rc = job.proc.wait()
    d.inspections.pop(job.path, None)
    what = f"{INSPECT[job.engine][0]} inspect {job.cid[:12]}"
    if rc != 0:
        text = " ".join(job.out.decode(errors="replace").split())[:300]
        log.warning("watcher: %s: %s: exit %d: %s, ignoring", job.path, what, rc, text)
        return
    try:
        c = parse_inspect(job.engine, bytes(job.out))
    except EngineError as exc:
        log.warning("watcher: %s: %s, ignoring", job.path, exc)
        return
    took = (d.backend.now() if d.backend else 0.0) - job.started
    log.info("watcher: %s: %s is %s (answered in %.1fs)", job.path, what, c.shown, took)
    if _admitted(d, job.path):
        return  # the hook was first
    if d.engine_watch is None or not (d.engine_watch.root / job.path).is_dir():
        log.info("watcher: %s is gone already, ignoring", job.path)
        return
    answer = engines.admit(d, c, _leaf(d.engine_watch.root, job.path))
    if not answer["ok"]:
        log.warning("watcher: %s left unzoned: %s", c.shown, answer["error"])


def expire(d: Daemon) -> None:
    """Kill inspections older than INSPECT_TIMEOUT_S (their end is then read as usual)."""
    now = d.backend.now() if d.backend else 0.0
    for job in list(d.inspections.values()):
        if now - job.started > INSPECT_TIMEOUT_S and job.proc.poll() is None:
            log.warning(
                "watcher: %s: inspect still running after %gs, killed", job.path, INSPECT_TIMEOUT_S
            )
            job.proc.kill()


def start(d: Daemon) -> None:
    """Watch the engines' cgroups when engine declarations exist (real hosts only)."""
    e = d.engine
    if e is None or d._host is None or not e.decls.templates or d.opts.backend is not None:
        return
    root = d.opts.roots.cgroup or Path(e.decls.host.cgroup_root)
    try:
        w = CgroupDirWatch(root)
    except BackendError as exc:
        why = f"engine containers are not watched: {exc}"
        log.warning("%s", why)
        d.warnings.append(why)
        return
    d.engine_watch = w

    def on_ready(revents: int) -> list[Event]:
        created, _removed = w.drain()
        watch_new(d, created)
        return []

    d._host.add_fd(w.fileno(), IN, on_ready)
    watch_new(d, w.existing())


def close(d: Daemon) -> None:
    """Stop watching; inspections in flight are killed."""
    for job in list(d.inspections.values()):
        job.proc.kill()
        _finish(d, job)
    if d.engine_watch is not None and d._host is not None:
        d._host.remove_fd(d.engine_watch.fileno())
        d.engine_watch.close()
        d.engine_watch = None
