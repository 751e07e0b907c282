"""Reading a training config (TRL, LLaMA-Factory or Axolotl YAML) into one normalised record.

:func:`read_config` parses the file with YAML *safe* loading, records the line of every top-level
key (so findings can point at it), recognises the dialect from its keys, and maps the fields that
mean the same thing onto TRL's names (:class:`ConfigFacts`). The model is resolved through
:func:`tuneterm.plan.facts.resolve_model` (local dir, HF cache, table, name) when possible; failing
to resolve it is recorded, not raised, so the other checks still run.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneterm.errors import ConfigError, InputError, TunetermError
from tuneterm.keynames import effective
from tuneterm.plan.facts import ModelFacts, resolve_model

MAX_CONFIG_BYTES = 2_000_000

# Keys that identify each dialect (any one is enough; TRL is the default).
_LLAMA_FACTORY_KEYS = frozenset({"finetuning_type", "cutoff_len", "stage", "lora_rank", "quantization_bit", "template"})
_AXOLOTL_KEYS = frozenset({"base_model", "micro_batch_size", "sequence_len", "adapter", "datasets", "lora_target_linear"})
_TRL_KEYS = frozenset({
    "model_name_or_path", "learning_rate", "per_device_train_batch_size", "gradient_accumulation_steps",
    "num_train_epochs", "max_steps", "lr_scheduler_type", "warmup_ratio", "warmup_steps", "bf16", "fp16",
    "gradient_checkpointing", "activation_checkpointing", "max_length", "use_peft", "lora_r", "lora_alpha", "lora_target_modules",
    "load_in_4bit", "optim", "num_generations", "beta", "dataset_name", "output_dir",
})
# A tuneterm-only hint that TRL would reject as a key, so it lives in a comment.
_SIZE_COMMENT = re.compile(r"^\s*#\s*tuneterm[-_ ]dataset[-_ ]size\s*[:=]\s*(\d+)", re.I | re.M)


@dataclass(frozen=True)
class ConfigFacts:
    """A training config, normalised to TRL names, plus what is known around it.

    Attributes:
        path: the file.
        dialect: ``trl``, ``llama-factory`` or ``axolotl``.
        raw: the parsed mapping as written.
        values: TRL-named values (``learning_rate``, ``per_device_train_batch_size`` ...), only
            those the file sets (defaults are applied by the detectors that need them).
        lines: 1-based line of each raw top-level key.
        trainer: ``sft``, ``dpo`` or ``grpo``.
        method: ``full``, ``lora``, ``qlora`` or ``dora``.
        model: facts of the model when resolvable, else None (``model_error`` says why).
        dataset_size: training samples when known (a local dataset file, a comment hint, or the
            caller).
        gpu_memory_gib, gpus: capacity to check the fit against (None: unknown).
        compute_capability: of the first GPU, when probed.
        trl_fields: the installed TRL's config fields for ``trainer`` (unknown-key check), or None.
        gpu_bf16: every GPU of this machine supports bf16 (False also when there is no GPU);
            None when the check is not against this machine (a typed ``--gpu-memory``).
        gpu_name: the GPU without bf16, for messages (None: no GPU, or all have bf16).
    """

    path: Path
    dialect: str
    raw: Mapping[str, Any]
    values: Mapping[str, Any]
    lines: Mapping[str, int]
    trainer: str
    method: str
    model: ModelFacts | None = None
    model_error: str | None = None
    dataset_size: int | None = None
    gpu_memory_gib: float | None = None
    gpus: int = 1
    compute_capability: float | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)
    trl_fields: Mapping[str, Any] | None = None
    gpu_bf16: bool | None = None
    gpu_name: str | None = None

    def get(self, key: str, default: Any = None) -> Any:
        """A TRL-named value, or ``default`` when the file does not set it. A renamed key is read
        under either name, as transformers resolves it (:func:`tuneterm.keynames.effective`)."""
        return effective(self.values, key, default)

    @property
    def effective_batch(self) -> int:
        """per-device batch x gradient accumulation x GPUs (TRL defaults 8 x 1 x 1)."""
        return int(self.get("per_device_train_batch_size", 8)) * int(self.get("gradient_accumulation_steps", 1)) * max(1, self.gpus)

    def summary(self) -> dict[str, Any]:
        """The facts dict ``tuneterm check`` shows beside the findings."""
        d: dict[str, Any] = {
            "kind": "training-config", "dialect": self.dialect, "trainer": self.trainer, "method": self.method,
            "model": self.get("model_name_or_path"),
            "model_params_b": None if self.model is None else round(self.model.size_b, 3),
            "model_source": None if self.model is None else self.model.source,
            "learning_rate": self.get("learning_rate"),
            "effective_batch": self.effective_batch,
            "max_steps": self.get("max_steps"), "num_train_epochs": self.get("num_train_epochs"),
            "dataset_size": self.dataset_size, "gpus": self.gpus, "gpu_memory_gib": self.gpu_memory_gib,
        }
        if self.model_error:
            d["model_error"] = self.model_error
        return d


# TRL key -> the key each dialect writes it as (for line numbers: see
# tuneterm.preflight.config_subject.key_lines).
SOURCE_KEYS: dict[str, dict[str, Any]] = {
    "llama-factory": {"lora_r": "lora_rank", "max_length": "cutoff_len", "lora_target_modules": "lora_target",
                      "load_in_4bit": "quantization_bit", "use_peft": "finetuning_type", "beta": "pref_beta",
                      "optim": "optim"},
    "axolotl": {"model_name_or_path": "base_model", "per_device_train_batch_size": "micro_batch_size",
                "max_length": "sequence_len", "num_train_epochs": "num_epochs", "optim": "optimizer",
                "use_peft": "adapter", "lora_target_modules": ("lora_target_modules", "lora_target_linear"),
                "warmup_ratio": "warmup_ratio", "warmup_steps": "warmup_steps", "dataset_name": "datasets"},
}


def _load_yaml(path: Path) -> tuple[dict[str, Any], dict[str, int], str]:
    import yaml

    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if size > MAX_CONFIG_BYTES:
        raise InputError(f"{path}: {size} bytes is too large for a training config")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if b"\0" in raw:
        raise InputError(f"{path}: binary file, not a YAML training config")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a training config must be a YAML mapping of keys to values")
    lines: dict[str, int] = {}
    if node is not None and hasattr(node, "value") and isinstance(node.value, list):
        for item in node.value:
            if isinstance(item, tuple) and hasattr(item[0], "value"):
                lines[str(item[0].value)] = item[0].start_mark.line + 1
    return {str(k): v for k, v in data.items()}, lines, text


#: ``# tuneterm: trainer=NAME`` in a config file picks the trainer (TRL ignores comments).
TRAINER_DIRECTIVE = re.compile(r"^\s*#\s*tuneterm:\s*trainer\s*[=:]\s*([A-Za-z]+)\s*$", re.MULTILINE)


def detect_dialect(raw: Mapping[str, Any]) -> str:
    """``llama-factory``, ``axolotl`` or ``trl`` from the keys present."""
    keys = set(raw)
    if keys & _LLAMA_FACTORY_KEYS and "model_name_or_path" in keys:
        return "llama-factory"
    if keys & _AXOLOTL_KEYS and "base_model" in keys:
        return "axolotl"
    return "trl"


def looks_like_training_config(raw: Mapping[str, Any]) -> bool:
    """True when a mapping has the keys of a TRL, LLaMA-Factory or Axolotl training config."""
    keys = set(raw)
    return bool(keys & (_TRL_KEYS | _LLAMA_FACTORY_KEYS | {"base_model"})) and bool(
        keys & {"model_name_or_path", "base_model", "learning_rate", "per_device_train_batch_size", "micro_batch_size"})


def _num(v: Any, key: str, path: Path) -> Any:
    """Coerce YAML scalars like ``5e-5`` (a string in YAML 1.1) to numbers; reject junk with one line."""
    if v is None or isinstance(v, bool):
        return v
    if isinstance(v, (int, float)):
        return v
    if isinstance(v, str):
        try:
            return float(v) if any(c in v for c in ".eE") else int(v)
        except ValueError:
            raise ConfigError(f"{path}: {key} must be a number, got {v!r}") from None
    raise ConfigError(f"{path}: {key} must be a number, got {type(v).__name__}")


_NUMERIC = ("learning_rate", "per_device_train_batch_size", "gradient_accumulation_steps", "num_train_epochs",
            "max_steps", "warmup_ratio", "warmup_steps", "max_length", "lora_r", "lora_alpha", "lora_dropout",
            "num_generations", "max_completion_length", "beta")


def _normalise(raw: Mapping[str, Any], dialect: str) -> dict[str, Any]:
    v: dict[str, Any] = {}
    if dialect == "trl":
        v.update(raw)
        if "torch_dtype" in raw and "dtype" not in raw:
            v["dtype"] = raw["torch_dtype"]
        return v
    if dialect == "llama-factory":
        v.update({k: raw[k] for k in raw})
        ft = str(raw.get("finetuning_type", "lora")).lower()
        v["use_peft"] = ft == "lora"
        if "lora_rank" in raw:
            v["lora_r"] = raw["lora_rank"]
        if "cutoff_len" in raw:
            v["max_length"] = raw["cutoff_len"]
        if "lora_target" in raw:
            t = raw["lora_target"]
            v["lora_target_modules"] = "all-linear" if str(t) == "all" else (
                [s.strip() for s in t.split(",")] if isinstance(t, str) else t)
        q = raw.get("quantization_bit")
        if q is not None:
            v["load_in_4bit"] = str(q) == "4"
            v["load_in_8bit"] = str(q) == "8"
        if "pref_beta" in raw:
            v["beta"] = raw["pref_beta"]
        if raw.get("use_dora"):
            v["use_dora"] = True
        if "dataset" in raw and "dataset_name" not in raw:
            v["dataset_name"] = raw["dataset"]
        return v
    # axolotl
    v.update(raw)
    v["model_name_or_path"] = raw.get("base_model")
    if "micro_batch_size" in raw:
        v["per_device_train_batch_size"] = raw["micro_batch_size"]
    if "sequence_len" in raw:
        v["max_length"] = raw["sequence_len"]
    if "num_epochs" in raw:
        v["num_train_epochs"] = raw["num_epochs"]
    if "optimizer" in raw:
        v["optim"] = raw["optimizer"]
    adapter = str(raw.get("adapter") or "").lower()
    v["use_peft"] = adapter in ("lora", "qlora")
    if adapter == "qlora":
        v["load_in_4bit"] = True
    if raw.get("lora_target_linear"):
        v["lora_target_modules"] = "all-linear"
    if "lr_scheduler" in raw:
        v["lr_scheduler_type"] = raw["lr_scheduler"]
    if raw.get("peft_use_dora"):
        v["use_dora"] = True
    ds = raw.get("datasets")
    if isinstance(ds, list) and ds and isinstance(ds[0], Mapping) and "path" in ds[0]:
        v["dataset_name"] = ds[0]["path"]
    return v


def infer_trainer(values: Mapping[str, Any], dialect: str, explicit: str | None = None) -> str:
    """``sft``, ``dpo`` or ``grpo``: explicit > dialect field (stage / rl) > keys present."""
    if explicit:
        return explicit
    if dialect == "llama-factory":
        stage = str(values.get("stage", "sft")).lower()
        return "dpo" if stage in ("dpo", "kto", "orpo", "simpo") else ("grpo" if stage in ("ppo", "grpo") else "sft")
    if dialect == "axolotl" and values.get("rl"):
        rl = str(values["rl"]).lower()
        return "grpo" if rl == "grpo" else "dpo"
    if any(k in values for k in ("num_generations", "reward_funcs", "max_completion_length", "use_vllm")):
        return "grpo"
    if any(k in values for k in ("beta", "precompute_ref_log_probs", "loss_type", "rpo_alpha", "ref_model_init_kwargs")):
        return "dpo"
    return "sft"


def infer_method(values: Mapping[str, Any]) -> str:
    """``full``, ``lora``, ``qlora`` or ``dora``."""
    # TRL trains adapters only with use_peft: true (lora_r alone is ignored); the dialect readers
    # set use_peft from finetuning_type / adapter.
    peft = bool(values.get("use_peft"))
    if not peft:
        return "full"
    if values.get("load_in_4bit"):
        return "qlora"
    if values.get("use_dora"):
        return "dora"
    return "lora"


def _local_dataset_size(name: Any, base: Path) -> int | None:
    """Rows of a local dataset file (JSONL lines, JSON list, CSV rows minus header); None otherwise."""
    if not isinstance(name, str) or not name:
        return None
    p = Path(name).expanduser()
    if not p.is_absolute():
        p = (base / p) if (base / p).exists() else p
    try:
        if not p.is_file() or p.stat().st_size > 512 * 1024 * 1024:
            return None
        if p.suffix in (".jsonl", ".ndjson"):
            with p.open("rb") as fh:
                return sum(1 for line in fh if line.strip())
        if p.suffix == ".csv":
            with p.open("rb") as fh:
                return max(0, sum(1 for line in fh if line.strip()) - 1)
        if p.suffix == ".json":
            import json

            data = json.loads(p.read_text(encoding="utf-8"))
            return len(data) if isinstance(data, list) else None
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return None


def read_config(path: str | Path, *, trainer: str | None = None, gpu_memory_gib: float | None = None,
                gpus: int | None = None, dataset_size: int | None = None, compute_capability: float | None = None,
                resolve: bool = True, trl_fields: Mapping[str, Mapping[str, Any]] | None = None,
                gpu_bf16: bool | None = None, gpu_name: str | None = None) -> ConfigFacts:
    """Parse and normalise a training config.

    Args:
        path: the YAML file.
        trainer: force the trainer kind (else inferred from the keys).
        gpu_memory_gib, gpus: the capacity to check against (None: unknown).
        dataset_size: samples in the training set, if the caller knows it.
        compute_capability: of the GPU, when known.
        resolve: look the model up (local dir, HF cache, table, name).
        trl_fields: per trainer, the installed TRL's config fields (for the unknown-key check).
        gpu_bf16, gpu_name: what this machine's GPUs support (see :class:`ConfigFacts`).

    Raises:
        InputError: missing, unreadable, binary or non-UTF-8 file.
        ConfigError: invalid YAML, not a mapping, or a numeric field that is not a number.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    if p.is_dir():
        raise InputError(f"{p}: is a directory, not a training config")
    raw, lines, text = _load_yaml(p)
    dialect = detect_dialect(raw)
    values = _normalise(raw, dialect)
    for k in _NUMERIC:
        if k in values:
            values[k] = _num(values[k], k, p)
    tr = infer_trainer(values, dialect, trainer)
    method = infer_method(values)
    model = None
    model_error = None
    name = values.get("model_name_or_path")
    if resolve and isinstance(name, str) and name.strip():
        try:
            model = resolve_model(name)
        except TunetermError as exc:
            model_error = str(exc)
    elif resolve:
        model_error = "the config names no model (model_name_or_path / base_model)"
    if dataset_size is None:
        m = _SIZE_COMMENT.search(text)
        dataset_size = int(m.group(1)) if m else _local_dataset_size(values.get("dataset_name"), p.parent)
    return ConfigFacts(path=p, dialect=dialect, raw=raw, values=values, lines=lines, trainer=tr, method=method,
                       model=model, model_error=model_error, dataset_size=dataset_size,
                       gpu_memory_gib=gpu_memory_gib, gpus=gpus or 1, compute_capability=compute_capability,
                       trl_fields=None if trl_fields is None else trl_fields.get(tr),
                       gpu_bf16=gpu_bf16, gpu_name=gpu_name)


