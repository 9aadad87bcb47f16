"""The JSON Schema: shipped file is current, examples validate, and it agrees with the parser."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from zoned.config import schema
from zoned.config.decl import ContainerDecl, HostDecl, PolicyDecl
from zoned.config.fields import CONTAINER_FIELDS, HOST_FIELDS, POLICY_FIELDS
from zoned.config.load import loads
from zoned.errors import ConfigError

TESTS = Path(__file__).parent
REPO = TESTS.parent
CONFIGS = TESTS / "configs"

# Bad fixtures whose problems are within one field of one file: the schema catches them.
# The others are about repeats (YAML keeps the last duplicate key; names across files),
# relations between fields (min > max) or which file a section is in: zoned check only.
SCHEMA_CATCHES = {
    "unknown_key",
    "wrong_type",
    "bad_size",
    "bad_name",
    "out_of_range",
    "cross_field",
}
CHECK_ONLY = {"duplicate_key", "duplicate_dropin", "min_gt_max", "dropin_sections"}


def validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads(schema.SCHEMA_PATH.read_text()))


def errors(doc: Any) -> list[str]:
    return [e.message for e in validator().iter_errors(doc)]


def test_shipped_schema_is_what_the_field_table_generates() -> None:
    assert schema.SCHEMA_PATH.read_text(encoding="utf-8") == schema.render()
    assert schema.main(["--check"]) == 0


def test_check_flag_notices_a_stale_file(tmp_path: Path) -> None:
    stale = tmp_path / "s.json"
    stale.write_text("{}\n")
    assert schema.main(["--check", "--output", str(stale)]) == 1
    assert schema.main(["--output", str(stale)]) == 0
    assert schema.main(["--check", "--output", str(stale)]) == 0


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(schema.build())


def test_field_table_covers_every_declared_field() -> None:
    def names(cls: type) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)}

    assert {f.name for f in POLICY_FIELDS} == names(PolicyDecl)
    host = names(HostDecl) - {"shared_nodes", "shared_count"} | {"shared"}
    assert {f.name for f in HOST_FIELDS} == host
    assert {f.name for f in CONTAINER_FIELDS} == names(ContainerDecl) - {"name"}


def example_files() -> list[Path]:
    """The example declarations: the main file and its drop-ins (config/scenarios/ holds
    simulation scenarios, a different format with an inline config of its own)."""
    cfg = REPO / "config"
    return [cfg / "zoned.yaml", *sorted((cfg / "containers.d").glob("*.yaml"))]


def test_there_are_example_files() -> None:
    assert REPO / "config" / "zoned.yaml" in example_files()
    assert len(example_files()) >= 3


@pytest.mark.parametrize("path", example_files(), ids=lambda p: p.name)
def test_every_example_file_validates(path: Path) -> None:
    assert errors(yaml.safe_load(path.read_text())) == []


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("good/*/zoned.yaml")), ids=str)
def test_good_fixtures_validate(path: Path) -> None:
    assert errors(yaml.safe_load(path.read_text())) == []


def test_bad_fixture_lists_cover_every_fixture() -> None:
    on_disk = {p.name for p in (CONFIGS / "bad").iterdir()}
    assert on_disk == SCHEMA_CATCHES | CHECK_ONLY | {"yaml_syntax"}


@pytest.mark.parametrize("case", sorted(SCHEMA_CATCHES))
def test_bad_fixtures_fail_the_schema(case: str) -> None:
    docs = [yaml.safe_load(p.read_text()) for p in sorted((CONFIGS / "bad" / case).rglob("*.yaml"))]
    assert any(errors(d) for d in docs)


@pytest.mark.parametrize("case", sorted(CHECK_ONLY))
def test_check_only_fixtures_pass_the_schema_each_file_alone(case: str) -> None:
    """Documents the schema's limit: these need zoned check."""
    for p in sorted((CONFIGS / "bad" / case).rglob("*.yaml")):
        assert errors(yaml.safe_load(p.read_text())) == [], p


