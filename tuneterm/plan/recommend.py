"""Recommendations for a run, each traced to a row of ``rules/recommend/*.yaml`` and its source.

:func:`recommend` turns a model, a method, a trainer, a task, a dataset size and the GPU memory
into concrete TRL settings (learning rate, batch and gradient accumulation, epochs, LoRA rank and
alpha, target modules, gradient checkpointing, precision, method by memory), and the memory
estimate of the resulting setup. Every :class:`Recommendation` names the table row it came from
(``learning_rate.yaml#sft-full-large``), the row's source, and why.

>>> from tuneterm.plan.facts import table_facts
>>> p = recommend(table_facts("Qwen/Qwen2.5-0.5B"), method="full", task="instruction", gpu_memory_gib=24.0)
>>> p.get("learning_rate").value
5e-05
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from tuneterm.errors import ConfigError
from tuneterm.keynames import same_setting
from tuneterm.plan.facts import ModelFacts
from tuneterm.plan.fit import (
    BatchChoice,
    CardFit,
    FitChange,
    FitOptions,
    choose_batch,
    fit_table,
    to_fit,
)
from tuneterm.plan.memory import MemoryEstimate, TrainSetup, estimate
from tuneterm.plan.tables import load_yaml_table


@dataclass(frozen=True, slots=True)
class Recommendation:
    """One recommended setting: a TRL key and value, the table row, its source, and why."""

    key: str
    value: Any
    row: str
    source: str
    why: str
    range: tuple[Any, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        d = {"key": self.key, "value": self.value, "row": self.row, "source": self.source, "why": self.why}
        if self.range is not None:
            d["range"] = list(self.range)
        return d


@dataclass(frozen=True, slots=True)
class Plan:
    """The recommended setup, its memory estimate, and the recommendations that built it."""

    model: ModelFacts
    setup: TrainSetup
    estimate: MemoryEstimate
    recommendations: tuple[Recommendation, ...]
    capacity_gib: float | None
    fits: bool | None
    warnings: tuple[str, ...] = ()
    headroom: float = 0.10
    to_fit: tuple[FitChange, ...] = ()
    fit_table: tuple[CardFit, ...] = ()
    checkpointing_key: str = "gradient_checkpointing"

    def get(self, key: str) -> Recommendation:
        """The recommendation for TRL key ``key``, a renamed key under either name (KeyError if none)."""
        for r in self.recommendations:
            if same_setting(r.key, key):
                return r
        raise KeyError(key)

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        d: dict[str, Any] = {"recommendations": [r.to_dict() for r in self.recommendations],
                             "capacity_gib": self.capacity_gib, "fits": self.fits, "headroom": self.headroom,
                             "to_fit": [c.to_dict() for c in self.to_fit], "warnings": list(self.warnings)}
        if self.fit_table:
            d["fit_table"] = [c.to_dict() for c in self.fit_table]
        return d


def _rows(name: str) -> tuple[dict[str, Any], ...]:
    return load_yaml_table(f"recommend/{name}.yaml", "rows")


def _row(name: str, row_id: str) -> dict[str, Any]:
    for r in _rows(name):
        if r.get("id") == row_id:
            return r
    raise ConfigError(f"rules/recommend/{name}.yaml: row {row_id!r} missing")


def _ref(name: str, row: dict[str, Any]) -> str:
    return f"recommend/{name}.yaml#{row['id']}"


def lr_row(size_b: float, method: str, trainer: str) -> dict[str, Any]:
    """The learning-rate row for a model size (billions), method and trainer.

    >>> lr_row(24.0, "full", "sft")["id"]
    'sft-full-large'
    """
    m = "full" if method == "full" else "lora"
    for r in _rows("learning_rate"):
        if r["trainer"] == trainer and r["method"] == m and r["min_b"] <= size_b < r["max_b"]:
            return r
    raise ConfigError(f"no learning-rate row for {size_b:.2f}B {method} {trainer}")


def rank_row(task: str) -> dict[str, Any]:
    """The LoRA-rank row for a task type (``instruction`` when the task is unknown)."""
    t = task.lower()
    for r in _rows("lora_rank"):
        if t in r.get("task", ()):
            return r
    return _row("lora_rank", "rank-instruction")


def target_row(model_type: str) -> dict[str, Any]:
    """The target-modules row for an HF ``model_type`` (the ``*`` row when unknown)."""
    for r in _rows("target_modules"):
        if model_type in r["model_type"]:
            return r
    return _row("target_modules", "targets-default")


def epochs_for(dataset_size: int, size_b: float) -> tuple[int, list[dict[str, Any]]]:
    """Epochs for a dataset size, capped for large models; returns the rows used."""
    rows = _rows("epochs")
    used = []
    epochs = 1
    for r in rows:
        if "min_samples" in r and r["min_samples"] <= dataset_size < r["max_samples"]:
            epochs = int(r["epochs"])
            used.append(r)
    for r in rows:
        if "max_epochs" in r and size_b >= r["min_b"] and epochs > r["max_epochs"]:
            epochs = int(r["max_epochs"])
            used.append(r)
    return epochs, used


def precision_for(compute_capability: float | None) -> tuple[str, dict[str, Any]]:
    """``bf16`` or ``fp16`` for a GPU compute capability (bf16 when unknown: every GPU sold since 2020)."""
    if compute_capability is not None and compute_capability < 8.0:
        return "fp16", _row("memory", "precision-fp16")
    return "bf16", _row("memory", "precision-bf16")


def recommend(model: ModelFacts, *, method: str = "lora", trainer: str = "sft", task: str = "instruction",
              dataset_size: int | None = None, gpu_memory_gib: float | None = None, gpus: int = 1,
              compute_capability: float | None = None, seq_len: int = 1024,
              base: TrainSetup | None = None, fixed: frozenset[str] = frozenset(),
              options: FitOptions | None = None) -> Plan:
    """Recommend settings for ``model``, size them to the GPU and estimate their memory.

    Args:
        model: the model's facts.
        method: ``full``, ``lora``, ``qlora`` or ``dora`` (the starting point of the method ladder).
        trainer: ``sft``, ``dpo`` or ``grpo``.
        task: task type for the LoRA rank table (``instruction``, ``chat``, ``classification``,
            ``reasoning``, ``code``, ``domain`` ...).
        dataset_size: number of training samples, for epochs and steps (optional).
        gpu_memory_gib: capacity of one GPU; None when unknown (then a fit table against common
            cards is made instead of a fit).
        gpus: data-parallel GPUs.
        compute_capability: of the GPU, for bf16 vs fp16.
        seq_len: planned ``max_length``.
        base: a setup whose fields the user fixed on the command line (rank, batch ...).
        fixed: names of ``TrainSetup`` fields the user set explicitly: never changed here.
        options: what the installed stack allows for the changes proposed when it does not fit
            (default: :class:`FitOptions`' defaults: no Liger kernel, bitsandbytes present).

    Returns:
        A :class:`Plan`; when it does not fit, :attr:`Plan.to_fit` ranks the changes that would.
    """
    setup = base or TrainSetup()
    setup = replace(setup, trainer=trainer, gpus=gpus, method=method,
                    seq_len=setup.seq_len if "seq_len" in fixed else seq_len)
    headroom = float(_row("memory", "headroom")["headroom"])
    recs: list[Recommendation] = []
    warnings: list[str] = []
    setup = _method_by_memory(model, setup, gpu_memory_gib, headroom, fixed, recs, warnings)
    recs.append(_learning_rate(model, setup))
    setup = _adapter(model, setup, task, fixed, recs)
    setup = _precision(model, setup, compute_capability, fixed, recs, warnings)
    brow = _batch_row(model.size_b)
    effective = int(brow["effective"])
    setup = _batch_and_checkpointing(model, setup, gpu_memory_gib, headroom, brow, fixed, recs)
    recs += _schedule(model, setup, dataset_size)
    est = estimate(model, setup)
    fits = None if gpu_memory_gib is None else est.fits(gpu_memory_gib, headroom)
    changes = to_fit(model, setup, gpu_memory_gib, headroom, options or FitOptions()) if fits is False else ()
    table = () if gpu_memory_gib is not None else fit_table(
        model, setup, headroom, effective, gc_fixed="gradient_checkpointing" in fixed, batch_fixed="batch_size" in fixed)
    if fits is False:
        warnings.append(f"does not fit: {est.peak_gib:.1f} GiB needed, {gpu_memory_gib:.1f} GiB available "
                        f"with {headroom:.0%} headroom" + ("" if changes else "; no single change found that fits"))
    gc_key = (options or FitOptions()).checkpointing_key
    recs = [replace(r, key=gc_key) if same_setting(r.key, gc_key) else r for r in recs]
    return Plan(model=model, setup=setup, estimate=est, recommendations=tuple(recs), capacity_gib=gpu_memory_gib,
                fits=fits, warnings=tuple(warnings), headroom=headroom, to_fit=changes, fit_table=table,
                checkpointing_key=gc_key)


def _fits_at_batch_one(model: ModelFacts, s: TrainSetup, cap: float | None, headroom: float) -> tuple[bool | None, MemoryEstimate]:
    e = estimate(model, replace(s, batch_size=1, gradient_checkpointing=True))
    return (None if cap is None else e.fits(cap, headroom)), e


def _method_by_memory(model: ModelFacts, setup: TrainSetup, cap: float | None, headroom: float, fixed: frozenset[str],
                      recs: list[Recommendation], warnings: list[str]) -> TrainSetup:
    """Walk the method ladder (full -> LoRA -> QLoRA) until batch 1 with checkpointing fits.

    A method the user chose is kept; the rung that would fit is then only named."""
    ladder_row = _row("memory", "method-ladder")
    ladder = [m for m in ("full", "lora", "qlora") if m in ladder_row["ladder"]]
    ok, est = _fits_at_batch_one(model, setup, cap, headroom)
    if ok is not False or setup.method not in ladder:
        return setup
    for m in ladder[ladder.index(setup.method) + 1:]:
        c_ok, c_est = _fits_at_batch_one(model, replace(setup, method=m), cap, headroom)
        if not c_ok:
            continue
        applied = "method" not in fixed
        recs.append(Recommendation("method", m, _ref("memory", ladder_row), ladder_row["source"],
                                   f"{setup.method} needs {est.peak_gib:.1f} GiB at batch 1 (> {cap:.1f} GiB with "
                                   f"{headroom:.0%} headroom); {m} needs {c_est.peak_gib:.1f} GiB. "
                                   + (ladder_row["why"] if applied else "(not applied: --method was given)")))
        return replace(setup, method=m) if applied else setup
    return setup


def _learning_rate(model: ModelFacts, setup: TrainSetup) -> Recommendation:
    size_b = model.size_b
    lr = lr_row(size_b, setup.method, setup.trainer)
    return Recommendation("learning_rate", float(lr["default"]), _ref("learning_rate", lr), lr["source"],
                          f"{size_b:.2f}B parameters, {setup.method} {setup.trainer}: range {lr['low']:g}-{lr['high']:g}. {lr['why']}",
                          (float(lr["low"]), float(lr["high"])))


def _adapter(model: ModelFacts, setup: TrainSetup, task: str, fixed: frozenset[str], recs: list[Recommendation]) -> TrainSetup:
    """LoRA rank by task, alpha = 2r, target modules by architecture, 4-bit loading for QLoRA."""
    if setup.method == "full":
        return setup
    rr = rank_row(task)
    r = setup.lora_r if "lora_r" in fixed else int(rr["r"])
    if "lora_r" not in fixed:
        recs.append(Recommendation("lora_r", r, _ref("lora_rank", rr), rr["source"], f"task '{task}': {rr['why']}", tuple(rr["range"])))
    alpha = _row("lora_rank", "alpha-2r")
    recs.append(Recommendation("lora_alpha", int(alpha["alpha_factor"]) * r, _ref("lora_rank", alpha), alpha["source"], alpha["why"]))
    if "lora_targets" not in fixed:
        tr = target_row(model.model_type)
        mods = tr["modules"]
        setup = replace(setup, lora_targets=mods if isinstance(mods, str) else tuple(mods))
        recs.append(Recommendation("lora_target_modules", mods, _ref("target_modules", tr), tr["source"], f"{model.model_type}: {tr['why']}"))
    if setup.method == "qlora":
        ladder_row = _row("memory", "method-ladder")
        recs.append(Recommendation("load_in_4bit", True, _ref("memory", ladder_row), ladder_row["source"],
                                   "QLoRA: NF4 base weights (0.56 B/param) + bf16 adapters"))
    return replace(setup, lora_r=r)


def _precision(model: ModelFacts, setup: TrainSetup, cc: float | None, fixed: frozenset[str],
               recs: list[Recommendation], warnings: list[str]) -> TrainSetup:
    prec, prow = precision_for(cc)
    why = prow["why"]
    if prec == "fp16" and model.dtype == "bfloat16":
        why += f"; {model.name} was pretrained in bf16: fp16 activations may overflow"
        warnings.append("fp16 on a bf16-pretrained model: watch for inf/nan losses")
    recs.append(Recommendation(prec, True, _ref("memory", prow), prow["source"], why))
    return setup if "dtype" in fixed else replace(setup, dtype="bfloat16" if prec == "bf16" else "float16")


def _batch_row(size_b: float) -> dict[str, Any]:
    return next((r for r in _rows("batch") if r["min_b"] <= size_b < r["max_b"]), _rows("batch")[-1])


def _batch_and_checkpointing(model: ModelFacts, setup: TrainSetup, cap: float | None, headroom: float, brow: dict[str, Any],
                             fixed: frozenset[str], recs: list[Recommendation]) -> TrainSetup:
    """The largest micro-batch that fits with headroom, checkpointing only when needed to fit,
    and accumulation to the table's effective batch. Without a GPU size: batch 1 with
    checkpointing (the fit table then gives the batch per card)."""
    effective = int(brow["effective"])
    gc_row = _row("memory", "checkpointing-only-to-fit")
    gc_fixed, batch_fixed = "gradient_checkpointing" in fixed, "batch_size" in fixed
    if cap is None:
        choice = BatchChoice(setup.batch_size if batch_fixed else 1, 1,
                             setup.gradient_checkpointing if gc_fixed else True, 0, 0,
                             "no GPU memory known: on, to be safe (see the fit table for each card)")
        choice = replace(choice, grad_accum=max(1, -(-effective // (choice.batch_size * setup.gpus))))
    else:
        choice = choose_batch(model, setup, cap, headroom, effective, gc_fixed=gc_fixed, batch_fixed=batch_fixed)
    setup = replace(setup, batch_size=choice.batch_size, grad_accum=choice.grad_accum,
                    gradient_checkpointing=choice.gradient_checkpointing)
    if not gc_fixed:
        recs.append(Recommendation("gradient_checkpointing", choice.gradient_checkpointing, _ref("memory", gc_row),
                                   gc_row["source"], f"{choice.why_gc}. {gc_row['why']}"))
    if not batch_fixed:
        recs.append(Recommendation("per_device_train_batch_size", choice.batch_size, _ref("batch", brow), brow["source"],
                                   (f"the largest micro-batch that fits {cap:.1f} GiB with {headroom:.0%} headroom, up to the "
                                    f"effective batch {effective}" if cap is not None else
                                    "no GPU memory known: not fitted (see the fit table)")))
    total = choice.batch_size * choice.grad_accum * setup.gpus
    recs.append(Recommendation("gradient_accumulation_steps", choice.grad_accum, _ref("batch", brow), brow["source"],
                               f"{choice.batch_size} x {choice.grad_accum} x {setup.gpus} GPU(s) = effective batch {total} "
                               f"(target {effective}). {brow['why']}"))
    return setup


def _schedule(model: ModelFacts, setup: TrainSetup, dataset_size: int | None) -> list[Recommendation]:
    """Epochs by dataset and model size, cosine decay with 3% warmup."""
    recs: list[Recommendation] = []
    per_step = setup.batch_size * setup.grad_accum * setup.gpus
    if dataset_size is not None:
        ep, used = epochs_for(dataset_size, model.size_b)
        last = used[-1] if used else _rows("epochs")[0]
        steps = -(-dataset_size * ep // per_step)
        recs.append(Recommendation("num_train_epochs", ep, _ref("epochs", last), "; ".join(u["source"] for u in used),
                                   f"{dataset_size} samples, {model.size_b:.1f}B: {last['why']} (~{steps} optimizer steps)"))
    alpaca = "Stanford Alpaca training recipe (tatsu-lab/stanford_alpaca: cosine schedule, warmup ratio 0.03)"
    recs.append(Recommendation("lr_scheduler_type", "cosine", "recommend/learning_rate.yaml", alpaca,
                               "cosine with warmup is the standard decay; it reaches ~0 only at the planned end"))
    recs.append(Recommendation("warmup_steps", 0.03, "recommend/learning_rate.yaml", alpaca,
                               "3% of the steps ramp the rate up (a float below 1 is a ratio in transformers 5)"))
    return recs
