"""YAML → ``Declarations`` with file:line:col problems: load, declarations, field table, schema."""
