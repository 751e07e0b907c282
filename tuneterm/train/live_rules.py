"""The rules, evaluated inside the training process while it trains: :class:`LiveRules`.

:class:`~tuneterm.train.callback.TunetermCallback` (attached to the user's own trainer) only
appends a line to metrics.jsonl and sets an event in ``on_log``; a daemon thread does the rest with
the same :class:`~tuneterm.runs.live.LiveEvaluator` that ``tuneterm watch`` uses (it reads only
the newly appended lines and re-runs the rules over the parsed run). So the training thread pays
a fraction of a millisecond per log event however long the run is, and what the callback concludes is what
``watch`` and ``doctor`` conclude from the same files.

The thread yields at least three times as long as its last evaluation took (at most a quarter of
a core even on a 100,000-step run; ``benchmarks/bench_callback.py``), writes ``findings.json``
whenever a finding appears, and reports each new finding to ``on_finding`` (the callback stops
training and notifies from there). :meth:`LiveRules.final` evaluates once more, synchronously,
when training ends.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from tuneterm.runs.layout import RunDir

if TYPE_CHECKING:
    from tuneterm.engine.model import Finding
    from tuneterm.runs.live import LiveEvaluator

_IDLE_WAKE_S = 5.0  # re-evaluate a silent run now and then (stall and death checks)


class LiveRules:
    """Evaluate the rules over run directory ``rd`` in a background thread.

    Args:
        rd: the run directory the callback writes.
        on_finding: called (in the thread) with each finding that fired or escalated.
        min_interval: shortest time between two evaluations, seconds.
    """

    def __init__(self, rd: RunDir, on_finding: Callable[[Finding], None], *, min_interval: float = 0.2) -> None:
        self.rd = rd
        self.on_finding = on_finding
        self.min_interval = min_interval
        self._wake = threading.Event()
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._live: LiveEvaluator | None = None
        self._thread = threading.Thread(target=self._loop, name="tuneterm-rules", daemon=True)
        self.error: str | None = None

    def start(self) -> None:
        """Load the rules (once, here: a finding must not wait for them) and start the thread."""
        self._evaluator()
        self._thread.start()

    def nudge(self) -> None:
        """New lines were written: evaluate when the throttle allows."""
        self._wake.set()

    @property
    def evaluator(self) -> LiveEvaluator | None:
        """The evaluator following the run directory (its latest findings and parsed run), or
        None before :meth:`start`."""
        return self._live

    def _evaluator(self) -> LiveEvaluator:
        if self._live is None:
            from tuneterm.engine import load_rules
            from tuneterm.plan.oom import install
            from tuneterm.runs.live import LiveEvaluator

            install()  # an out-of-memory finding sizes its fixes with the planner's estimator
            self._live = LiveEvaluator(self.rd.path, load_rules(scopes=["log", "eval"]))
        return self._live

    def _poll(self, *, force: bool = False) -> float:
        """Read new lines, evaluate when due, report new findings; returns the evaluation time."""
        with self._lock:
            live = self._evaluator()
            up = live.poll(force=force)
            if up.new:
                from tuneterm.report.findings_file import write_findings

                write_findings(live)
        for f in up.new:
            self.on_finding(f)
        return up.eval_s

    def _loop(self) -> None:
        try:
            while not self._done.is_set():
                self._wake.wait(_IDLE_WAKE_S)
                self._wake.clear()
                if self._done.is_set():
                    break
                spent = self._poll()
                self._done.wait(max(self.min_interval, 3 * spent))
        except Exception as exc:  # noqa: BLE001 - a rules failure must never reach the training loop
            self.error = f"{type(exc).__name__}: {exc}"[:300]

    def final(self) -> list[Finding]:
        """Stop the thread, evaluate the finished run once more, write findings.json; returns
        the final findings."""
        self._done.set()
        self._wake.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)
        try:
            self._poll(force=True)
            with self._lock:
                from tuneterm.report.findings_file import write_findings

                live = self._evaluator()
                write_findings(live)
                return list(live.findings)
        except Exception as exc:  # noqa: BLE001 - as in the loop
            self.error = f"{type(exc).__name__}: {exc}"[:300]
            return []
