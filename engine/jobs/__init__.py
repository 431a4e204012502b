"""The bridge between the engine and the database: dataset registration, queue, worker, tasks.

The only part of `engine` (with `engine.cli`) that imports `db`.
"""
