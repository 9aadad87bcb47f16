"""zoned: memory zones for containers on a fake-NUMA Linux host."""

__version__ = "0.1.0"
