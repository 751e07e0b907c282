"""JSON Lines metric logs: LLaMA-Factory ``trainer_log.jsonl``, tuneterm's ``metrics.jsonl``, generic.

One JSON object per line. The step is the entry's own ``current_steps`` (LLaMA-Factory), ``step``,
``global_step``, ``_step`` or ``iteration``; otherwise its 1-based position. LLaMA-Factory renames:
``lr`` (alias handled by :mod:`~tuneterm.logs.names`), ``accuracy`` (= DPO/ORPO/KTO
``rewards/accuracies`` in preference stages: the only trainer_log ``accuracy`` LLaMA-Factory
writes), ``total_steps`` (-> ``facts.max_steps``). Explicit ``null`` values (old schema) are skipped.
"""

from __future__ import annotations

import json
import math
from typing import Any

from tuneterm.logs.entries import EntrySink
from tuneterm.logs.model import Run

_MAX_LINE = 1 << 20


class JsonlParser:
    """Incremental JSONL parser shared by the file reader and the tailer.

    Args:
        run: the run to fill.

    Attributes:
        llamafactory: True once a line with ``current_steps`` was seen.
        bad_lines: lines that were not a JSON object (counted, reported in ``run.notes``).
    """

    def __init__(self, run: Run) -> None:
        self.run = run
        self.sink = EntrySink(run, track_lines=True)
        self.llamafactory = False
        self.bad_lines = 0
        self.last_bad_line: int | None = None
        self.objects = 0
        self._own_notes: list[str] = []

    def feed(self, lineno: int, line: str) -> int:
        """Parse one line; returns the number of metric points it added."""
        s = line.strip()
        if not s:
            return 0
        if len(s) > _MAX_LINE or s[0] != "{":
            self._bad(lineno)
            return 0
        try:
            entry: Any = json.loads(s)
        except (ValueError, RecursionError):
            self._bad(lineno)
            return 0
        if not isinstance(entry, dict):
            self._bad(lineno)
            return 0
        self.objects += 1
        f = self.run.facts
        if "current_steps" in entry:
            self.llamafactory = True
            ts = entry.get("total_steps")
            if isinstance(ts, int) and not isinstance(ts, bool) and ts > 0:
                f.max_steps = ts
            if "accuracy" in entry:
                entry = {("rewards/accuracies" if k == "accuracy" else k): v for k, v in entry.items()}
                f.llamafactory_accuracy = True
        step = self.sink.step_of(entry)
        if step is None:
            step = self.objects
        else:
            if f.global_step is None or step > f.global_step:
                f.global_step = step
        added = self.sink.add(entry, step, lineno)
        return added

    def _bad(self, lineno: int) -> None:
        self.bad_lines += 1
        self.last_bad_line = lineno

    def finish(self) -> None:
        """Settle facts and notes (idempotent)."""
        self.sink.finish()
        f = self.run.facts
        if f.global_step is not None and f.max_steps and f.global_step >= f.max_steps:
            f.finished = True
        if f.epoch is not None and not math.isfinite(f.epoch):
            f.epoch = None
        # Idempotent: replace the notes this parser added on a previous call (tailing).
        notes = self.run.notes
        for n in self._own_notes:
            if n in notes:
                notes.remove(n)
        self._own_notes = []
        if self.bad_lines:
            self._own_notes.append(
                f"{self.bad_lines} line(s) were not a JSON object (last: line {self.last_bad_line})"
            )
        if self.objects and not self.run.has_metrics():
            self._own_notes.append(
                "trainer_log.jsonl has no training metrics (a predict/eval-only run?)"
                if self.llamafactory
                else "JSON lines hold no numeric metrics"
            )
        notes.extend(self._own_notes)
