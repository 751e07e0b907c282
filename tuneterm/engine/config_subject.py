"""What the ``config`` rules read: :class:`ConfigSubject`, a training config with its facts computed.

The config check (:mod:`tuneterm.preflight.config`) reads a TRL, LLaMA-Factory or Axolotl YAML
file, resolves the model, and computes everything that depends only on the config and the machine:
the tool's defaults, the dtype the weights load in, the recommendation table's rows, the memory
estimate and the planner's changes that make it fit, the keys the installed TRL refuses. It hands
the result down as a :class:`ConfigSubject`; the detectors in
:mod:`tuneterm.engine.detectors.config` only compare these facts with their rule's thresholds (the
engine imports neither the planner nor the pre-flight code).

A fact that could not be computed is None (a missing fact is never a finding), or, where computing
it failed, the error the detector that needs it re-raises (so the failure shows as that rule's
"detector crashed" finding, as any detector failure does).

>>> cs = ConfigSubject(path="t.yaml", dialect="trl", raw={}, values={"max_steps": 10}, lines={},
...                    key_lines={}, trainer="sft", method="lora")
>>> cs.get("max_steps"), cs.get("learning_rate", 1e-5), cs.effective_batch
(10, 1e-05, 8)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tuneterm.keynames import effective, spelled_as


@dataclass(frozen=True, slots=True)
class Problem:
    """One reason a config cannot run as written.

    Attributes:
        kind: ``unknown-key``, ``missing-key``, ``conflict`` or ``hardware``.
        key: the config key at fault (as the file names it).
        message: one line saying what is wrong (names the key, never a traceback).
        fix_key, fix_value: a concrete change that removes the problem, when there is one.
        fix_why: why that change.
    """

    kind: str
    key: str
    message: str
    fix_key: str | None = None
    fix_value: Any = None
    fix_why: str = ""


@dataclass(frozen=True, slots=True)
class ModelSummary:
    """What the config rules know of the model the config names.

    Attributes:
        name: as resolved (a hub id, a local path).
        size_b: parameters, billions.
        dtype: the checkpoint's dtype (``bfloat16``, ``float16``, ``float32``).
        model_type: the Hugging Face ``model_type`` (``llama``, ``qwen2`` ...).
        module_names: the module names LoRA can target.
        params_total: all parameters.
        params_unquantized: the parameters a 4-bit load keeps in 16 bits (embeddings, head, norms).
        is_guess: the architecture was guessed (no config.json, no table entry for the name).
    """

    name: str
    size_b: float
    dtype: str
    model_type: str
    module_names: tuple[str, ...]
    params_total: int
    params_unquantized: int
    is_guess: bool = False


@dataclass(frozen=True, slots=True)
class TableRow:
    """A row of a recommendation table (``rules/recommend/*.yaml``) that a rule compares with.

    Attributes:
        id: the row's id (``sft-lora-small``).
        source: where its numbers come from.
        values: the row's values (``low``, ``high``, ``default`` for learning rates; ``modules``
            for LoRA targets).
    """

    id: str
    source: str
    values: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MemoryPeak:
    """The planner's memory estimate for the config's setup.

    Attributes:
        peak_gib: the predicted peak per GPU.
        peak_phase: when the peak happens (``forward+loss``, ``optimizer step`` ...).
        largest: the largest part of the peak, in words.
        largest_gib: its size.
        gradient_checkpointing, batch_size: of the setup estimated (TRL defaults filled in).
    """

    peak_gib: float
    peak_phase: str
    largest: str
    largest_gib: float
    gradient_checkpointing: bool
    batch_size: int


@dataclass(frozen=True, slots=True)
class FitChange:
    """One of the planner's config changes that make the config fit (``tuneterm plan``'s "to fit").

    Attributes:
        set: the keys to set and their values.
        peak_gib: the peak predicted after the change.
        cost: what the change costs, in words.
    """

    set: Mapping[str, Any]
    peak_gib: float
    cost: str


@dataclass(frozen=True, slots=True)
class ConfigSubject:
    """A training config normalised to TRL names, with the facts its rules compare.

    Attributes:
        path: the file (findings' source).
        dialect: ``trl``, ``llama-factory`` or ``axolotl``.
        raw: the parsed mapping as written.
        values: TRL-named values the file sets (defaults are in ``defaults``).
        lines: 1-based line of each raw top-level key.
        key_lines: 1-based line of each TRL-named key, under its dialect's name.
        trainer: ``sft``, ``dpo`` or ``grpo``.
        method: ``full``, ``lora``, ``qlora`` or ``dora``.
        dataset_size: training samples when known.
        gpu_memory_gib, gpus: capacity to check the fit against (None: unknown).
        defaults: the tool's defaults for what the file leaves out, in TRL names.
        default_lr: the tool's learning rate when the file sets none (None: the tool has none).
        default_lr_origin: whose default that is, in words.
        load_dtype: the dtype the weights will load in.
        model: the model's facts when resolvable.
        lr_row: the learning-rate table's row for the model size, method and trainer.
        target_row: the LoRA target-modules row for the model's architecture.
        misspelt: TRL keys that an unknown key of the file misspells (meant, not unset).
        tokenizer_tokens: ``pad_token``/``eos_token`` (and the ``file`` read) from a local
            model directory's tokenizer files; empty when there are none.
        unknown_keys: keys the installed TRL (or the dialect's key table) does not know.
        requirement_problems: required keys missing, keys that need or exclude another.
        hardware_problems: precision this machine cannot run.
        memory: the memory estimate (None: no model or no capacity to compare with).
        fit_changes: the planner's cheapest config changes that make it fit, when it does not.
        errors: per fact name (``lr_row``, ``memory``), the error that computing it raised.
    """

    path: str
    dialect: str
    raw: Mapping[str, Any]
    values: Mapping[str, Any]
    lines: Mapping[str, int]
    key_lines: Mapping[str, int]
    trainer: str
    method: str
    dataset_size: int | None = None
    gpu_memory_gib: float | None = None
    gpus: int = 1
    defaults: Mapping[str, Any] = field(default_factory=dict)
    default_lr: float | None = None
    default_lr_origin: str = ""
    load_dtype: str = "float32"
    model: ModelSummary | None = None
    lr_row: TableRow | None = None
    target_row: TableRow | None = None
    misspelt: frozenset[str] = frozenset()
    tokenizer_tokens: Mapping[str, Any] = field(default_factory=dict)
    unknown_keys: tuple[Problem, ...] = ()
    requirement_problems: tuple[Problem, ...] = ()
    hardware_problems: tuple[Problem, ...] = ()
    memory: MemoryPeak | None = None
    fit_changes: tuple[FitChange, ...] = ()
    errors: Mapping[str, Exception] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        """A TRL-named value, or ``default`` when the file does not set it. A renamed key is read
        under either name, as transformers resolves it (:func:`tuneterm.keynames.effective`)."""
        return effective(self.values, key, default)

    def default(self, key: str) -> Any:
        """The tool's default for a TRL-named key."""
        return self.defaults[key]

    def line_of(self, *trl_keys: str) -> int | None:
        """The line of the first of ``trl_keys`` that the file sets (under its dialect's name)."""
        for k in trl_keys:
            for name in (spelled_as(self.values, k) or k, k):  # a renamed key: the name the file uses
                if name in self.key_lines:
                    return self.key_lines[name]
        return None

    def fact_error(self, name: str) -> None:
        """Raise the error computing fact ``name`` raised, if it did."""
        exc = self.errors.get(name)
        if exc is not None:
            raise exc

    @property
    def effective_batch(self) -> int:
        """per-device batch x gradient accumulation x GPUs (TRL defaults 8 x 1 x 1)."""
        return int(self.get("per_device_train_batch_size", 8)) * int(self.get("gradient_accumulation_steps", 1)) * max(1, self.gpus)
