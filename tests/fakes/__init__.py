"""Stand-ins for the kernel shared by several test modules: fake sysfs/procfs trees,
cgroup v1 and v2 hierarchies, mount tables."""
