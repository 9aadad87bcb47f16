"""The watcher: engine containers started without zoned's OCI hook get their zones too.

An engine cgroup appearing (:class:`~zoned.kernel.enginecg.CgroupDirWatch`, inotify, on
the daemon's loop) starts ``podman inspect`` / ``docker inspect`` for its id as a child
process whose output the loop reads as it comes (:mod:`zoned.service.children`: at most
``MAX_INSPECTS`` at once, ``INSPECT_QUEUE`` more queued, the rest dropped with a warning;
the loop never waits for one; a child still running after ``INSPECT_TIMEOUT_S`` is
killed, one printing more than ``INSPECT_MAX_BYTES`` too). Its answer (name, labels,
annotations) is matched and admitted like the hook's (``zoned.service.engines.admit``); a
cgroup the hook admitted meanwhile is left as it is (and not inspected if still queued).
The engine is run as found on PATH, with the daemon's environment (``CONTAINERS_CONF``,
``CONTAINERS_STORAGE_CONF``, ``DOCKER_HOST`` reach it).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from zoned.backends.fdloop import IN
from zoned.errors import BackendError, EngineError
from zoned.kernel.enginecg import CgroupDirWatch, parse_engine_cgroup
from zoned.model.engines import EngineContainer
from zoned.model.host import Event
from zoned.service import engines
from zoned.service.children import Children, Ended

if TYPE_CHECKING:
    from zoned.service.daemon import Daemon

log = logging.getLogger(__name__)

INSPECT_TIMEOUT_S = 20.0  # podman inspect takes 1-3 s under TCG on a busy host
INSPECT_MAX_BYTES = 1 << 20
# A podman inspect is a second of CPU on a small host: a burst of container starts must not
# fork one each. The queue holds a path each (a few hundred bytes): a burst of 500 fits.
MAX_INSPECTS = 4
INSPECT_QUEUE = 1024
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


def inspector(d: Daemon) -> Children:
    """The daemon's inspect children: at most MAX_INSPECTS at once, INSPECT_QUEUE queued."""
    assert d._host is not None

    def wanted(path: str) -> bool:  # at its turn: the hook may have admitted it meanwhile
        root = d.engine_watch.root if d.engine_watch is not None else None
        return root is not None and (root / path).is_dir() and not _admitted(d, path)

    return Children(
        d._host,
        lambda ended: _finish(d, ended),
        name="watcher",
        limit=MAX_INSPECTS,
        queue_max=INSPECT_QUEUE,
        max_bytes=INSPECT_MAX_BYTES,
        timeout_s=INSPECT_TIMEOUT_S,
        wanted=wanted,
    )


def watch_new(d: Daemon, paths: list[str]) -> None:
    """Inspect (now or queued) each engine cgroup in ``paths`` not admitted yet."""
    e = d.engine
    if e is None or not e.decls.templates or d.engine_watch is None or d.inspections is None:
        return
    for path in paths:
        got = parse_engine_cgroup(path)
        if got is None or _admitted(d, path) or path in d.inspections:
            continue
        engine, cid = got
        d.inspections.submit(path, (*INSPECT[engine], cid))


def _finish(d: Daemon, ended: Ended) -> None:
    path = ended.key
    got = parse_engine_cgroup(path)
    assert got is not None  # only engine cgroups are submitted
    engine, cid = got
    what = f"{INSPECT[engine][0]} inspect {cid[:12]}"
    if ended.rc != 0:
        text = " ".join(ended.out.decode(errors="replace").split())[:300]
        log.warning("watcher: %s: %s: exit %d: %s, ignoring", path, what, ended.rc, text)
        return
    try:
        c = parse_inspect(engine, ended.out)
    except EngineError as exc:
        log.warning("watcher: %s: %s, ignoring", path, exc)
        return
    log.info("watcher: %s: %s is %s (answered in %.1fs)", path, what, c.shown, ended.took_s)
    if _admitted(d, path):
        return  # the hook was first
    if d.engine_watch is None or not (d.engine_watch.root / path).is_dir():
        log.info("watcher: %s is gone already, ignoring", path)
        return
    answer = engines.admit(d, c, _leaf(d.engine_watch.root, path))
    if not answer["ok"]:
        log.warning("watcher: %s left unzoned: %s", c.shown, answer["error"])


def expire(d: Daemon) -> None:
    """Kill inspections older than INSPECT_TIMEOUT_S (their end is then read as usual)."""
    if d.inspections is not None:
        d.inspections.expire()


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
    d.inspections = inspector(d)

    def on_ready(revents: int) -> list[Event]:
        created, _removed = w.drain()
        watch_new(d, created)
        return []

    d._host.add_fd(w.fileno(), IN, on_ready)
    watch_new(d, w.existing())


def close(d: Daemon) -> None:
    """Stop watching; inspections in flight are killed, those queued forgotten."""
    if d.inspections is not None:
        d.inspections.close()
        d.inspections = None
    if d.engine_watch is not None and d._host is not None:
        d._host.remove_fd(d.engine_watch.fileno())
        d.engine_watch.close()
        d.engine_watch = None
