"""What does TunetermCallback cost the training loop per log event on a long run? Prints figures.

Drives a real :class:`tuneterm.TunetermCallback` with real transformers ``TrainingArguments``,
``TrainerState`` and ``TrainerControl`` (no model: the cost measured is the callback's own) through
``on_train_begin`` and then ``on_log`` + ``on_step_end`` for every step up to N (default 100,000),
with the rules thread evaluating the growing run as in training. By default the first N - 2,000
metrics lines are appended straight to metrics.jsonl in the callback's own format (``--full``
sends every one of them through the callback: slower, same per-event figures); the last 2,000
events go through the callback and are timed on the training thread: wall time (what the loop
waits) and thread CPU time (what the callback itself computes), plus the rules thread's
evaluation time and count on the full-length run.

Between two events the "training step" sleeps ``--step-ms`` (default 5 ms; the GIL is released as
in torch's kernels), so the rules thread runs as it would in training.

Usage: python benchmarks/bench_callback.py [N] [--full] [--step-ms MS]
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

from transformers import TrainerControl, TrainerState, TrainingArguments

from tuneterm import TunetermCallback

_TIMED = 2_000


def _logs(step: int, n: int) -> dict[str, float]:
    return {
        "loss": 2.0 * math.exp(-step / n) + 0.01 * math.sin(step),
        "grad_norm": 1.0 + 0.1 * math.cos(step),
        "learning_rate": 1e-4,
        "epoch": step / n,
    }


def _pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    argv = sys.argv[1:]
    step_s = 0.005
    if "--step-ms" in argv:
        i = argv.index("--step-ms")
        step_s = float(argv[i + 1]) / 1000.0
        del argv[i : i + 2]
    full = "--full" in argv
    argv = [a for a in argv if not a.startswith("--")]
    n = int(argv[0]) if argv else 100_000
    root = Path(tempfile.mkdtemp())
    args = TrainingArguments(output_dir=str(root / "out"), use_cpu=True, report_to=[], logging_steps=1, max_steps=n)
    state, control = TrainerState(), TrainerControl()
    state.max_steps = n
    cb = TunetermCallback(runs_dir=root / "runs", name="bench", stop_on="error", samples=False)
    cb.on_train_begin(args, state, control)
    first_timed = max(1, n - _TIMED + 1)
    if not full:
        with open(cb.rd.metrics, "a", encoding="utf-8") as fh:
            fh.writelines(json.dumps({**_logs(s, n), "step": s, "epoch": s / n, "time": 0.0}) + "\n" for s in range(1, first_timed))
    start = 1 if full else first_timed
    live = cb._rules._live
    if not full:  # the steady state of a long run: the rules thread has read what is there
        cb._rules.nudge()
        while live.evaluations == 0:
            time.sleep(0.05)
    wall: list[float] = []
    cpu: list[float] = []
    t_all = time.perf_counter()
    for s in range(start, n + 1):
        state.global_step, state.epoch = s, s / n
        w0, c0 = time.perf_counter(), time.thread_time()
        cb.on_log(args, state, control, logs=_logs(s, n))
        cb.on_step_end(args, state, control)
        if s >= first_timed:
            wall.append(time.perf_counter() - w0)
            cpu.append(time.thread_time() - c0)
        time.sleep(step_s)
    loop_s = time.perf_counter() - t_all
    evals0 = 0 if full else 1
    evals, last_eval = live.evaluations - evals0, live.last_eval_s
    t0 = time.perf_counter()
    cb.on_train_end(args, state, control)
    final_s = time.perf_counter() - t0
    ms = 1000.0
    print(f"TunetermCallback at {n:,} logged steps ({'all through the callback' if full else f'last {len(wall):,} through the callback'}):")
    print(f"  per log event, training thread wall: mean {statistics.fmean(wall) * ms:.3f} ms, "
          f"median {statistics.median(wall) * ms:.3f} ms, p99 {_pct(wall, 0.99) * ms:.3f} ms, max {max(wall) * ms:.2f} ms")
    print(f"  per log event, training thread CPU:  mean {statistics.fmean(cpu) * ms:.3f} ms, "
          f"median {statistics.median(cpu) * ms:.3f} ms, p99 {_pct(cpu, 0.99) * ms:.3f} ms")
    print(f"  rules thread: {evals} evaluations while {len(range(start, n + 1)):,} events were logged in {loop_s:.1f} s "
          f"({step_s * 1000:g} ms simulated step); "
          f"last evaluation of the full run {last_eval * ms:.0f} ms")
    print(f"  on_train_end (final evaluation + findings.json): {final_s * ms:.0f} ms; state {cb.rd.read_status().get('state')}")


if __name__ == "__main__":
    main()
