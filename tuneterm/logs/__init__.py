"""Reading training logs: format detection, parsers, normalisation, tailing. No UI, no torch.

Public API:
    load_run(path) -> Run      read a log file or directory (raises tuneterm.errors.InputError);
                               a tuneterm run directory is read by tuneterm.runs.load.load_source
    infer_facts(run) -> Run    trainer kind and derivable facts (load_run already applies it)
    Follower(path).poll()      follow a growing log (tuneterm watch, the TUI)
"""

from __future__ import annotations

from tuneterm.logs.infer import infer_facts
from tuneterm.logs.load import load_run
from tuneterm.logs.model import LogEvent, Run, RunFacts, Series, TrainerKind
from tuneterm.logs.tail import Follower

__all__ = ["Follower", "LogEvent", "Run", "RunFacts", "Series", "TrainerKind", "infer_facts", "load_run"]
