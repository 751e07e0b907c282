"""What the advisor reads about a run (config, method, GPU) and where a fixed run may resume."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tuneterm.advise import advise, read_context
from tuneterm.advise.resume import first_bad_step, resume_point
from tuneterm.engine import evaluate, load_rules
from tuneterm.engine.model import Finding, Severity
from tuneterm.logs import load_run


def run_dir(tmp_path: Path, *, gpu: str | None, config: dict, losses: list[float], bs: int = 4, ga: int = 8,
            checkpoints: tuple[int, ...] = ()) -> Path:
    """A tuneterm run directory as `tuneterm train` writes it (config.yaml, launch.json, status,
    metrics.jsonl, gpu.jsonl), with optional checkpoint directories under output/."""
    d = tmp_path / "runs" / "r"
    d.mkdir(parents=True)
    cfg = {"model_name_or_path": "meta-llama/Llama-3.2-1B", "dataset_name": "x/y", "per_device_train_batch_size": bs,
           "gradient_accumulation_steps": ga, "max_steps": len(losses), "logging_steps": 1, **config}
    (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    (d / "launch.json").write_text(json.dumps({"trainer": "sft", "method": "full", "gpus": 1}))
    (d / "status.json").write_text(json.dumps({"state": "finished", "exit_code": 0, "step": len(losses),
                                               "max_steps": len(losses), "pid": None}))
    with open(d / "metrics.jsonl", "w") as fh:
        for i, loss in enumerate(losses, 1):
            fh.write(json.dumps({"loss": loss, "grad_norm": 1.7, "learning_rate": cfg.get("learning_rate", 2e-5),
                                 "step": i, "epoch": i / 1000, "time": 1.0 + i}) + "\n")
    row = {"step": 1, "time": 1.0, "device": "cuda:0", "name": gpu, "peak_allocated_mib": 1000} if gpu else {"step": 1, "time": 1.0, "device": "cpu"}
    (d / "gpu.jsonl").write_text(json.dumps(row) + "\n")
    for step in checkpoints:
        (d / "output" / f"checkpoint-{step}").mkdir(parents=True)
    return d


def test_context_of_a_tuneterm_run(tmp_path: Path) -> None:
    d = run_dir(tmp_path, gpu="Tesla T4", config={"learning_rate": 2e-5, "max_grad_norm": 1.0}, losses=[2.0] * 40)
    ctx = read_context(load_run(str(d)))
    assert ctx.config_kind == "tuneterm" and ctx.method == "full" and ctx.trainer == "sft"
    assert ctx.hardware.gpu_name == "Tesla T4" and ctx.hardware.bf16 is False
    assert ctx.value("per_device_train_batch_size") == 4 and ctx.effective_batch == 32
    cpu = read_context(load_run(str(run_dir(tmp_path / "cpu", gpu=None, config={}, losses=[2.0] * 5))))
    assert cpu.hardware.describe() == "CPU" and cpu.hardware.bf16 is False


def test_full_finetune_with_its_batch_gets_no_noop_or_lora_advice(tmp_path: Path) -> None:
    """A full fine-tune at batch 4x8 = 32 whose loss is flat, max_grad_norm 1.0 in its config."""
    d = run_dir(tmp_path, gpu="NVIDIA A100-SXM4-80GB", config={"learning_rate": 2e-5, "max_grad_norm": 1.0},
                losses=[2.0 + 0.001 * (i % 3) for i in range(60)])
    run = load_run(str(d))
    findings = evaluate(run, load_rules(scopes=["log"]))
    assert "L103" in {f.code for f in findings}
    p = advise(run, findings)
    keys = {c.key for c in p.changes}
    assert not keys & {"per_device_train_batch_size", "gradient_accumulation_steps"}  # already 32
    assert not {k for k in keys if k.startswith("lora_")} and "max_grad_norm" not in keys


def _finding(code: str, first: int | None, severity: Severity = Severity.ERROR) -> Finding:
    return Finding(code, code.lower(), severity, "loss", "m", first, first, {}, (), (), ())


def test_resume_uses_the_last_checkpoint_before_the_first_bad_step(tmp_path: Path) -> None:
    d = run_dir(tmp_path, gpu=None, config={"learning_rate": 2e-5}, losses=[2.0] * 40, checkpoints=(10, 20, 30, 40))
    ctx = read_context(load_run(str(d)))
    findings = [_finding("L102", 25), _finding("L101", 31, Severity.WARNING), _finding("S103", 1, Severity.WARNING)]
    assert first_bad_step(findings) == 25  # the schedule finding marks no bad step
    point = resume_point(findings, ctx, {"max_steps": 80})
    assert point.step == 20 and point.checkpoint == d / "output" / "checkpoint-20"  # never checkpoint-30
    assert resume_point(findings, ctx, {"learning_rate": 1e-5}).checkpoint is None  # the optimizer restores 2e-5
    same_eff = resume_point(findings, ctx, {"per_device_train_batch_size": 2, "gradient_accumulation_steps": 16})
    assert same_eff.step == 20  # halving the micro-batch, doubling accumulation: still resumable
    early = resume_point([_finding("N101", 5)], ctx, {"max_steps": 80})
    assert early.checkpoint is None and "before step 5" in early.reason


def test_llamafactory_config_beside_the_log(tmp_path: Path) -> None:
    """A LLaMA-Factory run: its YAML gives the method, but its keys are not TRL's, so --fix writes
    a marked fragment rather than patching a file in another tool's spelling."""
    import shutil

    from tests.conftest import corpus_file
    from tuneterm.advise.apply import fix_document

    shutil.copy(corpus_file("016_"), tmp_path / "trainer_log.jsonl")
    (tmp_path / "train_lora.yaml").write_text(
        "model_name_or_path: mistralai/Mistral-7B-v0.1\nstage: sft\nfinetuning_type: lora\nlora_rank: 8\n"
        "per_device_train_batch_size: 2\ngradient_accumulation_steps: 4\nlearning_rate: 5.0e-5\ncutoff_len: 1024\n")
    run = load_run(str(tmp_path / "trainer_log.jsonl"))
    ctx = read_context(run)
    assert ctx.config_kind == "llamafactory" and ctx.method == "lora" and ctx.model == "mistralai/Mistral-7B-v0.1"
    p = advise(run, evaluate(run, load_rules(scopes=["log"])))
    doc = fix_document(p, ctx)
    if doc is not None:
        assert "NOT a complete config" in doc and "stage:" not in doc
