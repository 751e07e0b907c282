"""Reading training logs: format detection, parsers, normalisation, tailing. No UI, no torch.

Public API:
    load_run(path) -> Run      read a file or directory (raises tuneterm.errors.InputError)
"""

from __future__ import annotations

from tuneterm.logs.model import LogEvent, Run, RunFacts, Series, TrainerKind

__all__ = ["LogEvent", "Run", "RunFacts", "Series", "TrainerKind", "load_run"]


def load_run(path: str) -> Run:  # replaced by the real loader (tuneterm/logs/load.py)
    from tuneterm.logs.load import load_run as _load

    return _load(path)
