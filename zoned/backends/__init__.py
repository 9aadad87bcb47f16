"""Hosts zoned can drive: cgroup v2, cgroup v1, and the simulated host."""
