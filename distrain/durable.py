"""Writes that survive a crash or a power cut, shared by checkpoints and shard datasets.

A durable write goes to a temporary name beside its target, is synced, and is renamed onto
the target. A rename is only durable once the directory holding it is fsynced: without
that, a power cut can bring back the old name (or none) even though the new file's bytes
were synced.

NOTE [ Temporary names and dead writers ]
A writer killed mid-write (SIGKILL, a power cut) leaves its temporary file or directory
behind. Its name records who wrote it, `.NAME.HOST.PID.TOKEN.SUFFIX`, so the next write to
the same target can tell a dead writer's leftover from a live writer's work in progress:
it removes a leftover only when HOST is this machine and process PID no longer exists. A
temporary from another machine (a shared file system), from a process that is still
running, or from a reused pid is left alone: removing a live writer's file would break its
save, while keeping a dead one only costs disk space.
"""
from __future__ import annotations

import os
import re
import secrets
import shutil
import socket


def fsync_directory(path):
    """Flush `path`'s directory entries (renames, creations) to disk; a no-op where unsupported."""
    if os.name != "posix":
        return
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def host_token() -> str:
    """This machine's name as it appears in temporary names: only letters, digits, '-' and '_'."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname()) or "localhost"


def temporary_path(target, suffix="tmp", pid=None) -> str:
    """A fresh name beside `target` for this process to write before renaming onto `target`.

    `pid` is for tests that need a name as another process would have made it.
    """
    directory, name = os.path.split(os.path.abspath(target))
    writer = os.getpid() if pid is None else pid
    return os.path.join(directory, f".{name}.{host_token()}.{writer}.{secrets.token_hex(4)}.{suffix}")


def remove_dead_temporaries(target, suffix="tmp") -> list:
    """Delete the temporaries that dead writers left beside `target`; return their paths.

    See NOTE [ Temporary names and dead writers ]: only leftovers of processes on this host
    that no longer exist are removed. Errors while removing (another process removed it
    first, no permission) are ignored: cleaning up is a courtesy, never a reason to fail a save.
    """
    directory, name = os.path.split(os.path.abspath(target))
    pattern = re.compile(rf"\.{re.escape(name)}\.(?P<host>[A-Za-z0-9_-]+)\.(?P<pid>\d+)\.[0-9a-f]{{8}}"
                         rf"\.{re.escape(suffix)}")
    here, removed = host_token(), []
    try:
        entries = os.listdir(directory)
    except OSError:
        return removed
    for entry in entries:
        found = pattern.fullmatch(entry)
        if found is None or found["host"] != here or not _process_is_dead(int(found["pid"])):
            continue
        path = os.path.join(directory, entry)
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)
        except OSError:
            continue
        removed.append(path)
    return removed


def _process_is_dead(pid) -> bool:
    """True only when no process `pid` exists on this machine (a zombie still counts as alive)."""
    if os.name != "posix" or pid == os.getpid() or not 0 < pid < 2**31:
        return False  # elsewhere os.kill(pid, 0) would not just probe
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # PermissionError: it exists, owned by someone else
        return False
    return False


def replace_file(target, write, sync_directory=True):
    """Replace `target` with the bytes `write(file)` puts into a binary file, all or nothing.

    The new content goes to a temporary beside `target`, is fsynced and renamed onto it, and
    the directory is fsynced: a crash at any instant leaves either the old file or the new
    one, never a mix. If `write` (or the disk) fails, the temporary is removed and the old
    file is untouched; the exception propagates. Leftovers of dead writers are removed first
    (NOTE [ Temporary names and dead writers ]). `sync_directory=False` leaves the directory's
    fsync to the caller (distrain.save reports its failure apart: the new file is in place).
    """
    remove_dead_temporaries(target)
    temporary = temporary_path(target)
    try:
        with open(temporary, "xb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)
    except BaseException:  # KeyboardInterrupt too: never leave a half-written temporary behind
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    if sync_directory:
        fsync_directory(os.path.dirname(os.path.abspath(target)))
