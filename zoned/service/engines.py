"""Engine containers (podman, docker) in the daemon: admission, the watcher, the end.

- :func:`admit` (the OCI hook's ``engine-admit`` request, and the watcher): the container's
  declaration (``zoned.policy.engines``) gets an instance ``<decl>@<name>`` whose
  ``cgroup`` is the engine's own; its ``min`` is placed on free nodes and written into that
  existing cgroup in place (no process moves). No room, or hand-overs in flight: refused,
  with the declaration's ``on_refusal``.
- The watcher (``zoned.service.enginewatch``) admits the containers it finds the same way.
- When the cgroup goes, the engine's GONE handling frees its nodes; :func:`after_step`
  then drops the instance's declaration.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoned.config.decl import Declarations
from zoned.errors import BackendError, PlacementError
from zoned.kernel.cgroupfs import CgroupFs
from zoned.model.engines import EngineContainer
from zoned.model.nodelist import format_nodelist, parse_nodelist
from zoned.model.zonemap import FREE, Assignment, Owner, OwnerKind, Topology
from zoned.policy.engines import instance_name, keep_held, template_for, template_of
from zoned.policy.placement import place

if TYPE_CHECKING:
    from zoned.service.daemon import Daemon

log = logging.getLogger(__name__)


def _refused(why: str, on_refusal: str, *, busy: bool = False) -> dict[str, Any]:
    return {"ok": False, "error": why, "on_refusal": on_refusal, "busy": busy}


def admit(d: Daemon, c: EngineContainer, cgroup: str) -> dict[str, Any]:
    """Give the engine container ``c`` in ``cgroup`` (relative to the cgroup root) the
    zones of its declaration; see the module doc. Returns the control answer:
    ``{"ok", "matched", "container", "nodes"}`` or a refusal with ``on_refusal``."""
    e, topo = d.engine, d.topology
    assert e is not None and topo is not None
    tmpl = template_for(e.decls.templates, c)
    if tmpl is None or tmpl.engine is None:
        return {"ok": True, "matched": False}
    policy = tmpl.engine.on_refusal
    cgroup = cgroup.strip("/")
    for have in e.decls.containers:
        if have.cgroup is not None and have.cgroup.strip("/") == cgroup:
            nodes = sorted(e.zonemap.nodes_of(have.name))
            return {"ok": True, "matched": True, "container": have.name, "nodes": nodes}
    name = instance_name(tmpl, c)
    if any(x.name == name for x in e.decls.containers):
        name = f"{name}.{c.id[:12]}"
    if not e.juggle or e.dry_run:
        return _refused(f"{name}: zoned is not giving zones here (dry run or one node)", policy)
    if e.pending():
        return _refused(f"{name}: nodes are moving; try again", policy, busy=True)
    decl = dataclasses.replace(tmpl, name=name, cgroup=cgroup, engine=None)
    now = d.backend.now() if d.backend else 0.0
    zmap = e.zonemap
    free = zmap.nodes_with(FREE)
    sizes = {n.id: n.mem_total for n in topo.nodes}
    kept = keep_held(decl, _held(d, cgroup), free, sizes, e.decls.host.headroom_pct)
    if kept is not None:
        why = f"{name}: its cgroup held them when admitted"
        for n in sorted(kept):
            zmap = zmap.with_assignment(Assignment(n, Owner.of(name), why, now))
    else:
        sub = Topology(tuple(n for n in topo.nodes if n.id in free))
        host = dataclasses.replace(e.decls.host, reserved_nodes=(), shared_nodes=(), shared_count=0)
        decls = Declarations(host=host, policy=e.decls.policy, containers=(decl,))
        try:
            placed = place(sub, decls)
        except PlacementError as exc:
            return _refused(f"{name}: no room for its min ({tmpl.min}): {exc}", policy)
        for a in placed.zonemap:
            if a.owner.kind is OwnerKind.CONTAINER:
                zmap = zmap.with_assignment(dataclasses.replace(a, since=now))
    new = dataclasses.replace(e.decls, containers=(*e.decls.containers, decl))
    e.reconfigure(new, zmap)
    if name not in e.managed:
        # Admission failed (logged by the engine): give the nodes back, forget it.
        _drop(d, name, why="its admission failed")
        return _refused(f"{name}: {cgroup} could not be given its nodes (see zoned's log)", policy)
    d.engine_containers[name] = c
    nodes = sorted(e.zonemap.nodes_of(name))
    log.info(
        "%s: %s container %s (%s) admitted on nodes %s",
        name,
        c.engine,
        c.shown,
        cgroup,
        format_nodelist(frozenset(nodes)),
    )
    d._after_change()
    return {"ok": True, "matched": True, "container": name, "nodes": nodes}


def _held(d: Daemon, cgroup: str) -> frozenset[int]:
    """The nodes ``cgroup``'s ``cpuset.mems`` names now (empty: none set, or unreadable:
    a container the runtime has just made inherits its parent's)."""
    e = d.engine
    assert e is not None
    root = d.opts.roots.cgroup or Path(e.decls.host.cgroup_root)
    try:
        return parse_nodelist(CgroupFs(root).read(cgroup, "cpuset.mems"))
    except (BackendError, ValueError):
        return frozenset()


