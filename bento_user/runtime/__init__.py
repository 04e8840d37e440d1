"""Runtimes: what calls a file system. ``direct`` runs it in-process (tests, fuzzing,
trace replay); the FUSE runtime mounts it. Both go through ``_dispatch.Dispatcher``."""
