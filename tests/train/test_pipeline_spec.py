"""Pipeline files without training: parsing, refusals (exit 2, one line), the pipeline check of
every shipped preset, and the pipeline directory's state helpers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.train.conftest import needs_trl, run_cli
from tuneterm.errors import ConfigError
from tuneterm.preflight.pipeline_spec import handover, is_pipeline_file, load_pipeline, starting_model

CONFIGS = REPO / "configs"
PRESETS = sorted(p.name for p in CONFIGS.glob("*.yaml") if is_pipeline_file(p))


def test_the_shipped_pipelines_are_the_recipes_and_their_tiny_versions() -> None:
    assert PRESETS == [
        "qlora-llama-3.2-3b-sharegpt.yaml", "sft-then-dpo-qwen2.5-0.5b.yaml", "sft-then-grpo-qwen2.5-0.5b.yaml",
        "three-stage-qwen2.5-1.5b.yaml", "tiny-qlora-sharegpt.yaml", "tiny-sft-dpo.yaml", "tiny-sft-grpo.yaml",
        "tiny-three-stage.yaml",
    ]
    assert not is_pipeline_file(CONFIGS / "tiny.yaml")


def test_a_reused_single_run_preset_gets_the_previous_stage_as_its_model() -> None:
    spec = load_pipeline(CONFIGS / "sft-then-grpo-qwen2.5-0.5b.yaml")
    sft, grpo = spec.stages
    assert sft.values["model_name_or_path"] == "Qwen/Qwen2.5-0.5B-Instruct" and sft.values["max_steps"] == 1000
    assert "model_name_or_path" not in grpo.values and grpo.from_previous and grpo.merge
    assert grpo.values["reward_funcs"] == ["accuracy_reward", "think_format_reward"]
    assert handover(spec, grpo) == "merged" and starting_model(spec, grpo) == "Qwen/Qwen2.5-0.5B-Instruct"
    assert sft.gate.eval is not None and sft.gate.eval.against == "base" and sft.gate.eval.metric == "rougeL"


def test_full_model_stages_hand_over_their_model() -> None:
    spec = load_pipeline(CONFIGS / "three-stage-qwen2.5-1.5b.yaml")
    assert [handover(spec, s) for s in spec.stages] == ["base", "model", "model"]
    assert spec.stages[1].data.templates == ("random",) and spec.stages[2].gate.eval.metric == "probes/instruction"


@pytest.mark.parametrize("name", PRESETS)
def test_every_shipped_pipeline_passes_tuneterm_check(name: str, tmp_path: Path) -> None:
    r = run_cli(["check", str(CONFIGS / name), "--format", "json", "--gpu-memory", "80GiB"], cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    assert doc["summary"]["errors"] == 0 and doc["summary"]["format"] == "pipeline"
    spec = load_pipeline(CONFIGS / name)
    notes = doc["summary"]["notes"]
    assert [n.split(":", 1)[0] for n in notes] == [f"stage {s.index} ({s.name})" for s in spec.stages]
    for stage, note in zip(spec.stages, notes):
        if stage.data.templates:  # the check says which template the stage trains on
            assert "4 prompt templates, one picked per row" in note


def test_check_reports_the_template_of_each_data_shape(tmp_path: Path) -> None:
    r = run_cli(["check", str(CONFIGS / "tiny-three-stage.yaml"), str(CONFIGS / "tiny-qlora-sharegpt.yaml")], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "prompt/output rows: prompt -> completion" in r.stdout
    assert "instruction rows: 4 prompt templates, one picked per row (template_seed 1)" in r.stdout
    assert "ShareGPT rows: messages with human->user, gpt->assistant" in r.stdout


def _write(tmp: Path, doc: object, name: str = "p.yaml") -> Path:
    path = tmp / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


STAGE1 = {"name": "sft", "config": {"model_name_or_path": "tuneterm:tiny-llama", "dataset_name": "tuneterm:tiny-sft"}}


@pytest.mark.parametrize(
    ("stages", "message"),
    [
        ([], "'stages' must be a non-empty list"),
        ([{**STAGE1, "from": "previous"}], "the first stage cannot start 'from: previous'"),
        ([STAGE1, {**STAGE1}], "two stages are named 'sft'"),
        ([{**STAGE1, "gate": {"fail_on": "info"}}], "fail_on must be 'error' or 'warning'"),
        ([{**STAGE1, "gate": {"eval": {"metric": "bleu", "data": "x.jsonl"}}}], "unknown metric 'bleu'"),
        ([{**STAGE1, "gate": {"eval": {"metric": "rougeL"}}}], "'data' (the evaluation data"),
        ([{**STAGE1, "data": {"templates": ["no placeholder"]}}], "templates must be 'random' or a list"),
        ([{**STAGE1, "epochs": 3}], "unknown key 'epochs'"),
        ([{"name": "a b", "config": STAGE1["config"]}], "'name' is required"),
    ],
)
def test_malformed_pipelines_are_refused_with_one_line(stages: list, message: str, tmp_path: Path) -> None:
    path = _write(tmp_path, {"stages": stages})
    with pytest.raises(ConfigError, match=None) as info:
        load_pipeline(path)
    assert message in str(info.value)
    r = run_cli(["train", str(path), "--runs-dir", str(tmp_path / "runs")], cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and message in r.stderr
    assert not (tmp_path / "runs").exists()


def test_continuing_an_adapter_needs_a_lora_stage(tmp_path: Path) -> None:
    lora = {**STAGE1["config"], "use_peft": True}
    path = _write(tmp_path, {"stages": [{"name": "a", "config": lora},
                                         {"name": "b", "from": "previous", "merge": False, "config": {"dataset_name": "tuneterm:tiny-sft"}}]})
    r = run_cli(["train", str(path), "--runs-dir", str(tmp_path / "runs")], cwd=tmp_path)
    assert r.returncode == 2 and "needs use_peft: true" in r.stderr


def test_unknown_trl_key_in_a_stage_names_the_stage(tmp_path: Path) -> None:
    path = _write(tmp_path, {"stages": [STAGE1, {"name": "dpo", "trainer": "dpo", "config": {"dataset_name": "tuneterm:tiny-dpo", "betta": 0.1}}]})
    r = run_cli(["train", str(path), "--runs-dir", str(tmp_path / "runs")], cwd=tmp_path)
    assert r.returncode == 2 and "stage 2 (dpo)" in r.stderr and "'betta'" in r.stderr and "'beta'" in r.stderr


def test_pipeline_options_that_belong_to_single_runs_are_refused(tmp_path: Path) -> None:
    r = run_cli(["train", str(CONFIGS / "tiny-sft-dpo.yaml"), "--set", "max_steps=2"], cwd=tmp_path)
    assert r.returncode == 2 and "--set" in r.stderr
    r = run_cli(["train", str(CONFIGS / "tiny-sft-dpo.yaml"), "--notify", "json://localhost/"], cwd=tmp_path)
    assert r.returncode == 2 and "TUNETERM_NOTIFY" in r.stderr


def test_resume_without_a_pipeline_is_a_usage_error(tmp_path: Path) -> None:
    r = run_cli(["train", str(CONFIGS / "tiny-sft-dpo.yaml"), "--resume", "--runs-dir", str(tmp_path / "runs")], cwd=tmp_path)
    assert r.returncode == 2 and "no pipeline to resume" in r.stderr


@needs_trl
@pytest.mark.parametrize("name", PRESETS)
def test_every_stage_of_every_shipped_pipeline_validates_against_trl(name: str) -> None:
    import torch

    from tuneterm.train.config import instantiate
    from tuneterm.train.pipeline import prepare

    prepared = prepare(CONFIGS / name)
    for stage, cfg in zip(prepared.spec.stages, prepared.configs):
        values = dict(cfg.values)
        if not torch.cuda.is_available():
            values["bf16"] = False  # transformers refuses bf16 without a bf16 GPU; the presets are for GPUs
        instantiate(values, cfg.trainer, source=f"{name} stage {stage.index}")
    assert [c.trainer for c in prepared.configs][-1] == {"sft-then-grpo-qwen2.5-0.5b.yaml": "grpo",
                                                         "tiny-sft-grpo.yaml": "grpo",
                                                         "sft-then-dpo-qwen2.5-0.5b.yaml": "dpo",
                                                         "tiny-sft-dpo.yaml": "dpo"}.get(name, "sft")


def _stage_dir(path: Path, state: str, losses: list[float]) -> None:
    path.mkdir(parents=True)
    (path / "status.json").write_text(json.dumps({"state": state, "step": len(losses), "max_steps": len(losses),
                                                  "trainer": "sft", "pid": None, "host": None,
                                                  "started": "2026-01-01T00:00:00Z", "ended": "2026-01-01T00:01:00Z"}))
    rows = [{"step": i + 1, "loss": v, "learning_rate": 0.0, "grad_norm": 0.5} for i, v in enumerate(losses)]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_runs_stop_and_doctor_see_a_gated_pipeline(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    pdir = runs / "gp"
    _stage_dir(pdir / "01-sft", "finished", [2.0, 2.0, 2.0, 2.0, 2.0, 2.0])
    state = {"kind": "pipeline", "name": "gp", "state": "gated", "pid": None, "host": None, "current": None,
             "started": "2026-01-01T00:00:00Z", "ended": "2026-01-01T00:02:00Z",
             "error": "stage 1 (sft): 1 finding(s) at or above error, first: S101 lr-zero",
             "stages": [{"index": 1, "name": "sft", "dir": "01-sft", "state": "gate-failed"},
                        {"index": 2, "name": "dpo", "dir": "02-dpo", "state": "pending"}]}
    (pdir / "pipeline.json").write_text(json.dumps(state))
    listed = run_cli(["runs", "--json", "--runs-dir", str(runs)], cwd=tmp_path)
    rows = {r["name"]: r for r in json.loads(listed.stdout)}
    assert set(rows) == {"gp", "gp/01-sft"}
    assert rows["gp"]["state"] == "gated" and (rows["gp"]["step"], rows["gp"]["max_steps"]) == (0, 2)
    table = run_cli(["runs", "--runs-dir", str(runs)], cwd=tmp_path, env={"COLUMNS": "160"})
    assert "gated" in table.stdout and "S101 lr-zero" in table.stdout  # the error line under the row
    stop = run_cli(["stop", "gp", "--runs-dir", str(runs)], cwd=tmp_path)
    assert stop.returncode == 0 and "pipeline gp already gated" in stop.stderr
    doc = run_cli(["doctor", str(pdir), "--no-charts"], cwd=tmp_path)
    assert doc.returncode == 1 and "lr-zero" in doc.stdout  # the stage's own diagnosis