# Single-field snippets: the parser and the schema must accept or refuse them alike.
SNIPPETS = [
    "",
    "host: null",
    "host: {cgroup_root: /sys/fs/cgroup}",
    "host: {cgroup_root: sys/fs/cgroup}",
    "host: {hierarchy: v1}",
    "host: {hierarchy: v3}",
    "host: {parent: zoned/inner}",
    "host: {parent: ../up}",
    "host: {parent: a/./b}",
    "host: {reserved_nodes: []}",
    "host: {reserved_nodes: [0, 1]}",
    "host: {reserved_nodes: [0, 0]}",
    "host: {reserved_nodes: [-1]}",
    "host: {reserved_nodes: 0}",
    "host: {reserved_nodes: null}",
    "host: {shared: 0}",
    "host: {shared: [3, 4]}",
    "host: {shared: -1}",
    "host: {shared: true}",
    "host: {headroom_pct: 0}",
    "host: {headroom_pct: 99.5}",
    "host: {headroom_pct: 100}",
    "host: {extra: 1}",
    "host: {shared: 1, shared_tmpfs: null}",
    "host: {shared: 1, shared_tmpfs: [/srv/shared, {path: /dev/shm, size: 256M, mode: '0770'}]}",
    "host: {shared: 1, shared_tmpfs: [{path: /x, size: 4096}]}",
    "host: {shared: 1, shared_tmpfs: /srv/shared}",
    "host: {shared: 1, shared_tmpfs: [srv/shared]}",
    "host: {shared: 1, shared_tmpfs: [/]}",
    "host: {shared: 1, shared_tmpfs: [/a/../b]}",
    "host: {shared: 1, shared_tmpfs: [/a/]}",
    "host: {shared: 1, shared_tmpfs: [{size: 1G}]}",
    "host: {shared: 1, shared_tmpfs: [{path: /x, size: 0}]}",
    "host: {shared: 1, shared_tmpfs: [{path: /x, size: 2 nodes}]}",
    "host: {shared: 1, shared_tmpfs: [{path: /x, mode: 0750}]}",
    "host: {shared: 1, shared_tmpfs: [{path: /x, mode: '9999'}]}",
    "host: {shared: 1, shared_tmpfs: [{path: /x, extra: 1}]}",
    "host: {shared: 1, shared_tmpfs: [5]}",
    "policy: {cooldown_s: 0}",
    "policy: {cooldown_s: -0.5}",
    "policy: {tripwire_pct: 100}",
    "policy: {tripwire_pct: 0}",
    "policy: {shrink_below_pct: 100}",
    "policy: {psi_some_ms: 0}",
    "policy: {psi_window_ms: 499}",
    "policy: {psi_window_ms: 10000}",
    "policy: {psi_window_ms: 10001}",
    "policy: {psi_window_ms: 1000.0}",
    "policy: {psi_window_ms: 1000.5}",
    "policy: {migrate_timeout_s: 0}",
    "policy: {reclaim_before_evacuate: false}",
    "policy: {reclaim_before_evacuate: 0}",
    "containers: null",
    "containers: {}",
    "containers: []",
    "containers: {a: null}",
    "containers: {a: {max: 1G}}",
    "containers: {a: {min: 1}}",
    "containers: {a: {min: 0}}",
    "containers: {a: {min: -5}}",
    "containers: {a: {min: '0'}}",
    "containers: {a: {min: 0K}}",
    "containers: {a: {min: 0.5G}}",
    "containers: {a: {min: 1.5GiB}}",
    "containers: {a: {min: 512kb}}",
    "containers: {a: {min: 2X}}",
    "containers: {a: {min: 2 nodes}}",
    "containers: {a: {min: {nodes: 2}}}",
    "containers: {a: {min: {nodes: 0}}}",
    "containers: {a: {min: {nodes: 2, extra: 1}}}",
    "containers: {a: {min: {}}}",
    "containers: {a: {min: 1G, priority: 3}}",
    "containers: {a: {min: 1G, priority: -3}}",
    "containers: {a: {min: 1G, shared: true}}",
    "containers: {a: {min: 1G, shared: 1}}",
    "containers: {a: {min: 1G, cgroup: system.slice/a.service}}",
    "containers: {a: {min: 1G, cgroup: /abs/path}}",
    "containers: {a: {min: 1G, cgroup: a/../b}}",
    "containers: {a: {min: 1G, cgroup: ''}}",
    "containers: {a: {min: 1G, color: red}}",
    "containers: {.a: {min: 1G}}",
    "containers: {-a.b_c: {min: 1G}}",
    "containers: {a b: {min: 1G}}",
    "nonsense: 1",
    "[1, 2]",
]


@pytest.mark.parametrize("text", SNIPPETS)
def test_parser_and_schema_agree(text: str) -> None:
    try:
        loads(text)
        parser_ok = True
    except ConfigError:
        parser_ok = False
    schema_ok = not errors(yaml.safe_load(text))
    assert parser_ok == schema_ok


def test_snippets_exercise_both_outcomes() -> None:
    outcomes = set()
    for text in SNIPPETS:
        outcomes.add(not errors(yaml.safe_load(text)))
    assert outcomes == {True, False}


@pytest.mark.parametrize(
    "path", sorted((REPO / "config" / "scenarios").glob("*.yaml")), ids=lambda p: p.name
)
def test_every_scenario_config_validates(path: Path) -> None:
    doc = yaml.safe_load(path.read_text())
    assert "config" in doc
    assert errors(doc["config"]) == []
