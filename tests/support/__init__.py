"""Test support shared by the host tests (tests/) and the guest tests (vm-tests/guest/).

Importable from both: the guest runs pytest from the project root, so ``tests.support``
resolves there as it does here. Nothing in it writes outside what a caller names.

- :mod:`tests.support.waiting`: polls and child-pipe reads, every one with a deadline.
- :mod:`tests.support.procs`: an allocating child process, a process's descendants.
- :mod:`tests.support.cgroups`: removing a cgroup subtree, recording ``CgroupFs`` writes.
- :mod:`tests.support.numa`: pages per node from ``numa_maps`` and v1 ``memory.numa_stat``.
"""
