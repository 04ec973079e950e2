"""A Redis-protocol key-value server whose maintenance tasks run in orbits.

See ../README.md.  Run: ``cd examples/kvserver && python -m kvserver --port P --dir D``.
"""
