"""One module per ``zoned`` subcommand; each exposes ``register(subparsers)``."""
