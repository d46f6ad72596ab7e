"""One job per warehouse: a lock file beside it, released by the OS if the holder dies."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from filelock import FileLock, Timeout

from etl.errors import LockHeld


def lock_path(warehouse: Path) -> Path:
    return warehouse.with_name(warehouse.name + ".lock")


def _holder_path(warehouse: Path) -> Path:
    return warehouse.with_name(warehouse.name + ".lock.json")


@contextlib.contextmanager
def warehouse_lock(warehouse: Path) -> Iterator[None]:
    """Hold the warehouse's lock, or raise LockHeld naming who holds it."""
    lock = FileLock(str(lock_path(warehouse)))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise LockHeld(
            f"another runreport job holds the lock on {warehouse} ({_describe_holder(warehouse)})",
            "It will be tried again next time; remove nothing, the lock frees itself when "
            "that process ends",
        ) from None
    holder = _holder_path(warehouse)
    try:
        with contextlib.suppress(OSError):  # only informs; a full disk must not stop here
            holder.write_text(
                json.dumps({"pid": os.getpid(), "started": datetime.now(timezone.utc).isoformat()})
            )
        yield
    finally:
        with contextlib.suppress(OSError):
            holder.unlink()
        lock.release()


def _describe_holder(warehouse: Path) -> str:
    try:
        info = json.loads(_holder_path(warehouse).read_text())
        return f"pid {info['pid']}, started {info['started']}"
    except (OSError, ValueError, KeyError):
        return "holder unknown"
