"""``tuneterm train FIXED.yaml --resume-from RUN``: where a fixed run may continue the old one.

Resuming restores the checkpoint's weights *and* its optimizer, scheduler and RNG state
(``trainer.train(resume_from_checkpoint=...)``). That is sound only when

* the checkpoint was saved **before the first bad step** of the diagnosed run: weights saved
  after a divergence, a NaN or a collapse carry the damage (never one saved after it);
* the change leaves the restored state meaningful (a per-device batch halved with accumulation
  doubled is fine; another effective batch would make the saved step count mean other data): the optimizer's param groups restore the old
  learning rate and betas, so a changed ``learning_rate``, optimizer or scheduler would silently not
  apply; a different model, method or adapter shape does not fit the saved weights at all.

Schedule findings (the learning rate decayed early, the run covered a sliver of its data) say the
plan was short, not that the weights went bad: they set no bad step.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneterm.advise.context import RunContext
from tuneterm.advise.keys import same_value
from tuneterm.engine.model import Finding, Severity

STATE_KEYS: frozenset[str] = frozenset({
    "learning_rate", "lr_scheduler_type", "lr_scheduler_kwargs", "optim", "optim_args", "weight_decay",
    "adam_beta1", "adam_beta2", "adam_epsilon",
})
"""Keys whose new value a restored optimizer/scheduler state would override."""

SHAPE_KEYS: frozenset[str] = frozenset({
    "model_name_or_path", "use_peft", "lora_r", "lora_alpha", "lora_target_modules", "lora_dropout", "use_dora",
    "use_rslora", "load_in_4bit", "load_in_8bit", "lora_modules_to_save",
})
"""Keys that change what the checkpoint's weights are (they would not load, or mean another model)."""

PLAN_CODES: frozenset[str] = frozenset({"S102", "S103"})
"""Findings about the schedule's length or shape: no bad step in the weights."""


@dataclass(frozen=True, slots=True)
class ResumePoint:
    """The checkpoint to continue from, or why there is none.

    Attributes:
        checkpoint: the ``checkpoint-N`` directory, or ``None`` when resuming is not sound.
        step: its step (``None`` with no checkpoint).
        first_bad_step: the earliest step a finding marks as bad, ``None`` when none does.
        reason: one line for the user (why this checkpoint, or why none).
    """

    checkpoint: Path | None
    step: int | None
    first_bad_step: int | None
    reason: str


def first_bad_step(findings: Sequence[Finding]) -> int | None:
    """The earliest ``first_step`` of a warning or error that is not about the schedule."""
    steps = [f.first_step for f in findings
             if f.severity.rank >= Severity.WARNING.rank and f.code not in PLAN_CODES and f.first_step is not None]
    return min(steps) if steps else None


def resume_point(findings: Sequence[Finding], ctx: RunContext, new_values: Mapping[str, Any]) -> ResumePoint:
    """Where ``new_values`` (the fixed config) may resume the run of ``ctx`` (see the module doc)."""
    bad = first_bad_step(findings)
    blocking = [k for k in sorted(STATE_KEYS | SHAPE_KEYS) if _changed(k, new_values, ctx)]
    if _effective_batch(new_values, ctx) != ctx.effective_batch:
        blocking.append("the effective batch")  # saved steps would count other amounts of data
    if blocking:
        what = ", ".join(blocking)
        return ResumePoint(None, None, bad, f"the change to {what} cannot resume: a checkpoint restores the old "
                                            "optimizer and scheduler state (or weights of another shape); start a new run")
    usable = [(s, p) for s, p in ctx.checkpoints if bad is None or s < bad]
    if not usable:
        where = f" before step {bad}, the first bad step" if bad is not None else ""
        return ResumePoint(None, None, bad, f"the run saved no checkpoint{where}; start a new run")
    step, path = usable[-1]
    why = f"last checkpoint before step {bad}, the first bad step" if bad is not None else "last checkpoint (no bad step found)"
    return ResumePoint(path, step, bad, why)


def _changed(key: str, new_values: Mapping[str, Any], ctx: RunContext) -> bool:
    if key not in new_values:
        return False
    old = ctx.value(key)
    new = new_values[key]
    if key == "model_name_or_path" and isinstance(old, str) and isinstance(new, str):
        return Path(old).name != Path(new).name and old != new
    return old is None or not same_value(old, new)


def _effective_batch(new_values: Mapping[str, Any], ctx: RunContext) -> int | None:
    b = new_values.get("per_device_train_batch_size", ctx.value("per_device_train_batch_size"))
    ga = new_values.get("gradient_accumulation_steps", ctx.value("gradient_accumulation_steps"))
    return b * ga if isinstance(b, int) and isinstance(ga, int) else None
