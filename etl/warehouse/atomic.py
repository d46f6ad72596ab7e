"""Atomic writes: a file or a folder is written beside its target and renamed into place
only when complete, so a crash, a kill or a full disk leaves the previous one whole.

Everything written on the way carries TMP_MARK in its name, so the next writer can find
and remove what a killed one left (`remove_leftover_files`, `remove_leftovers`). A folder
is swapped in with one atomic exchange where the system has one (Linux renameat2), so
there is no moment without it; elsewhere a kill between the two renames leaves the old
folder aside under OLD_MARK, and `remove_leftovers` puts it back.

A temporary folder's name carries its writer, `<pid>@<host>-` after the mark, so the next
writer removes at once the folders of a writer that no longer runs, and never those of
one that does. A name without a writer on this host (another host sharing the folder, an
older runreport) is removed only after LEFTOVER_AGE_S.

Files and folders follow the process umask, as a plain write would.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from etl.errors import write_failed

TMP_MARK = ".runreport-tmp-"
OLD_MARK = ".runreport-old-"
# temporary folders of no known writer younger than this may belong to a write still running
LEFTOVER_AGE_S = 6 * 3600
# after the mark: the writer, then mkdtemp's random part (which holds no '-')
WRITER = re.compile(r"(?P<pid>\d+)@(?P<host>[A-Za-z0-9._-]+)-[a-z0-9_]+")
# the names after the mark of the folders this process is writing now
_WRITING: set[str] = set()
RENAME_EXCHANGE = 2
AT_FDCWD = -100


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def fsync_file(path: Path | str) -> None:
    """The file's data on disk; raises OSError when it cannot be."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_folder(folder: Path) -> None:
    """The folder's entries (a rename into it) on disk, where the system can sync a folder."""
    with contextlib.suppress(OSError):
        fsync_file(folder)


def fsync_tree(folder: Path) -> None:
    """Every file and folder under `folder` on disk (as far as the system lets), before it
    is renamed into place."""
    for path in sorted(folder.rglob("*"), reverse=True):
        with contextlib.suppress(OSError):
            fsync_file(path)
    fsync_folder(folder)


def replace_file(source: Path, target: Path) -> None:
    """Put the complete file `source` in place of `target` in one rename: `source` on disk
    before the rename, the rename on disk after it."""
    fsync_file(source)
    os.replace(source, target)
    fsync_folder(target.parent)


def write_file(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically: a full disk or a kill leaves the old file."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}{TMP_MARK}", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(data)
        os.chmod(tmp_name, 0o666 & ~current_umask())  # mkstemp makes it 0600
        replace_file(Path(tmp_name), path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        if isinstance(exc, OSError):
            raise write_failed(path, exc) from exc
        raise


@contextlib.contextmanager
def write_folder(out: Path) -> Iterator[Path]:
    """A new, empty folder beside `out` to write into; when the block ends without error it
    replaces `out` whole (see `swap_in`), otherwise it is removed and `out` is untouched."""
    prefix = f".{out.name}{TMP_MARK}"
    work = Path(tempfile.mkdtemp(prefix=f"{prefix}{writer_tag()}", dir=out.parent))
    mine = work.name[len(prefix) :]
    _WRITING.add(mine)
    try:
        os.chmod(work, 0o777 & ~current_umask())  # mkdtemp makes it 0700
        yield work
        swap_in(work, out)
    except BaseException as exc:
        shutil.rmtree(work, ignore_errors=True)
        if isinstance(exc, OSError):
            raise write_failed(out, exc) from exc
        raise
    finally:
        _WRITING.discard(mine)


def swap_in(work: Path, out: Path) -> None:
    """Put `work` in place of `out` (if any), then delete the old `out`. `work`'s name
    carries TMP_MARK; the old folder is set aside under the same name with OLD_MARK."""
    if out.exists() and exchange(work, out):
        shutil.rmtree(work, ignore_errors=True)  # it now holds the old folder
        return
    old = None
    if out.exists():
        old = work.with_name(work.name.replace(TMP_MARK, OLD_MARK))
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


def writer_tag() -> str:
    """`<pid>@<host>-`: who writes a temporary folder, in its name."""
    return f"{os.getpid()}@{host_name()}-"


def host_name() -> str:
    return re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname()) or "localhost"


def writer_pid(name: str) -> int | None:
    """The pid of the writer named in `name` (what follows a mark), when it ran on this
    host and this system can tell whether it still runs; else None."""
    writer = WRITER.fullmatch(name)
    if writer is None or writer["host"] != host_name() or os.name == "nt":
        return None
    return int(writer["pid"])


def pid_runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        return True  # another user's process
    return True


def writer_runs(name: str) -> bool:
    """The writer named in `name` (what follows a mark) still runs: another process that
    exists, or this one while it writes that folder."""
    pid = writer_pid(name)
    if pid is None:
        return False
    return name in _WRITING if pid == os.getpid() else pid_runs(pid)


def is_stale(leftover: Path, prefix: str) -> bool:
    """A temporary or set-aside folder its writer will not finish: the writer named in it
    no longer runs; with no writer known, it is older than LEFTOVER_AGE_S."""
    name = leftover.name[len(prefix) :]
    if writer_pid(name) is not None:
        return not writer_runs(name)
    return leftover.stat().st_mtime < time.time() - LEFTOVER_AGE_S


def leftovers(out: Path, mark: str) -> list[Path]:
    """The folders beside `out` named `.<out's name><mark>...`."""
    prefix = f".{out.name}{mark}"
    try:
        entries = list(out.parent.iterdir())
    except OSError:
        return []
    return [p for p in entries if p.name.startswith(prefix) and p.is_dir()]


def put_back(out: Path, is_whole: str) -> None:
    """A previous folder a killed swap left aside (the newest whose writer no longer runs)
    goes back in place when `out` is missing and it holds the file `is_whole`."""
    if out.exists() or not out.parent.is_dir():
        return
    prefix = f".{out.name}{OLD_MARK}"
    aside = [p for p in leftovers(out, OLD_MARK) if not writer_runs(p.name[len(prefix) :])]
    aside.sort(key=lambda p: p.stat().st_mtime)
    if aside and (aside[-1] / is_whole).is_file():
        with contextlib.suppress(OSError):
            os.replace(aside[-1], out)


def remove_leftovers(out: Path, is_whole: str) -> None:
    """Before a folder is written: put back a previous folder a killed swap left aside (it
    holds the file `is_whole`), then remove the temporary folders of writes that will not
    finish (`is_stale`): never one whose writer still runs."""
    if not out.parent.is_dir():
        return
    put_back(out, is_whole)
    for mark in (TMP_MARK, OLD_MARK):
        for leftover in leftovers(out, mark):
            with contextlib.suppress(OSError):
                if is_stale(leftover, f".{out.name}{mark}"):
                    shutil.rmtree(leftover)


def remove_leftover_files(target: Path) -> None:
    """Before a file is written by a writer that holds its lock: remove the temporary
    files (`<target>` + TMP_MARK + ...) of writes killed before they could clean up."""
    for leftover in target.parent.glob(f"{target.name}{TMP_MARK}*"):
        remove_path(leftover)


def remove_path(path: Path) -> None:
    """A file or a folder gone, if it can be."""
    with contextlib.suppress(OSError):
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
