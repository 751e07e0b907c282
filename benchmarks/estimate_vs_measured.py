"""The planner's estimate against the measured GPU peak, for every tuneterm run on a GPU.

    python benchmarks/estimate_vs_measured.py [RUN_DIR | RUNS_ROOT ...] [--out FILE]

``tuneterm train`` records the planner's per-GPU estimate for the config in each run's
``launch.json`` (``memory_estimate``) and the training process writes the CUDA peaks of every
logging window to ``gpu.jsonl`` (``peak_allocated_mib``, ``peak_reserved_mib``). This script reads
both from run directories (a runs root is searched one level down; default: ``$TUNETERM_RUNS_DIR``
or ``./runs``), prints one row per run with the error of the estimate, and with ``--out`` writes
the rows as JSON, the same shape as ``benchmarks/data/memory_calibration.json`` rows, so ordinary
runs on a GPU become calibration points for ``tuneterm/plan/memory.py``.

Runs without a CUDA peak (CPU runs) or without an estimate (a model the planner could not
resolve) are listed as skipped with the reason.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def run_dirs(args: list[str]) -> list[Path]:
    from tuneterm.runs.layout import is_run_dir

    roots = [Path(a) for a in args] or [Path(os.environ.get("TUNETERM_RUNS_DIR", "runs"))]
    found: list[Path] = []
    for root in roots:
        if is_run_dir(root):
            found.append(root)
        elif root.is_dir():
            found.extend(sorted(p for p in root.iterdir() if is_run_dir(p)))
    return found


def row_for(d: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(row, None) for a run with both sides, else (None, why it is skipped)."""
    from tuneterm.runs.memory import read_memory_record

    rec = read_memory_record(d)
    est = rec.estimate if rec is not None else None
    measured = None if rec is None else (rec.peak_reserved_gib if rec.peak_reserved_gib is not None else rec.peak_allocated_gib)
    if est is None:
        return None, "no planner estimate in launch.json"
    if measured is None:
        return None, "no CUDA peak in gpu.jsonl (CPU run or nothing logged)"
    return {
        "run": d.name,
        "gpu": rec.gpu_name,
        "setup": {k: est.get(k) for k in ("model", "method", "trainer", "batch_size", "seq_len",
                                           "gradient_checkpointing", "dtype", "optimizer", "gpus")},
        "estimate_peak_gib": est.get("peak_gib"),
        "estimate_allocated_gib": est.get("allocated_gib"),
        "measured_reserved_gib": rec.peak_reserved_gib,
        "measured_allocated_gib": rec.peak_allocated_gib,
        "error_pct": round(100.0 * (float(est["peak_gib"]) - float(measured)) / float(measured), 1) if measured else None,
    }, None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="*", help="run directories or runs roots (default: $TUNETERM_RUNS_DIR or ./runs)")
    ap.add_argument("--out", help="write the rows as JSON here")
    args = ap.parse_args()
    rows: list[dict[str, Any]] = []
    for d in run_dirs(args.paths):
        row, why = row_for(d)
        if row is None:
            print(f"skip {d.name}: {why}")
            continue
        rows.append(row)
        s = row["setup"]
        print(f"{d.name:32} {str(s['model'])[:28]:28} {s['method']:5} b{s['batch_size']} s{s['seq_len']} "
              f"gc{'+' if s['gradient_checkpointing'] else '-'}  est {row['estimate_peak_gib']:7.2f}G  "
              f"measured {row['measured_reserved_gib'] or row['measured_allocated_gib']:7.2f}G  {row['error_pct']:+6.1f}%")
    if rows:
        errs = [abs(r["error_pct"]) for r in rows if r["error_pct"] is not None]
        print(f"{len(rows)} runs with both sides; median |error| {statistics.median(errs):.1f}%")
    else:
        print("no run with both an estimate and a CUDA peak")
    if args.out:
        Path(args.out).write_text(json.dumps({"rows": rows}, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
