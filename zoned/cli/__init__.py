"""The ``zoned`` command: entry point (``main``), one module per command, rendering."""
