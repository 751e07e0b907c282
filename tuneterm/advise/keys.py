"""Which config keys a change may use for a run: renames, non-config keys, method and hardware.

Rule fixes name keys in TRL/transformers/peft terms, written once for every run; this module
fits one key to one run before it enters a prescription:

* renamed keys follow the installed transformers (5 removed ``warmup_ratio``: a float
  ``warmup_steps`` below 1 is the ratio; older versions need ``warmup_ratio``); a key with two
  names (``gradient_checkpointing`` / ``activation_checkpointing``) is written as the run's config
  spells it, else as the installed transformers prefers (:mod:`tuneterm.advise.spelling`);
* arguments that are not config fields (``is_trainable`` is an argument of
  ``PeftModel.from_pretrained``) never become changes;
* adapter keys (``lora_*``, ``use_dora`` ...) apply only to LoRA/QLoRA/DoRA runs, ``bf16`` only
  where the GPU has it;
* what remains must be a field the installed TRL config class of the trainer accepts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tuneterm.advise.context import RunContext, schema_trainer
from tuneterm.advise.spelling import written_key
from tuneterm.keynames import same_setting

ADAPTER_KEYS: frozenset[str] = frozenset({
    "lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "lora_modules_to_save", "lora_task_type",
    "use_dora", "use_rslora", "use_peft", "load_in_4bit", "load_in_8bit", "bnb_4bit_quant_type",
    "use_bnb_nested_quant", "lora_target_parameters",
})
"""Keys that configure adapters or their quantised base: meaningless (or a method switch nobody
asked for) on a full fine-tune."""

NOT_CONFIG: dict[str, str] = {
    "is_trainable": "an argument of PeftModel.from_pretrained(), not a config field",
}


@dataclass(frozen=True, slots=True)
class Fitted:
    """A key fitted to a run: the key and value to use, or ``None`` and why it was left out."""

    key: str | None
    value: Any
    dropped: str | None = None


def fit_key(key: str, value: Any, ctx: RunContext) -> Fitted:
    """Fit rule fix ``key: value`` to the run (see the module docstring).

    >>> from tuneterm.advise.context import RunContext
    >>> ctx = RunContext(source="x", method="full", versions={"transformers": "5.2.0"})
    >>> fit_key("warmup_ratio", 0.1, ctx)
    Fitted(key='warmup_steps', value=0.1, dropped=None)
    >>> fit_key("lora_r", 16, ctx).dropped
    'lora_r applies to LoRA/QLoRA/DoRA runs; this run trains every weight'
    """
    if key in NOT_CONFIG:
        return Fitted(None, value, f"{key} left out: {NOT_CONFIG[key]}")
    if key == "resume_from_checkpoint" and not isinstance(value, str):
        # Trainer.train(resume_from_checkpoint=True) finds the last checkpoint; the config field is a path
        if ctx.run_dir is not None:
            return Fitted(None, value, "resume_from_checkpoint left out: `tuneterm train --resume-from RUN` picks the checkpoint")
        if not ctx.checkpoints:
            return Fitted(None, value, "resume_from_checkpoint left out: the run shows no checkpoint directory")
        return Fitted(key, str(ctx.checkpoints[-1][1].resolve()))
    major = ctx.transformers_major
    if key == "warmup_ratio" and (major is None or major >= 5):
        key = "warmup_steps"  # transformers 5: a float warmup_steps below 1 is a share of the steps
    elif key == "warmup_steps" and isinstance(value, float) and value < 1 and major is not None and major < 5:
        key = "warmup_ratio"
    if key in ADAPTER_KEYS and ctx.is_adapter is not True:
        if ctx.is_adapter is False:
            return Fitted(None, value, f"{key} applies to LoRA/QLoRA/DoRA runs; this run trains every weight")
        return Fitted(None, value, f"{key} left out: the run does not say whether it trains adapters")
    if same_setting(key, "gradient_checkpointing_kwargs") and (ctx.value("gradient_checkpointing") is False or ctx.is_adapter is False):
        return Fitted(None, value, f"{key} left out: it matters only to adapters trained with gradient checkpointing on")
    key = written_key(key, ctx)  # a renamed key: the config's own spelling, else the installed one
    if key == "bf16" and value is True and ctx.hardware.bf16 is False:
        return Fitted(None, value, f"bf16 left out: {ctx.hardware.describe()} has no bf16 (it needs sm_80 or newer)")
    if key == "fp16" and value is True and ctx.hardware.source == "cpu":
        return Fitted(None, value, "fp16 left out: the run trained on the CPU")
    if ctx.schema is not None and not ctx.schema.accepts(ctx.trainer, key):
        cls = ctx.schema.config_class.get(schema_trainer(ctx.trainer), f"{schema_trainer(ctx.trainer)} config")
        return Fitted(None, value, f"{key} left out: not a field of {cls} in trl {ctx.schema.versions.get('trl', '?')}")
    return Fitted(key, value)


def same_value(a: Any, b: Any) -> bool:
    """Whether two config values are the same setting (numbers compared with a tolerance).

    >>> same_value(1.0, 1), same_value(1e-4, 0.0001), same_value("cosine", "linear"), same_value([1], (1,))
    (True, True, False, True)
    """
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b or (isinstance(a, bool) and isinstance(b, bool) and a == b)
    if isinstance(a, int | float) and isinstance(b, int | float):
        return abs(a - b) <= 1e-9 * max(abs(a), abs(b), 1e-30) or a == b
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return list(a) == list(b)
    if isinstance(a, str) and isinstance(b, str):
        return a.strip().lower() == b.strip().lower()
    return bool(a == b)
