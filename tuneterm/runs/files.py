"""The readers of run-directory files every face shares: the end of a file, and JSON Lines rows.

:func:`tail` reads only the last bytes of a file (a metrics.jsonl or stderr.log of a long run can
be gigabytes) and keeps only complete lines: the first line in the window is dropped unless the
window starts right after a newline. :class:`JsonlRows` reads every row of a JSON Lines file and
skips what is not a JSON object (a torn last line, junk), counting it.

>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "m.jsonl"
>>> _ = p.write_bytes(b'{"step": 1}\\n{"step": 2}\\nnot json\\n{"step": 3}\\n')
>>> [r["step"] for r in tail_rows(p, 33)], [r["step"] for r in tail_rows(p, 30)]
([2, 3], [3])
>>> rows = JsonlRows(p); [r["step"] for r in rows], rows.skipped
([1, 2, 3], 1)
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tuneterm.errors import InputError
from tuneterm.logs.textio import LineSplitter, iter_segments


def tail(path: Path, max_bytes: int) -> list[bytes]:
    """The complete lines (without their newlines) in the last ``max_bytes`` of ``path``; the text
    after the last newline is included when it is not empty. ``[]`` when unreadable."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            start = max(0, size - max_bytes)
            fh.seek(max(0, start - 1))
            data = fh.read(size - max(0, start - 1))
    except OSError:
        return []
    if start > 0:
        # The byte before the window tells whether the window starts a line.
        data = data[1:] if data[:1] == b"\n" else data.split(b"\n", 1)[1] if b"\n" in data else b""
    lines = data.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()
    return lines


def parse_row(raw: bytes | str) -> dict[str, Any] | None:
    """One JSON Lines row as a dict, or None for anything that is not a JSON object."""
    try:
        row = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return row if isinstance(row, dict) else None


def tail_rows(path: Path, max_bytes: int) -> list[dict[str, Any]]:
    """The JSON-object rows among the complete lines in the last ``max_bytes`` of ``path``."""
    return [row for raw in tail(path, max_bytes) if (row := parse_row(raw)) is not None]


class JsonlRows:
    """Iterate over the JSON-object rows of a JSON Lines file (bounded line length, any bytes).

    Blank lines are ignored; a line that is not a JSON object is skipped and counted in
    :attr:`skipped`. A missing or unreadable file yields nothing.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.skipped = 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        try:
            for _, seg in iter_segments(self.path, LineSplitter()):
                s = seg.strip()
                if not s:
                    continue
                row = parse_row(s)
                if row is None:
                    self.skipped += 1
                    continue
                yield row
        except InputError:  # missing or unreadable
            return
