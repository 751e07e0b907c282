"""Following a run directory as it grows: :class:`RunDirFollower`, and :func:`follower` for any
source.

A run directory is several appended-to files read by the same incremental tails as a single log
(:class:`tuneterm.logs.tail.Follower`): ``metrics.jsonl`` (the metrics), ``stderr.log`` and
``stdout.log`` (events only; for a ``tuneterm watch -- COMMAND`` run stdout.log carries the
metrics). After each poll the current ``status.json`` is applied to the run
(:func:`tuneterm.runs.load.apply_status`), as a whole-directory read would.
"""

from __future__ import annotations

import os
from pathlib import Path

from tuneterm.logs.facts import apply_config, load_mapping
from tuneterm.logs.model import Run
from tuneterm.logs.tail import Follower, Tail
from tuneterm.runs.layout import CONFIG, METRICS, STATUS, STDERR, STDOUT, is_command_run, is_run_dir
from tuneterm.runs.load import apply_status


class RunDirFollower(Follower):
    """Follow a tuneterm run directory (see the module docstring)."""

    def _setup(self) -> None:
        p = self.path
        self.run = Run(source=str(p), format="run_dir")
        self._whole_sig = None
        self._mode = "run_dir"
        cfg = load_mapping(p / CONFIG) or load_mapping(p / "config.json")
        if cfg is not None:
            apply_config(self.run.facts, cfg)
        # `tuneterm watch -- COMMAND`: no metrics.jsonl; the metrics are in the console output,
        # which the command's stdout and stderr both write to stdout.log.
        self._tails = [
            Tail(p / METRICS, "jsonl"),
            Tail(p / STDERR, "events"),
            Tail(p / STDOUT, "console" if is_command_run(p) else "events"),
        ]

    def _after_poll(self) -> None:
        status = load_mapping(self.path / STATUS)
        if status is not None:
            apply_status(self.run, status)


def follower(path: str | os.PathLike[str]) -> Follower:
    """The follower for ``path``: :class:`RunDirFollower` for a run directory, else a plain
    :class:`~tuneterm.logs.tail.Follower`."""
    p = Path(path)
    return RunDirFollower(p) if is_run_dir(p) else Follower(p)
