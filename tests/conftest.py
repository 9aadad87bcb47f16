"""Shared test fixtures.

Tests that need something the machine may lack (root, the build machine's real cgroup v1
hierarchies) call ``need(...)``: it skips with the stated reason, except in CI (``CI=true``),
where those tests must run and a missing prerequisite fails instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.realhost import V1_CPUSET, V1_MEMORY, need


def _is_v1(path: Path, marker: str) -> bool:
    return (path / marker).exists()


@pytest.fixture
def real_v1() -> Iterator[tuple[Path, Path]]:
    """The build machine's real v1 cpuset and memory hierarchies (root only)."""
    need(os.geteuid() == 0, "needs root to create cgroups")
    need(
        _is_v1(V1_CPUSET, "cpuset.mems") and _is_v1(V1_MEMORY, "memory.usage_in_bytes"),
        f"needs cgroup v1 cpuset and memory hierarchies at {V1_CPUSET} and {V1_MEMORY}",
    )
    yield V1_CPUSET, V1_MEMORY
