"""``zoned plan`` on the guest's real topology: every node has one owner, every container
its nodes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import PROJECT, has_command, node_mem_total, online_nodes, zoned

CONFIG = PROJECT / "config" / "zoned.yaml"


@pytest.mark.skipif(not has_command("plan"), reason="zoned plan is not written yet")
@pytest.mark.skipif(not CONFIG.exists(), reason=f"{CONFIG} is not written yet")
def test_plan_places_containers_on_guest_nodes() -> None:
    report = json.loads(zoned("plan", "--config", str(CONFIG), "--json").stdout)
    nodes = report["nodes"]
    assert [n["node"] for n in nodes] == online_nodes()
    for n in nodes:
        assert n["owner"], n
        assert n["reason"], n
        assert n["bytes"] == node_mem_total(n["node"]), n
    owned: dict[int, str] = {}
    for c in report["containers"]:
        assert c["nodes"], f"container {c['name']} got no node"
        for node in c["nodes"]:
            assert node not in owned, f"node {node}: {owned[node]} and {c['name']}"
            owned[node] = c["name"]
            assert nodes[node]["owner"].endswith(c["name"]) or c["name"] in nodes[node]["owner"]
        assert c["capacity_bytes"] == sum(node_mem_total(n) for n in c["nodes"])


def test_config_path_is_inside_the_project() -> None:
    # The guest sees the project at the host's path: the plan test reads the same file.
    assert Path(PROJECT / "pyproject.toml").exists()
