"""A container's ``engine:``: located errors, and the schema agrees with the loader."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from zoned.config.load import loads
from zoned.errors import ConfigError

SCHEMA = json.loads(
    (Path(__file__).resolve().parent.parent / "zoned/data/zoned.schema.json").read_text()
)


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        loads(text, "z.yaml")
    return [str(p) for p in info.value.problems]


def test_good_engine_declarations_load_and_pass_the_schema() -> None:
    text = (
        "containers:\n"
        "  web: {min: {nodes: 1}, engine: {podman: {name: 'web-*'}, docker: {label: a=b}}}\n"
        "  job: {min: 64M, engine: {name: job, label: 'k=', on_refusal: unzoned}}\n"
    )
    d = loads(text)
    assert d.containers == () and [t.name for t in d.templates] == ["web", "job"]
    web = d.templates[0].engine
    assert web is not None and [s.engine for s in web.selectors] == ["podman", "docker"]
    assert d.templates[1].engine is not None
    assert d.templates[1].engine.selectors[0].label == ("k", "")
    import yaml

    jsonschema.validate(yaml.safe_load(text), SCHEMA)


@pytest.mark.parametrize(
    ("body", "want"),
    [
        (
            "{min: 64M, cgroup: a/b, engine: {name: w}}",
            "z.yaml:2:17: containers.w.cgroup: found cgroup beside engine; expected engine alone",
        ),
        (
            "{min: 64M, match: [{exe: /x}], engine: {name: w}}",
            "z.yaml:2:17: containers.w.match: found match beside engine",
        ),
        (
            "{min: 64M, engine: {}}",
            "z.yaml:2:25: containers.w.engine: found no engine selector",
        ),
        (
            "{min: 64M, engine: {podman: {}}}",
            "z.yaml:2:34: containers.w.engine.podman: found an empty podman selector",
        ),
        (
            "{min: 64M, engine: {label: novalue}}",
            "z.yaml:2:33: containers.w.engine.label: found string 'novalue'; expected KEY=VALUE",
        ),
        (
            "{min: 64M, engine: {name: w, on_refusal: later}}",
            "z.yaml:2:47: containers.w.engine.on_refusal: found string 'later'; expected one of"
            " fail, unzoned",
        ),
        (
            "{min: 64M, engine: {cri: {name: w}}}",
            "z.yaml:2:26: containers.w.engine.cri: found an unknown key",
        ),
        (
            "{min: 64M, engine: web}",
            "z.yaml:2:25: containers.w.engine: found string 'web'; expected a mapping",
        ),
    ],
)
def test_bad_engine_is_located(body: str, want: str) -> None:
    got = problems(f"containers:\n  w: {body}\n")
    assert len(got) == 1 and got[0].startswith(want), got


@pytest.mark.parametrize(
    "engine",
    [{}, {"podman": {}}, {"label": "novalue"}, {"name": "w", "on_refusal": "x"}, {"cri": {}}],
)
def test_schema_refuses_what_the_loader_refuses(engine: dict[str, object]) -> None:
    doc = {"containers": {"w": {"min": "64M", "engine": engine}}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, SCHEMA)


def test_check_names_the_engine_declarations() -> None:
    from zoned.cli.commands.check import Result, summary

    d = loads(
        "containers:\n  db: {min: 64M}\n"
        "  web: {min: 64M, engine: {name: 'web-*'}}\n  job: {min: 64M, engine: {label: a=b}}\n"
    )
    text = summary(Result(Path("z.yaml"), d), None)
    assert "1 container (min 64M, max 64M)" in text
    assert text.endswith(", 2 engine declarations (web, job)")
