"""The Backend contract, written once (``suite``) and run against every host."""
