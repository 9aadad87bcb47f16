"""The daemon and what runs beside it: loop, control socket, systemd glue, status, metrics, logs."""
