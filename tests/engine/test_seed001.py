"""The seed 001 story (QLoRA run that learned nothing): every diagnosis and the seed's fixes."""

from __future__ import annotations

import math

from tuneterm.engine import Finding, evaluate, load_rules
from tuneterm.logs.model import Run


def seed001_run() -> Run:
    """500 steps, loss 2.7335 -> 2.7150, grad_norm 0.0 throughout, cosine LR 5e-5 -> ~5e-10,
    eval loss 2.9310 at steps 150/300/450, batch 1 x GA 8 over 45,000 examples (epoch 0.089)."""
    run = Run(source="seed001", format="test")
    f = run.facts
    f.trainer_kind, f.max_steps, f.global_step, f.finished = "sft", 500, 500, True
    f.train_batch_size, f.gradient_accumulation_steps, f.num_examples = 1, 8, 45_000
    f.peft_type, f.lora_r, f.lora_alpha, f.quantization = "LORA", 16, 32, "nf4"
    f.learning_rate, f.lr_scheduler_type, f.epoch = 5e-5, "cosine", 0.089
    for i in range(21):
        step = max(1, i * 25)
        run.add_train("loss", step, 2.7335 + (2.7150 - 2.7335) * i / 20)
        run.add_train("grad_norm", step, 0.0)
        run.add_train("learning_rate", step, 5e-10 + (5e-5 - 5e-10) * (1 + math.cos(math.pi * i / 20)) / 2)
        run.add_train("epoch", step, 0.089 * step / 500)
    for step in (150, 300, 450):
        run.add_eval("eval", "loss", step, 2.9310)
    return run


def _by_name(findings: list[Finding]) -> dict[str, Finding]:
    return {f.name: f for f in findings}


def test_seed001_diagnosis_and_fixes() -> None:
    findings = evaluate(seed001_run(), load_rules(scopes=["log"]))
    by = _by_name(findings)
    assert by["zero-grad-norm"].severity.value == "error"
    for name in ("loss-plateau", "eval-loss-frozen", "lr-decayed-early", "low-data-coverage"):
        assert name in by, name
    assert findings[0].name == "zero-grad-norm"  # the error comes first: check grad_norm first
    assert "0.68" in by["loss-plateau"].message
    first_fix = by["zero-grad-norm"].fixes[0]
    assert first_fix.command and "trainable" in first_fix.command and "check why grad_norm is 0" in first_fix.why
    fixes = {(x.key, json_value(x.value)) for f in findings for x in f.fixes if x.key}
    expected = [
        ("per_device_train_batch_size", 2),  # effective batch 32 = 2 x 16
        ("gradient_accumulation_steps", 16),
        ("learning_rate", 1e-4),
        ("max_steps", 2000),
        ("warmup_steps", 200),
        ("warmup_steps", 0.1),  # a share of the steps: transformers 5 has no warmup_ratio
        ("lr_scheduler_type", "cosine_with_min_lr"),
        ("lr_scheduler_kwargs", {"min_lr_rate": 0.1}),
    ]
    for key, value in expected:
        assert (key, json_value(value)) in fixes, key
    cov = by["low-data-coverage"]
    assert cov.evidence["suggested_max_steps"] == 2000 and abs(cov.evidence["epochs"] - 0.089) < 1e-9


def json_value(v: object) -> str:
    import json

    return json.dumps(v, sort_keys=True)