# TRL ModelConfig / SFTConfig defaults used when the file leaves a field out.
TRL_DEFAULTS: dict[str, Any] = {
    "per_device_train_batch_size": 8, "gradient_accumulation_steps": 1, "lora_r": 16, "lora_alpha": 32,
    "lora_dropout": 0.05, "max_length": 1024, "gradient_checkpointing": True, "optim": "adamw_torch_fused",
    "num_generations": 8, "max_completion_length": 256, "lr_scheduler_type": "linear",
}
TRL_DEFAULT_LR = {"sft": 2e-5, "dpo": 1e-6, "grpo": 1e-6}

# Each tool's own defaults, in TRL names, for what a file leaves out. LLaMA-Factory: hparams/
# finetuning_args.py (lora_rank 8, lora_alpha 2 x rank, lora_dropout 0, lora_target all),
# data_args.py (cutoff_len 2048), gradient checkpointing unless disable_gradient_checkpointing,
# and transformers' TrainingArguments (batch 8, learning rate 5e-5, linear decay). Axolotl:
# its config schema (sequence_len 512, gradient_checkpointing false, micro_batch_size 1,
# lora_dropout 0) and transformers' defaults for the rest.
DIALECT_DEFAULTS: dict[str, dict[str, Any]] = {
    "trl": TRL_DEFAULTS,
    "llama-factory": {**TRL_DEFAULTS, "lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.0, "max_length": 2048,
                      "lora_target_modules": "all-linear"},
    "axolotl": {**TRL_DEFAULTS, "per_device_train_batch_size": 1, "lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.0,
                "max_length": 512, "gradient_checkpointing": False},
}
DIALECT_DEFAULT_LR: dict[str, dict[str, float]] = {
    "trl": TRL_DEFAULT_LR,
    "llama-factory": {"sft": 5e-5, "dpo": 5e-5, "grpo": 5e-5},
}


