"""Files and fds of /sys, /proc and cgroupfs: readers, parsers, notifications, syscalls."""
