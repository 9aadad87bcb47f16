"""Which declaration an engine container belongs to, and what its instance is called.

Pure: (templates, engine container) → declaration. The engine's I/O (the OCI hook's state,
``podman inspect``) happens in ``zoned.service.engines`` and the hook command.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence

from zoned.config.decl import ContainerDecl, EngineSelector
from zoned.model.engines import ZONED_ANNOTATION, EngineContainer
from zoned.policy.decide import keeps_min

#: Between a declaration's name and its engine container's: not allowed in a declared
#: name, so an instance never clashes with a declared container.
INSTANCE_SEP = "@"


def selector_matches(sel: EngineSelector, c: EngineContainer) -> bool:
    """Every key the selector gives holds for ``c`` (a label may be a label or an
    annotation; an engine that could not be told matches any engine key)."""
    if sel.engine is not None and c.engine not in (sel.engine, "oci"):
        return False
    if sel.name is not None and not (c.name and fnmatch.fnmatchcase(c.name, sel.name)):
        return False
    if sel.label is not None:
        key, value = sel.label
        if c.labels.get(key) != value and c.annotations.get(key) != value:
            return False
    return True


def template_for(templates: Sequence[ContainerDecl], c: EngineContainer) -> ContainerDecl | None:
    """The declaration ``c`` belongs to: the one its ``io.zoned.container`` annotation or
    label names, else the first (in declaration order) with a selector that matches."""
    asked = c.annotations.get(ZONED_ANNOTATION) or c.labels.get(ZONED_ANNOTATION)
    if asked:
        return next((t for t in templates if t.name == asked), None)
    for t in templates:
        if t.engine is not None and any(selector_matches(s, c) for s in t.engine.selectors):
            return t
    return None


def instance_name(template: ContainerDecl, c: EngineContainer) -> str:
    """``<declaration>@<engine container name or short id>``: unique while it runs."""
    return f"{template.name}{INSTANCE_SEP}{c.shown}"


def template_of(instance: str) -> str | None:
    """The declaration an instance name came from (None: not an instance)."""
    return instance.split(INSTANCE_SEP, 1)[0] if INSTANCE_SEP in instance else None


def keep_held(
    decl: ContainerDecl,
    held: frozenset[int],
    free: frozenset[int],
    sizes: Mapping[int, int],
    headroom_pct: float,
) -> frozenset[int] | None:
    """The nodes an engine container's cgroup already holds, when admitting it may keep
    them (a restarted zoned finds running containers: no page moves): all free pool nodes
    that satisfy the declaration's ``min``. None: place it afresh."""
    if not held or not held <= free:
        return None
    if not keeps_min(decl, [sizes[n] for n in held], headroom_pct):
        return None
    return held
