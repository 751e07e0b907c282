"""Parser speed and memory figures (prints numbers; not a test).

(a) A generated 300,000-entry ``trainer_state.json`` (loss, grad_norm, learning_rate, epoch, step;
    an eval entry every 1,000 steps, HF's ``indent=2`` layout): bare ``json.load`` vs
    ``tuneterm.logs.load_run``. Target: ratio <= 1.5 (rule evaluation is timed separately).
(b) A generated 1,000,000-line console log (HF dict lines, tqdm ``\\r`` noise, warnings): file size,
    parse time, and the peak memory ``load_run`` allocates (tracemalloc, measured in a second
    pass because tracing slows Python down). Target: peak well below the file size.

Usage: ``python benchmarks/bench_parse.py [--entries 300000] [--lines 1000000] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import random
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tuneterm.logs import load_run


def make_trainer_state(path: Path, n: int) -> None:
    """Write a realistic trainer_state.json with ``n`` training entries."""
    rnd = random.Random(0)
    hist: list[dict[str, Any]] = []
    steps_per_epoch = 10_000
    for step in range(1, n + 1):
        hist.append(
            {
                "epoch": round(step / steps_per_epoch, 4),
                "grad_norm": rnd.uniform(0.2, 3.0),
                "learning_rate": 2e-4 * (1 - step / (n + 1)),
                "loss": 2.5 * math.exp(-step / n) + rnd.uniform(-0.05, 0.05),
                "step": step,
            }
        )
        if step % 1000 == 0:
            hist.append(
                {
                    "epoch": round(step / steps_per_epoch, 4),
                    "eval_loss": 2.0 * math.exp(-step / n),
                    "eval_runtime": 12.5,
                    "eval_samples_per_second": 80.1,
                    "eval_steps_per_second": 10.0,
                    "step": step,
                }
            )
    doc = {
        "best_metric": None,
        "epoch": n / steps_per_epoch,
        "eval_steps": 1000,
        "global_step": n,
        "log_history": hist,
        "logging_steps": 1,
        "max_steps": n,
        "num_train_epochs": math.ceil(n / steps_per_epoch),
        "train_batch_size": 8,
    }
    with path.open("w") as f:
        json.dump(doc, f, indent=2)


def make_console_log(path: Path, n_lines: int) -> int:
    """Write a console log of ``n_lines`` lines: ~1 in 4 a metric dict, the rest tqdm/warnings."""
    rnd = random.Random(1)
    total = n_lines
    dicts = 0
    with path.open("w") as f:
        f.write("***** Running training *****\n  Num examples = 1,000,000\n")
        f.write(f"  Total optimization steps = {total}\n")
        written = 3
        step = 0
        while written < n_lines:
            step += 1
            r = rnd.random()
            if r < 0.25:
                dicts += 1
                f.write(
                    f"{{'loss': {rnd.uniform(0.5, 2.5):.4f}, 'grad_norm': {rnd.uniform(0.1, 3):.6f}, "
                    f"'learning_rate': {2e-4 * (1 - step / total):.6e}, 'epoch': {step / total:.4f}}}\n"
                )
            elif r < 0.97:
                pct = step * 100 // total
                f.write(
                    f" {pct:3d}%|{'█' * (pct // 10):<10}| {step}/{total} [01:{step % 60:02d}<10:00,  "
                    f"{rnd.uniform(1, 9):.2f}it/s]\r {pct:3d}%|{'█' * (pct // 10):<10}| {step}/{total} "
                    "[01:00<10:00,  5.00it/s]\n"
                )
            else:
                f.write("/usr/lib/python3/site-packages/torch/utils/checkpoint.py:91: UserWarning: "
                        "some harmless warning text here\n")
            written += 1
    return dicts


def best_of(fn: Callable[[], Any], repeat: int) -> tuple[float, float]:
    """Best wall time and best CPU time (``process_time``) of ``repeat`` calls.

    CPU time is reported beside wall time because on a shared machine wall time mostly measures
    the neighbours; the ratio in (a) is computed on CPU time.
    """
    best_wall = best_cpu = math.inf
    for _ in range(repeat):
        gc.collect()
        w, c = time.perf_counter(), time.process_time()
        result = fn()
        best_cpu = min(best_cpu, time.process_time() - c)
        best_wall = min(best_wall, time.perf_counter() - w)
        del result
    return best_wall, best_cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--entries", type=int, default=300_000)
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="tuneterm-bench-") as tmp:
        d = Path(tmp)
        ts = d / "trainer_state.json"
        make_trainer_state(ts, args.entries)
        size = ts.stat().st_size

        def bare() -> Any:
            with ts.open("rb") as f:
                return json.load(f)

        # interleave the two so that load changes on a shared machine hit both alike
        jw = jc = lw = lc = math.inf
        for _ in range(args.repeat):
            w, c = best_of(bare, 1)
            jw, jc = min(jw, w), min(jc, c)
            w, c = best_of(lambda: load_run(ts), 1)
            lw, lc = min(lw, w), min(lc, c)
        run = load_run(ts)
        print(f"(a) trainer_state.json: {args.entries:,} train entries, {size / 1e6:.1f} MB")
        print(f"    json.load      cpu {jc:.3f} s   wall {jw:.3f} s")
        print(f"    load_run       cpu {lc:.3f} s   wall {lw:.3f} s")
        print(f"    ratio          cpu {lc / jc:.2f}x   wall {lw / jw:.2f}x   (target <= 1.5x)")
        print(f"    loss points {len(run.train['loss']):,}, eval points {len(run.evals['eval']['loss']):,}")
        del run

        log = d / "train.log"
        dicts = make_console_log(log, args.lines)
        lsize = log.stat().st_size
        t_log, c_log = best_of(lambda: load_run(log), 1)
        gc.collect()
        tracemalloc.start()
        run2 = load_run(log)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(f"(b) console log: {args.lines:,} lines ({dicts:,} metric dicts), {lsize / 1e6:.1f} MB")
        print(f"    load_run       cpu {c_log:.3f} s   wall {t_log:.3f} s  "
              f"({args.lines / c_log / 1e6:.2f} M lines per CPU second)")
        print(f"    peak traced memory {peak / 1e6:.1f} MB = {peak / lsize:.0%} of the file size")
        print(f"    loss points {len(run2.train['loss']):,}; last step {run2.facts.global_step}")


if __name__ == "__main__":
    main()
