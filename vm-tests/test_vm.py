"""One test per boot part: boot a configuration, run its share of the guest tests inside it.

The guest runs ``pytest`` on ``vm-tests/guest`` (or one part of it) against its own /sys
and /proc; this test passes when that pytest passes, and shows the guest's failures, the
test that was running and the console tail when it does not.

A configuration whose guest tests take long is split into parts (``PARTS``), each its own
boot, so that no boot comes near its time limit on a busy machine: the explicit parts list
guest test files, and the last part runs every other file, so a new guest test always runs
somewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import BOOT_REPORT, need
from guestrun import GUEST, findings, guest_pytest, junit_summary, progress_report
from harness import BOOTS, PROJECT, HarnessError, run_in_guest

# Boot plus the guest's pytest start over 9p is 10-20 s under TCG. CI boots two guests at
# once on 2 cores (.ci/run), which makes each ~1.8x slower than alone: the longest part
# took 285 s that way, under a third of this limit (vm-tests/README.md); a guest that needs
# longer is stuck.
TIMEOUT_S = float(os.environ.get("ZONED_VM_TIMEOUT", "900"))

# Boot name -> the guest test files of each explicit part; "rest" runs the others.
PARTS: dict[str, list[list[str]]] = {
    # 317 s of guest tests in one boot (CI, 2026-12-04): four boots of 70-95 s of tests each,
    # and one of 140 s for the stress-ng growers (issue 13).
    "6.1-numa8-v2": [
        ["test_shared_zone.py", "test_shared_tmpfs.py"],
        ["test_shared_rewarm.py", "test_scenario_handover.py"],
        ["test_scenario_grow.py", "test_scenario_nolend.py", "test_scenario_notify.py"],
        ["test_scenario_overcommit.py"],
        ["test_podman.py", "test_docker.py"],  # containers that engines start (issue 15)
    ],
    # 163 s in one boot, 108 of them the shared zone on v1; then 130 s of stress-ng growers.
    "6.1-numa8-v1": [["test_shared_zone.py"], ["test_scenario_overcommit.py"]],
    # 6.12 runs the stress-ng growers (issue 13's "0 OOM kills on 6.1 v1, 6.1 v2 and 6.12")
    # in a boot of their own, and its rest (backends, contract, daemon, faults); the other
    # scenarios moved to the newest kernel (vm-tests/README.md, "The boot matrix").
    "6.12-numa8-v2": [["test_scenario_overcommit.py"]],
    # The newest kernel runs every v2 guest test, in four boots: the shared zone with the
    # short scenarios, the re-warm with the hand-overs, the stress-ng growers, the rest.
    "newest-numa8-v2": [
        [
            "test_shared_zone.py",
            "test_shared_tmpfs.py",
            "test_scenario_grow.py",
            "test_scenario_nolend.py",
            "test_scenario_notify.py",
        ],
        ["test_shared_rewarm.py", "test_scenario_handover.py"],
        ["test_scenario_overcommit.py"],
    ],
}


def boot_parts() -> list[tuple[str, str, list[str], list[str]]]:
    """(test id, boot name, paths to run, paths to leave out) for every boot and part."""
    out: list[tuple[str, str, list[str], list[str]]] = []
    for name in BOOTS:
        explicit = [[f"{GUEST}/{f}" for f in files] for files in PARTS.get(name, [])]
        if not explicit:
            out.append((name, name, [GUEST], []))
            continue
        for i, paths in enumerate(explicit, start=1):
            out.append((f"{name}-part{i}", name, paths, []))
        rest = [p for paths in explicit for p in paths]
        out.append((f"{name}-rest", name, [GUEST], rest))
    return out


@pytest.mark.vm
@pytest.mark.parametrize(
    ("run_name", "boot_name", "paths", "ignore"),
    [pytest.param(*part, id=part[0]) for part in boot_parts()],
)
def test_guest_suite(
    run_name: str,
    boot_name: str,
    paths: list[str],
    ignore: list[str],
    *,
    vm_prerequisites: None,
    request: pytest.FixtureRequest,
) -> None:
    missing = [p for p in [*paths, *ignore] if not (PROJECT / p).exists()]
    assert not missing, f"PARTS names guest test files that do not exist: {missing}"
    boot = BOOTS[boot_name]
    try:
        result = run_in_guest(boot, guest_pytest(paths, ignore), timeout_s=TIMEOUT_S, name=run_name)
    except HarnessError as exc:
        need(False, f"boot {boot_name} cannot be prepared: {exc}")
        raise  # need() skipped or failed; this is not reached
    cases, failures = junit_summary(result.run_dir / "junit.xml")
    # Through the test report, so that it reaches the terminal summary from an xdist worker.
    request.node.user_properties.append(
        (
            BOOT_REPORT,
            {
                "boot": run_name,
                "paths": paths,
                "ignore": [Path(p).name for p in ignore],
                "kernel": result.kernel_release,
                "rc": result.rc,
                "timings": dict(result.timings),
                "tests": len(cases),
                "findings": findings(result.run_dir),
                "log": str(result.console_log_path),
            },
        )
    )
    if result.rc == 5:
        pytest.skip(f"no guest test matches boot {boot_name} in {paths}")
    if result.rc != 0:
        pytest.fail(
            "\n".join(
                [
                    result.describe(),
                    progress_report(result.run_dir),
                    "guest tests:",
                    *cases,
                    *failures,
                    "--- console tail:",
                    result.tail(80),
                ]
            ),
            pytrace=False,
        )
