"""Small helpers shared by the detector modules."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

from tuneterm.engine.stats import finite_points, fmt_num
from tuneterm.logs.model import Run, Series


def train(run: Run, name: str) -> Series | None:
    """The training series ``name`` if it has at least one point."""
    s = run.train.get(name)
    return s if s is not None and len(s) else None


def train_points(run: Run, name: str, min_points: int) -> tuple[Any, Any] | None:
    """``(steps, values)``: the finite points of the training series ``name``, or ``None`` when
    the series is absent or has fewer than ``min_points`` of them (the usual opening of a trend
    detector)."""
    s = train(run, name)
    if s is None:
        return None
    steps, values = finite_points(s)
    return (steps, values) if len(values) >= min_points else None


def eval_series(run: Run, name: str, eval_sets: Sequence[str] = ("*",)) -> Iterator[tuple[str, Series]]:
    """``(eval_set, series)`` for each eval set holding a non-empty ``name`` series, sorted."""
    for set_name in sorted(run.evals):
        if "*" not in eval_sets and set_name not in eval_sets:
            continue
        s = run.evals[set_name].get(name)
        if s is not None and len(s):
            yield set_name, s


def pairs(steps: Sequence[int], values: Sequence[float], limit: int = 10) -> list[list[float]]:
    """The first ``limit`` ``[step, value]`` pairs (JSON-friendly evidence; non-finite as text)."""
    out: list[list[float]] = []
    for s, v in zip(steps[:limit], values[:limit]):
        out.append([int(s), v if math.isfinite(v) else fmt_num(v)])  # type: ignore[list-item]
    return out


def pct(x: float) -> float:
    """A fraction as a percentage rounded to 2 decimals."""
    return round(100.0 * x, 2)


def steps_text(steps: Sequence[int], limit: int = 8) -> str:
    """``"110, 190, 280 (+5 more)"``."""
    shown = ", ".join(str(s) for s in steps[:limit])
    return shown + (f" (+{len(steps) - limit} more)" if len(steps) > limit else "")


def nice_ceil(x: float) -> int:
    """Round up to one significant figure (1407 -> 2000, 380 -> 400, 95 -> 100).

    Used for suggested step counts: the result always covers ``x`` with a margin, and is a number
    a person would write in a config.
    """
    if x <= 0:
        return 0
    mag = 10 ** math.floor(math.log10(x))
    return int(math.ceil(x / mag) * mag)


def lr_warming_up(run: Run) -> bool:
    """True while the run is still in its learning-rate warmup.

    Known from the facts (the last step is before ``warmup_steps``, or before ``warmup_ratio`` of
    ``max_steps``), else read from the logged rate: its last value is its highest so far and
    above the one before (still ramping up). A warmup that ended, a constant rate and a decay are
    all False.

    >>> run = Run("x", "test")
    >>> for s in (1, 2, 3):
    ...     run.add_train("learning_rate", s, 1e-6 * s)
    >>> lr_warming_up(run)
    True
    """
    f = run.facts
    last = run.last_step
    if last is not None:
        if f.warmup_steps and last < f.warmup_steps:
            return True
        if f.warmup_ratio and f.max_steps and last < f.warmup_ratio * f.max_steps:
            return True
    lr = train(run, "learning_rate")
    if lr is None or len(lr) < 2:
        return False
    v = lr.values
    if not (math.isfinite(v[-1]) and math.isfinite(v[-2])) or v[-1] <= v[-2]:
        return False
    return v[-1] >= max(x for x in v if math.isfinite(x))


def run_ended(run: Run) -> bool:
    """True when the run is over: finished, a run directory whose state is final, or a log whose
    last fatal event (exception, out-of-memory, signal) comes after its last metric line (an
    interrupted or crashed run will not log more).

    >>> from tuneterm.logs.model import LogEvent
    >>> run = Run("x", "test")
    >>> run.add_train("loss", 1, 2.0); run.lines[1] = 10
    >>> run_ended(run)
    False
    >>> run.events.append(LogEvent("exception", "KeyboardInterrupt", line=12, step=1, code="KeyboardInterrupt"))
    >>> run_ended(run)
    True
    """
    if run.facts.finished:
        return True
    if run.format == "run_dir":
        return run.state in ("finished", "failed", "stopped", "died")
    fatal = [e for e in run.events if e.kind in ("exception", "oom", "signal") and e.line is not None]
    if not fatal:
        return False
    last_metric = max(run.lines.values()) if run.lines else None
    return last_metric is None or max(e.line for e in fatal if e.line is not None) > last_metric
