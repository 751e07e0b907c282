"""A fake trainer for the watch tests: prints a transformers-style console log with small sleeps.

Usage: python fake_trainer.py [--steps N] [--nan-at N] [--sleep S] [--crash oom|module|none]
       [--hang]

Prints the ``***** Running training *****`` header, then one metric dict per step (stdout) and a
tqdm-like bar (stderr), healthy until ``--nan-at`` where grad_norm turns NaN for every later step.
With ``--hang`` it sleeps 60 s after the last step instead of finishing (so ``--stop-on error`` has
something to stop). ``--crash`` ends with a traceback and exit status 1. Each metric line is
followed by a marker line ``@@ t=<unix time> step=<n>`` on stdout so tests can measure latency.
"""

from __future__ import annotations

import argparse
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--nan-at", type=int, default=0)
    ap.add_argument("--sleep", type=float, default=0.1)
    ap.add_argument("--crash", default="none")
    ap.add_argument("--hang", action="store_true")
    a = ap.parse_args()
    print("***** Running training *****", flush=True)
    print("  Num examples = 1,000", flush=True)
    print(f"  Total optimization steps = {a.steps}", flush=True)
    print("  Instantaneous batch size per device = 8", flush=True)
    for step in range(1, a.steps + 1):
        time.sleep(a.sleep)
        bad = a.nan_at and step >= a.nan_at
        loss = 2.0 - 0.03 * step
        gn = "nan" if bad else f"{1.0 + 0.01 * step:.3f}"
        print(f"{step}/{a.steps} [00:01<00:10, 9.5it/s]", file=sys.stderr, flush=True)
        print(f"{{'loss': {loss:.4f}, 'grad_norm': {gn}, 'learning_rate': 0.0002, 'epoch': {step / a.steps:.2f}}}", flush=True)
        print(f"@@ t={time.time():.3f} step={step}", flush=True)
        if a.crash != "none" and step == a.steps // 2:
            print("Traceback (most recent call last):", file=sys.stderr, flush=True)
            print('  File "train.py", line 88, in <module>', file=sys.stderr, flush=True)
            if a.crash == "oom":
                print("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 23.69 GiB of which 10.56 MiB is free.", file=sys.stderr, flush=True)
            else:
                print("ModuleNotFoundError: No module named 'bitsandbytes'", file=sys.stderr, flush=True)
            return 1
    if a.hang:
        time.sleep(60)
    print(f"{{'train_runtime': {a.steps * a.sleep:.1f}, 'train_loss': 1.5, 'epoch': 1.0}}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
