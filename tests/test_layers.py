"""The package layout is the architecture: these import rules keep it so.

Data flows one way (events → snapshot → policy → actions → backend). Each module's imports
are read from its AST (function-local and ``TYPE_CHECKING`` imports included) and mapped to
the top-level part of ``zoned`` they belong to (``zoned.kernel.psi`` → ``kernel``,
``zoned.engine`` → ``engine``). docs/architecture.md draws the same picture.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

ZONED = Path(__file__).resolve().parent.parent / "zoned"

# part -> the parts of zoned it may import (besides itself). The rules: model imports
# nothing of zoned; policy only model, config and errors; kernel and backends never policy
# or service. The rest of the table writes down today's one-way flow so it stays so; only
# cli (and __main__) may import anything.
_BASE = frozenset({"model", "errors"})
MAY_IMPORT: dict[str, frozenset[str]] = {
    "model": frozenset(),
    "errors": frozenset({"model"}),
    "config": _BASE,
    "kernel": _BASE,
    "policy": _BASE | {"config"},
    "backends": _BASE | {"config", "kernel"},
    "handover": _BASE | {"config", "backends"},
    "usagecache": _BASE,
    "engine": _BASE | {"config", "policy", "backends", "handover", "usagecache"},
    "baseline": _BASE | {"config", "policy", "backends"},
    "shared": _BASE | {"config", "kernel", "backends"},
    "accounting": _BASE | {"config", "kernel", "backends"},
    "service": _BASE
    | {"config", "kernel", "policy", "backends", "handover", "engine", "shared", "accounting"},
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ZONED.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    """Every ``zoned…`` module that ``path`` imports, with the line it does so on."""
    tree = ast.parse(path.read_text(), str(path))
    here = _module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package[: len(package) - (node.level - 1)]
                base = ".".join([*up, base] if base else up)
            if base == "zoned":  # from zoned import kernel → zoned.kernel
                for alias in node.names:
                    yield node.lineno, f"zoned.{alias.name}"
            else:
                yield node.lineno, base


def part_of(module: str) -> str | None:
    """The top-level part of zoned that ``module`` lives in, or None outside zoned."""
    parts = module.split(".")
    if parts[0] != "zoned" or len(parts) < 2:
        return None
    return parts[1]


def arrows() -> dict[tuple[str, str], list[str]]:
    """(importer part, imported part) → the import sites, as ``file:line: module``."""
    found: dict[tuple[str, str], list[str]] = {}
    for path in sorted(ZONED.rglob("*.py")):
        src = part_of(_module_name(path))
        if src is None:
            continue
        for line, module in _imports(path):
            dst = part_of(module)
            if dst is not None and dst not in (src, "__version__"):
                rel = path.relative_to(ZONED.parent)
                found.setdefault((src, dst), []).append(f"{rel}:{line}: imports {module}")
    return found


def test_each_layer_imports_only_what_it_may() -> None:
    broken = [
        f"{site} ({src} may import only {', '.join(sorted(allowed)) or 'nothing of zoned'})"
        for (src, dst), sites in sorted(arrows().items())
        if src not in ("cli", "__main__")
        and dst not in (allowed := MAY_IMPORT.get(src, frozenset()))
        for site in sites
    ]
    assert not broken, "layer rule broken:\n" + "\n".join(broken)


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle in ``graph`` as a path that returns to its start, or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        path.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return [*path[path.index(m) :], m]
            if m not in state and (found := visit(m)):
                return found
        path.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (found := visit(n)):
            return found
    return None


def test_no_cycles_between_parts() -> None:
    found = arrows()
    graph: dict[str, set[str]] = {}
    for src, dst in found:
        graph.setdefault(src, set()).add(dst)
    cycle = _cycle(graph)
    if cycle:
        sites = [s for a, b in itertools.pairwise(cycle) for s in found[(a, b)][:2]]
        pytest.fail("import cycle " + " → ".join(cycle) + ":\n" + "\n".join(sites))


def test_the_walk_sees_the_layout() -> None:
    """Guards the guard: a walk that found nothing would pass every rule, and a new
    top-level part must be given its place in the table."""
    parts = {p for p, _ in arrows()}
    assert {"config", "policy", "kernel", "backends", "service", "cli"} <= parts
    every = {part_of(_module_name(f)) for f in ZONED.rglob("*.py")}
    unknown = {p for p in every if p is not None} - {*MAY_IMPORT, "cli", "__main__"}
    assert not unknown, f"give {sorted(unknown)} a row in MAY_IMPORT"
