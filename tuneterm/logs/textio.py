"""Reading untrusted text files safely: bounded lines, any bytes, no hangs.

Logs are split on ``\\n`` *and* ``\\r`` (tqdm redraws its bar with carriage returns, so one "line"
of a console log can hold thousands of bar states and a metric dict glued to one of them), but line
numbers count ``\\n`` only, so they match what an editor shows. A segment longer than
:data:`MAX_SEGMENT` is dropped (and counted), which bounds both memory and the work any regex does
on one piece of text: a 50 MB line without a break cannot make a parse slow or large.
Invalid UTF-8 becomes U+FFFD.
"""

from __future__ import annotations

import codecs
import os
from collections.abc import Iterator
from pathlib import Path

from tuneterm.errors import InputError
from tuneterm.textsafe import inert_line

MAX_SEGMENT = 1 << 20  # 1 MiB: far beyond any real log line segment
BLOCK = 256 * 1024  # read size; small enough that a short log costs little memory
SNIFF = 64 * 1024


def show(path: str | os.PathLike[str]) -> str:
    """A path made safe for a one-line error message."""
    return inert_line(os.fspath(path), 300)


def looks_binary(head: bytes) -> bool:
    """True when ``head`` (the first KiB of a file) is not text: NUL bytes or mostly control bytes.

    >>> looks_binary(b"{'loss': 1.0}\\n"), looks_binary(b"\\x00\\x01\\x02junk")
    (False, True)
    >>> looks_binary(b"\\x00" * 64 + b"step 10 | loss 4.37\\n")  # truncated while being written
    False
    """
    # A log truncated (`> train.log`) while a process keeps writing at its old offset starts with
    # a run of NUL bytes (a sparse hole), then text: the text decides.
    head = head.lstrip(b"\x00")
    if not head:
        return False
    if b"\x00" in head:
        return True
    ctrl = sum(1 for b in head if b < 32 and b not in (9, 10, 12, 13, 27, 8))
    return ctrl > len(head) // 10


def read_head(path: Path, size: int = SNIFF) -> bytes:
    """The first ``size`` bytes of ``path``; raises InputError when it cannot be read."""
    try:
        with path.open("rb") as f:
            return f.read(size)
    except OSError as e:
        raise InputError(f"cannot read {show(path)}: {e.strerror or e}") from None


class LineSplitter:
    """Incremental splitter: feed bytes, get ``(line_number, text)`` segments.

    Used by the whole-file readers and by the tailer, so both see the same segments. Bytes are
    decoded block-wise by an incremental UTF-8 decoder (a character split across two blocks or two
    polls is decoded once it is complete); invalid bytes become U+FFFD.

    Attributes:
        lineno: number of ``\n`` seen so far (the next complete line is ``lineno + 1``).
        dropped: segments dropped for being longer than :data:`MAX_SEGMENT` characters.
    """

    def __init__(self, max_segment: int = MAX_SEGMENT) -> None:
        self.lineno = 0
        self.dropped = 0
        self._max = max_segment
        self._pending = ""
        self._skipping = False  # inside an over-long segment: discard until the next break
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def feed(self, data: bytes) -> Iterator[tuple[int, str]]:
        """Yield the complete segments that ``data`` finishes; keep a partial tail for later."""
        text = self._decoder.decode(data)
        buf = self._pending + text if self._pending else text
        self._pending = ""
        lines = buf.split("\n")
        tail = lines.pop()
        mx = self._max
        for raw in lines:
            self.lineno += 1
            if self._skipping:
                self._skipping = False
                # the rest of an over-long segment: keep only what follows its last \r
                cut = raw.rfind("\r")
                if cut < 0:
                    continue
                raw = raw[cut + 1 :]
            if "\r" in raw:
                for seg in raw.split("\r"):
                    if seg:
                        if len(seg) > mx:
                            self.dropped += 1
                        else:
                            yield self.lineno, seg
            elif len(raw) > mx:
                self.dropped += 1
            else:
                yield self.lineno, raw
        if tail:
            self._hold(tail)

    def _hold(self, tail: str) -> None:
        """Keep an unfinished line, bounding its size."""
        if self._skipping:
            cut = tail.rfind("\r")
            if cut < 0:
                return
            self._skipping = False
            tail = tail[cut + 1 :]
        if len(tail) > self._max:
            # No \n for a long time: \r-terminated segments inside are complete, but they are
            # yielded with their line when it ends; keep only the last one (bounded memory).
            cut = tail.rfind("\r")
            last = tail[cut + 1 :] if cut >= 0 else tail
            if len(last) > self._max:
                self.dropped += 1
                self._skipping = True
                self._pending = ""
                return
            self._pending = last
            return
        self._pending = tail

    def flush(self) -> Iterator[tuple[int, str]]:
        """Yield the last, unterminated line (at end of file)."""
        tail = self._pending + self._decoder.decode(b"", final=True)
        self._pending = ""
        if tail and not self._skipping:
            for seg in tail.split("\r"):
                if seg and len(seg) <= self._max:
                    yield self.lineno + 1, seg
        self._skipping = False


def iter_segments(path: Path, splitter: LineSplitter | None = None) -> Iterator[tuple[int, str]]:
    """Stream ``(line_number, segment)`` from a file in 1 MiB blocks; see :class:`LineSplitter`."""
    sp = splitter or LineSplitter()
    try:
        with path.open("rb") as f:
            while True:
                block = f.read(BLOCK)
                if not block:
                    break
                yield from sp.feed(block)
    except OSError as e:
        raise InputError(f"cannot read {show(path)}: {e.strerror or e}") from None
    yield from sp.flush()
