"""Writes that survive a crash or a power cut, shared by checkpoints and shard datasets.

A rename is only durable once the directory holding it is fsynced: without that, a power
cut can bring back the old name (or none) even though the new file's bytes were synced.
"""
from __future__ import annotations

import os


def fsync_directory(path):
    """Flush `path`'s directory entries (renames, creations) to disk; a no-op where unsupported."""
    if os.name != "posix":
        return
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
