"""Pure decisions over plain data: decide, placement, process rules.

Imports only model, config and errors.
"""
