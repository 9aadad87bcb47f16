"""Containers that an engine (podman, docker) started, as zoned sees them: plain data."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

#: The annotation (or label) that names a declaration outright: ``--annotation
#: io.zoned.container=web`` asks for the declaration ``web`` whatever its selectors say.
ZONED_ANNOTATION = "io.zoned.container"


def _empty() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass(frozen=True)
class EngineContainer:
    """One engine container: who started it, its id and name, its labels and annotations."""

    engine: str  # "podman", "docker", or "oci" (a runtime hook that cannot tell)
    id: str
    name: str = ""  # "" when not known (then only labels and annotations can match)
    labels: Mapping[str, str] = field(default_factory=_empty)
    annotations: Mapping[str, str] = field(default_factory=_empty)

    @property
    def shown(self) -> str:
        """The name, or the short id when the name is not known."""
        return self.name or self.id[:12]
