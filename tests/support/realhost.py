"""The build machine's real cgroup v1 hierarchies, and need(): skip with a reason, fail in CI."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"

V1_CPUSET = Path("/sys/fs/cgroup/cpuset")
V1_MEMORY = Path("/sys/fs/cgroup/memory")


def need(condition: bool, reason: str) -> None:
    """Skip unless ``condition``; in CI, fail instead of skipping."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)
