"""Following a growing log: :class:`Follower` for ``tuneterm watch`` and the TUI.

A follower reads only what was appended since the last :meth:`Follower.poll`, and only complete
lines (a partial last line waits for its newline), through the *same* parsers as the whole-file
readers (:class:`~tuneterm.logs.console.ConsoleParser`, :class:`~tuneterm.logs.jsonl.JsonlParser`):
there is no second parser. A file that shrinks or is replaced (new inode) is read again from the
start into a fresh :class:`Run`. JSON documents and CSV files cannot be appended to meaningfully, so
they are re-read whole when their size or mtime changes.

>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "train.log"
>>> _ = p.write_text("{'loss': 1.0, 'epoch': 0.1}\\n")
>>> f = Follower(p); f.poll()
1
>>> with p.open("a") as fh: _ = fh.write("{'loss': 0.9, 'epoch': 0.2}\\n{'loss': 0.")
>>> f.poll(), len(f.run.train["loss"])
(1, 2)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tuneterm.errors import InputError
from tuneterm.logs.console import ConsoleParser
from tuneterm.logs.infer import infer_facts
from tuneterm.logs.jsonl import JsonlParser
from tuneterm.logs.load import load_run, sniff
from tuneterm.logs.model import Run
from tuneterm.logs.textio import LineSplitter, looks_binary, show

_READ_CHUNK = 4 << 20  # per file per poll; the rest is read on the next poll


class LineParser(Protocol):
    """What a tail feeds its complete lines to (:class:`ConsoleParser`, :class:`JsonlParser`)."""

    def feed(self, lineno: int, line: str) -> int: ...
    def finish(self) -> None: ...


@dataclass
class Tail:
    """One appended-to file: where we are in it and who parses its lines."""

    path: Path
    kind: str  # "console", "events" (console without metrics), "jsonl", "" (decide from the bytes)
    parser: LineParser | None = None
    splitter: LineSplitter = field(default_factory=LineSplitter)
    offset: int = 0
    inode: int | None = None


def content_signature(path: Path, own: tuple[int, float]) -> tuple[Any, ...]:
    """What changes when a re-read source grows: for a directory holding a W&B run or TensorBoard
    event files, the size and mtime of those files (a directory's own mtime changes only when an
    entry is added, not when its event file grows); else ``own`` (the path's size and mtime)."""
    if not path.is_dir():
        return own
    from tuneterm.logs.wandb import wandb_signature

    wsig = wandb_signature(path)
    if wsig is not None:
        return (own, wsig)
    from tuneterm.logs.tensorboard import event_files

    files = event_files(path)
    if not files:
        return own
    stats = []
    for f in files:
        try:
            st = f.stat()
        except OSError:
            continue
        stats.append((st.st_size, st.st_mtime))
    return (own, len(stats), sum(s for s, _ in stats), max((m for _, m in stats), default=0.0))


def _points(run: Run) -> int:
    return sum(len(s) for s in run.train.values()) + sum(
        len(s) for b in run.evals.values() for s in b.values()
    )


class Follower:
    """Follow a console log or a JSONL metrics file as it grows.

    Args:
        path: a file, or any directory :func:`~tuneterm.logs.load_run` reads (re-read whole on
            change). A tuneterm run directory is followed by
            :class:`tuneterm.runs.follow.RunDirFollower`, which tails several files of it.

    Attributes:
        run: the run so far. It is replaced by a fresh object when the source is truncated or
            rotated, so read ``follower.run`` after each poll rather than keeping a reference.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.run = Run(source=str(self.path), format="unknown")
        self._tails: list[Tail] = []
        self._whole_sig: tuple[int, float] | None = None
        self._mode = ""
        self._setup()

    # ---------------------------------------------------------------------------------- set-up
    def _setup(self) -> None:
        """Start over: a fresh run and the tails to follow (subclasses follow several files)."""
        p = self.path
        self.run = Run(source=str(p), format="unknown")
        self._whole_sig = None
        if p.is_dir():
            self._mode = "whole"
            self._tails = []
        else:
            self._mode = "file"
            self._tails = [Tail(p, "")]

    def _after_poll(self) -> None:
        """Called after the tails were read (a run directory applies its status here)."""

    def _make_parser(self, tail: Tail) -> LineParser | None:
        if tail.kind == "jsonl":
            return JsonlParser(self.run)
        if tail.kind == "events":
            return ConsoleParser(self.run, metrics=False)
        if tail.kind == "console":
            return ConsoleParser(self.run)
        # a plain file: decide from its first bytes once there are some
        try:
            with tail.path.open("rb") as fh:
                head = fh.read(64 * 1024)
        except OSError:
            return None
        if not head.strip():
            return None
        if looks_binary(head[:8192]):
            raise InputError(f"{show(tail.path)} is binary data, not a training log")
        fmt = sniff(tail.path, head)
        if fmt == "jsonl" or (fmt == "json" and head.lstrip().startswith(b"{") and b"\n{" in head):
            tail.kind = "jsonl"
            self.run.format = "jsonl"
            return JsonlParser(self.run)
        if fmt == "console":
            tail.kind = "console"
            self.run.format = "console"
            return ConsoleParser(self.run)
        self._mode = "whole"  # json / csv / tensorboard: re-read whole on change
        return None

    # ------------------------------------------------------------------------------------ poll
    def poll(self) -> int:
        """Read what was appended since the last call.

        Returns:
            The number of new metric points (training and eval).

        Raises:
            InputError: the followed file turned out to be binary, or is unreadable.
        """
        if self._mode == "whole":
            return self._poll_whole()
        added = 0
        for tail in self._tails:
            added += self._poll_tail(tail)
            if self._mode == "whole":
                return self._poll_whole()
        for tail in self._tails:
            if tail.parser is not None:
                tail.parser.finish()
        self._after_poll()
        self.run.facts.trainer_kind = "unknown"
        infer_facts(self.run)
        return added

    def _poll_tail(self, tail: Tail) -> int:
        try:
            st = tail.path.stat()
        except OSError:
            return 0  # not there (yet)
        if tail.inode is not None and (st.st_ino != tail.inode or st.st_size < tail.offset):
            # truncated or rotated: start over with a fresh run
            self._setup()
            return self.poll_restart()
        tail.inode = st.st_ino
        if st.st_size == tail.offset:
            return 0
        if tail.parser is None:
            tail.parser = self._make_parser(tail)
            if tail.parser is None:
                return 0
        try:
            with tail.path.open("rb") as fh:
                fh.seek(tail.offset)
                data = fh.read(_READ_CHUNK)
        except OSError as e:
            raise InputError(f"cannot read {show(tail.path)}: {e.strerror or e}") from None
        tail.offset += len(data)
        added = 0
        for lineno, seg in tail.splitter.feed(data):
            added += tail.parser.feed(lineno, seg)
        return added

    def poll_restart(self) -> int:
        """Re-read everything after truncation/rotation (returns all points as new)."""
        self.poll()
        return _points(self.run)

    def _poll_whole(self) -> int:
        try:
            st = self.path.stat()
        except OSError:
            return 0
        sig = content_signature(self.path, (st.st_size, st.st_mtime))
        if sig == self._whole_sig:
            return 0
        before = _points(self.run) if self._whole_sig is not None else 0
        try:
            run = load_run(self.path)
        except InputError:
            if self._whole_sig is None and (st.st_size == 0 or self.path.is_dir()):
                return 0  # nothing written yet (an output directory before its first log)
            raise
        self._whole_sig = sig
        self.run = run
        return max(0, _points(run) - before)
