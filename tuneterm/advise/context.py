"""What is known about a run besides its metrics: the context the advisor reasons with.

:func:`read_context` gathers it from a parsed :class:`~tuneterm.logs.model.Run` and the files
beside its source: a tuneterm run directory's ``config.yaml`` (TRL keys as launched) and
``launch.json`` (trainer, method), a TRL / LLaMA-Factory / Axolotl config next to the logs,
``adapter_config.json`` and the console header (already folded into ``run.facts`` by the parsers),
the GPU (``gpu.jsonl``, a GPU name in the log), the installed trl/transformers/peft versions, and
the TRL config schema when the caller has it. Nothing is guessed: an unknown stays ``None`` and the
advisor states what it assumed.

Files are read with ``yaml.safe_load`` / ``json`` only; nothing here imports the training stack.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from tuneterm.advise.hardware import Hardware, find_gpu_name, from_name
from tuneterm.keynames import effective, spellings
from tuneterm.kinds import METHODS, TRAINERS
from tuneterm.kinds import Method as KnownMethod
from tuneterm.logs.facts import apply_config, load_mapping
from tuneterm.logs.model import Run, RunFacts

Method = Literal[KnownMethod, "unknown"]
"""A run's method: one of :data:`tuneterm.kinds.METHODS`, or ``unknown`` when nothing says."""
ConfigKind = Literal["tuneterm", "trl", "llamafactory", "axolotl"]

#: RunFacts attribute -> the TRL/transformers config key that holds it.
FACT_KEYS: dict[str, str] = {
    "train_batch_size": "per_device_train_batch_size",
    "gradient_accumulation_steps": "gradient_accumulation_steps",
    "max_steps": "max_steps",
    "num_train_epochs": "num_train_epochs",
    "learning_rate": "learning_rate",
    "lr_scheduler_type": "lr_scheduler_type",
    "warmup_steps": "warmup_steps",
    "max_grad_norm": "max_grad_norm",
    "bf16": "bf16",
    "fp16": "fp16",
    "gradient_checkpointing": "gradient_checkpointing",
    "lora_r": "lora_r",
    "lora_alpha": "lora_alpha",
    "lora_target_modules": "lora_target_modules",
    "use_dora": "use_dora",
    "max_length": "max_length",
    "max_completion_length": "max_completion_length",
    "num_generations": "num_generations",
    "beta": "beta",
    "logging_steps": "logging_steps",
    "eval_steps": "eval_steps",
}
_CKPT = re.compile(r"^checkpoint-(\d+)$")
_NOT_CONFIG = {"config.json", "adapter_config.json", "trainer_state.json", "generation_config.json",
               "tokenizer_config.json", "special_tokens_map.json", "status.json", "launch.json", "findings.json"}
_CAPACITY = re.compile(r"total capacity of ([0-9.]+) GiB")


@dataclass(frozen=True, slots=True)
class KeySchema:
    """The config keys the installed TRL accepts, per trainer (``sft``, ``dpo``, ``grpo``).

    Built by the caller from the cached TRL schema (``tuneterm train``'s key check), so the
    advisor never imports TRL. ``keys`` holds every field of the dataclasses ``trl <trainer>``
    parses (ScriptArguments, the trainer's config class, ModelConfig: the peft keys included);
    ``defaults`` their default values (what a complete config leaves unset is in effect).
    """

    versions: Mapping[str, str]
    keys: Mapping[str, frozenset[str]]
    config_class: Mapping[str, str] = field(default_factory=dict)
    defaults: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def accepts(self, trainer: str, key: str) -> bool:
        """Whether ``key`` is a field ``tuneterm train`` / ``trl <trainer>`` accepts."""
        return key in self.keys.get(schema_trainer(trainer), frozenset())


def schema_trainer(trainer: str) -> str:
    """The schema a trainer kind's keys are checked against (SFT for classification/unknown)."""
    return trainer if trainer in TRAINERS else "sft"


