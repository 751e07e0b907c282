"""The validation a training config must pass before anything is launched: one implementation for
``tuneterm check CONFIG`` (as config-rule findings) and ``tuneterm train`` (which refuses with the
first problem, before a run directory exists).

* :func:`schema_problems` -- keys the installed TRL does not know (with a did-you-mean), required
  keys that are missing (no model, no dataset, GRPO without a reward), keys that need another
  (``load_in_4bit`` without ``use_peft``) and pairs that exclude each other (``bf16`` with
  ``fp16``). TRL configs are judged against the installed TRL's own fields (passed in as
  ``fields``: the caller reads them from the schema cache, see :mod:`tuneterm.preflight.schema`);
  LLaMA-Factory and Axolotl configs against their own tools' required keys.
* :func:`hardware_problems` -- mixed precision this machine cannot run: ``bf16`` (TRL turns it on
  by default when ``fp16`` is not set) without a GPU that supports it, which transformers refuses
  with "Your setup doesn't support bf16/gpu".

Nothing here imports TRL, transformers or torch.

>>> [p.key for p in schema_problems({"model_name_or_path": "m", "learnig_rate": 1e-4}, "sft", "trl",
...                                 fields={"model_name_or_path": {}, "learning_rate": {}, "dataset_name": {}})]
['learnig_rate', 'dataset_name']
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from functools import cache
from typing import Any

from tuneterm.engine.config_subject import Problem


# Keys each tool needs before it can train (LLaMA-Factory: model + dataset for every stage;
# Axolotl: base_model + datasets), as the file names them.
_REQUIRED: dict[str, tuple[tuple[str, ...], ...]] = {
    "trl": (("model_name_or_path",), ("dataset_name", "datasets")),
    "llama-factory": (("model_name_or_path",), ("dataset",)),
    "axolotl": (("base_model",), ("datasets",)),
}
_REQUIRED_WHY = {
    "model_name_or_path": "a hub id, a local path or tuneterm:tiny-llama",
    "base_model": "a hub id or a local path",
    "dataset_name": "a hub id or a local directory (or a `datasets:` list with path/data_files)",
    "dataset": "dataset names from LLaMA-Factory's data/dataset_info.json, comma-separated",
    "datasets": "a list of {path: ..., type: ...} entries",
}


def did_you_mean(key: str, known: list[str]) -> str | None:
    """The closest known key to a misspelt one (difflib ratio >= 0.75), or None.

    >>> did_you_mean("lora_rnak", ["lora_r", "lora_alpha", "lora_rank"])
    'lora_rank'
    """
    near = difflib.get_close_matches(key, known, n=1, cutoff=0.75)
    return near[0] if near else None


@cache
def llama_factory_keys() -> frozenset[str]:
    """Keys LLaMA-Factory's training parser accepts (``rules/dialects/llama_factory_keys.yaml``).

    Raises:
        RuleFileError: the table is missing or malformed.
    """
    import yaml

    from tuneterm.errors import RuleFileError
    from tuneterm.resources import rules_dir

    path = rules_dir() / "dialects" / "llama_factory_keys.yaml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        return frozenset(str(k) for part in ("llamafactory", "transformers") for k in data[part])
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise RuleFileError(f"{path}: cannot read the LLaMA-Factory key table ({type(exc).__name__})") from None


def schema_problems(values: Mapping[str, Any], trainer: str, dialect: str = "trl", *,
                    fields: Mapping[str, Any] | None = None) -> list[Problem]:
    """Every schema problem of a config, in file order: unknown keys first, then missing and
    conflicting ones.

    Args:
        values: the config's top-level mapping as written (its own tool's key names).
        trainer: ``sft``, ``dpo`` or ``grpo``.
        dialect: ``trl``, ``llama-factory`` or ``axolotl``.
        fields: the installed TRL's field names for ``trainer`` (TRL dialect only); None skips
            the unknown-key check (TRL's fields unknown, or another tool's config).
    """
    out: list[Problem] = []
    if dialect == "trl" and fields is not None:
        known = list(fields)
        for key in values:
            if key in fields:
                continue
            near = did_you_mean(key, known)
            out.append(Problem("unknown-key", key,
                               f"unknown key {key!r} for trl {trainer}" + (f" (did you mean {near!r}?)" if near else "")
                               + ": TRL's parser refuses it",
                               fix_key=near, fix_value=values[key] if near else None,
                               fix_why=f"the {trainer} config field this looks like" if near else ""))
    if dialect == "llama-factory":
        lf = llama_factory_keys()
        for key in values:
            if key in lf:
                continue
            near = did_you_mean(key, sorted(lf))
            out.append(Problem("unknown-key", key,
                               f"unknown key {key!r} for LLaMA-Factory" + (f" (did you mean {near!r}?)" if near else "")
                               + ": its parser refuses keys it does not know (unless ALLOW_EXTRA_ARGS is set)",
                               fix_key=near, fix_value=values[key] if near else None,
                               fix_why="the LLaMA-Factory argument this looks like" if near else ""))
    for alternatives in _REQUIRED.get(dialect, ()):
        if not any(values.get(k) not in (None, "", []) for k in alternatives):
            key = alternatives[0]
            also = f" (or {', '.join(repr(a) for a in alternatives[1:])})" if len(alternatives) > 1 else ""
            out.append(Problem("missing-key", key, f"missing key {key!r}{also}: {_REQUIRED_WHY[key]}"))
    out += _conflicts(values, trainer, dialect)
    return out


def _conflicts(values: Mapping[str, Any], trainer: str, dialect: str) -> list[Problem]:
    out: list[Problem] = []
    if values.get("bf16") is True and values.get("fp16") is True:
        out.append(Problem("conflict", "fp16", "bf16 and fp16 are both true: at most one mixed precision can be on",
                           fix_key="fp16", fix_value=False, fix_why="keep bf16 on GPUs that have it (compute capability 8.0+)"))
    if dialect == "trl":
        if (values.get("load_in_4bit") or values.get("load_in_8bit")) and not values.get("use_peft"):
            out.append(Problem("conflict", "load_in_4bit" if values.get("load_in_4bit") else "load_in_8bit",
                               "'load_in_4bit'/'load_in_8bit' needs 'use_peft: true' (a quantized model can only train adapters)",
                               fix_key="use_peft", fix_value=True, fix_why="QLoRA trains LoRA adapters on the quantized base"))
        if trainer == "grpo" and not values.get("reward_funcs") and not values.get("reward_model_name_or_path"):
            out.append(Problem("missing-key", "reward_funcs", "GRPO needs 'reward_funcs' (or 'reward_model_name_or_path')"))
    return out


def bf16_in_effect(values: Mapping[str, Any], dialect: str) -> bool:
    """Whether the run will train in bf16: explicitly, or by TRL's default (TRL 1.x sets ``bf16``
    to ``not fp16`` when it is left out). LLaMA-Factory and Axolotl keep transformers' default
    (off) unless the file turns it on.

    >>> bf16_in_effect({}, "trl"), bf16_in_effect({"fp16": True}, "trl"), bf16_in_effect({}, "axolotl")
    (True, False, False)
    """
    v = values.get("bf16")
    if v is None and dialect == "trl":
        return not bool(values.get("fp16"))
    return bool(v) and str(v).lower() != "auto"


def hardware_problems(values: Mapping[str, Any], dialect: str, *, gpu_bf16: bool | None,
                      gpu_name: str | None = None) -> list[Problem]:
    """Mixed precision this machine cannot run.

    Args:
        values: the config as written.
        dialect: its tool.
        gpu_bf16: True when every GPU found supports bf16, False when one does not or there is
            no GPU at all, None when the machine is not what is being checked (a typed
            ``--gpu-memory``): then nothing is judged.
        gpu_name: the GPU that lacks bf16, for the message (None: no GPU found).
    """
    if gpu_bf16 is not False or values.get("use_cpu") is True or not bf16_in_effect(values, dialect):
        return []
    implicit = values.get("bf16") is None
    where = f"{gpu_name} has no bf16 (compute capability below 8.0)" if gpu_name else "this machine has no GPU"
    reason = ("TRL turns bf16 on by default (bf16 left out and fp16 not set)" if implicit else "bf16: true")
    if gpu_name:
        return [Problem("hardware", "bf16", f"{reason}, but {where}: transformers refuses to start "
                        "(\"Your setup doesn't support bf16/gpu\")", fix_key="fp16", fix_value=True,
                        fix_why="fp16 with loss scaling on pre-Ampere GPUs (set bf16: false too)")]
    return [Problem("hardware", "bf16", f"{reason}, but {where}: transformers refuses to start "
                    "(\"Your setup doesn't support bf16/gpu\")", fix_key="bf16", fix_value=False,
                    fix_why="train in fp32 on the CPU (add use_cpu: true), or run on a GPU with bf16")]
