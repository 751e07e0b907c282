"""Reading a run directory into a :class:`~tuneterm.logs.model.Run`, and any source through one
door (:func:`load_source`).

A run directory (DESIGN.md "A run directory", schema in :mod:`tuneterm.runs.layout`) is read with
the same parsers as any log: ``metrics.jsonl`` through the JSON Lines parser, ``stderr.log`` and
``stdout.log`` through the console parser (events only, except for a ``tuneterm watch -- COMMAND``
run whose metrics are its console output), plus what only a run directory has: the typed
:class:`~tuneterm.logs.model.RunStatus` from ``status.json`` (with a failure event when it says the
run failed), the generations in ``samples.jsonl`` and the memory record.
"""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path
from typing import Any

from tuneterm.logs.facts import apply_config, load_mapping
from tuneterm.logs.infer import infer_facts
from tuneterm.logs.jsonl import JsonlParser
from tuneterm.logs.load import load_run, read_console
from tuneterm.logs.model import LogEvent, Run, RunStatus
from tuneterm.logs.textio import LineSplitter, iter_segments, looks_binary, read_head
from tuneterm.runs.files import JsonlRows
from tuneterm.runs.layout import CONFIG_NAMES, METRICS, SAMPLES, STATUS, STDERR, STDOUT, is_command_run, is_run_dir
from tuneterm.runs.memory import read_memory_record
from tuneterm.runs.progress import mark_progress
from tuneterm.runs.status import mark_died, parse_status

_MAX_SAMPLES = 2000
_MAX_SAMPLE_TEXT = 4000
_FATAL = ("exception", "oom", "signal")


def load_source(path: str | os.PathLike[str]) -> Run:
    """Read any source tuneterm diagnoses: a run directory (:func:`load_run_dir`, with its status
    marked ``died`` when the process is gone and, while live, its progress), else a log file or
    directory (:func:`tuneterm.logs.load_run`).

    Raises:
        InputError: as :func:`~tuneterm.logs.load_run` (missing, unreadable, nothing recognisable).
    """
    p = Path(path)
    if not is_run_dir(p):
        return load_run(p)
    run = load_run_dir(p)
    if run.status is not None:
        run.status = mark_progress(mark_died(run.status, p), p)
    return run


def load_run_dir(d: Path) -> Run:
    """A tuneterm run directory as a :class:`Run` (``format == "run_dir"``), facts inferred."""
    run = Run(source=str(d), format="run_dir")
    for name in CONFIG_NAMES:
        cfg = load_mapping(d / name)
        if cfg is not None:
            apply_config(run.facts, cfg)
            break
    raw_status = load_mapping(d / STATUS)
    command = is_command_run(d)
    mpath = d / METRICS
    if mpath.is_file():
        parser = JsonlParser(run)
        sp = LineSplitter()
        for lineno, seg in iter_segments(mpath, sp):
            parser.feed(lineno, seg)
        parser.finish()
    elif not command:
        run.notes.append("run directory has no metrics.jsonl yet")
    for name in (STDERR, STDOUT):
        lp = d / name
        if lp.is_file() and lp.stat().st_size > 0 and not looks_binary(read_head(lp, 8192)):
            # A `tuneterm watch -- COMMAND` run has no metrics.jsonl: its metrics are the
            # command's console output (stdout and stderr both go to stdout.log).
            read_console(run, lp, metrics=command and name == STDOUT)
    read_samples(run, d / SAMPLES)
    if raw_status is not None:
        apply_status(run, raw_status)
    run.memory = read_memory_record(d)
    return infer_facts(run)


def read_samples(run: Run, path: Path) -> None:
    """Generations from a run directory's ``samples.jsonl`` into ``run.samples`` (bounded).

    Keeps the last :data:`_MAX_SAMPLES` records that have a ``step``, ``prompt`` and
    ``completion``; texts are cut to 4,000 characters and kept raw (render them inert).
    """
    if not path.is_file():
        return
    kept: list[dict[str, Any]] = []
    rows = JsonlRows(path)
    bad = 0
    for rec in rows:
        step = rec.get("step")
        if not isinstance(rec.get("completion"), str) or not isinstance(step, int) or isinstance(step, bool):
            bad += 1
            continue
        out: dict[str, Any] = {
            "step": step,
            "prompt": str(rec.get("prompt", ""))[:_MAX_SAMPLE_TEXT],
            "completion": rec["completion"][:_MAX_SAMPLE_TEXT],
        }
        if isinstance(rec.get("n_tokens"), int):
            out["n_tokens"] = rec["n_tokens"]
        if isinstance(rec.get("hit_max_tokens"), bool):
            out["hit_max_tokens"] = rec["hit_max_tokens"]
        kept.append(out)
        if len(kept) > _MAX_SAMPLES:
            del kept[: len(kept) - _MAX_SAMPLES]
    run.samples = kept
    bad += rows.skipped
    if bad:
        run.notes.append(f"samples.jsonl: skipped {bad} malformed record(s)")


def apply_status(run: Run, raw: dict[str, Any]) -> None:
    """``run.status`` and the facts status.json carries (``max_steps``, the trainer, finished),
    plus one failure event when it says the run failed and the logs hold none."""
    status = parse_status(raw)
    run.status = status
    f = run.facts
    if status.max_steps is not None and status.max_steps > 0 and f.max_steps is None:
        f.max_steps = status.max_steps
    if status.trainer and f.algorithm is None:
        f.algorithm = status.trainer.lower()
    if status.state == "finished":
        f.finished = True
    code = status.exit_code
    failed = status.state == "failed" or (code is not None and code != 0)
    if failed and not any(e.kind in _FATAL for e in run.events):
        run.events.append(_failure_event(run, status))


def _failure_event(run: Run, status: RunStatus) -> LogEvent:
    """The event a failed status stands for: a signal death, a config rejected by TRL, an OOM or
    the exception named in ``error``."""
    code = status.exit_code
    full = status.error or f"run {status.state or 'failed'} (exit code {code})"
    text = full[:2000]
    if code is not None and (code < 0 or code > 128):
        n = -code if code < 0 else code - 128
        try:
            sig = signal.Signals(n).name
        except ValueError:
            sig = f"SIG{n}"
        return LogEvent(kind="signal", text=text, step=run.last_step, code=sig)
    if status.error_kind == "config":  # TRL rejected the config in the worker
        return LogEvent(kind="exception", text=text, step=run.last_step, code="ConfigError")
    m = re.match(r"^([A-Za-z_][\w.]{0,200}?)(?::|$)", full)
    cls = m.group(1).rsplit(".", 1)[-1] if m else None
    if "out of memory" in full or (cls and "OutOfMemory" in cls):
        return LogEvent(kind="oom", text=text, step=run.last_step, code="cuda-oom")
    return LogEvent(kind="exception", text=text, step=run.last_step, code=cls or f"exit-{code}")
