"""The Backend contract on this machine's real cgroup v1 cpuset + memory (root, 1 node).

Each test works under its own ``zoned-contract-<pid>-<n>`` parent in both hierarchies and
removes it afterwards whatever happens (children killed first). The root's
``cpuset.memory_pressure_enabled`` is never written. Uses ``real_v1``: skips without root
or v1 hierarchies, fails in CI.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.contract.realv1 import RealV1Harness
from tests.contract.suite import BackendContract, closing
from tests.support.realhost import V1_CPUSET, V1_MEMORY

pytestmark = pytest.mark.root

_serial = itertools.count()


@pytest.fixture
def harness(real_v1: tuple[Path, Path]) -> Iterator[RealV1Harness]:
    enabled_before = (V1_CPUSET / "cpuset.memory_pressure_enabled").read_text()
    parent = f"zoned-contract-{os.getpid()}-{next(_serial)}"
    with closing(RealV1Harness(V1_CPUSET, V1_MEMORY, parent)) as h:
        yield h
    assert not (V1_CPUSET / parent).exists() and not (V1_MEMORY / parent).exists()
    assert (V1_CPUSET / "cpuset.memory_pressure_enabled").read_text() == enabled_before


class TestRealV1Contract(BackendContract):
    """Every contract item on this machine's v1 hierarchies."""