@dataclass(frozen=True, slots=True)
class RunContext:
    """Everything the advisor knows about one run besides its findings.

    Attributes:
        source: the diagnosed path.
        trainer: ``sft`` / ``dpo`` / ``grpo`` / ``classification`` / ``unknown``.
        method: ``full`` / ``lora`` / ``qlora`` / ``dora`` / ``unknown``.
        values: TRL config key -> the value in effect, for the keys the run states (its config
            file over the facts its logs give). A key absent here is unknown, not "default".
        config: the run's own training config as written (TRL keys), or empty when none is known.
        config_path: where that config was read, ``None`` when none.
        config_kind: ``tuneterm`` (a run directory), ``trl``, ``llamafactory``, ``axolotl``, or
            ``None``. Only ``tuneterm`` and ``trl`` configs can take the changes in place.
        model: the model name or path, if known.
        model_size_b: parameters in billions, if known (facts, or the caller's model table).
        num_examples: the training set size the run logged, if any.
        hardware: the GPU the run used (see :class:`~tuneterm.advise.hardware.Hardware`).
        gpu_memory_gib: capacity of one GPU when a log states it (an OOM message), else ``None``.
        versions: installed ``trl``/``transformers``/``peft`` versions (``"none"`` if absent).
        schema: accepted keys per trainer, or ``None`` when no schema was available.
        run_dir: the tuneterm run directory, when the source is one.
        checkpoints: ``(step, path)`` of the checkpoints the run saved, by step.
    """

    source: str
    trainer: str = "unknown"
    method: Method = "unknown"
    values: Mapping[str, Any] = field(default_factory=dict)
    config: Mapping[str, Any] = field(default_factory=dict)
    config_path: Path | None = None
    config_kind: ConfigKind | None = None
    model: str | None = None
    model_size_b: float | None = None
    num_examples: int | None = None
    hardware: Hardware = field(default_factory=Hardware)
    gpu_memory_gib: float | None = None
    versions: Mapping[str, str] = field(default_factory=dict)
    schema: KeySchema | None = None
    run_dir: Path | None = None
    checkpoints: tuple[tuple[int, Path], ...] = ()

    def value(self, key: str) -> Any:
        """The value of ``key`` in effect, ``None`` when the run does not say.

        A renamed key (``gradient_checkpointing`` / ``activation_checkpointing``) is read under
        either name, the new name's value winning as in transformers. A key a complete TRL config
        (a tuneterm run's, or one beside the logs) leaves unset has the installed TRL's default,
        when the schema is known.
        """
        if any(name in self.values for name in spellings(key)):
            return effective(self.values, key)  # a renamed key under either name (tuneterm.keynames)
        if self.config_kind in ("tuneterm", "trl") and self.schema is not None:
            return effective(self.schema.defaults.get(schema_trainer(self.trainer), {}), key)
        return None

    @property
    def is_adapter(self) -> bool | None:
        """True for LoRA/QLoRA/DoRA, False for full fine-tuning, None when unknown."""
        return None if self.method == "unknown" else self.method != "full"

    @property
    def transformers_major(self) -> int | None:
        """The installed transformers major version (5 has no ``warmup_ratio``), or None."""
        m = re.match(r"(\d+)\.", self.versions.get("transformers", ""))
        return int(m.group(1)) if m else None

    @property
    def effective_batch(self) -> int | None:
        """per-device batch x accumulation (x world size when known), or None."""
        b, ga = self.value("per_device_train_batch_size"), self.value("gradient_accumulation_steps")
        if not isinstance(b, int) or not isinstance(ga, int):
            return None
        return b * ga


