"""Plain frozen data: zone map, snapshot, actions, sizes, node lists.

Imports nothing of zoned.
"""
