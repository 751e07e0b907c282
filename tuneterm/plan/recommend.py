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
from tuneterm.plan.facts import ModelFacts
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

    def get(self, key: str) -> Recommendation:
        """The recommendation for TRL key ``key`` (KeyError if none)."""
        for r in self.recommendations:
            if r.key == key:
                return r
        raise KeyError(key)

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"recommendations": [r.to_dict() for r in self.recommendations],
                "capacity_gib": self.capacity_gib, "fits": self.fits, "warnings": list(self.warnings)}


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


def precision_for(compute_capability: float | None, model_dtype: str) -> tuple[str, dict[str, Any]]:
    """``bf16`` or ``fp16`` for a GPU compute capability (bf16 when unknown: every GPU sold since 2020)."""
    if compute_capability is not None and compute_capability < 8.0:
        return "fp16", _row("memory", "precision-fp16")
    return "bf16", _row("memory", "precision-bf16")


def recommend(model: ModelFacts, *, method: str = "lora", trainer: str = "sft", task: str = "instruction",
              dataset_size: int | None = None, gpu_memory_gib: float | None = None, gpus: int = 1,
              compute_capability: float | None = None, seq_len: int = 1024,
              base: TrainSetup | None = None, fixed: frozenset[str] = frozenset()) -> Plan:
    """Recommend settings for ``model`` and estimate their memory.

    Args:
        model: the model's facts.
        method: ``full``, ``lora``, ``qlora`` or ``dora`` (the starting point of the method ladder).
        trainer: ``sft``, ``dpo`` or ``grpo``.
        task: task type for the LoRA rank table (``instruction``, ``chat``, ``classification``,
            ``reasoning``, ``code``, ``domain`` ...).
        dataset_size: number of training samples, for epochs and steps (optional).
        gpu_memory_gib: capacity of one GPU; None when unknown (nothing is fitted then).
        gpus: data-parallel GPUs.
        compute_capability: of the GPU, for bf16 vs fp16.
        seq_len: planned ``max_length``.
        base: a setup whose fields the user fixed on the command line (rank, batch ...).
        fixed: names of ``TrainSetup`` fields the user set explicitly: never changed here.

    Returns:
        A :class:`Plan`.
    """
    recs: list[Recommendation] = []
    warnings: list[str] = []
    setup = base or TrainSetup()
    setup = replace(setup, trainer=trainer, gpus=gpus, seq_len=setup.seq_len if "seq_len" in fixed else seq_len)
    setup = replace(setup, method=method)
    size_b = model.size_b
    mem = _row("memory", "headroom")
    headroom = float(mem["headroom"])

    def fit(s: TrainSetup) -> tuple[bool | None, MemoryEstimate]:
        e = estimate(model, s)
        if gpu_memory_gib is None:
            return None, e
        return e.fits(gpu_memory_gib, headroom), e

    # --- method by memory: full -> lora -> qlora -> smaller model --------------------------------
    ladder_row = _row("memory", "method-ladder")
    ladder = [m for m in ("full", "lora", "qlora") if ladder_row and m in ladder_row["ladder"]]
    start = setup.method if setup.method in ladder else None
    ok, est = fit(replace(setup, batch_size=1))
    if ok is False and "gradient_checkpointing" not in fixed and not setup.gradient_checkpointing:
        setup = replace(setup, gradient_checkpointing=True)
        ok, est = fit(replace(setup, batch_size=1))
    if ok is False and "method" not in fixed and start is not None:
        for m in ladder[ladder.index(start) + 1:]:
            cand = replace(setup, method=m, gradient_checkpointing=setup.gradient_checkpointing or "gradient_checkpointing" not in fixed)
            c_ok, c_est = fit(replace(cand, batch_size=1))
            if c_ok:
                recs.append(Recommendation("method", m, _ref("memory", ladder_row), ladder_row["source"],
                                           f"{setup.method} needs {est.peak_gib:.1f} GiB at batch 1 (> {gpu_memory_gib:g} GiB "
                                           f"with {headroom:.0%} headroom); {m} needs {c_est.peak_gib:.1f} GiB. {ladder_row['why']}"))
                setup, ok, est = cand, c_ok, c_est
                break
    if ok is False and "method" in fixed and start is not None:
        # the user chose the method: keep it, but say which rung of the ladder would fit
        for m in ladder[ladder.index(start) + 1:]:
            c_ok, c_est = fit(replace(setup, method=m, gradient_checkpointing=True, batch_size=1))
            if c_ok:
                recs.append(Recommendation("method", m, _ref("memory", ladder_row), ladder_row["source"],
                                           f"{setup.method} needs {est.peak_gib:.1f} GiB at batch 1 (> {gpu_memory_gib:g} GiB "
                                           f"with {headroom:.0%} headroom); {m} would need {c_est.peak_gib:.1f} GiB "
                                           "(not applied: --method was given)"))
                break
    if ok is False:
        recs.append(Recommendation("model_name_or_path", "a smaller model", _ref("memory", ladder_row), ladder_row["source"],
                                   f"even {setup.method} at batch 1 needs {est.peak_gib:.1f} GiB > {gpu_memory_gib:g} GiB: "
                                   "pick a smaller model of the same family (or more GPUs with ZeRO-3/FSDP)"))
        warnings.append(f"does not fit: {est.peak_gib:.1f} GiB needed at batch 1, {gpu_memory_gib:g} GiB available")

    # --- learning rate -------------------------------------------------------------------------
    lr = lr_row(size_b, setup.method, trainer)
    recs.append(Recommendation("learning_rate", float(lr["default"]), _ref("learning_rate", lr), lr["source"],
                               f"{size_b:.2f}B parameters, {setup.method} {trainer}: range {lr['low']:g}-{lr['high']:g}. {lr['why']}",
                               (float(lr["low"]), float(lr["high"]))))

    # --- LoRA rank, alpha, targets ---------------------------------------------------------------
    if setup.method != "full":
        rr = rank_row(task)
        r = setup.lora_r if "lora_r" in fixed else int(rr["r"])
        if "lora_r" not in fixed:
            recs.append(Recommendation("lora_r", r, _ref("lora_rank", rr), rr["source"], f"task '{task}': {rr['why']}",
                                       tuple(rr["range"])))
        alpha = _row("lora_rank", "alpha-2r")
        recs.append(Recommendation("lora_alpha", int(alpha["alpha_factor"]) * r, _ref("lora_rank", alpha), alpha["source"], alpha["why"]))
        tr = target_row(model.model_type)
        if "lora_targets" not in fixed:
            mods = tr["modules"]
            setup = replace(setup, lora_targets=mods if isinstance(mods, str) else tuple(mods))
            recs.append(Recommendation("lora_target_modules", mods, _ref("target_modules", tr), tr["source"],
                                       f"{model.model_type}: {tr['why']}"))
        setup = replace(setup, lora_r=r)
        if setup.method == "qlora":
            recs.append(Recommendation("load_in_4bit", True, _ref("memory", ladder_row), ladder_row["source"],
                                       "QLoRA: NF4 base weights (0.56 B/param) + bf16 adapters"))

    # --- precision -----------------------------------------------------------------------------
    prec, prow = precision_for(compute_capability, model.dtype)
    why = prow["why"]
    if prec == "fp16" and model.dtype == "bfloat16":
        why += f"; {model.name} was pretrained in bf16: fp16 activations may overflow"
        warnings.append("fp16 on a bf16-pretrained model: watch for inf/nan losses")
    recs.append(Recommendation(prec, True, _ref("memory", prow), prow["source"], why))
    setup = replace(setup, dtype="bfloat16" if prec == "bf16" else "float16") if "dtype" not in fixed else setup

    # --- gradient checkpointing when activations dominate ----------------------------------------
    gc_row = _row("memory", "checkpointing-when-activations-dominate")
    if "gradient_checkpointing" not in fixed:
        _, no_gc = fit(replace(setup, gradient_checkpointing=False, batch_size=1))
        acts = sum(c.bytes for c in no_gc.components if c.name.startswith("activations"))
        share = acts / no_gc.device if no_gc.device else 0.0
        no_gc_fits = gpu_memory_gib is None or no_gc.fits(gpu_memory_gib, headroom)
        gc_on = share > float(gc_row["activation_share"]) or not no_gc_fits
        setup = replace(setup, gradient_checkpointing=gc_on)
        recs.append(Recommendation("gradient_checkpointing", gc_on, _ref("memory", gc_row), gc_row["source"],
                                   f"saved activations are {share:.0%} of the peak without it"
                                   + ("" if no_gc_fits else " and it does not fit without it")
                                   + f" (threshold {float(gc_row['activation_share']):.0%}). {gc_row['why']}"))

    # --- batch: the largest that fits with headroom; accumulation to the effective batch ----------
    brow = next((r for r in _rows("batch") if r["min_b"] <= size_b < r["max_b"]), _rows("batch")[-1])
    if "batch_size" in fixed:
        bs = setup.batch_size
    else:
        bs = 1
        cand = 1
        while cand <= int(brow["per_device_max"]):
            c_ok, _ = fit(replace(setup, batch_size=cand))
            if c_ok is False:
                break
            bs = cand
            cand *= 2
        setup = replace(setup, batch_size=bs)
        recs.append(Recommendation("per_device_train_batch_size", bs, _ref("batch", brow), brow["source"],
                                   f"largest power of two up to {brow['per_device_max']} that fits with {headroom:.0%} headroom"
                                   if gpu_memory_gib is not None else
                                   f"table value for {size_b:.1f}B (no GPU memory known: not fitted)"))
    effective = int(brow["effective"])
    ga = max(1, -(-effective // (bs * gpus)))
    setup = replace(setup, grad_accum=ga)
    recs.append(Recommendation("gradient_accumulation_steps", ga, _ref("batch", brow), brow["source"],
                               f"{bs} x {ga} x {gpus} GPU(s) = effective batch {bs * ga * gpus} (target {effective}). {brow['why']}"))

    # --- epochs and warmup -----------------------------------------------------------------------
    if dataset_size is not None:
        ep, used = epochs_for(dataset_size, size_b)
        last = used[-1] if used else _rows("epochs")[0]
        steps = -(-dataset_size * ep // (bs * ga * gpus))
        recs.append(Recommendation("num_train_epochs", ep, _ref("epochs", last), "; ".join(u["source"] for u in used),
                                   f"{dataset_size} samples, {size_b:.1f}B: {last['why']} (~{steps} optimizer steps)"))
    recs.append(Recommendation("lr_scheduler_type", "cosine", "recommend/learning_rate.yaml", "cosine decay, as in the TRL and alignment-handbook recipes",
                               "cosine with warmup is the standard decay; it reaches ~0 only at the planned end"))
    recs.append(Recommendation("warmup_steps", 0.03, "recommend/learning_rate.yaml", "warmup 3-10% of the steps (common practice)",
                               "3% of the steps ramp the rate up (a float below 1 is a ratio in transformers 5)"))

    ok, est = fit(setup)
    return Plan(model=model, setup=setup, estimate=est, recommendations=tuple(recs), capacity_gib=gpu_memory_gib,
                fits=ok, warnings=tuple(warnings))