def defaults_of(cf: ConfigFacts) -> dict[str, Any]:
    """The defaults of the tool that reads ``cf`` (TRL, LLaMA-Factory or Axolotl), in TRL names."""
    d = DIALECT_DEFAULTS.get(cf.dialect, TRL_DEFAULTS)
    if cf.dialect == "llama-factory" and "lora_r" in cf.values and "lora_alpha" not in cf.values:
        d = {**d, "lora_alpha": 2 * int(cf.values["lora_r"])}  # LLaMA-Factory: alpha defaults to 2 x rank
    return d


def default_lr(cf: ConfigFacts) -> tuple[float | None, str]:
    """The learning rate the tool uses when the file sets none, and whose default it is; None
    when the tool has no default (Axolotl requires learning_rate)."""
    table = DIALECT_DEFAULT_LR.get(cf.dialect)
    if table is None:
        return None, f"no {cf.dialect} default"
    name = {"trl": "TRL's", "llama-factory": "LLaMA-Factory's (transformers')"}[cf.dialect]
    return table[cf.trainer], f"{name} {cf.trainer} default"


def load_dtype(cf: ConfigFacts) -> str:
    """The dtype the model's weights will be loaded in: ``bfloat16``, ``float16`` or ``float32``.

    TRL (``trl sft`` and ``tuneterm train`` alike) passes ``ModelConfig.dtype`` to
    ``from_pretrained``, and that defaults to ``"float32"`` in TRL 1.x: a TRL config that sets
    neither ``dtype`` nor ``model_init_kwargs.dtype`` loads float32 weights whatever ``bf16`` says
    (bf16 then only autocasts the compute). ``"auto"`` means the checkpoint's own dtype.
    LLaMA-Factory and Axolotl load in the training precision (bf16 -> bfloat16, fp16 -> float16).

    >>> cf = ConfigFacts(Path("t.yaml"), "trl", {}, {"bf16": True}, {}, "sft", "lora")
    >>> load_dtype(cf)
    'float32'
    """
    raw = cf.get("dtype")
    mik = cf.get("model_init_kwargs")
    if isinstance(mik, Mapping):
        raw = mik.get("dtype", mik.get("torch_dtype", raw))
    dtype = str(raw or "").replace("torch.", "")
    if dtype == "auto":
        dtype = cf.model.dtype if cf.model is not None else "bfloat16"
    if dtype in ("bfloat16", "float16", "float32"):
        return dtype
    if dtype in ("bf16", "fp16", "fp32", "half", "float"):
        return {"bf16": "bfloat16", "fp16": "float16", "half": "float16"}.get(dtype, "float32")
    if cf.dialect == "trl":
        return "float32"
    return "float16" if cf.get("fp16") else "bfloat16"


