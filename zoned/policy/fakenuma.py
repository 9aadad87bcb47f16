"""Fake-NUMA advice: which ``numa=fake=N`` suits this RAM and these containers, and what
about a machine's topology works against zoned. Pure: the topology is read elsewhere
(``zoned.kernel.topology``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import median

from zoned.config.decl import Amount, AmountUnit
from zoned.errors import TopologyError
from zoned.model.nodelist import format_nodelist
from zoned.model.sizes import MIB, format_size
from zoned.model.zonemap import Topology

# mm/numa_emulation.c: FAKE_NODE_MIN_SIZE, the kernel refuses smaller fake nodes.
FAKE_NODE_MIN_SIZE = 32 * MIB
# Many nodes make every allocation walk a longer zonelist (linux-mm, 2006-09-15: with 64
# fake nodes a kernel build's system time "went through the roof"). Prefer few.
PREFERRED_MAX_NODES = 16
HARD_MAX_NODES = 64
# Nodes are never exactly total/N (holes, memmap, the kernel image on node 0, the last
# node takes the remainder): plan with this fraction of a node's nominal size as usable.
USABLE_FRACTION = 0.9
# With no declared containers: aim for nodes of about this size (fine enough to lend).
DEFAULT_NODE_TARGET = 256 * MIB


# ---------------------------------------------------------------------- recommending


@dataclass(frozen=True)
class FakeNumaPlan:
    """A recommended ``numa=fake=`` boot parameter and why."""

    nodes: int
    node_bytes: int  # nominal size of one node (total / nodes); real ones vary a little
    reasons: tuple[str, ...] = field(default=())

    @property
    def param(self) -> str:
        return f"numa=fake={self.nodes}"

    def __str__(self) -> str:
        return self.param


def _nodes_for(amount: Amount, node_bytes: int) -> int:
    if amount.unit is AmountUnit.NODES:
        return amount.value
    usable = int(node_bytes * USABLE_FRACTION)
    return max(1, math.ceil(amount.value / usable))


def plan_fake_numa(
    total_bytes: int, containers: Sequence[tuple[Amount, Amount]] = ()
) -> FakeNumaPlan:
    """Choose N for ``numa=fake=N`` given the RAM and the containers' (min, max).

    Rules: node 0 stays reserved for the host; each container's ``min`` takes whole nodes
    (a node counts as 90% of total/N, since real nodes come out uneven); one spare node
    when any container may grow past its min (overcommit needs a node to lend); nodes of
    at least 32 MiB (FAKE_NODE_MIN_SIZE); a max given in nodes must fit in the nodes
    besides node 0; never more than 64 nodes and preferably at
    most 16 (zonelist walk cost); no fewer nodes than without containers (nodes of ~256
    MiB, 2 to 16 of them), so lending stays fine-grained. Among the fits, the fewest
    nodes whose rounding waste (whole nodes held beyond byte-sized mins) stays within
    1/8 of the RAM; else the least waste. The count form ``N`` rather than a size is
    recommended because it spreads the remainder over the nodes instead of leaving one
    odd-sized last node.

    Raises TopologyError when nothing fits.
    """
    max_nodes = min(HARD_MAX_NODES, total_bytes // FAKE_NODE_MIN_SIZE)
    if max_nodes < 2:
        raise TopologyError(
            f"{format_size(total_bytes)} of memory is too little for fake NUMA: "
            f"at least 2 nodes of {format_size(FAKE_NODE_MIN_SIZE)} are needed"
        )
    floor = max(2, min(PREFERRED_MAX_NODES, max_nodes, total_bytes // DEFAULT_NODE_TARGET))
    if not containers:
        n = floor
        size = total_bytes // n
        return FakeNumaPlan(n, size, (_default_reason(n, size, total_bytes),))

    grows = any(_grows(lo, hi) for lo, hi in containers)
    spare = 1 if grows else 0
    byte_mins = [lo.value for lo, _ in containers if lo.unit is AmountUnit.BYTES]

    def fits(n: int) -> tuple[int, int] | None:
        size = total_bytes // n
        held = sum(_nodes_for(lo, size) for lo, _ in containers)
        if 1 + held + spare > n:
            return None
        if any(hi.unit is AmountUnit.NODES and hi.value > n - 1 for _, hi in containers):
            return None  # a max of K nodes needs K lendable nodes to mean anything
        waste = sum(_nodes_for(Amount.bytes_(b), size) * size - b for b in byte_mins)
        return held, max(0, waste)

    feasible: list[tuple[int, int, int]] = []  # (n, held, waste)
    for n in range(2, max_nodes + 1):
        r = fits(n)
        if r is not None:
            feasible.append((n, r[0], r[1]))
    if not feasible:
        need = sum(
            lo.value if lo.unit is AmountUnit.NODES else math.ceil(lo.value / FAKE_NODE_MIN_SIZE)
            for lo, _ in containers
        )
        raise TopologyError(
            f"the declared mins do not fit {format_size(total_bytes)} in at most "
            f"{max_nodes} fake nodes (they need at least {need} nodes plus node 0"
            + (" and a spare" if spare else "")
            + ")"
        )
    # Declared containers never make lending coarser than the no-container default.
    preferred = (
        [f for f in feasible if floor <= f[0] <= PREFERRED_MAX_NODES]
        or [f for f in feasible if f[0] <= PREFERRED_MAX_NODES]
        or feasible
    )
    budget = total_bytes // 8
    good = [f for f in preferred if f[2] <= budget]
    n, held, waste = good[0] if good else min(preferred, key=lambda f: (f[2], f[0]))
    size = total_bytes // n
    reasons = [
        f"{n} nodes of ~{format_size(size)}: node 0 reserved for the host, "
        f"{held} for the containers' mins, {n - 1 - held} free to lend",
    ]
    if spare:
        reasons.append("at least one spare node so a container can grow past its min")
    if byte_mins:
        reasons.append(f"whole-node rounding of the byte-sized mins holds {format_size(waste)}")
    if n > PREFERRED_MAX_NODES:
        reasons.append(
            f"more than {PREFERRED_MAX_NODES} nodes: every allocation walks a longer zonelist"
        )
    return FakeNumaPlan(n, size, tuple(reasons))


def _default_reason(n: int, size: int, total_bytes: int) -> str:
    """Why ``n`` nodes with no containers declared: the ~256 MiB aim, or what bent it."""
    head = f"{n} nodes of ~{format_size(size)}: node 0 for the host, {n - 1} to lend"
    aim = total_bytes // DEFAULT_NODE_TARGET
    target = format_size(DEFAULT_NODE_TARGET)
    if aim > n:
        return (
            f"{head}; with no containers declared zoned aims at nodes of ~{target}, but "
            f"{format_size(total_bytes)} would make {aim} of them and more than "
            f"{PREFERRED_MAX_NODES} make every allocation walk a longer zonelist, so the "
            f"nodes are larger (declare containers to size them: --config)"
        )
    if aim < n:
        return (
            f"{head}; {format_size(total_bytes)} is less than 2 nodes of ~{target}, and "
            "zoned needs at least 2 (node 0 and one to lend)"
        )
    return f"{head}; with no containers declared, nodes of ~{target} keep lending fine-grained"


def boot_steps(param: str, current: str | None) -> list[str]:
    """How to boot with ``param`` (``numa=fake=N``) on common boot loaders, one line each,
    and how to check it took. ``current``: the ``numa=fake=`` argument booted now, if any."""
    nodes = param.removeprefix("numa=fake=")
    edit = f"replace numa=fake={current} with {param} in" if current else f"add {param} to"
    last = f"node{int(nodes) - 1}" if nodes.isdigit() else "nodeN"
    return [
        f"Debian/Ubuntu (GRUB): {edit} GRUB_CMDLINE_LINUX in /etc/default/grub, "
        "run update-grub, reboot",
        f"systemd-boot: {edit} the options line of /boot/loader/entries/*.conf "
        "(or /etc/kernel/cmdline, then kernel-install), reboot",
        "kernelstub (Pop!_OS): "
        + (f"kernelstub -d numa=fake={current} -a {param}" if current else f"kernelstub -a {param}")
        + ", reboot",
        f"after the reboot: ls /sys/devices/system/node lists node0 to {last}; "
        "zoned topology shows their sizes",
    ]


def _grows(lo: Amount, hi: Amount) -> bool:
    if lo.unit is hi.unit:
        return hi.value > lo.value
    return True  # mixed units: assume it may grow; a spare node is cheap insurance


def recommend_fake_numa(total_bytes: int, containers: Sequence[tuple[Amount, Amount]] = ()) -> str:
    """The boot parameter (``numa=fake=N``) that ``plan_fake_numa`` chooses."""
    return plan_fake_numa(total_bytes, containers).param


# -------------------------------------------------------------------------- warnings


def warnings(topology: Topology) -> list[str]:
    """Things about this machine that work against zoned, each with what to do."""
    out: list[str] = []
    mem_nodes = [n for n in topology.nodes if n.has_memory]
    if len(mem_nodes) <= 1:
        out.append(
            "only one NUMA node with memory: zoned needs the kernel booted with "
            "numa=fake=N to have zones to hand out"
        )
    elif topology.fake_numa is None:
        out.append(
            f"{len(mem_nodes)} nodes but no numa=fake= on the kernel command line: these are "
            "real NUMA nodes, so a zone is a whole socket's memory"
        )
    if topology.numa_balancing and len(topology.nodes) > 1:
        out.append(
            "kernel.numa_balancing is on: with fake NUMA every CPU is local to the first "
            "fake node of its socket (mm/numa_emulation.c), so automatic balancing keeps "
            "migrating pages toward node 0 and across zones; set kernel.numa_balancing=0"
        )
    memoryless = [n.id for n in topology.nodes if not n.has_memory]
    if memoryless:
        out.append(
            f"nodes {format_nodelist(memoryless)} have no memory: they cannot be given to a "
            "container (cpuset.mems refuses them)"
            if len(memoryless) > 1
            else f"node {memoryless[0]} has no memory: it cannot be given to a container "
            "(cpuset.mems refuses it)"
        )
    if len(mem_nodes) > 2 and mem_nodes[0].id == 0:
        others = median(n.mem_total for n in mem_nodes[1:])
        node0 = mem_nodes[0].mem_total
        if node0 < 0.9 * others:
            out.append(
                f"node 0 ({format_size(node0)}) is smaller than the others "
                f"({format_size(others)} typical): the kernel's own memory lives there; "
                "keep it reserved for the host"
            )
    return out
