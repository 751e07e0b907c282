"""Writing run-directory files so that a concurrent reader never sees half of one.

JSON documents (``status.json``, ``launch.json``, ``findings.json``) are replaced atomically: a temp
file in the same directory, then ``os.replace``. JSON Lines files are appended one complete line
at a time and flushed. Several processes updating one document serialise through :func:`locked`.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


_HELD: set[str] = set()  # directories this process holds the lock of (a signal handler re-entering)


@contextlib.contextmanager
def locked(directory: Path, *, wait_s: float = 5.0) -> Iterator[None]:
    """Hold an exclusive advisory lock (``flock``) on ``directory`` for a read-modify-write.

    Cooperating writers in other processes wait for each other, so none loses an update. Never
    blocks for good: a lock this process already holds (a signal handler interrupting an update)
    is not taken again, and after ``wait_s`` seconds, or where ``flock`` is unavailable (not
    POSIX, a file system without locks), the update goes ahead unlocked, as it always could.
    """
    key = os.path.abspath(directory)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    if key in _HELD:
        yield
        return
    try:
        fd = os.open(key, os.O_RDONLY)
    except OSError:
        yield  # the write that follows reports the real problem
        return
    try:
        deadline = time.monotonic() + wait_s
        held = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                held = True
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    break
                time.sleep(0.005)
            except OSError:
                break  # no locking on this file system
        if held:
            _HELD.add(key)
        try:
            yield
        finally:
            if held:
                _HELD.discard(key)
    finally:
        os.close(fd)  # closing releases the lock


def now_iso() -> str:
    """Current UTC time as ISO-8601 with seconds (``2025-01-31T12:00:00Z``)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_json_atomic(path: Path, data: Mapping[str, Any], *, compact: bool = False) -> None:
    """Write ``data`` as JSON to ``path`` via a temp file in the same directory and ``os.replace``
    (``compact``: no indentation or spaces, for caches nobody reads by eye).

    Raises:
        OSError: the directory cannot be written (no temp file is left behind).
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            if compact:
                json.dump(data, fh, separators=(",", ":"), default=str)
            else:
                json.dump(data, fh, indent=1, default=str)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
