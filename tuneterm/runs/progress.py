"""Is a live run still making progress? :func:`mark_progress` and the ``run-stalled`` detector.

A training process can hang while staying alive: a collective that one rank never joins (NCCL
waits up to ``ddp_timeout``, 30 minutes by default), a GRPO generation that never returns, a
dataloader worker deadlock, a filesystem stall while saving. Nothing crashes, so no traceback and
no exit code; the GPU hours just burn (the seed's "GRPO training loop may be stuck").

:func:`mark_progress` reads what a run directory shows about progress, cheaply and without
touching the process: the wall-clock ``time`` of the last rows of ``metrics.jsonl`` (tuneterm's
callback writes one per log), the modification times of ``stdout.log``/``stderr.log`` (progress
bars of training, evaluation and generation write there between logs) and of the newest
checkpoint's files (a long save is progress too). ``gpu.jsonl`` is left out on purpose: the
supervisor samples the GPU whether or not training moves. It records on the run's
``facts.extra``:

``progress_checked``
    the time of the check (Unix seconds);
``last_progress``
    the newest sign of progress (Unix seconds);
``log_interval_s``
    the median seconds between consecutive logged training steps (None with fewer than 3 rows).

The ``run-stalled`` detector then fires when the run is live and the silence is both long in
absolute terms (``min_stall_s``, default 10 minutes: model loading, a long evaluation or a big
checkpoint stay below it) and long against the run's own rhythm (``interval_factor`` logging
intervals, default 20). Only a live run on this host is checked: an ended run cannot stall, and a
run on another host cannot be seen.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tuneterm.engine.model import Detection, Fix, Severity
from tuneterm.engine.registry import Param, detector
from tuneterm.logs.model import Run

_TAIL_BYTES = 32 * 1024
_PROGRESS_LOGS = ("stdout.log", "stderr.log", "samples.jsonl")


def _tail_rows(path: Path) -> list[dict[str, Any]]:
    """The complete JSON rows in the last ``_TAIL_BYTES`` of ``path`` (cheap on huge files)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - _TAIL_BYTES))
            chunk = fh.read()
    except OSError:
        return []
    rows: list[dict[str, Any]] = []
    for raw in chunk.split(b"\n")[1 if size > _TAIL_BYTES else 0:]:
        try:
            row = json.loads(raw)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v else None


def metric_times(rows: list[dict[str, Any]]) -> tuple[float | None, float | None]:
    """(time of the last row, median seconds between consecutive training-step rows).

    Training rows are those with a ``loss`` (evaluation rows are irregular and left out of the
    rhythm); a step logged twice counts once.

    >>> rows = [{"step": s, "loss": 1.0, "time": 100.0 + 2 * s} for s in range(1, 6)] + [{"step": 5, "eval_loss": 1.0, "time": 130.0}]
    >>> metric_times(rows)
    (130.0, 2.0)
    """
    last = None
    steps: dict[int, float] = {}
    for row in rows:
        t = _num(row.get("time"))
        if t is None:
            continue
        last = t if last is None else max(last, t)
        step = row.get("step")
        if "loss" in row and isinstance(step, int) and not isinstance(step, bool):
            steps.setdefault(step, t)
    times = [steps[s] for s in sorted(steps)]
    gaps = [b - a for a, b in zip(times, times[1:]) if b >= a]
    return last, (statistics.median(gaps) if len(gaps) >= 2 else None)


def _newest_checkpoint_mtime(output: Path) -> float | None:
    try:
        ckpts = [p for p in output.iterdir() if p.name.startswith("checkpoint-") and p.is_dir()]
    except OSError:
        return None
    if not ckpts:
        return None
    newest = max(ckpts, key=lambda p: p.stat().st_mtime if p.exists() else 0.0)
    best = None
    try:
        for f in newest.iterdir():
            m = f.stat().st_mtime
            best = m if best is None else max(best, m)
    except OSError:
        pass
    return best


def progress_marks(run_dir: str | os.PathLike[str]) -> tuple[float | None, float | None]:
    """(newest sign of progress, median logging interval) of a run directory, in seconds; see the
    module docstring for what counts. ``(None, None)`` when nothing can be read."""
    d = Path(run_dir)
    last, interval = metric_times(_tail_rows(d / "metrics.jsonl"))
    marks = [last] if last is not None else []
    for name in _PROGRESS_LOGS:
        try:
            marks.append((d / name).stat().st_mtime)
        except OSError:
            pass
    ck = _newest_checkpoint_mtime(d / "output")
    if ck is not None:
        marks.append(ck)
    return (max(marks) if marks else None), interval


def mark_progress(run: Run, run_dir: str | os.PathLike[str], status: Mapping[str, Any], now: float | None = None) -> None:
    """Record on ``run.facts.extra`` the progress facts ``run-stalled`` reads (module docstring).

    Does nothing unless the run's shown state is ``running`` (see
    :func:`tuneterm.runs.info.effective_state`: process alive, this host).

    Args:
        run: the loaded run directory.
        run_dir: its path.
        status: its status.json.
        now: the time to judge at (tests; default: now).
    """
    from tuneterm.runs.info import effective_state

    if effective_state(status) != "running":
        return
    last, interval = progress_marks(run_dir)
    if last is None:
        return
    extra = run.facts.extra
    extra["progress_checked"] = time.time() if now is None else now
    extra["last_progress"] = last
    extra["log_interval_s"] = interval
    extra["worker_pid"] = status.get("worker_pid")


def stalled_for(extra: Mapping[str, Any]) -> float | None:
    """Seconds since the last sign of progress, when :func:`mark_progress` ran; else None."""
    now, last = _num(extra.get("progress_checked")), _num(extra.get("last_progress"))
    return None if now is None or last is None else max(0.0, now - last)


def _fmt(seconds: float) -> str:
    from tuneterm.runs.info import fmt_duration

    return fmt_duration(seconds)


@detector(
    "run-stalled",
    params={
        "min_stall_s": Param("float", "shortest silence reported, seconds", min=0.0),
        "interval_factor": Param("float", "silence as a multiple of the run's logging interval", min=1.0),
    },
    evidence=("stalled_for", "stalled_s", "log_interval_s", "step", "pid"),
)
def run_stalled(run: Run, params: Mapping[str, Any]) -> list[Detection]:
    """A live run whose logs, metrics and checkpoints have not moved for far longer than its own
    logging rhythm (see the module docstring). Needs at least 3 logged training steps: before
    that, model loading and the first compiled steps have no rhythm to compare with."""
    extra = run.facts.extra
    silent = stalled_for(extra)
    interval = _num(extra.get("log_interval_s"))
    if silent is None or interval is None:
        return []
    threshold = max(float(params.get("min_stall_s", 600.0)), float(params.get("interval_factor", 20.0)) * interval)
    if silent < threshold:
        return []
    pid = extra.get("worker_pid") or extra.get("pid")
    evidence = {
        "stalled_for": _fmt(silent),
        "stalled_s": round(silent, 1),
        "log_interval_s": round(interval, 2),
        "step": run.last_step,
        "pid": pid,
    }
    fixes: list[Fix] = []
    if isinstance(pid, int):
        fixes.append(Fix(command=f"py-spy dump --pid {pid}", why="prints every thread's Python stack: shows the call it hangs in (pip install py-spy)"))
    return [Detection(run.last_step, run.last_step, evidence, Severity.WARNING, tuple(fixes))]
