"""Following a pipeline: after the stage a watch followed ends, what the pipeline does next.

A pipeline directory (:mod:`tuneterm.runs.pipeline`) runs its stages one after another, each in its
own run directory. When the followed stage ends, the driver first checks the stage's gate (which
may run an evaluation), then either starts the next stage (``pipeline.json``'s ``current`` moves
on and the stage's directory appears) or ends the pipeline (``finished``, ``gated``, ``failed``,
``stopped``). :func:`after_stage` waits for one of the two, so ``tuneterm watch PIPELINE`` follows
the next stage instead of ending as if the pipeline were done.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tuneterm.runs.pipeline import TERMINAL, PipelineDir, effective_state


@dataclass(frozen=True, slots=True)
class AfterStage:
    """What the pipeline did after a stage ended.

    Attributes:
        stage: the run directory of the stage it started next, or None when it ended.
        state: the pipeline's state (:func:`~tuneterm.runs.pipeline.effective_state`:
            ``died`` when its driver is gone).
        error: the pipeline's recorded error line, if any.
        index: the next stage's 1-based index (None when the pipeline ended).
        count: how many stages the pipeline has.
    """

    stage: Path | None
    state: str
    error: str | None
    index: int | None
    count: int


def after_stage(
    pd: PipelineDir, ended: Path | None, *, poll_s: float = 0.5, sleep: Callable[[float], None] = time.sleep
) -> AfterStage:
    """Wait until the pipeline starts a stage other than ``ended`` (any stage when ``ended`` is
    None: a pipeline just launched, still preparing its first) or stops running.

    Polls ``pipeline.json`` every ``poll_s`` seconds; the driver records the next stage only once
    its run directory exists, so the returned ``stage`` can be watched at once. A driver that is
    gone without recording an end ends the wait (state ``died``).
    """
    while True:
        data = pd.read()
        stages = [r for r in data.get("stages") or [] if isinstance(r, dict)]
        state = effective_state(data)
        error = data.get("error") if isinstance(data.get("error"), str) else None
        if state in TERMINAL or state == "died":
            return AfterStage(None, state, error, None, len(stages))
        cur = data.get("current")
        for rec in stages:
            d = pd.path / str(rec.get("dir"))
            if rec.get("index") == cur and (ended is None or rec.get("dir") != ended.name) and d.is_dir():
                return AfterStage(d, state, error, int(cur), len(stages))
        sleep(poll_s)


def ended_line(pd: PipelineDir, after: AfterStage) -> str:
    """The line that says how the pipeline ended (``after.stage`` is None)."""
    if after.state == "finished":
        return f"pipeline {pd.name} finished: every stage passed its gate"
    if after.state == "died":
        return f"pipeline {pd.name} died: its driver (pid {pd.read().get('pid')}) is gone without recording an end"
    return f"pipeline {pd.name} {after.state}" + (f": {after.error}" if after.error else "")
