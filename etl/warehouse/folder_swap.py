"""Replace a folder whole: the new one is written beside it and swapped in.

Where the system can exchange two folders atomically (Linux renameat2) there is no moment
without the folder; elsewhere a kill between the two renames leaves the old folder aside
under OLD_MARK, and `put_back` returns it.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import sys
import time
from pathlib import Path

OLD_MARK = ".runreport-old-"
# temporary folders younger than this may belong to a swap still running
LEFTOVER_AGE_S = 6 * 3600
RENAME_EXCHANGE = 2
AT_FDCWD = -100


def swap_in(work: Path, out: Path, tmp_mark: str) -> None:
    """Put `work` in place of `out` (if any), then delete the old `out`. `work`'s name
    carries `tmp_mark`; the old folder is set aside under the same name with OLD_MARK."""
    if out.exists() and exchange(work, out):
        shutil.rmtree(work, ignore_errors=True)  # it now holds the old folder
        return
    old = None
    if out.exists():
        old = work.with_name(work.name.replace(tmp_mark, OLD_MARK))
        os.replace(out, old)
    try:
        os.replace(work, out)
    except OSError:
        if old is not None:
            os.replace(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def exchange(first: Path, second: Path) -> bool:
    """Swap two paths in one atomic step; False where the system cannot."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if not sys.platform.startswith("linux") or renameat2 is None:
        return False
    done = renameat2(AT_FDCWD, os.fsencode(first), AT_FDCWD, os.fsencode(second), RENAME_EXCHANGE)
    if done == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False  # a file system without the exchange
    raise OSError(code, os.strerror(code), str(second))


def put_back(out: Path, pattern: str, is_whole: str) -> None:
    """A previous folder a killed swap left aside (`pattern` globbed beside `out`, newest
    first) goes back in place when `out` is missing and it holds the file `is_whole`."""
    if out.exists() or not out.parent.is_dir():
        return
    aside = sorted(out.parent.glob(pattern), key=lambda p: p.stat().st_mtime)
    if aside and (aside[-1] / is_whole).is_file():
        with contextlib.suppress(OSError):
            os.replace(aside[-1], out)


def remove_leftovers(out: Path, tmp_mark: str, is_whole: str) -> None:
    """Put back a previous folder a killed swap left aside (it holds the file `is_whole`),
    then remove temporary folders of swaps killed before they could clean up."""
    if not out.parent.is_dir():
        return
    put_back(out, f".{out.name}{OLD_MARK}*", is_whole)
    cutoff = time.time() - LEFTOVER_AGE_S
    for mark in (tmp_mark, OLD_MARK):
        for leftover in out.parent.glob(f".{out.name}{mark}*"):
            with contextlib.suppress(OSError):
                if leftover.is_dir() and leftover.stat().st_mtime < cutoff:
                    shutil.rmtree(leftover)


def fsync_tree(folder: Path) -> None:
    """Every file and folder under `folder` on disk before it is renamed into place."""
    for path in sorted(folder.rglob("*"), reverse=True):
        _fsync(path)
    _fsync(folder)


def _fsync(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
