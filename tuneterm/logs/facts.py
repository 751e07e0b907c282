"""Facts from files beside a log: training configs, ``adapter_config.json``, ``config.json``.

Training configs come in TRL/transformers, LLaMA-Factory and Axolotl spellings; :data:`CONFIG_KEYS`
maps each spelling to a :class:`~tuneterm.logs.model.RunFacts` attribute. Nested sections (e.g. a
``training_args:`` block) are walked to a bounded depth. Facts already known are not overwritten:
the log itself is the better witness. YAML is read with ``yaml.safe_load`` only; ``*.bin`` files
(``training_args.bin`` is a pickle) are never opened.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tuneterm.keynames import in_effect
from tuneterm.logs.model import RunFacts

MAX_CONFIG_BYTES = 2 * 1024 * 1024

#: config key -> RunFacts attribute.
CONFIG_KEYS: dict[str, str] = {
    "learning_rate": "learning_rate",
    "lr": "learning_rate",
    "lr_scheduler_type": "lr_scheduler_type",
    "lr_scheduler": "lr_scheduler_type",
    "warmup_steps": "warmup_steps",
    "warmup_ratio": "warmup_ratio",
    "per_device_train_batch_size": "train_batch_size",
    "micro_batch_size": "train_batch_size",
    "train_batch_size": "train_batch_size",
    "batch_size": "train_batch_size",
    "gradient_accumulation_steps": "gradient_accumulation_steps",
    "grad_accum": "gradient_accumulation_steps",
    "max_steps": "max_steps",
    "num_train_epochs": "num_train_epochs",
    "num_epochs": "num_train_epochs",
    "logging_steps": "logging_steps",
    "eval_steps": "eval_steps",
    "bf16": "bf16",
    "fp16": "fp16",
    "gradient_checkpointing": "gradient_checkpointing",
    "activation_checkpointing": "gradient_checkpointing",  # its transformers 5 name (tuneterm.keynames)
    "lora_r": "lora_r",
    "lora_rank": "lora_r",
    "lora_alpha": "lora_alpha",
    "lora_target": "lora_target_modules",
    "lora_target_modules": "lora_target_modules",
    "use_dora": "use_dora",
    "cutoff_len": "max_length",
    "max_length": "max_length",
    "max_seq_length": "max_length",
    "sequence_len": "max_length",
    "max_completion_length": "max_completion_length",
    "num_generations": "num_generations",
    "beta": "beta",
    "pref_beta": "beta",
    "max_grad_norm": "max_grad_norm",
    "model_name_or_path": "model_name",
    "base_model": "model_name",
    "model": "model_name",
    "model_name": "model_name",
}
_INT = {
    "warmup_steps",
    "train_batch_size",
    "gradient_accumulation_steps",
    "max_steps",
    "logging_steps",
    "eval_steps",
    "lora_r",
    "max_length",
    "max_completion_length",
    "num_generations",
}
_FLOAT = {"learning_rate", "warmup_ratio", "num_train_epochs", "lora_alpha", "beta", "max_grad_norm"}
_BOOL = {"bf16", "fp16", "gradient_checkpointing", "use_dora"}
_STAGES = {"sft": "sft", "pt": "sft", "dpo": "dpo", "kto": "kto", "orpo": "orpo", "ppo": "ppo", "rm": "rm"}


def _coerce(attr: str, v: Any) -> Any:
    """Convert a config value for ``attr``, or return ``None`` when it does not fit."""
    if attr in _BOOL:
        if isinstance(v, bool):
            return v
        if isinstance(v, str) and v.lower() in ("true", "false"):
            return v.lower() == "true"
        if attr == "gradient_checkpointing" and isinstance(v, str) and v:
            return True  # Unsloth's "unsloth" mode is gradient checkpointing
        return None
    if attr in _INT or attr in _FLOAT:
        if isinstance(v, bool):
            return None
        try:
            f = float(v)
        except (TypeError, ValueError):
            return None
        if not math.isfinite(f):
            return None
        if attr in _INT:
            if f != int(f) or f < 0 or (attr in ("max_steps", "logging_steps") and f < 1):
                return None
            return int(f)
        return f
    if attr == "lora_target_modules":
        if isinstance(v, str):
            return tuple(p.strip() for p in v.split(",") if p.strip())
        if isinstance(v, list | tuple) and all(isinstance(x, str) for x in v):
            return tuple(v)
        return None
    if isinstance(v, str) and v:
        return v[:300]
    return None


def apply_config(facts: RunFacts, cfg: Mapping[str, Any], depth: int = 0) -> None:
    """Fill unknown ``facts`` from a training config mapping (any of the known spellings)."""
    if depth > 4:
        return
    for key, v in list(in_effect(cfg).items())[:2000]:
        if not isinstance(key, str):
            continue
        if isinstance(v, Mapping):
            if key not in ("quantization_config", "fsdp_config"):  # FSDP's own activation_checkpointing is another switch
                apply_config(facts, v, depth + 1)
            continue
        attr = CONFIG_KEYS.get(key)
        if attr is not None and getattr(facts, attr) is None:
            val = _coerce(attr, v)
            if val is not None:
                setattr(facts, attr, val)
            continue
        if key == "stage" and isinstance(v, str) and v.lower() in _STAGES:
            facts.algorithm = facts.algorithm or _STAGES[v.lower()]
        elif key == "rl" and isinstance(v, str) and v:
            facts.algorithm = facts.algorithm or v.lower()
        elif key in ("finetuning_type", "adapter") and isinstance(v, str):
            low = v.lower()
            if low in ("lora", "qlora", "dora"):
                facts.peft_type = facts.peft_type or "LORA"
            if low == "qlora" and facts.quantization is None:
                facts.quantization = "nf4"
        elif key == "use_peft" and v is True:
            facts.peft_type = facts.peft_type or "LORA"
        elif key in ("load_in_4bit", "quantization_bit") and v in (True, 4):
            facts.quantization = facts.quantization or "nf4"
        elif key == "load_in_8bit" and v is True or key == "quantization_bit" and v == 8:
            facts.quantization = facts.quantization or "int8"


def apply_adapter_config(facts: RunFacts, cfg: Mapping[str, Any]) -> None:
    """Facts from PEFT's ``adapter_config.json``."""
    if isinstance(cfg.get("peft_type"), str):
        facts.peft_type = cfg["peft_type"]
    for key, attr in (("r", "lora_r"), ("lora_alpha", "lora_alpha"), ("use_dora", "use_dora")):
        if key in cfg and getattr(facts, attr) is None:
            val = _coerce(attr, cfg[key])
            if val is not None:
                setattr(facts, attr, val)
    tm = _coerce("lora_target_modules", cfg.get("target_modules"))
    if tm is not None and facts.lora_target_modules is None:
        facts.lora_target_modules = tm
    base = cfg.get("base_model_name_or_path")
    if isinstance(base, str) and base and facts.model_name is None:
        facts.model_name = base[:300]


