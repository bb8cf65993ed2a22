"""Put a finished directory at a path in one step, so that readers never find the path missing.

rename(2) replaces a missing path or an empty directory atomically, but not a directory
that holds something: moving the old one aside and the new one in leaves an instant in
which the path does not exist, and a reader (or a training job starting) that looks then
fails. Linux's renameat2(RENAME_EXCHANGE) swaps two paths in one step: the new dataset
takes the path and the old one takes the temporary's name, from where it is deleted.

Why not a symbolic link swapped with rename(2), which works on every POSIX file system?
The dataset path would become a link to a versioned directory beside it: copying,
rsync-ing or archiving the path would copy a link, and a tool that replaced the link by
a directory would break the next overwrite. An exchange keeps the path a plain directory.
Where the kernel or the file system cannot exchange (not Linux, or e.g. some network file
systems: EINVAL), the old dataset is moved aside and the new one renamed in, and the path
is missing for the instant between the two renames.
"""
from __future__ import annotations

import ctypes
import errno
import os
import sys

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_CANNOT_EXCHANGE = {errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP}  # the kernel or file system does not do it


def exchange(first, second):
    """Swap the paths `first` and `second` atomically; False where this system cannot (nothing moved)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2  # glibc >= 2.28
    except AttributeError:
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in _CANNOT_EXCHANGE:
        return False
    raise OSError(code, os.strerror(code), os.fspath(first), None, os.fspath(second))


def swap_in(new, target, aside):
    """Put the directory `new` at `target`; return the path that now holds what was there, or None.

    A missing `target` or an empty directory is replaced by rename(2); a non-empty one is
    exchanged with `new` (the old contents end up at `new`), or, where exchanging is not
    possible, renamed to `aside` first. The caller deletes the returned directory.
    """
    try:
        os.rename(new, target)
        return None
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
    if exchange(new, target):
        return new
    os.rename(target, aside)
    os.rename(new, target)  # a crash just before this leaves both datasets whole, under hidden names
    return aside
