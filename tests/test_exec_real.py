"""``zoned exec`` on the build machine's real v1 hierarchies (root only)."""

from __future__ import annotations

import pytest

from tests.support.sandbox import Box, box_fixture

pytestmark = pytest.mark.root
__all__ = ["box_fixture"]


def test_exec_child_is_inside_from_its_first_instruction(box: Box) -> None:
    box.create()
    r = box.zoned("exec", "--config", str(box.config), "web", "--", "cat", "/proc/self/cgroup")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    print("\n$ zoned exec web -- cat /proc/self/cgroup\n" + r.stdout)
    # cat's first read of its own cgroup file already shows the container in both.
    assert any(line.endswith(f":cpuset:/{box.path('web')}") for line in lines)
    assert any(line.endswith(f":memory:/{box.path('web')}") for line in lines)


@pytest.mark.parametrize(
    ("script", "status"),
    [("exit 0", 0), ("exit 7", 7), ("kill -TERM $$", 128 + 15), ("kill -KILL $$", 128 + 9)],
)
def test_exec_passes_the_exit_status_through(box: Box, script: str, status: int) -> None:
    box.create()
    r = box.zoned("exec", "--config", str(box.config), "web", "--", "sh", "-c", script)
    assert r.returncode == status, r.stderr


def test_exec_cannot_run_or_find_a_command(box: Box) -> None:
    box.create()
    r = box.zoned("exec", "--config", str(box.config), "web", "--", "no-such-command-zoned")
    assert r.returncode == 127
    assert "no-such-command-zoned: command not found" in r.stderr
    r = box.zoned("exec", "--config", str(box.config), "web", "--", str(box.config))
    assert r.returncode == 126


def test_exec_without_the_cgroup_runs_nothing(box: Box) -> None:
    box.create()
    flag = box.config.parent / "ran"
    r = box.zoned("exec", "--config", str(box.config), "nope", "--", "touch", str(flag))
    assert r.returncode == 125
    assert "no container 'nope'" in r.stderr
    box.config.write_text(f"host: {{parent: {box.name}/absent}}\ncontainers:\n  web: {{min: 1M}}\n")
    r = box.zoned("exec", "--config", str(box.config), "web", "--", "touch", str(flag))
    assert r.returncode == 125
    assert f"container web has no cgroup at /sys/fs/cgroup/cpuset/{box.name}/absent/web" in (
        r.stderr
    )
    assert "is the zoned daemon running?" in r.stderr
    assert not flag.exists()