def apply_model_config(facts: RunFacts, cfg: Mapping[str, Any]) -> None:
    """Facts from a model's ``config.json`` (model_type, vocab size, architectures, dtype, quant)."""
    if isinstance(cfg.get("model_type"), str) and facts.model_type is None:
        facts.model_type = cfg["model_type"]
    vs = cfg.get("vocab_size")
    if isinstance(vs, int) and not isinstance(vs, bool) and vs > 0 and facts.vocab_size is None:
        facts.vocab_size = vs
    arch = cfg.get("architectures")
    if isinstance(arch, list) and all(isinstance(a, str) for a in arch):
        facts.architectures = tuple(arch)
    dtype = cfg.get("torch_dtype", cfg.get("dtype"))
    if isinstance(dtype, str):
        facts.torch_dtype = dtype
    q = cfg.get("quantization_config")
    if isinstance(q, Mapping) and facts.quantization is None:
        if q.get("load_in_4bit") or q.get("bnb_4bit_quant_type"):
            facts.quantization = str(q.get("bnb_4bit_quant_type") or "4bit")
        elif q.get("load_in_8bit"):
            facts.quantization = "int8"
        elif isinstance(q.get("quant_method"), str):
            facts.quantization = q["quant_method"]
    name = cfg.get("_name_or_path")
    if isinstance(name, str) and name and facts.model_name is None:
        facts.model_name = name[:300]


def load_mapping(path: Path) -> Mapping[str, Any] | None:
    """Read a small JSON or YAML file as a mapping; ``None`` if unreadable, too big or not a dict.

    YAML goes through ``yaml.safe_load`` only (no object construction from tags).
    """
    try:
        if not path.is_file() or path.stat().st_size > MAX_CONFIG_BYTES:
            return None
        data = path.read_bytes()
    except OSError:
        return None
    doc: Any
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            doc = yaml.safe_load(data)
        else:
            doc = json.loads(data)
    except (ValueError, RecursionError):
        return None
    except Exception:  # noqa: BLE001 - yaml.YAMLError and friends: a broken side file is not fatal
        return None
    return doc if isinstance(doc, Mapping) else None
