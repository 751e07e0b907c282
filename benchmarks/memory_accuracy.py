"""Print the memory estimator's error against every published point in research/memory.md section 5
that tests/plan/memory_points.py lists (PEFT benchmark, Qwen README, ms-swift, LitGPT, Unsloth).

    python benchmarks/memory_accuracy.py          # table + per-source, per-method and overall medians

Per method (full, LoRA, QLoRA, DoRA) it prints the median and largest absolute error and the most
negative error: an under-estimate is the dangerous direction (it sends a run into OOM).
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.plan.memory_points import POINTS
from tuneterm.plan.facts import table_facts
from tuneterm.plan.memory import GIB, TrainSetup, estimate


def main() -> int:
    by_src: dict[str, list[float]] = {}
    by_method: dict[str, list[float]] = {}
    counted: list[float] = []
    print(f"{'row':>4}  {'model':24} {'setup':38} {'metric':9} {'measured':>9} {'estimate':>9} {'error':>7}")
    for p in POINTS:
        est = estimate(table_facts(p.model), TrainSetup(**p.setup))
        v = {"allocated": est.allocated, "reserved": est.reserved, "device": est.device}[p.metric]
        v /= 1e9 if p.unit == "GB" else GIB
        err = v / p.measured - 1
        s = p.setup
        desc = f"{s.get('method', 'lora')} b{s['batch_size']} s{s['seq_len']} gc{'+' if s.get('gradient_checkpointing') else '-'} {s.get('attn', '')}"
        print(f"{p.row:>4}  {p.model.split('/')[-1]:24} {desc:38} {p.metric:9} {p.measured:8.2f}{p.unit[0]} {v:8.2f}{p.unit[0]} {err:+7.1%}"
              + (f"  [not counted: {p.excluded}]" if p.excluded else ""))
        if not p.excluded:
            by_src.setdefault(p.source, []).append(abs(err))
            by_method.setdefault(str(s.get("method", "lora")), []).append(err)
            counted.append(abs(err))
    print()
    for src, errs in by_src.items():
        print(f"{src:36} n={len(errs):3d}  median |error| {statistics.median(errs):6.1%}  max {max(errs):6.1%}")
    print()
    for method in ("full", "lora", "qlora", "dora"):
        errs = by_method.get(method, [])
        if errs:
            print(f"{method:36} n={len(errs):3d}  median |error| {statistics.median(abs(e) for e in errs):6.1%}  "
                  f"max {max(abs(e) for e in errs):6.1%}  most under {min(errs):+7.1%}")
    print(f"{'all counted points':36} n={len(counted):3d}  median |error| {statistics.median(counted):6.1%}  "
          f"within 10%: {sum(e <= 0.1 for e in counted)}/{len(counted)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
