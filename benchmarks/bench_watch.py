"""How cheap is live watching on a long run? Prints figures (not a pass/fail test).

Builds a run directory with N metrics lines (default 100,000), then measures with
:class:`tuneterm.runs.live.LiveEvaluator`: the first read + evaluation, one evaluation of the full
run, and the cost of a poll that reads one new line and re-evaluates (what a long run pays per
logging step). Usage: python benchmarks/bench_watch.py [N]
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
import time
from pathlib import Path

from tuneterm.engine import load_rules
from tuneterm.runs.live import LiveEvaluator


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    d = Path(tempfile.mkdtemp()) / "long-run"
    d.mkdir()
    with open(d / "metrics.jsonl", "w") as fh:
        for s in range(1, n + 1):
            fh.write(json.dumps({"loss": 2.0 * math.exp(-s / n) + 0.01 * math.sin(s), "grad_norm": 1.0, "learning_rate": 1e-4, "step": s, "epoch": s / n}) + "\n")
    (d / "status.json").write_text(json.dumps({"state": "finished", "exit_code": 0, "max_steps": n}))
    rules = load_rules(scopes=["log", "eval"])
    t0 = time.perf_counter()
    live = LiveEvaluator(d, rules)
    up = live.poll(force=True)
    first = time.perf_counter() - t0
    print(f"{n:,} steps: first read + evaluation {first:.2f} s (evaluation {up.eval_s * 1000:.0f} ms, {len(live.findings)} findings)")
    times = []
    with open(d / "metrics.jsonl", "a") as fh:
        for s in range(n + 1, n + 11):
            fh.write(json.dumps({"loss": 1.0, "grad_norm": 1.0, "learning_rate": 1e-4, "step": s, "epoch": 1.0}) + "\n")
            fh.flush()
            t = time.perf_counter()
            live.poll(force=True)
            times.append(time.perf_counter() - t)
    times.sort()
    print(f"one new line + re-evaluation: median {times[len(times) // 2] * 1000:.0f} ms, max {times[-1] * 1000:.0f} ms")
    t = time.perf_counter()
    for _ in range(20):
        live.poll()
    print(f"idle poll (nothing new): {(time.perf_counter() - t) / 20 * 1000:.2f} ms")


if __name__ == "__main__":
    main()