def _drop(d: Daemon, name: str, *, why: str) -> None:
    e = d.engine
    assert e is not None
    zmap = e.zonemap
    now = d.backend.now() if d.backend else 0.0
    for n in sorted(zmap.nodes_of(name)):
        zmap = zmap.with_assignment(Assignment(n, FREE, f"{name}: {why}", now))
    rest = tuple(c for c in e.decls.containers if c.name != name)
    if not e.pending():
        e.reconfigure(dataclasses.replace(e.decls, containers=rest), zmap)
    d.engine_containers.pop(name, None)


def after_step(d: Daemon) -> None:
    """Instances whose cgroup vanished (the engine freed their nodes), or that a reload
    released: forget them."""
    e = d.engine
    if e is None:
        return
    declared = {c.name for c in e.decls.containers}
    for name in [n for n in d.engine_containers if n not in declared]:
        del d.engine_containers[name]  # released by a reload that dropped its declaration
    if e.pending():
        return
    gone = [
        c.name
        for c in e.decls.containers
        if c.name in d.engine_containers and c.name not in e.managed
    ]
    if not gone:
        return
    rest = tuple(c for c in e.decls.containers if c.name not in gone)
    e.reconfigure(dataclasses.replace(e.decls, containers=rest), e.zonemap)
    for name in gone:
        if d.backend is not None:
            try:
                d.backend.release(name)  # adopted: forgets it, leaves the cgroup alone
            except BackendError as exc:
                log.warning("%s: release: %s", name, exc)
        log.info(
            "%s: engine container %s stopped; its declaration instance is dropped",
            name,
            d.engine_containers[name].shown,
        )
        d.engine_containers.pop(name, None)


def carry(d: Daemon, new: Declarations) -> Declarations:
    """A reloaded configuration keeps the running instances whose declaration is still
    an engine declaration (with its new limits); the others are released."""
    e = d.engine
    if e is None:
        return new
    by_name = {t.name: t for t in new.templates}
    kept = []
    for c in e.decls.containers:
        base = template_of(c.name) if c.name in d.engine_containers else None
        if base is not None and base in by_name:
            kept.append(
                dataclasses.replace(by_name[base], name=c.name, cgroup=c.cgroup, engine=None)
            )
    return dataclasses.replace(new, containers=(*new.containers, *kept))


def handle_admit(d: Daemon, req: Mapping[str, Any]) -> dict[str, Any]:
    """The OCI hook's request: ``{"cmd": "engine-admit", "cgroup", "engine", "id",
    "name", "annotations"}``."""
    cgroup, cid = req.get("cgroup"), req.get("id")
    if not isinstance(cgroup, str) or not cgroup or not isinstance(cid, str) or not cid:
        return {"ok": False, "error": "engine-admit: expected strings cgroup and id"}
    engine = req.get("engine") if req.get("engine") in ("podman", "docker", "oci") else "oci"
    name = req.get("name") if isinstance(req.get("name"), str) else ""
    ann = req.get("annotations") if isinstance(req.get("annotations"), dict) else {}
    assert isinstance(ann, dict) and isinstance(name, str) and isinstance(engine, str)
    c = EngineContainer(
        engine=engine,
        id=cid,
        name=name,
        annotations={k: v for k, v in ann.items() if isinstance(k, str) and isinstance(v, str)},
    )
    return admit(d, c, cgroup)
