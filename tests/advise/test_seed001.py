"""The under-trained QLoRA story (grad_norm 0, 8.9% of 45,000 examples, cosine to ~0): one
prescription, the documented conservative fix, with finding out why grad_norm is 0 first."""

from __future__ import annotations

from tests.engine.test_seed001 import seed001_run
from tuneterm.advise import advise
from tuneterm.preflight.advice_context import key_schema
from tuneterm.engine import evaluate, load_rules


def test_seed001_prescription_is_the_conservative_fix() -> None:
    run = seed001_run()
    p = advise(run, evaluate(run, load_rules(scopes=["log"])), schema=key_schema(build=True))
    patch = p.patch()
    expected = {
        "per_device_train_batch_size": 2,  # effective batch 32 as 2 x 16
        "gradient_accumulation_steps": 16,
        "learning_rate": 1e-4,
        "max_steps": 2000,
        "warmup_steps": 200,
        "lr_scheduler_type": "cosine_with_min_lr",  # cosine with a floor
        "lr_scheduler_kwargs": {"min_lr_rate": 0.1},
        "max_grad_norm": 1.0,
    }
    for key, value in expected.items():
        assert patch.get(key) == value, (key, patch.get(key))
    assert "warmup_ratio" not in patch  # transformers 5 has none
    first = p.steps[0]
    assert "print_trainable_parameters" in first.command and "why grad_norm is 0" in first.why
    assert "G101" in first.findings
    was = {c.key: c.was for c in p.changes}
    assert was["learning_rate"] == 5e-5 and was["gradient_accumulation_steps"] == 8 and was["max_steps"] == 500
    # "10% warmup" (S102) and "200 steps" (S103) are one value for a 2000-step run: no conflict
    warm = next(c for c in p.changes if c.key == "warmup_steps")
    assert set(warm.findings) == {"S102", "S103"} and not [c for c in p.conflicts if c.key == "warmup_steps"]
    # one value per key, and the batch change answers both findings that asked for it
    batch = next(c for c in p.changes if c.key == "per_device_train_batch_size")
    assert set(batch.findings) == {"L103", "S103"}
