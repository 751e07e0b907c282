"""Every run records the planner's estimate (launch.json) beside its measured GPU peak (gpu.jsonl):
`doctor` sets one against the other and benchmarks/estimate_vs_measured.py collects them.

The CUDA side of gpu.jsonl cannot be produced on the CPU test machines, so those rows are written
here in the exact shape tuneterm/train/callback.py writes them; the estimate side comes from the
real pre-flight of a real config.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.train.conftest import run_cli
from tuneterm.train.config import resolve
from tuneterm.train.preflight import preflight

pytestmark = pytest.mark.train  # needs the train extra; skipped cleanly without it

QWEN_LORA = REPO / "configs" / "sft-lora-qwen2.5-0.5b.yaml"


def _run_dir(root: Path, name: str, *, cuda: bool, estimate: dict | None) -> Path:
    d = root / name
    d.mkdir(parents=True)
    (d / "metrics.jsonl").write_text("".join(
        json.dumps({"loss": 2.0 - 0.05 * s, "grad_norm": 1.0, "learning_rate": 1e-4, "step": s, "epoch": s / 100}) + "\n"
        for s in range(1, 21)))
    (d / "status.json").write_text(json.dumps({"state": "finished", "exit_code": 0, "step": 20, "max_steps": 20,
                                               "host": socket.gethostname(), "pid": None}))
    (d / "launch.json").write_text(json.dumps({"trainer": "sft", "method": "lora", "memory_estimate": estimate}))
    rows = []
    for s in range(1, 21):
        if cuda:  # tuneterm/train/callback.py's CUDA row
            rows.append({"step": s, "time": 1.0 * s, "device": "cuda:0", "mem_allocated_mib": 9000.0 + s,
                         "mem_reserved_mib": 15000.0, "peak_allocated_mib": 14800.0 + 10 * s,
                         "peak_reserved_mib": 16500.0 + (200.0 if s == 7 else 0.0), "mem_total_mib": 81559.0,
                         "name": "NVIDIA H100 80GB HBM3", "utilization": 97})
        else:
            rows.append({"step": s, "time": 1.0 * s, "device": "cpu", "rss_mib": 900.0, "peak_rss_mib": 950.0})
    (d / "gpu.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return d


def test_preflight_estimate_is_what_train_records() -> None:
    est = preflight(resolve(QWEN_LORA), 1).memory_estimate
    assert est is not None and est["model"] == "Qwen/Qwen2.5-0.5B-Instruct" and est["method"] == "lora"
    assert 5 < est["peak_gib"] < 40 and est["allocated_gib"] <= est["peak_gib"]


def test_doctor_sets_estimate_against_measured_peak(tmp_path: Path) -> None:
    est = preflight(resolve(QWEN_LORA), 1).memory_estimate
    d = _run_dir(tmp_path, "gpu-run", cuda=True, estimate=est)
    proc = run_cli(["doctor", str(d), "--no-charts"], cwd=tmp_path, env={"COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr
    measured = 16700.0 / 1024
    want = f"memory per GPU: estimated {est['peak_gib']:.1f} GiB, measured {measured:.1f} GiB reserved"
    assert want in proc.stdout, proc.stdout
    assert f"allocated {(14800.0 + 200) / 1024:.1f}" in proc.stdout


def test_cpu_run_shows_no_per_gpu_memory(tmp_path: Path) -> None:
    d = _run_dir(tmp_path, "cpu-run", cuda=False, estimate={"peak_gib": 0.9, "model": "tuneterm:tiny-llama"})
    proc = run_cli(["doctor", str(d), "--no-charts"], cwd=tmp_path, env={"COLUMNS": "200"})
    assert proc.returncode == 0 and "memory per GPU" not in proc.stdout, proc.stdout


def test_benchmark_collects_rows(tmp_path: Path) -> None:
    est = preflight(resolve(QWEN_LORA), 1).memory_estimate
    runs = tmp_path / "runs"
    _run_dir(runs, "gpu-run", cuda=True, estimate=est)
    _run_dir(runs, "cpu-run", cuda=False, estimate=est)
    _run_dir(runs, "no-estimate", cuda=True, estimate=None)
    out = tmp_path / "rows.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "estimate_vs_measured.py"), str(runs), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "skip cpu-run: no CUDA peak" in proc.stdout and "skip no-estimate: no planner estimate" in proc.stdout
    (row,) = json.loads(out.read_text())["rows"]
    assert row["run"] == "gpu-run" and row["gpu"] == "NVIDIA H100 80GB HBM3"
    assert row["measured_reserved_gib"] == round(16700.0 / 1024, 3)
    assert abs(row["error_pct"] - 100 * (est["peak_gib"] - 16700.0 / 1024) / (16700.0 / 1024)) < 0.2
