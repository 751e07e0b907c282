"""findings.json written by the headless follower (``tuneterm train --headless``) is what
``tuneterm doctor RUN`` / ``tuneterm check RUN`` report, including for a run that crashed before
its first metric (the crash rules read status.json and stderr.log)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.helpers import run_script
from tests.train.conftest import TINY, run_cli, tiny_model  # noqa: F401 - fixture
from tests.watch.helpers import make_run_dir, traceback
from tuneterm.train.follow import follow
from tuneterm.runs.layout import RunDir


def _check_json(run_dir: Path) -> tuple[int, list[dict[str, object]]]:
    res = run_script("check", str(run_dir), "--format", "json")
    assert res.returncode in (0, 1), res.stderr
    return res.returncode, json.loads(res.stdout)["findings"]


def _ended_proc() -> subprocess.Popen[bytes]:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p


def test_crash_before_any_metric_is_in_findings_json(tmp_path: Path) -> None:
    d = make_run_dir(tmp_path, "early", steps=0, status={"state": "failed", "exit_code": 1, "error": "ModuleNotFoundError: No module named 'peft'"},
                     stderr=traceback("ModuleNotFoundError: No module named 'peft'"))
    out = io.StringIO()
    outcome = follow(RunDir(d), _ended_proc(), out=out, poll_s=0.01)
    assert outcome.state == "failed"
    assert [f.name for f in outcome.findings or []] == ["missing-package"]
    doc = json.loads((d / "findings.json").read_text())
    assert [f["name"] for f in doc["findings"]] == ["missing-package"]
    assert doc["summary"]["errors"] == 1
    code, found = _check_json(d)
    assert code == 1 and found == doc["findings"]  # exactly what doctor/check report


def test_sampled_run_matches_doctor(tmp_path: Path) -> None:
    looping = [{"step": s, "prompt": f"p{i}", "completion": "the the the the the the the the", "n_tokens": 8, "hit_max_tokens": False}
               for s in (10, 90) for i in range(3)]
    d = make_run_dir(tmp_path, "loops", status={"state": "finished", "exit_code": 0}, samples=looping)
    follow(RunDir(d), _ended_proc(), out=io.StringIO(), poll_s=0.01)
    doc = json.loads((d / "findings.json").read_text())
    assert "degenerate-generations" in {f["name"] for f in doc["findings"]}
    assert _check_json(d)[1] == doc["findings"]


@pytest.mark.slow
@pytest.mark.train
def test_real_run_out_of_memory_at_step_1(tiny_model: str, tmp_path: Path) -> None:
    proc = run_cli(["train", str(TINY), "--headless", "--runs-dir", "runs", "--name", "oom", "--sample-every", "1000"],
                   cwd=tmp_path, env={"TUNETERM_FAULT": "oom@1"})
    assert proc.returncode == 1, proc.stderr[-2000:]
    rd = tmp_path / "runs" / "oom"
    assert not (rd / "metrics.jsonl").is_file() or not (rd / "metrics.jsonl").read_text().strip(), "crashed before any metric"
    doc = json.loads((rd / "findings.json").read_text())
    names = [f["name"] for f in doc["findings"]]
    assert "cuda-out-of-memory" in names and "run-crashed" not in names, names
    assert "error X110 cuda-out-of-memory" in proc.stdout
    code, found = _check_json(rd)
    assert code == 1 and found == doc["findings"]
    doctor = run_script("doctor", str(rd))
    assert doctor.returncode == 1 and "cuda-out-of-memory" in doctor.stdout
