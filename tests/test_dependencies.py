"""Every third-party import is declared in pyproject.toml, and in the right place.

Read from the source (every ``import`` statement, those inside functions too, which
importing the modules would not reach), resolved to distributions through the installed
metadata (``yaml`` is PyYAML, ``systemd`` is systemd-python).
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Imports that only an extra provides, and the only modules of zoned allowed to make them.
EXTRA_ONLY = {"plot": {"zoned/cli/plot.py"}, "shell": {"zoned/cli/generate.py"}}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(req: str) -> str:
    match = re.match(r"[A-Za-z0-9._-]+", req)
    assert match, req
    return _norm(match.group())


def declared() -> dict[str, set[str]]:
    """``{"": core dependencies, extra: its dependencies}``, as normalised names."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    out = {"": {_requirement_name(r) for r in project["dependencies"]}}
    for extra, reqs in project["optional-dependencies"].items():
        out[extra] = {_requirement_name(r) for r in reqs}
    return out


def third_party_imports(folder: str) -> dict[str, set[str]]:
    """Top-level module name → the files (relative to the repo) that import it."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / folder).rglob("*.py")):
        rel = str(path.relative_to(ROOT))
        for node in ast.walk(ast.parse(path.read_text(), rel)):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in {"zoned", "tests"}:
                    found.setdefault(top, set()).add(rel)
    return found


def _distribution(module: str) -> str:
    dists = packages_distributions().get(module)
    assert dists, f"{module}: imported but not installed (declare it in pyproject.toml)"
    return _norm(dists[0])


def test_every_import_of_zoned_is_a_core_dependency_or_its_extra() -> None:
    deps = declared()
    for module, files in third_party_imports("zoned").items():
        dist = _distribution(module)
        if dist in deps[""]:
            continue
        extras = [e for e, names in deps.items() if dist in names and e in EXTRA_ONLY]
        assert extras, f"{module} ({dist}) imported by {sorted(files)} is not a dependency"
        assert files <= EXTRA_ONLY[extras[0]], (
            f"{module} is in the [{extras[0]}] extra only, but {sorted(files)} import it"
        )


def test_every_import_of_the_tests_is_declared() -> None:
    deps = declared()
    allowed = deps[""] | deps["dev"] | deps["plot"]
    for module, files in third_party_imports("tests").items():
        dist = _distribution(module)
        assert dist in allowed, f"{module} ({dist}) imported by {sorted(files)} is not declared"


def test_psutil_is_not_a_dependency() -> None:
    # /proc is read under the injected root (zoned/kernel/proc.py); psutil reads the one
    # named by its global PROCFS_PATH (docs/architecture.md, "Dependencies").
    assert "psutil" not in set().union(*declared().values())
    assert "psutil" not in third_party_imports("zoned")
