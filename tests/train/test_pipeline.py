"""Multi-stage pipelines, for real: tiny SFT->GRPO and SFT->DPO pipelines trained end to end on
CPU through the CLI, a broken stage 1 stopped at its gate, and --resume continuing at the right
stage.

Each expensive scenario is one test (tests of a module may run on different xdist workers, and a
module fixture would then train twice). Stages keep max_steps small and --sample-every large, so
the gates judge the training metrics, not how a random tiny model happens to generate.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO
from tests.train.conftest import metrics, needs_trl, run_cli

CONFIGS = REPO / "configs"


def _preset(name: str, tmp: Path, sft_set: dict[str, Any], stage2: dict[str, Any]) -> Path:
    """A copy of a shipped tiny pipeline preset with config paths made absolute and overrides."""
    doc = yaml.safe_load((CONFIGS / name).read_text(encoding="utf-8"))
    first, second = doc["stages"]
    first["config"] = str(CONFIGS / first["config"])
    first["set"] = {**first.get("set", {}), **sft_set}
    second["config"] = {**second["config"], **stage2}
    path = tmp / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def _state(pdir: Path) -> dict[str, Any]:
    return json.loads((pdir / "pipeline.json").read_text(encoding="utf-8"))


def _stage_states(pdir: Path) -> list[str]:
    return [s["state"] for s in _state(pdir)["stages"]]


@needs_trl
def test_sft_then_grpo_pipeline_runs_end_to_end(tmp_path: Path, tiny_model: str) -> None:
    lora = {"max_steps": 6, "use_peft": True, "lora_r": 8, "lora_alpha": 16, "lora_target_modules": "all-linear"}
    pipe = _preset("tiny-sft-grpo.yaml", tmp_path, lora, {"max_steps": 3})
    runs = tmp_path / "runs"
    r = run_cli(["train", str(pipe), "--runs-dir", str(runs), "--name", "pg", "--sample-every", "1000"],
                cwd=tmp_path, timeout=600)
    pdir = runs / "pg"
    assert r.returncode == 0, r.stdout + r.stderr + (pdir / "pipeline.log").read_text()
    assert r.stdout.splitlines()[0] == "pg"
    assert "gate after stage 1 (sft) passed" in r.stdout
    state = _state(pdir)
    assert state["state"] == "finished" and state["current"] is None
    assert _stage_states(pdir) == ["passed", "passed"]

    # Stage 2 trained GRPO on stage 1's adapter merged into the base.
    merged = pdir / "01-sft" / "merged"
    assert (merged / "config.json").is_file() and (pdir / "01-sft" / "output" / "adapter_config.json").is_file()
    cfg2 = yaml.safe_load((pdir / "02-grpo" / "config.yaml").read_text(encoding="utf-8"))
    assert Path(cfg2["model_name_or_path"]) == merged.resolve()
    assert state["stages"][1]["handover"] == "merged"
    launch2 = json.loads((pdir / "02-grpo" / "launch.json").read_text(encoding="utf-8"))
    assert launch2["trainer"] == "grpo" and launch2["pipeline"]["stage"] == 2
    assert any("reward" in row for row in metrics(pdir / "02-grpo"))
    assert (pdir / "02-grpo" / "findings.json").is_file()

    # runs, doctor and stop see the pipeline's stages.
    listed = run_cli(["runs", "--json", "--runs-dir", str(runs)], cwd=tmp_path)
    names = {row["name"]: row["state"] for row in json.loads(listed.stdout)}
    assert names == {"pg": "finished", "pg/01-sft": "finished", "pg/02-grpo": "finished"}
    row = next(x for x in json.loads(listed.stdout) if x["name"] == "pg")
    assert (row["step"], row["max_steps"]) == (2, 2)  # stages passed / stages
    doc = run_cli(["doctor", str(pdir), "--no-charts", "--width", "120"], cwd=tmp_path)
    assert doc.returncode == 0, doc.stdout + doc.stderr
    assert "01-sft" in doc.stdout and "02-grpo" in doc.stdout
    stop = run_cli(["stop", "pg", "--runs-dir", str(runs)], cwd=tmp_path)
    assert stop.returncode == 0 and "already finished" in stop.stderr


@needs_trl
def test_broken_stage_1_stops_at_the_gate_and_resume_continues_at_the_right_stage(
    tmp_path: Path, tiny_model: str
) -> None:
    pipe = _preset("tiny-sft-dpo.yaml", tmp_path, {"max_steps": 6, "learning_rate": 0.0}, {"max_steps": 3})
    runs = tmp_path / "runs"
    args = ["--runs-dir", str(runs), "--sample-every", "1000"]
    r = run_cli(["train", str(pipe), "--name", "pd", *args], cwd=tmp_path, timeout=600)
    pdir = runs / "pd"
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "gate after stage 1 (sft) FAILED" in out
    assert "S101 lr-zero" in out
    assert "prescription" in out and "learning_rate: 0 -> " in out  # the advisor's change for this stage
    assert not (pdir / "02-dpo").exists()  # stage 2 never started
    assert _state(pdir)["stages"][1]["handover"] == "model"  # stage 1 trains the full model
    state = _state(pdir)
    assert state["state"] == "gated" and "lr-zero" in state["error"]
    assert _stage_states(pdir) == ["gate-failed", "pending"]
    gate = state["stages"][0]["gate"]
    assert gate["passed"] is False and gate["findings"][0]["name"] == "lr-zero"
    assert any(f.startswith("learning_rate:") for f in gate["findings"][0]["fixes"])
    change = next(c for c in gate["prescription"]["changes"] if c["key"] == "learning_rate")
    assert change["was"] == 0 and change["value"] > 0 and "S101" in change["findings"]

    # Fix stage 1 in the file and resume: stage 1 runs again (the failed attempt is kept), then 2.
    fixed = yaml.safe_load(pipe.read_text(encoding="utf-8"))
    fixed["stages"][0]["set"]["learning_rate"] = 5.0e-3
    pipe.write_text(yaml.safe_dump(fixed, sort_keys=False), encoding="utf-8")
    r = run_cli(["train", str(pipe), "--resume", *args], cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr + (pdir / "pipeline.log").read_text()
    assert "resuming pipeline pd at stage 1" in r.stderr
    assert _stage_states(pdir) == ["passed", "passed"]
    assert (pdir / ".attempts" / "01-sft-1" / "status.json").is_file()
    assert any("rewards/margins" in row for row in metrics(pdir / "02-dpo"))
    sft_started = _state(pdir)["stages"][0]["started"]

    # Change stage 2 only: --resume (from the directory) reruns stage 2 and leaves stage 1 alone.
    fixed["stages"][1]["config"]["max_steps"] = 2
    pipe.write_text(yaml.safe_dump(fixed, sort_keys=False), encoding="utf-8")
    r = run_cli(["train", "pd", "--resume", "--runs-dir", str(runs)], cwd=tmp_path, timeout=600)
    assert r.returncode == 2 and "every stage has passed already" in r.stderr  # the directory's own copy
    r = run_cli(["train", str(pipe), "--resume", *args], cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "at stage 2" in r.stderr
    state = _state(pdir)
    assert state["stages"][0]["started"] == sft_started and state["stages"][0]["attempts"] == [".attempts/01-sft-1"]
    assert state["stages"][1]["attempts"] == [".attempts/02-dpo-1"]
    assert max(row["step"] for row in metrics(pdir / "02-dpo")) == 2


def _run_preset(name: str, tmp_path: Path) -> tuple[Any, Path]:
    runs = tmp_path / "runs"
    r = run_cli(["train", str(CONFIGS / name), "--runs-dir", str(runs), "--name", "p", "--sample-every", "1000"],
                cwd=tmp_path, timeout=900)
    return r, runs / "p"


@needs_trl
def test_tiny_three_stage_recipe_with_templates_and_category_evaluation(tmp_path: Path, tiny_model: str) -> None:
    r, pdir = _run_preset("tiny-three-stage.yaml", tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr + (pdir / "pipeline.log").read_text()
    state = _state(pdir)
    assert _stage_states(pdir) == ["passed", "passed", "passed"]
    assert [s["handover"] for s in state["stages"]] == ["base", "model", "model"]
    # Stages 1 and 2 train the full model: each hands its saved model to the next.
    cfg3 = yaml.safe_load((pdir / "03-lora" / "config.yaml").read_text(encoding="utf-8"))
    assert Path(cfg3["model_name_or_path"]) == (pdir / "02-instruct" / "output").resolve()
    launch2 = json.loads((pdir / "02-instruct" / "launch.json").read_text(encoding="utf-8"))
    assert launch2["data"] == {"templates": ["random"], "template_seed": 0}
    ev = state["stages"][2]["gate"]["eval"]
    assert ev["metric"] == "probes/instruction" and ev["against"] == "base" and ev["passed"] is True
    assert 0.0 <= ev["against_value"] <= 1.0 and 0.0 <= ev["stage_value"] <= 1.0
    report = json.loads((pdir / "03-lora" / "eval.json").read_text(encoding="utf-8"))
    assert {"factual", "reasoning", "instruction", "code"} <= set(report["probes"]["categories"])


@needs_trl
def test_tiny_sharegpt_recipe_compares_base_and_tuned_by_rouge(tmp_path: Path, tiny_model: str) -> None:
    r, pdir = _run_preset("tiny-qlora-sharegpt.yaml", tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr + (pdir / "pipeline.log").read_text()
    ev = _state(pdir)["stages"][0]["gate"]["eval"]
    assert ev["metric"] == "rougeL" and ev["against"] == "base"
    assert ev["improvement"] == pytest.approx(ev["stage_value"] - ev["against_value"])
    report = json.loads((pdir / "01-lora" / "eval.json").read_text(encoding="utf-8"))
    assert report["metrics"]["deltas"]["rougeL"]["n"] == 4
    assert "rougeL" in r.stdout and "(+" in r.stdout or "(-" in r.stdout


@needs_trl
def test_a_detached_pipeline_is_stopped_with_its_running_stage(tmp_path: Path, tiny_model: str) -> None:
    import time

    runs = tmp_path / "runs"
    r = run_cli(["train", str(CONFIGS / "tiny-sft-dpo.yaml"), "--detach", "--runs-dir", str(runs), "--name", "ps",
                 "--sample-every", "1000"], cwd=tmp_path, env={"TUNETERM_FAULT": "sleep=1"})
    assert r.returncode == 0 and r.stdout.strip() == "ps" and "tuneterm stop" in r.stderr
    pdir = runs / "ps"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # wait for stage 1 to train (each step sleeps 1 s)
        if (pdir / "01-sft" / "metrics.jsonl").is_file() and (pdir / "01-sft" / "metrics.jsonl").read_text().strip():
            break
        time.sleep(0.5)
    else:
        pytest.fail("stage 1 never logged a step: " + (pdir / "pipeline.log").read_text())
    listed = {row["name"]: row["state"] for row in json.loads(run_cli(["runs", "--json", "--runs-dir", str(runs)], cwd=tmp_path).stdout)}
    assert listed["ps"] == "running" and listed["ps/01-sft"] == "running"
    stop = run_cli(["stop", "ps", "--runs-dir", str(runs), "--grace", "60"], cwd=tmp_path)
    assert stop.returncode == 0 and "pipeline ps stopped" in stop.stderr, stop.stderr
    state = _state(pdir)
    assert state["state"] == "stopped" and _stage_states(pdir) == ["stopped", "pending"]
    assert json.loads((pdir / "01-sft" / "status.json").read_text())["state"] == "stopped"
    assert not (pdir / "02-dpo").exists()


@needs_trl
def test_merge_false_continues_the_previous_adapter(tmp_path: Path, tiny_model: str) -> None:
    lora = {"use_peft": True, "lora_target_modules": "all-linear", "max_steps": 4, "per_device_train_batch_size": 8,
            "learning_rate": 5.0e-3, "logging_steps": 1, "max_length": 128, "bf16": False, "save_strategy": "no",
            "report_to": "none", "seed": 42}
    doc = {"name": "cont", "stages": [
        {"name": "sft", "config": {"model_name_or_path": "tuneterm:tiny-llama", "dataset_name": "tuneterm:tiny-sft",
                                   **lora, "lora_r": 8, "lora_alpha": 16}},
        # instruction/input/response rows, no templates: rendered as chat turns (the tiny model has a template)
        {"name": "more", "from": "previous", "merge": False,
         "config": {"dataset_name": "tuneterm:tiny-instructions", **lora, "lora_r": 16, "lora_alpha": 32}},
    ]}
    pipe = tmp_path / "cont.yaml"
    pipe.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    runs = tmp_path / "runs"
    r = run_cli(["train", str(pipe), "--runs-dir", str(runs), "--name", "c", "--sample-every", "1000"],
                cwd=tmp_path, timeout=600)
    pdir = runs / "c"
    assert r.returncode == 0, r.stdout + r.stderr + (pdir / "pipeline.log").read_text()
    assert _state(pdir)["stages"][1]["handover"] == "adapter"
    launch2 = json.loads((pdir / "02-more" / "launch.json").read_text(encoding="utf-8"))
    assert Path(launch2["init_adapter"]) == (pdir / "01-sft" / "output").resolve()
    cfg2 = yaml.safe_load((pdir / "02-more" / "config.yaml").read_text(encoding="utf-8"))
    assert cfg2["model_name_or_path"] == tiny_model  # the base; the adapter comes on top
    assert not (pdir / "01-sft" / "merged").exists()
    # The stage trained stage 1's adapter further (rank 8), not a new one with its own lora_r: 16.
    adapter = json.loads((pdir / "02-more" / "output" / "adapter_config.json").read_text(encoding="utf-8"))
    assert adapter["r"] == 8
    assert len(metrics(pdir / "02-more")) >= 4
