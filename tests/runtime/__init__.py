"""The runtimes without FUSE: live upgrade through the direct runtime, the loader."""
