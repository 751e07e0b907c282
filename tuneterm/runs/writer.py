"""Writing run-directory files so that a concurrent reader never sees half of one.

JSON documents (``status.json``, ``launch.json``, ``findings.json``) are replaced atomically: a temp
file in the same directory, then ``os.replace``. JSON Lines files are appended one complete line
at a time and flushed.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


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
