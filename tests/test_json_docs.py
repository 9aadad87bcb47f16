"""Every JSON document zoned prints has a shipped schema, and real output validates.

The commands run as operators run them (the parser, fake trees, the simulated host, a
daemon on the paced simulator); each document is checked against the schema its
``schema`` key names (tests/support/jsondocs.py). Other tests validate the documents they
already read (check, topology, plan, usage, shared mount, simulate, adopt).
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.support.daemon import running, wait_for
from tests.support.jsondocs import SCHEMAS, load_schema, parse, validate
from zoned.cli.commands._index import HELP
from zoned.cli.main import build_parser, main
from zoned.model.decisions import CODES
from zoned.model.jsondoc import DOCS, schema_file, schema_id

ROOT = Path(__file__).resolve().parent.parent
TREE = ["--sysfs-root", str(ROOT / "tests/data/sys-8node")]
TREE += ["--proc-root", str(ROOT / "tests/data/proc-8node")]


def _json_commands(p: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> set[str]:
    """Every (sub)command of ``p`` that takes ``--json``, as ``"shared warm"``."""
    found: set[str] = set()
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found |= _json_commands(sub, (*path, name))
        elif "--json" in action.option_strings:
            found.add(" ".join(path))
    return found


def test_every_json_command_has_a_schema_shipped() -> None:
    # The parser registers one command fully at a time (zoned.cli.main): walk each.
    commands: set[str] = set()
    for name in HELP:
        commands |= {c for c in _json_commands(build_parser(name)) if c.split()[0] == name}
    assert "status" in commands and "shared warm" in commands  # the walk finds them
    # A command that prints JSON without a document (and so a schema) fails here.
    assert commands == {cmd for _, cmd in DOCS.values()}
    shipped = {p.name for p in SCHEMAS.iterdir() if p.name.endswith(".json")}
    assert shipped == {schema_file(d) for d in DOCS}


def test_docs_list_every_document_and_code() -> None:
    text = (ROOT / "docs" / "json.md").read_text()
    for doc, (_, command) in DOCS.items():
        assert f"| `{schema_id(doc)}` | `zoned {command} --json" in text, doc
    for code in CODES:
        assert f"| `{code}` |" in text, code
    # ...and the schemas allow exactly the codes the engine may record.
    assert load_schema("event")["properties"]["code"]["enum"] == list(CODES)
    for doc in ("status", "simulate", "demo"):
        assert load_schema(doc)["$defs"]["decision"]["properties"]["code"]["enum"] == list(CODES)


@pytest.mark.parametrize("doc", sorted(DOCS))
def test_each_schema_is_draft_2020_12_and_names_its_document(doc: str) -> None:
    s = load_schema(doc)
    jsonschema.Draft202012Validator.check_schema(s)
    assert s["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert s["$id"] == schema_id(doc)
    assert s["properties"]["schema"] == {"const": schema_id(doc)}
    assert "schema" in s["required"]


def test_a_document_with_an_unknown_field_or_old_spelling_fails() -> None:
    """The schemas are exact: they catch a field added without a schema change."""
    good = {"schema": "zoned/shared-where/v1", "files": []}
    validate(good)
    with pytest.raises(jsonschema.ValidationError):
        validate({**good, "version": 1})
    with pytest.raises(AssertionError, match="no known schema"):
        validate({"version": 1, "files": []})


def _events(sock: Path, until: Any) -> list[dict[str, Any]]:
    """Run ``zoned events --json`` and read its lines until ``until(line_doc)``."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "zoned", "events", "--json", "-n", "200", "--socket", str(sock)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for ln in proc.stdout or ():
            lines.put(ln)

    reader = threading.Thread(target=read)
    reader.start()
    out: list[dict[str, Any]] = []
    try:
        while True:
            try:
                line = lines.get(timeout=30.0)
            except queue.Empty:
                raise AssertionError(f"no event line in 30 s; had {out}") from None
            out.append(parse(line))
            if until(out[-1]):
                return out
    finally:
        proc.kill()
        reader.join()  # it reads to the end of the pipe: the process is gone
        proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def test_status_and_events_of_a_daemon_validate_with_structured_fields(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with running(tmp_path) as r:
        assert r.call(cmd="lend", node=3, container="web")["ok"]
        wait_for(lambda: r.owners()[3] == "web" and not r.status()["pending"], "node 3 lent")
        assert r.call(cmd="reclaim", node=3)["ok"]
        wait_for(lambda: r.owners()[3] == "free" and not r.status()["pending"], "node 3 back")
        assert main(["status", "--json", "-n", "50", "--socket", str(r.socket)]) == 0
        status = parse(capsys.readouterr().out)
        events = _events(r.socket, lambda e: e["kind"] == "return" and e["code"] == "done")
    assert status["containers"][0]["min"] == {"value": 1, "unit": "nodes"}
    assert {e["code"] for e in events} <= set(CODES)
    admits = [e for e in events if e["kind"] == "admit"]
    assert {(e["container"], e["code"]) for e in admits} == {("web", "done"), ("batch", "done")}
    lend = [e for e in events if e["kind"] == "lend"]
    assert [(e["code"], e["container"], e["node"], e["donor"]) for e in lend] == [
        ("started", "web", 3, None),
        ("done", "web", 3, None),
    ]
    assert lend[1]["seconds"] is not None and lend[1]["outcome"].startswith("done in ")
    ret = [e for e in events if e["kind"] == "return"]
    assert [(e["code"], e["container"], e["node"], e["donor"]) for e in ret] == [
        ("started", "web", 3, "web"),
        ("done", "web", 3, "web"),
    ]
    done = ret[1]
    # An idle container: nothing to move, and the words say the same as the fields.
    assert (done["migrated_bytes"], done["freed_bytes"], done["left_behind_bytes"]) == (0, 0, 0)
    assert "0B migrated" in done["outcome"]
    # The status document's decisions are the same records, without the envelope.
    fields = {k for k in events[0] if k != "schema"}
    assert all(set(d) == fields for d in status["decisions"])


def test_check_json_carries_warnings_with_their_location(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "zoned.yaml"
    cfg.write_text(
        "host:\n  reserved_nodes: [0]\n  shared: 1\n"
        "containers:\n  web:\n    min: {nodes: 1}\n    shared: true\n"
    )
    assert main(["check", "--json", "--no-topology", str(cfg)]) == 0
    doc = parse(capsys.readouterr().out)
    (conf,) = doc["configs"]
    (w,) = [w for w in conf["warnings"] if w["message"].startswith("web: shared: true")]
    assert (w["file"], w["line"], w["column"]) == (str(cfg), 7, 13)
    assert w["text"] == f"{cfg}:7:13: {w['message']}"
    bad = tmp_path / "bad.yaml"
    bad.write_text("containers:\n  web: {min: 2G, max: 1G}\n")
    assert main(["check", "--json", "--no-topology", str(bad)]) == 1
    (conf,) = parse(capsys.readouterr().out)["configs"]
    assert conf["problems"] and conf["warnings"] == []


def test_shared_where_json_validates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "blob"
    f.write_bytes(os.urandom(16 * 4096))
    assert main(["shared", "where", "--json", str(f)]) == 0
    (item,) = parse(capsys.readouterr().out)["files"]
    assert item["size"] == 16 * 4096 and sum(item["nodes"].values()) == item["resident"]


def test_demo_json_validates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--json", "--plot", str(tmp_path / "demo.png")]) == 0
    doc = parse(capsys.readouterr().out)
    assert doc["schema"] == "zoned/demo/v1" and doc["static_zones_summary"]
    moved = [d for d in doc["decisions"] if d["kind"] == "reclaim" and d["code"] == "done"]
    assert moved and all(d["donor"] and d["migrated_bytes"] is not None for d in moved)


def test_topology_and_plan_json_on_one_tree_validate(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["topology", "--json", *TREE]) == 0
    topo = parse(capsys.readouterr().out)
    assert main(["plan", "--config", str(ROOT / "config/zoned.yaml"), *TREE, "--json"]) == 0
    plan = parse(capsys.readouterr().out)
    assert sum(n["bytes"] for n in plan["nodes"]) == topo["total_bytes"]
    assert json.dumps(plan).count('"version"') == 0