def installed_versions() -> dict[str, str]:
    """``{"trl", "transformers", "peft"}`` versions from package metadata (nothing imported)."""
    out: dict[str, str] = {}
    for name in ("trl", "transformers", "peft"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "none"
    return out


def read_context(run: Run, *, schema: KeySchema | None = None, model_size_b: float | None = None) -> RunContext:
    """The context of ``run``: its config, method, trainer, GPU, versions (see the module doc).

    Args:
        run: the parsed run (facts already hold what its logs and side files say).
        schema: the accepted config keys of the installed TRL, if the caller has them.
        model_size_b: the model's size when the caller knows it (e.g. from the planner's table).
    """
    src = Path(run.source)
    run_dir = _run_dir(src)
    config, config_path, kind = _find_config(src, run_dir)
    launch = load_mapping(run_dir / "launch.json") if run_dir is not None else None
    facts = run.facts
    if kind in ("llamafactory", "axolotl"):
        # another tool's spelling: its values reach the facts the loader may not have read yet
        facts = replace(facts)
        apply_config(facts, config)
    values = _values(facts, config if kind in ("tuneterm", "trl") else {}, _peak_lr(run))
    method = _method(facts, config, kind, launch)
    trainer = facts.trainer_kind
    if isinstance(launch, Mapping) and launch.get("trainer") in TRAINERS:
        trainer = str(launch["trainer"])
    model = facts.model_name or _str(config.get("model_name_or_path")) or _str(config.get("base_model"))
    size = model_size_b
    if size is None and facts.total_params:
        size = facts.total_params / 1e9
    return RunContext(
        source=run.source,
        trainer=trainer,
        method=method,
        values=values,
        config=config,
        config_path=config_path,
        config_kind=kind,
        model=model,
        model_size_b=size,
        num_examples=facts.num_examples,
        hardware=_hardware(run, run_dir),
        gpu_memory_gib=_gpu_capacity(run),
        versions=installed_versions(),
        schema=schema,
        run_dir=run_dir,
        checkpoints=_checkpoints(src, run_dir),
    )


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) and v else None


def _run_dir(src: Path) -> Path | None:
    d = src if src.is_dir() else src.parent
    return d if (d / "status.json").is_file() and (d / "launch.json").is_file() else None


def _find_config(src: Path, run_dir: Path | None) -> tuple[dict[str, Any], Path | None, ConfigKind | None]:
    """The training config of the run: the run directory's, else one beside the logs."""
    if run_dir is not None:
        for name in ("config.yaml", "config.yml"):
            cfg = load_mapping(run_dir / name)
            if cfg is not None:
                return dict(cfg), run_dir / name, "tuneterm"
    base = src if src.is_dir() else src.parent
    dirs = [base]
    if _CKPT.match(base.name):
        dirs.append(base.parent)  # a checkpoint's training config sits in the output directory
    for d in dirs:
        try:
            files = sorted(d.iterdir())[:500]
        except OSError:
            continue
        for f in files:
            name = f.name.lower()
            if name in _NOT_CONFIG or not name.endswith((".yaml", ".yml", ".json")):
                continue
            if name.endswith(".json") and "arg" not in name and "config" not in name:
                continue
            cfg = load_mapping(f)
            if cfg is None or "log_history" in cfg:
                continue
            kind = config_kind(cfg)
            if kind is not None:
                return dict(cfg), f, kind
    return {}, None, None


def config_kind(cfg: Mapping[str, Any]) -> ConfigKind | None:
    """Which tool's spelling a training config uses, ``None`` when it is no training config.

    >>> config_kind({"stage": "sft", "finetuning_type": "lora"}), config_kind({"learning_rate": 1e-4})
    ('llamafactory', 'trl')
    """
    if "stage" in cfg or "finetuning_type" in cfg or "cutoff_len" in cfg:
        return "llamafactory"
    if "base_model" in cfg and ("micro_batch_size" in cfg or "datasets" in cfg or "adapter" in cfg):
        return "axolotl"
    trl_keys = {"model_name_or_path", "learning_rate", "per_device_train_batch_size", "max_steps",
                "num_train_epochs", "gradient_accumulation_steps", "output_dir"}
    return "trl" if trl_keys & set(cfg) else None


