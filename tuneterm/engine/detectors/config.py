"""Static checks of a training config (rules with ``scope: config``, codes C1xx in rules/diagnostics/config.yaml).

Each detector reads a :class:`~tuneterm.engine.config_subject.ConfigSubject` (the config with its
facts computed by the config check, :mod:`tuneterm.preflight.config_subject`) and its rule's params,
and returns :class:`~tuneterm.engine.model.Detection` objects; thresholds live in the rule records.
A detector only compares: the model's facts, the recommendation tables' rows, the memory estimate,
the planner's changes and the keys the installed TRL refuses were computed when the config was
read. A detector that lacks what it needs (no model facts, no dataset size, no GPU capacity)
returns nothing: a missing fact is never a finding. Importing this module registers the
detectors; it imports nothing beyond the engine.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from tuneterm.engine.config_subject import ConfigSubject, Problem
from tuneterm.engine.model import Detection, Fix, Severity
from tuneterm.engine.registry import Param, detector

_DECAYING = ("cosine", "linear", "polynomial", "cosine_with_restarts", "cosine_with_min_lr", "cosine_warmup_with_min_lr")


def _ev(cf: ConfigSubject, *keys: str, **extra: Any) -> dict[str, Any]:
    line = cf.line_of(*keys) if keys else None
    d = dict(extra)
    if line is not None:
        d["line"] = line
    return d


@detector("config-lr-range", scope="config",
          params={"error_factor": Param("float", "a rate this many times outside the range is an error", min=1.0),
                  "min_size_b": Param("float", "no range below this size (billions): the tables have no evidence there", min=0.0)},
          evidence=("learning_rate", "low", "high", "size_b", "method", "trainer", "direction", "row", "source", "suggested", "origin"))
def lr_range(cf: ConfigSubject, params: Mapping[str, Any]) -> list[Detection]:
    """Learning rate outside the recommendation table's range for the model size, method and trainer.

    Models below ``min_size_b`` (a randomly initialised test model such as ``tuneterm:tiny-llama``)
    get no verdict: every row of the table comes from pretrained models of 0.1B parameters and up.
    """
    if cf.model is None or cf.model.size_b < float(params.get("min_size_b", 0.0)):
        return []
    lr = cf.get("learning_rate")
    origin = "set in the config"
    if lr is None and "learning_rate" in cf.misspelt:
        return []  # learnig_rate: the unknown-key rule names it; judging the default would mislead
    if lr is None:
        lr, origin = cf.default_lr, cf.default_lr_origin
        if lr is None:
            return []  # the tool has no default (Axolotl requires the key): the missing-key rule says so
    lr = float(lr)
    cf.fact_error("lr_row")  # the table has no row for this size, method and trainer
    row = cf.lr_row
    if row is None:
        return []
    low, high = float(row.values["low"]), float(row.values["high"])
    if low <= lr <= high:
        return []
    direction = "above" if lr > high else "below"
    factor = lr / high if lr > high else low / lr if lr > 0 else math.inf
    sev = Severity.ERROR if factor >= float(params["error_factor"]) else Severity.WARNING
    suggested = float(row.values["default"])
    return [Detection(None, None, severity=sev, evidence=_ev(
        cf, "learning_rate", learning_rate=lr, low=low, high=high, size_b=round(cf.model.size_b, 2), method=cf.method,
        trainer=cf.trainer, direction=direction, row=f"recommend/learning_rate.yaml#{row.id}", source=row.source,
        suggested=suggested, origin=origin),
        fixes=(Fix(key="learning_rate", value=suggested, why=f"the table's value for {cf.model.size_b:.1f}B {cf.method} {cf.trainer} ({row.id}: {row.source})"),))]


def _coverage(cf: ConfigSubject) -> tuple[int, int, int, float] | None:
    steps = cf.get("max_steps")
    if cf.dataset_size is None or cf.dataset_size <= 0 or steps is None or int(steps) <= 0:
        return None
    eff = cf.effective_batch
    seen = int(steps) * eff
    return int(steps), eff, seen, seen / cf.dataset_size


@detector("config-coverage", scope="config",
          params={"min_epochs": Param("float", "fire when max_steps x effective batch covers fewer epochs", min=0.0)},
          evidence=("max_steps", "effective_batch", "samples_seen", "dataset_size", "coverage_pct", "steps_for_one_epoch"))
def coverage(cf: ConfigSubject, params: Mapping[str, Any]) -> list[Detection]:
    """max_steps x effective batch covers less than ``min_epochs`` of the dataset."""
    c = _coverage(cf)
    if c is None:
        return []
    steps, eff, seen, frac = c
    if frac >= float(params["min_epochs"]):
        return []
    one = math.ceil(cf.dataset_size / eff)  # type: ignore[operator]
    return [Detection(None, None, evidence=_ev(cf, "max_steps", max_steps=steps, effective_batch=eff, samples_seen=seen,
                                               dataset_size=cf.dataset_size, coverage_pct=round(100 * frac, 1),
                                               steps_for_one_epoch=one),
                      fixes=(Fix(key="max_steps", value=one, why=f"one full pass over {cf.dataset_size} samples at effective batch {eff}"),))]


@detector("config-schedule-decays-early", scope="config",
          params={"floor_fraction": Param("float", "the rate counts as ~0 below this fraction of its peak", min=0.0, max=1.0),
                  "max_epoch_fraction": Param("float", "fire when the rate reaches ~0 before this fraction of one epoch", min=0.0, max=1.0)},
          evidence=("scheduler", "max_steps", "floor_step", "floor_pct_of_epoch", "floor_fraction_pct"))
def schedule_decays_early(cf: ConfigSubject, params: Mapping[str, Any]) -> list[Detection]:
    """A decaying schedule (cosine/linear) sized by max_steps reaches ~0 before one pass over the data."""
    sched = str(cf.get("lr_scheduler_type", cf.default("lr_scheduler_type")))
    c = _coverage(cf)
    if sched not in _DECAYING or c is None:
        return []
    steps, eff, _seen, _frac = c
    f = float(params["floor_fraction"])
    # fraction t of the schedule after which lr < f x peak
    t = math.acos(2 * f - 1) / math.pi if sched.startswith("cosine") else 1.0 - f
    floor_step = max(1, int(t * steps))
    pct_epoch = 100.0 * floor_step * eff / cf.dataset_size  # type: ignore[operator]
    if pct_epoch >= 100.0 * float(params["max_epoch_fraction"]):
        return []
    return [Detection(None, None, evidence=_ev(cf, "lr_scheduler_type", "max_steps", scheduler=sched, max_steps=steps,
                                               floor_step=floor_step, floor_pct_of_epoch=round(pct_epoch, 1),
                                               floor_fraction_pct=round(100 * f)),
                      fixes=(Fix(key="max_steps", value=math.ceil(cf.dataset_size / eff),  # type: ignore[operator]
                                 why="size the schedule to the data so the rate decays over a full pass"),))]


@detector("config-no-warmup", scope="config", params={}, evidence=("scheduler", "learning_rate"))
def no_warmup(cf: ConfigSubject, params: Mapping[str, Any]) -> list[Detection]:
    """Neither warmup_steps nor warmup_ratio is set above 0 (TRL's default is no warmup)."""
    ws = cf.get("warmup_steps", 0) or 0
    wr = cf.get("warmup_ratio", 0) or 0
    if float(ws) > 0 or float(wr) > 0:
        return []
    return [Detection(None, None, evidence=_ev(cf, "warmup_steps", "warmup_ratio", "lr_scheduler_type",
                                               scheduler=str(cf.get("lr_scheduler_type", cf.default("lr_scheduler_type"))),
                                               learning_rate=cf.get("learning_rate", cf.default_lr)))]


@detector("config-fp16-on-bf16-model", scope="config", params={}, evidence=("model", "model_dtype"))
def fp16_on_bf16(cf: ConfigSubject, params: Mapping[str, Any]) -> list[Detection]:
    """fp16 mixed precision on a model pretrained in bf16 (activations can exceed fp16's range)."""
    if not cf.get("fp16") or cf.model is None or cf.model.dtype != "bfloat16":
        return []
    return [Detection(None, None, evidence=_ev(cf, "fp16", model=cf.model.name, model_dtype=cf.model.dtype))]


@detector("config-peft-base-float32", scope="config", params={},
          evidence=("model", "dtype_setting", "frozen_gib_float32", "frozen_gib_16bit", "compute", "effect"))
def peft_base_float32(cf: ConfigSubject, params: Mapping[str, Any]) -> list[Detection]:
    """A LoRA/DoRA/QLoRA run whose frozen base loads in float32 (TRL's ``dtype`` default).

    The frozen weights need no fp32 master copy, so float32 only doubles their memory; under
    QLoRA the 4-bit matmuls also compute in float32 (bitsandbytes' "bnb_4bit_compute_dtype=
    torch.float32" warning, 3x slower) and the unquantized embeddings, head and norms stay in
    float32. Full fine-tuning is left alone: float32 weights with bf16
    autocast is the standard mixed-precision recipe there, and so is a run that trains in plain
    float32 (``bf16: false`` and no ``fp16``; TRL 1.x's configs default ``bf16`` to true).
    """
    if cf.method == "full" or cf.dialect != "trl" or cf.load_dtype != "float32":
        return []
    fp16 = bool(cf.get("fp16"))
    if not fp16 and cf.get("bf16") is False:
        return []  # plain float32 training (a CPU run, an old GPU): float32 weights are the intent
    dtype_setting = "float32" if cf.get("dtype") or cf.get("model_init_kwargs") else "not set (TRL default float32)"
    name = cf.model.name if cf.model else str(cf.get("model_name_or_path", "the model"))
    ev = _ev(cf, "dtype", "model_init_kwargs", "load_in_4bit", "use_peft", "model_name_or_path",
             model=name, dtype_setting=dtype_setting,
             compute="float32 4-bit matmuls (slow)" if cf.method == "qlora" else "bf16/fp16 autocast over float32 weights")
    size = ""
    if cf.model is not None:
        frozen = cf.model.params_unquantized if cf.method == "qlora" else cf.model.params_total
        ev["frozen_gib_float32"] = round(frozen * 4 / 2**30, 2)
        ev["frozen_gib_16bit"] = round(frozen * 2 / 2**30, 2)
        size = f" ({ev['frozen_gib_float32']} GiB instead of {ev['frozen_gib_16bit']})"
    if cf.method == "qlora":
        ev["effect"] = (f"{name}'s unquantized embeddings, head and norms load in float32{size} and the "
                        "4-bit matmuls compute in float32, about 3x slower")
    else:
        ev["effect"] = f"{name}'s frozen weights load in float32{size}, twice the memory of bfloat16"
    want = "float16" if fp16 else "bfloat16"
    fixes = (Fix(key="dtype", value=want, why=f"loads the frozen base in {want}, half the memory of float32"
                 + ("; QLoRA then computes in 16 bits" if cf.method == "qlora" else "")),)
    return [Detection(None, None, evidence=ev, fixes=fixes)]


@detector("config-lora-alpha-ratio", scope="config",
          params={"min_ratio": Param("float", "lowest acceptable alpha / r", min=0.0),
                  "max_ratio": Param("float", "highest acceptable alpha / r", min=0.0)},
          evidence=("lora_r", "lora_alpha", "ratio", "suggested_alpha"))
def lora_alpha_ratio(cf: ConfigSubject, params: Mapping[str, Any]) -> list[Detection]:
    """LoRA alpha/rank outside the range (the tables use alpha = 2r); rsLoRA scales differently."""
    if cf.method == "full" or cf.get("use_rslora"):
        return []
    d = cf.defaults
    r = int(cf.get("lora_r", d["lora_r"]))
    alpha = float(cf.get("lora_alpha", d["lora_alpha"]))
    if r <= 0:
        return []
    ratio = alpha / r
    if float(params["min_ratio"]) <= ratio <= float(params["max_ratio"]):
        return []
    return [Detection(None, None, evidence=_ev(cf, "lora_alpha", "lora_r", lora_r=r, lora_alpha=alpha, ratio=round(ratio, 3),
                                               suggested_alpha=2 * r),
                      fixes=(Fix(key="lora_alpha", value=2 * r, why=f"alpha = 2 x r (recommend/lora_rank.yaml#alpha-2r) for r={r}"),))]


@detector("config-lora-targets-missing", scope="config", params={}, evidence=("missing", "available", "model"))
def lora_targets_missing(cf: ConfigSubject, params: Mapping[str, Any]) -> list[Detection]:
    """LoRA target modules that do not exist in the model's architecture."""
    if cf.method == "full" or cf.model is None:
        return []
    t = cf.get("lora_target_modules")
    if t is None or t == "all-linear" or t == "all":
        return []
    names = [t] if isinstance(t, str) else [str(x) for x in t] if isinstance(t, list) else []
    names = [n.strip() for x in names for n in x.split(",") if n.strip()]
    avail = list(cf.model.module_names)
    # PEFT matches by suffix: "self_attn.q_proj" selects q_proj
    missing = [n for n in names if n.split(".")[-1] not in avail]
    if not missing:
        return []
    cf.fact_error("target_row")
    row = cf.target_row
    if row is None:
        return []
    sev = Severity.ERROR if len(missing) == len(names) else Severity.WARNING
    return [Detection(None, None, severity=sev, evidence=_ev(cf, "lora_target_modules", missing=missing, available=avail,
                                                             model=cf.model.name),
                      fixes=(Fix(key="lora_target_modules", value=row.values["modules"], why=f"{cf.model.model_type} module names ({row.source})"),))]


@detector("config-gc-reentrant-peft", scope="config", params={}, evidence=("use_reentrant",))
def gc_reentrant_peft(cf: ConfigSubject, params: Mapping[str, Any]) -> list[Detection]:
    """Gradient checkpointing with PEFT and reentrant checkpointing (frozen inputs carry no grad)."""
    if cf.method == "full" or not cf.get("gradient_checkpointing", cf.default("gradient_checkpointing")):
        return []
    kw = cf.get("gradient_checkpointing_kwargs") or {}
    if isinstance(kw, str):
        try:
            kw = json.loads(kw)
        except ValueError:
            kw = {}
    if not isinstance(kw, Mapping) or kw.get("use_reentrant") is not True:
        return []
    return [Detection(None, None, evidence=_ev(cf, "gradient_checkpointing_kwargs", use_reentrant=True))]


@detector("config-pad-equals-eos", scope="config", params={}, evidence=("pad_token", "eos_token", "file"))
def pad_equals_eos(cf: ConfigSubject, params: Mapping[str, Any]) -> list[Detection]:
    """The pad token is the EOS token (when the tokenizer files are available locally)."""
    tok = cf.tokenizer_tokens  # read from a local model directory's tokenizer files, if any
    if cf.model is None or not tok:
        return []
    pad = cf.get("pad_token") or tok.get("pad_token")
    eos = cf.get("eos_token") or tok.get("eos_token")
    if not eos or not pad or pad != eos:
        return []
    return [Detection(None, None, evidence=_ev(cf, "pad_token", pad_token=pad, eos_token=eos, file=tok.get("file")))]


@detector("config-trust-remote-code", scope="config", params={}, evidence=("model",))
def trust_remote_code(cf: ConfigSubject, params: Mapping[str, Any]) -> list[Detection]:
    """trust_remote_code is on: the model repository's Python code runs with your permissions."""
    if cf.get("trust_remote_code") is not True:
        return []
    return [Detection(None, None, evidence=_ev(cf, "trust_remote_code", model=cf.get("model_name_or_path")))]


@detector("config-does-not-fit", scope="config",
          params={"headroom": Param("float", "warn when the peak is within this fraction of the capacity", min=0.0, max=1.0)},
          evidence=("peak_gib", "capacity_gib", "gpus", "largest", "largest_gib", "method", "phase", "facts_note"))
def does_not_fit(cf: ConfigSubject, params: Mapping[str, Any]) -> list[Detection]:
    """The memory estimate of this config exceeds the GPU memory (present or given)."""
    if cf.model is None or cf.gpu_memory_gib is None:
        return []
    cf.fact_error("memory")  # a setting the estimator refuses
    est = cf.memory
    if est is None:
        return []
    cap = float(cf.gpu_memory_gib)
    head = float(params["headroom"])
    if est.peak_gib * (1 + head) <= cap:
        return []
    sev = Severity.ERROR if est.peak_gib > cap else Severity.WARNING
    fixes = _fit_fixes(cf, cap, head) if cf.dialect == "trl" else []
    if fixes:
        return [Detection(None, None, severity=sev, evidence=_ev(
            cf, "per_device_train_batch_size", "model_name_or_path", peak_gib=round(est.peak_gib, 2), capacity_gib=round(cap, 2),
            gpus=cf.gpus, largest=est.largest, largest_gib=round(est.largest_gib, 2), method=cf.method, phase=est.peak_phase,
            facts_note=("; this verdict rests on a GUESSED architecture (no config.json, no table entry for the model name)"
                        if cf.model.is_guess else "")), fixes=tuple(fixes))]
    if not est.gradient_checkpointing:
        fixes.append(Fix(key="gradient_checkpointing", value=True, why="keeps one checkpoint per layer instead of every activation"))
    if est.batch_size > 1:
        fixes.append(Fix(key="per_device_train_batch_size", value=max(1, est.batch_size // 2),
                         why="halves activations and logits; raise gradient_accumulation_steps to keep the effective batch"))
    if cf.method == "full":
        fixes.append(Fix(key="use_peft", value=True, why="LoRA keeps only 16-bit weights: no full gradients or optimizer states"))
    elif cf.method in ("lora", "dora"):
        fixes.append(Fix(key="load_in_4bit", value=True, why="QLoRA: NF4 weights take ~0.56 B/param instead of 2"))
    return [Detection(None, None, severity=sev, evidence=_ev(
        cf, "per_device_train_batch_size", "model_name_or_path", peak_gib=round(est.peak_gib, 2), capacity_gib=round(cap, 2),
        gpus=cf.gpus, largest=est.largest, largest_gib=round(est.largest_gib, 2), method=cf.method, phase=est.peak_phase,
        facts_note=("; this verdict rests on a GUESSED architecture (no config.json, no table entry for the model name)"
                    if cf.model.is_guess else "")),
        fixes=tuple(fixes))]


def _fit_fixes(cf: ConfigSubject, cap: float, headroom: float) -> list[Fix]:
    """The planner's ranked changes that make this config fit (``tuneterm plan``'s "to fit"), as
    fixes: the cheapest change first, each key with the peak it predicts. TRL keys only, so only
    for TRL configs; keys of a multi-key change share one reason."""
    if cf.model is None:
        return []
    cf.fact_error("fit")
    fixes: list[Fix] = []
    for change in cf.fit_changes.get(headroom, ()):
        why = f"predicted peak {change.peak_gib:.1f} GiB of {cap:.1f} GiB; cost: {change.cost}"
        fixes += [Fix(key=k, value=v, why=why) for k, v in change.set.items() if k not in {f.key for f in fixes}]
    return fixes


# ---------------------------------------------------------------- validation (what `train` refuses)
def _problem_detections(cf: ConfigSubject, problems: tuple[Problem, ...]) -> list[Detection]:
    out = []
    for p in problems:
        fixes = (Fix(key=p.fix_key, value=p.fix_value, why=p.fix_why),) if p.fix_key else ()
        ev = {"key": p.key, "problem": p.message}
        if p.key in cf.lines:
            ev["line"] = cf.lines[p.key]
        out.append(Detection(None, None, evidence=ev, fixes=fixes))
    return out


@detector("config-unknown-keys", scope="config", params={}, evidence=("key", "problem"))
def unknown_keys(cf: ConfigSubject, params: Mapping[str, Any]) -> list[Detection]:
    """Keys the installed TRL does not know (TRL's parser and ``tuneterm train`` refuse them)."""
    if cf.dialect == "llama-factory":
        # judged against a key table of one LLaMA-Factory version, not the installed one: a warning
        return [replace(d, severity=Severity.WARNING) for d in _problem_detections(cf, cf.unknown_keys)]
    return _problem_detections(cf, cf.unknown_keys)


@detector("config-missing-keys", scope="config", params={}, evidence=("key", "problem"))
def missing_keys(cf: ConfigSubject, params: Mapping[str, Any]) -> list[Detection]:
    """Keys the tool needs before it can train (model, dataset, GRPO reward) and pairs that
    exclude each other or need each other (bf16 with fp16, load_in_4bit without use_peft)."""
    return _problem_detections(cf, cf.requirement_problems)


@detector("config-precision-unsupported", scope="config", params={}, evidence=("key", "problem"))
def precision_unsupported(cf: ConfigSubject, params: Mapping[str, Any]) -> list[Detection]:
    """bf16 (TRL's default) on a machine whose GPUs lack it, or that has none."""
    return _problem_detections(cf, cf.hardware_problems)
