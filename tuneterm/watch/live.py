"""Incremental evaluation of a growing run: :class:`LiveEvaluator`.

The evaluator tails a log file or run directory with :class:`tuneterm.logs.tail.Follower` (only
new complete lines are parsed), and re-runs the rules only when something a rule reads has
changed: new metric points, new events (a traceback, ``Killed``), new samples, or a new state in
status.json. Evaluation is the same :func:`tuneterm.engine.evaluate` as ``doctor``, plus the crash
rules and ``degenerate-generations`` on samples (:func:`evaluate_all`). To stay cheap on long runs
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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneterm.engine.evaluate import evaluate
from tuneterm.engine.model import Finding, Rule, Severity
from tuneterm.logs.model import Run
from tuneterm.logs.tail import Follower


PROGRESS_EVERY_S = 15.0


def evaluate_all(run: Run, rules: Iterable[Rule]) -> list[Finding]:
    """Every finding for a run: the log rules (crash rules included) and, when the run has
    samples, ``degenerate-generations`` on them. Sorted errors first, then by step and code."""
    from tuneterm.engine.detectors.samples import samples_findings

    rules = tuple(rules)
    found = list(evaluate(run, rules))
    if run.samples:
        found += samples_findings(run, rules)
    found.sort(key=lambda f: (-f.severity.rank, f.first_step if f.first_step is not None else 1 << 62, f.code))
    return found


def load_checked(path: str | os.PathLike[str], status: Mapping[str, Any] | None = None) -> Run:
    """:func:`tuneterm.logs.load_run`, plus the ``died`` mark for a run directory whose process is
    gone (see :mod:`tuneterm.runs.info`) and, for a live one, its progress facts (see
    :mod:`tuneterm.runs.progress`).

    Raises:
        InputError: as :func:`~tuneterm.logs.load_run`.
    """
    from tuneterm.logs import load_run
    from tuneterm.runs.info import mark_died, read_status

    from tuneterm.runs.progress import mark_progress

    run = load_run(path)
    p = Path(path)
    if run.format == "run_dir":
        st = status if status is not None else read_status(p)
        mark_died(run, st)
        mark_progress(run, p, st)
    return run


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
        self.follower = Follower(self.path)
        self.min_interval = min_interval
        self.findings: list[Finding] = []
        self.fired: dict[str, Finding] = {}
        self.evaluations = 0
        self.last_eval_s = 0.0
        self.total_eval_s = 0.0
        self._next_eval = 0.0
        self._dirty = False
        self._sig: tuple[Any, ...] = ()
        self._samples_sig: tuple[int, float] | None = None
        self._samples: list[dict[str, Any]] = []
        self.is_run_dir = self.path.is_dir()
        self.status: dict[str, Any] = {}
        self._next_progress = 0.0

    @property
    def run(self) -> Run:
        """The run so far (re-read it after each poll: a rotated file gives a fresh object)."""
        return self.follower.run

    def _read_samples(self) -> None:
        p = self.path / "samples.jsonl"
        try:
            st = p.stat()
        except OSError:
            return
        sig = (st.st_size, st.st_mtime)
        if sig == self._samples_sig:
            return
        self._samples_sig = sig
        from tuneterm.logs.load import read_samples

        tmp = Run(source=str(self.path), format="run_dir")
        read_samples(tmp, p)
        self._samples = tmp.samples

    def _check_progress(self, run: Run) -> None:
        """Progress facts for ``run-stalled``, at most every ``PROGRESS_EVERY_S`` (a few stats and
        a 32 KiB tail read)."""
        from tuneterm.runs.progress import mark_progress

        now = time.monotonic()
        if now < self._next_progress:
            return
        self._next_progress = now + PROGRESS_EVERY_S
        mark_progress(run, self.path, self.status)

    def _state_sig(self, run: Run) -> tuple[Any, ...]:
        from tuneterm.runs.progress import stalled_for

        extra = run.facts.extra
        silent = stalled_for(extra) or 0.0
        return (
            int(silent // 60) if silent >= 60 else 0,  # a silence re-evaluates once a minute (run-stalled)
            len(run.events),
            len(run.samples),
            extra.get("state"),
            extra.get("exit_code"),
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
            from tuneterm.runs.info import mark_died, read_status

            self._read_samples()
            run.samples = self._samples
            self.status = read_status(self.path)
            if self.status:
                mark_died(run, self.status)
                self._check_progress(run)
        sig = self._state_sig(run)
        if up.points or sig != self._sig:
            self._dirty = True
            self._sig = sig
        now = time.monotonic()
        if not (force or (self._dirty and now >= self._next_eval)):
            return up
        if not run.has_metrics() and not run.events and run.facts.extra.get("state") != "died":
            return up
        t0 = time.perf_counter()
        self.findings = evaluate_all(run, self.rules)
        up.eval_s = time.perf_counter() - t0
        self.last_eval_s = up.eval_s
        self.total_eval_s += up.eval_s
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

    def errors_fired(self) -> list[Finding]:
        """Error findings reported during the watch (even if a later evaluation dropped them)."""
        return [f for f in self.fired.values() if f.severity is Severity.ERROR]
