"""Build :class:`~tuneterm.logs.model.Run` objects from the compact YAML case format.

A case (``tests/fixtures/rules/<CODE>.yaml``)::

    - name: persistent zeros
      expect: error            # error | warning | info | fire (any severity) | none
      trainer: sft             # facts.trainer_kind (default sft)
      format: run_dir          # Run.format (default fixture): a run directory judges by its status
      facts: {is: ignored, vocab_size: 32000, ...}   # any RunFacts field
      status: {state: running, pid: 42, progress: {checked_at: 10.0, last_progress: 1.0}}  # RunStatus
      every: 10                # step spacing for plain value lists (default 1)
      train:
        loss: [2.7, 2.69, 2.68]                 # values at steps every, 2*every, ...
        grad_norm: {repeat: [0.0, 3]}           # generators: repeat, linspace, cosine, concat
        learning_rate: [[10, 5e-5], [20, 0]]    # or explicit [step, value] pairs
      evals: {eval: {loss: [[150, 2.931], [300, 2.931]]}}
      events: [{kind: exception, text: "...", code: KeyboardInterrupt, line: 9, step: 240}]
      lines: {10: 3}           # step -> line
"""

from __future__ import annotations

import math
from typing import Any

from tuneterm.logs.model import LogEvent, Progress, Run, RunStatus


def expand(spec: Any) -> list[Any]:
    """Expand a value spec into a list of values or [step, value] pairs."""
    if isinstance(spec, list):
        return spec
    if not isinstance(spec, dict) or len(spec) != 1:
        raise ValueError(f"bad series spec: {spec!r}")
    (kind, args), = spec.items()
    if kind != "concat":  # YAML 1.1 reads 5e-5 (no dot) as a string
        args = [float(a) for a in args[:-1]] + [int(args[-1])] if kind != "repeat" else [float(args[0]), int(args[1])]
    if kind == "repeat":
        value, n = args
        return [value] * n
    if kind == "linspace":
        a, b, n = args
        return [a + (b - a) * i / max(1, n - 1) for i in range(n)]
    if kind == "cosine":  # peak -> floor over n points
        peak, floor, n = args
        return [floor + (peak - floor) * (1 + math.cos(math.pi * i / max(1, n - 1))) / 2 for i in range(n)]
    if kind == "concat":
        out: list[Any] = []
        for part in args:
            out += expand(part)
        return out
    raise ValueError(f"unknown generator {kind!r}")


def _fill(add: Any, spec: Any, every: int) -> None:
    for i, item in enumerate(expand(spec)):
        if isinstance(item, list):
            add(int(item[0]), float(item[1]))
        else:
            add((i + 1) * every, float(item))


def build_run(case: dict[str, Any], source: str = "fixture") -> Run:
    """A Run from one fixture case."""
    run = Run(source=source, format=case.get("format", "fixture"))
    run.facts.trainer_kind = case.get("trainer", "sft")
    for key, value in (case.get("facts") or {}).items():
        if not hasattr(run.facts, key):
            raise ValueError(f"unknown fact {key!r}")
        setattr(run.facts, key, value)
    status = case.get("status")
    if status is not None:  # a run directory's status (RunStatus fields; progress as a mapping)
        progress = status.get("progress")
        run.status = RunStatus(**{**status, "progress": Progress(**progress) if progress else None})
    every = int(case.get("every", 1))
    for name, spec in (case.get("train") or {}).items():
        _fill(lambda st, v, n=name: run.add_train(n, st, v), spec, every)
    for set_name, metrics in (case.get("evals") or {}).items():
        for name, spec in metrics.items():
            _fill(lambda st, v, s=set_name, n=name: run.add_eval(s, n, st, v), spec, every)
    for ev in case.get("events") or []:
        run.events.append(LogEvent(**ev))
    run.lines.update({int(k): int(v) for k, v in (case.get("lines") or {}).items()})
    return run
