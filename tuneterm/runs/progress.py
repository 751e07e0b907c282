"""Is a live run still making progress? :func:`progress_marks` and :func:`mark_progress`.

A training process can hang while staying alive: a collective that one rank never joins (NCCL
waits up to ``ddp_timeout``, 30 minutes by default), a GRPO generation that never returns, a
dataloader worker deadlock, a filesystem stall while saving. Nothing crashes, so no traceback and
no exit code; the GPU hours just burn.

:func:`progress_marks` reads what a run directory shows about progress, cheaply and without
touching the process: the wall-clock ``time`` of the last rows of ``metrics.jsonl`` (tuneterm's
callback writes one per log), the modification times of ``stdout.log``/``stderr.log`` (progress
bars of training, evaluation and generation write there between logs) and of the newest
checkpoint's files (a long save is progress too). ``gpu.jsonl`` is left out on purpose: the
supervisor samples the GPU whether or not training moves. :func:`mark_progress` records the result
on the run's :class:`~tuneterm.logs.model.RunStatus` as a :class:`~tuneterm.logs.model.Progress`,
which the ``run-stalled`` rule judges (:mod:`tuneterm.engine.detectors.runtime`).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from tuneterm.logs.model import Progress, RunStatus
from tuneterm.runs.files import tail_rows
from tuneterm.runs.layout import METRICS, OUTPUT, SAMPLES, STDERR, STDOUT
from tuneterm.runs.status import effective_state

_TAIL_BYTES = 32 * 1024
_PROGRESS_LOGS = (STDOUT, STDERR, SAMPLES)


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v else None


def metric_times(rows: Sequence[dict[str, Any]]) -> tuple[float | None, float | None]:
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


def progress_marks(run_dir: Path) -> tuple[float | None, float | None]:
    """(newest sign of progress, median logging interval) of a run directory, in seconds; see the
    module docstring for what counts. ``(None, None)`` when nothing can be read."""
    last, interval = metric_times(tail_rows(run_dir / METRICS, _TAIL_BYTES))
    marks = [last] if last is not None else []
    for name in _PROGRESS_LOGS:
        try:
            marks.append((run_dir / name).stat().st_mtime)
        except OSError:
            pass
    ck = _newest_checkpoint_mtime(run_dir / OUTPUT)
    if ck is not None:
        marks.append(ck)
    return (max(marks) if marks else None), interval


def mark_progress(status: RunStatus, run_dir: Path, now: float | None = None) -> RunStatus:
    """``status`` with the run's :class:`Progress` (module docstring) when its shown state is
    ``running`` (process alive, this host); else ``status`` unchanged.

    Args:
        status: the run's status (as read, or already marked).
        run_dir: its directory.
        now: the time to judge at (tests; default: now).
    """
    if status.state == "died" or effective_state(status) != "running":
        return status
    last, interval = progress_marks(run_dir)
    if last is None:
        return status
    checked = time.time() if now is None else now
    return replace(status, progress=Progress(checked_at=checked, last_progress=last, log_interval_s=interval))


def stalled_for(status: RunStatus | None) -> float | None:
    """Seconds since the last sign of progress, when :func:`mark_progress` ran; else None."""
    return None if status is None or status.progress is None else status.progress.silent_s
