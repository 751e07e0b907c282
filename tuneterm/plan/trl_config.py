"""Write a plan as a training config in TRL's own field names.

TRL's parser rejects unknown keys, so the file holds only keys that ``trl sft|dpo|grpo --config``
accepts for that trainer (ScriptArguments/GRPOScriptArguments + SFTConfig/DPOConfig/GRPOConfig +
ModelConfig of TRL 1.16); everything tuneterm-only (the trainer kind, the commands, why each value
was chosen, the memory estimate) is written as YAML comments. ``tuneterm train`` reads the same
file (``--trainer`` or the ``# tuneterm-trainer:`` comment picks the trainer).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuneterm.plan.recommend import Plan

# Keys each trainer's parser accepts (verified against TRL 1.16 dataclasses in tests/plan); of the
# two names of the checkpointing switch, only the plan's (the installed transformers') is written.
COMMON_KEYS = (
    "model_name_or_path", "dtype", "attn_implementation", "dataset_name", "output_dir", "learning_rate",
    "per_device_train_batch_size", "gradient_accumulation_steps", "num_train_epochs", "max_steps",
    "lr_scheduler_type", "warmup_steps", "bf16", "fp16", "gradient_checkpointing", "activation_checkpointing",
    "optim", "logging_steps",
    "save_steps", "report_to", "use_peft", "lora_r", "lora_alpha", "lora_dropout", "lora_target_modules",
    "use_dora", "load_in_4bit", "bnb_4bit_quant_type", "use_bnb_nested_quant", "seed",
)
TRAINER_KEYS = {
    "sft": COMMON_KEYS + ("max_length", "datasets"),
    "dpo": COMMON_KEYS + ("max_length", "beta", "datasets"),
    "grpo": COMMON_KEYS + ("num_generations", "max_completion_length", "beta", "datasets"),
}

# datasets' packaged builders for local files, by suffix (what `load_dataset(path=...)` expects)
_BUILDERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet", ".txt": "text"}


def dataset_keys(dataset: str) -> dict[str, Any]:
    """The TRL config keys that load ``dataset`` the way ``trl sft|dpo|grpo --config`` loads data.

    A local data file becomes a one-entry ``datasets:`` mixture (TRL's ``DatasetMixtureConfig``:
    ``path`` is the datasets builder, ``json`` for JSON Lines, and ``data_files`` the file, made
    absolute so the config works from any directory); a local directory or a hub id stays
    ``dataset_name`` (``load_dataset`` reads a directory's data files itself).

    >>> dataset_keys("trl-lib/Capybara")
    {'dataset_name': 'trl-lib/Capybara'}
    """
    p = Path(dataset).expanduser()
    if p.is_file():
        builder = _BUILDERS.get("".join(p.suffixes[-1:]).lower())
        if builder is None:
            from tuneterm.errors import ConfigError

            raise ConfigError(f"--dataset {dataset}: unknown data file type (use .jsonl, .json, .csv, .parquet or .txt)")
        return {"datasets": [{"path": builder, "data_files": str(p.resolve())}]}
    if p.is_dir():
        return {"dataset_name": str(p.resolve())}
    return {"dataset_name": dataset}


def _yaml_value(v: Any) -> str:
    import yaml

    if isinstance(v, list) and v and isinstance(v[0], dict):
        # a list of mappings (the datasets mixture) in block style, as TRL's docs write it
        return "\n" + yaml.safe_dump(v, default_flow_style=False, sort_keys=False, width=1000).rstrip()
    return yaml.safe_dump(v, default_flow_style=True, width=1000).strip().removesuffix("\n...").removesuffix("...").strip()


def _comment(text: str) -> str:
    from tuneterm.textsafe import inert_line

    return "# " + inert_line(text, 300).replace("\n", " ")


def render_config(plan: Plan, *, dataset_name: str | None = None, output_dir: str | None = None,
                  dataset_size: int | None = None) -> str:
    """The YAML text of a TRL config for ``plan``, with tuneterm's reasons as comments.

    Values come from the plan's setup and recommendations; keys outside the trainer's parser are
    never written as keys.
    """
    s = plan.setup
    trainer = s.trainer
    peft = s.method != "full"
    name = plan.model.name
    vals: dict[str, Any] = {
        "model_name_or_path": name,
        "dtype": "bfloat16" if s.dtype == "bfloat16" else ("float16" if s.dtype == "float16" else "float32"),
        "output_dir": output_dir or f"runs/{Path(name).name.lower()}-{trainer}",
        "per_device_train_batch_size": s.batch_size,
        "gradient_accumulation_steps": s.grad_accum,
        plan.checkpointing_key: s.gradient_checkpointing,  # the installed transformers' name (tuneterm.keynames)
        "optim": s.optimizer,
        "logging_steps": 10,
        "report_to": "none",
    }
    if dataset_name:
        vals.update(dataset_keys(dataset_name))
    for r in plan.recommendations:
        if r.key in ("bf16", "fp16"):
            vals[r.key] = bool(r.value)
        elif r.key in ("learning_rate", "num_train_epochs", "lr_scheduler_type", "warmup_steps", "lora_r",
                       "lora_alpha", "lora_target_modules"):
            vals[r.key] = r.value
    if trainer in ("sft", "dpo"):
        vals["max_length"] = s.seq_len
    if trainer == "dpo":
        vals["beta"] = 0.1
    if trainer == "grpo":
        vals["num_generations"] = s.num_generations
        vals["max_completion_length"] = s.max_completion_length
    if peft:
        vals["use_peft"] = True
        vals.setdefault("lora_r", s.lora_r)
        vals.setdefault("lora_alpha", 2 * s.lora_r)
        vals["lora_dropout"] = s.lora_dropout
        t = s.lora_targets
        vals.setdefault("lora_target_modules", t if isinstance(t, str) else list(t))
        if s.method == "dora":
            vals["use_dora"] = True
        if s.method == "qlora":
            vals["load_in_4bit"] = True
            vals["bnb_4bit_quant_type"] = "nf4"
            vals["use_bnb_nested_quant"] = s.double_quant
    why = {r.key: r for r in plan.recommendations}
    allowed = TRAINER_KEYS[trainer]
    est = plan.estimate
    lines = [
        _comment(f"tuneterm plan: {trainer.upper()} {s.method} of {name} ({plan.model.size_b:.2f}B parameters, "
                 f"facts from {plan.model.source})"),
        f"# tuneterm-trainer: {trainer}",
    ]
    if dataset_size is not None:
        lines.append(f"# tuneterm-dataset-size: {dataset_size}")
    lines += [
        _comment(f"estimated peak {est.peak_gib:.1f} GiB per GPU (allocated {est.allocated_gib:.1f} GiB)"
                 + (f" of {plan.capacity_gib:.1f} GiB: {'fits' if plan.fits else 'DOES NOT FIT'}" if plan.capacity_gib else "")),
    ]
    if plan.model.is_guess:
        lines.append(_comment(f"WARNING: the architecture of {name} is GUESSED from its name: the estimate is rough"))
    for i, ch in enumerate(plan.to_fit[:3], 1):
        keys = ", ".join(f"{k}: {_yaml_value(v)}" for k, v in ch.set.items())
        lines.append(_comment(f"to fit ({i}): {keys} -> {ch.peak_gib:.1f} GiB ({ch.cost})"))
    lines += [
        "# run it with either of:",
        f"#   tuneterm train {{this file}} --trainer {trainer}",
        f"#   trl {trainer} --config {{this file}}" + ("" if dataset_name else " --dataset_name <your dataset>")
        + (" --reward_funcs <reward function>" if trainer == "grpo" else ""),
        "",
    ]
    if not dataset_name:
        lines.append("# dataset_name: <set me: hub id or local path>")
    for key in allowed:
        if key not in vals:
            continue
        r = why.get(key)
        if r is not None:
            lines.append(_comment(f"{r.why} [{r.row}; source: {r.source}]"))
        text = _yaml_value(vals[key])
        lines.append(f"{key}:{text}" if text.startswith("\n") else f"{key}: {text}")
    return "\n".join(lines) + "\n"


def write_config(path: str | Path, plan: Plan, **kw: Any) -> Path:
    """Write :func:`render_config` to ``path`` (parents created). Returns the path.

    Raises:
        InputError: the file cannot be written.
    """
    from tuneterm.errors import InputError

    p = Path(path)
    text = render_config(plan, **kw).replace("{this file}", str(p))
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{p}: cannot write ({exc.strerror or exc})") from None
    return p
