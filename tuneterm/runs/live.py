"""Incremental evaluation of a growing run: :class:`LiveEvaluator`.

The evaluator tails a log file or run directory with a follower (:func:`tuneterm.runs.follow.follower`:
only new complete lines are parsed), and re-runs the rules only when something a rule reads has
changed: new metric points, new events (a traceback, ``Killed``), new samples, or a new state in
status.json. Evaluation is the same :func:`tuneterm.runs.diagnose.diagnose` as ``doctor``, handed
the run kept up to date here (the log rules, the crash rules and ``degenerate-generations`` on
samples; nothing is read again). To stay cheap on long runs
it is throttled: the next evaluation waits at least twice as long as the last one took, so the
watcher never spends more than about a third of a core, and a finding still shows within a
second while an evaluation takes under ~250 ms (benchmarks/bench_watch.py: a new line on a
10,000-step run costs ~40 ms to read and re-evaluate, on a 100,000-step run ~200 ms).

Findings are reported once per rule code (:meth:`LiveEvaluator.poll` returns the new ones), and
again when a rule escalates (warning -> error).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tuneterm.engine.model import Finding, Rule
from tuneterm.logs.model import Progress, Run, RunStatus
from tuneterm.runs.diagnose import diagnose, has_evidence
from tuneterm.runs.follow import follower
from tuneterm.runs.layout import SAMPLES, is_run_dir
from tuneterm.runs.load import read_samples
from tuneterm.runs.progress import mark_progress, stalled_for
from tuneterm.runs.status import mark_died

PROGRESS_EVERY_S = 15.0


@dataclass(slots=True)
class Update:
    """What one :meth:`LiveEvaluator.poll` found.

    Attributes:
        points: new metric points read.
        evaluated: the rules ran in this poll.
        new: findings whose rule fired for the first time or escalated, in report order.
        eval_s: how long the evaluation took (0 when not evaluated).
    """

    points: int = 0
    evaluated: bool = False
    new: list[Finding] = field(default_factory=list)
    eval_s: float = 0.0


class LiveEvaluator:
    """Follow ``path`` and evaluate ``rules`` as it grows.

    Args:
        path: a log file or a run directory.
        rules: the rule set (log rules; an ``eval`` rule named ``degenerate-generations`` is used
            for samples when present).
        min_interval: shortest time between two evaluations, seconds.

    Attributes:
        findings: the latest evaluation's findings (what findings.json holds).
        fired: rule code -> the most severe finding reported so far for it.
        evaluations: how many evaluations ran (for benchmarks and tests).
    """

    def __init__(self, path: str | os.PathLike[str], rules: Iterable[Rule], *, min_interval: float = 0.0) -> None:
        self.path = Path(path)
        self.rules = tuple(rules)
        self.follower = follower(self.path)
        self.min_interval = min_interval
        self.findings: list[Finding] = []
        self.fired: dict[str, Finding] = {}
        self.evaluations = 0
        self.last_eval_s = 0.0
        self._next_eval = 0.0
        self._dirty = False
        self._sig: tuple[Any, ...] = ()
        self._samples_sig: tuple[int, float] | None = None
        self._samples: list[dict[str, Any]] = []
        self.is_run_dir = is_run_dir(self.path)
        self._progress: Progress | None = None
        self._next_progress = 0.0

    @property
    def run(self) -> Run:
        """The run so far (re-read it after each poll: a rotated file gives a fresh object)."""
        return self.follower.run

    @property
    def status(self) -> RunStatus | None:
        """The run directory's status as last polled (``died`` when its process is gone, with its
        progress while live); None for a log file or before status.json exists."""
        return self.follower.run.status

    def _read_samples(self) -> None:
        p = self.path / SAMPLES
        try:
            st = p.stat()
        except OSError:
            return
        sig = (st.st_size, st.st_mtime)
        if sig == self._samples_sig:
            return
        self._samples_sig = sig
        tmp = Run(source=str(self.path), format="run_dir")
        read_samples(tmp, p)
        self._samples = tmp.samples

    def _mark(self, status: RunStatus) -> RunStatus:
        """``status`` marked ``died`` when its process is gone, with the run's progress for
        ``run-stalled``: checked at most every ``PROGRESS_EVERY_S`` (a few stats and a 32 KiB tail
        read), the last check kept in between."""
        status = mark_died(status, self.path)
        now = time.monotonic()
        if now >= self._next_progress:
            self._next_progress = now + PROGRESS_EVERY_S
            self._progress = mark_progress(replace(status, progress=None), self.path).progress
        return replace(status, progress=self._progress) if status.state != "died" else status

    def _state_sig(self, run: Run) -> tuple[Any, ...]:
        silent = stalled_for(run.status) or 0.0
        return (
            int(silent // 60) if silent >= 60 else 0,  # a silence re-evaluates once a minute (run-stalled)
            len(run.events),
            len(run.samples),
            run.state,
            run.exit_code,
            run.facts.finished,
            run.facts.trainer_kind,
        )

    def poll(self, *, force: bool = False) -> Update:
        """Read what arrived and evaluate when it matters and the throttle allows.

        Args:
            force: evaluate now whatever changed (the final evaluation of a watch).

        Raises:
            InputError: the followed file turned binary or unreadable.
        """
        up = Update(points=self.follower.poll())
        run = self.follower.run
        if self.is_run_dir:
            self._read_samples()
            run.samples = self._samples
            if run.status is not None:
                run.status = self._mark(run.status)
        sig = self._state_sig(run)
        if up.points or sig != self._sig:
            self._dirty = True
            self._sig = sig
        now = time.monotonic()
        if not (force or (self._dirty and now >= self._next_eval)):
            return up
        if not has_evidence(run):
            return up
        t0 = time.perf_counter()
        self.findings = list(diagnose(run, self.rules).findings)
        up.eval_s = time.perf_counter() - t0
        self.last_eval_s = up.eval_s
        self.evaluations += 1
        self._dirty = False
        self._next_eval = time.monotonic() + max(self.min_interval, 2 * up.eval_s)
        up.evaluated = True
        for f in self.findings:
            prev = self.fired.get(f.code)
            if prev is None or f.severity.rank > prev.severity.rank:
                self.fired[f.code] = f
                up.new.append(f)
        return up