def setup_from_config(cf: ConfigFacts) -> Any:
    """The :class:`~tuneterm.plan.memory.TrainSetup` a config describes (TRL defaults filled in).

    LoRA targets left unset fall back to PEFT's per-architecture default (``q_proj``/``v_proj``
    for Llama-style models); ``all-linear`` and explicit lists are kept.
    """
    from tuneterm.plan.memory import TrainSetup

    d = defaults_of(cf)
    targets = cf.get("lora_target_modules", d.get("lora_target_modules"))
    if targets is None:
        names = cf.model.module_names() if cf.model else []
        targets = ("q_proj", "v_proj") if "q_proj" in names else "all-linear"
    elif isinstance(targets, list):
        targets = tuple(str(t) for t in targets)
    elif isinstance(targets, str) and targets != "all-linear":
        targets = tuple(t.strip() for t in targets.split(","))
    dtype = load_dtype(cf)
    seq = int(cf.get("max_length", d["max_length"]) or d["max_length"])
    beta = cf.get("beta")
    return TrainSetup(
        method=cf.method, lora_r=int(cf.get("lora_r", d["lora_r"])), lora_targets=targets,
        lora_dropout=float(cf.get("lora_dropout", d["lora_dropout"])),
        batch_size=int(cf.get("per_device_train_batch_size", d["per_device_train_batch_size"])),
        seq_len=seq, gradient_checkpointing=bool(cf.get("gradient_checkpointing", d["gradient_checkpointing"])),
        optimizer=str(cf.get("optim", d["optim"])), trainer=cf.trainer, gpus=max(1, cf.gpus),
        attn={"flash_attention_2": "flash_attention_2", "eager": "eager"}.get(str(cf.get("attn_implementation", "sdpa")), "sdpa"),
        dtype=dtype, double_quant=bool(cf.get("use_bnb_nested_quant", False)),
        grad_accum=int(cf.get("gradient_accumulation_steps", d["gradient_accumulation_steps"])),
        num_generations=int(cf.get("num_generations", d["num_generations"])),
        max_prompt_length=max(1, seq - int(cf.get("max_completion_length", d["max_completion_length"]))) if cf.trainer == "grpo" else 512,
        max_completion_length=int(cf.get("max_completion_length", d["max_completion_length"])),
        ref_model=(bool(beta) if cf.trainer == "grpo" and beta is not None else None),
        use_vllm=bool(cf.get("use_vllm", False)),
        gpu_total_gib=cf.gpu_memory_gib,
        quant="int8" if cf.get("load_in_8bit") and cf.method != "full" else None,
    )