def _values(facts: RunFacts, config: Mapping[str, Any], peak_lr: float | None = None) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for attr, key in FACT_KEYS.items():
        v = getattr(facts, attr)
        if v is not None:
            values[key] = list(v) if isinstance(v, tuple) else v
    if "learning_rate" not in values and peak_lr is not None:
        values["learning_rate"] = peak_lr  # the configured peak, as the scheduler logged it
    if "warmup_steps" not in values and facts.warmup_ratio is not None:
        values["warmup_steps"] = facts.warmup_ratio  # transformers 5: a float below 1 is a ratio
        values["warmup_ratio"] = facts.warmup_ratio
    for key, v in config.items():
        if isinstance(key, str) and v is not None:
            values[key] = v  # the config as launched is the best witness of what was in effect
    if "warmup_ratio" in config and "warmup_steps" not in config:
        values["warmup_steps"] = config["warmup_ratio"]
    return values


def _peak_lr(run: Run) -> float | None:
    """The largest finite learning rate the run logged (its configured peak), or None."""
    s = run.series("learning_rate")
    vals = [v for _, v in s.finite()] if s is not None else []
    return max(vals) if vals and max(vals) > 0 else None


def _method(facts: RunFacts, config: Mapping[str, Any], kind: ConfigKind | None, launch: Mapping[str, Any] | None) -> Method:
    if isinstance(launch, Mapping) and launch.get("method") in METHODS:
        return launch["method"]  # type: ignore[no-any-return]
    if facts.is_peft or config.get("use_peft") is True:
        if facts.quantization in ("nf4", "fp4", "4bit") or config.get("load_in_4bit") is True:
            return "qlora"
        return "dora" if facts.use_dora or config.get("use_dora") is True else "lora"
    if kind == "llamafactory" and config.get("finetuning_type") == "full":
        return "full"
    if kind == "axolotl" and not config.get("adapter"):
        return "full"
    if kind in ("tuneterm", "trl"):
        return "full"  # a TRL config without use_peft trains every weight
    if facts.trainable_params and facts.total_params and facts.trainable_params >= 0.5 * facts.total_params:
        return "full"
    return "unknown"


def _hardware(run: Run, run_dir: Path | None) -> Hardware:
    if run_dir is not None:
        device, name = _gpu_record(run_dir)
        if name:
            return from_name(name, "gpu.jsonl")
        if device == "cpu":
            return Hardware(source="cpu")
    for event in run.events:
        found = find_gpu_name(event.text)
        if found:
            return from_name(found, "log")
    src = Path(run.source)
    if src.is_file():
        try:
            with open(src, "rb") as fh:
                head = fh.read(256 * 1024).decode("utf-8", "replace")
        except OSError:
            head = ""
        found = find_gpu_name(head)
        if found:
            return from_name(found, "log")
    return Hardware()


def _gpu_record(run_dir: Path) -> tuple[str | None, str | None]:
    """``(device, GPU name)`` from the first rows of a run directory's ``gpu.jsonl``."""
    device = name = None
    try:
        with open(run_dir / "gpu.jsonl", encoding="utf-8") as fh:
            for _, line in zip(range(20), fh, strict=False):
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(row, dict):
                    continue
                if device is None and isinstance(row.get("device"), str):
                    device = row["device"]
                if name is None and isinstance(row.get("name"), str) and row["name"]:
                    name = row["name"][:100]
    except OSError:
        pass
    return device, name


def _gpu_capacity(run: Run) -> float | None:
    for event in run.events:
        m = _CAPACITY.search(event.text)
        if m:
            return float(m.group(1))
    return None


def _checkpoints(src: Path, run_dir: Path | None) -> tuple[tuple[int, Path], ...]:
    roots = [run_dir / "output", run_dir] if run_dir is not None else [src if src.is_dir() else src.parent]
    if roots and _CKPT.match(roots[0].name):
        roots = [roots[0].parent]
    out: dict[int, Path] = {}
    for root in roots:
        try:
            entries = list(root.iterdir())
        except OSError:
            continue
        for c in entries:
            m = _CKPT.match(c.name)
            if m and c.is_dir():
                out[int(m.group(1))] = c
    return tuple(sorted(out.items()))
