"""The facts the ``config`` rules compare, computed once when a config is read.

:func:`config_subject` turns a :class:`~tuneterm.preflight.config_read.ConfigFacts` into the
engine's :class:`~tuneterm.engine.config_subject.ConfigSubject`: the tool's defaults, the dtype the
weights load in, the model's facts, the recommendation tables' rows, the memory estimate and (only
when a rule needs them: the config does not fit) the planner's changes that make it fit, the keys
the installed TRL refuses, the tokenizer's special tokens. Everything here depends only on the
config and the machine; the detectors (:mod:`tuneterm.engine.detectors.config`) then only compare.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from tuneterm.engine.config_subject import ConfigSubject, FitChange, MemoryPeak, ModelSummary, Problem, TableRow
from tuneterm.engine.model import Rule
from tuneterm.plan.facts import ModelFacts
from tuneterm.preflight.config_read import SOURCE_KEYS, ConfigFacts, default_lr, defaults_of, load_dtype, setup_from_config
from tuneterm.preflight.config_validate import did_you_mean, hardware_problems, schema_problems

MEANT_KEYS: tuple[str, ...] = ("learning_rate",)
"""TRL keys whose misspelling a config rule must recognise (a misspelt key is meant, not unset)."""

_FIT_DETECTOR = "config-does-not-fit"


def config_subject(cf: ConfigFacts, rules: Iterable[Rule] = ()) -> ConfigSubject:
    """The facts of ``cf`` that the config rules compare; ``rules`` (the config rules about to be
    evaluated) say which headrooms the fit search is run for."""
    errors: dict[str, Exception] = {}
    lr, lr_origin = default_lr(cf)
    model = None if cf.model is None else _model_summary(cf.model, cf.method)
    lr_row = target_row = None
    if cf.model is not None:
        from tuneterm.plan.recommend import lr_row as find_lr_row
        from tuneterm.plan.recommend import target_row as find_target_row

        try:
            lr_row = _table_row(find_lr_row(cf.model.size_b, cf.method, cf.trainer))
        except Exception as exc:  # noqa: BLE001 - no row for this model: the lr rule's own failure
            errors["lr_row"] = exc
        try:
            target_row = _table_row(find_target_row(cf.model.model_type))
        except Exception as exc:  # noqa: BLE001 - as above, for the LoRA target rule
            errors["target_row"] = exc
    memory, fit_changes = _memory(cf, rules, errors)
    return ConfigSubject(
        path=str(cf.path), dialect=cf.dialect, raw=cf.raw, values=cf.values, lines=cf.lines,
        key_lines=key_lines(cf.lines, cf.dialect), trainer=cf.trainer, method=cf.method,
        dataset_size=cf.dataset_size, gpu_memory_gib=cf.gpu_memory_gib, gpus=cf.gpus,
        defaults=defaults_of(cf), default_lr=lr, default_lr_origin=lr_origin, load_dtype=load_dtype(cf),
        model=model, lr_row=lr_row, target_row=target_row, misspelt=_misspelt(cf),
        tokenizer_tokens=tokenizer_special_tokens(cf.model.local_dir) if cf.model is not None else {},
        unknown_keys=_unknown_keys(cf), requirement_problems=tuple(
            p for p in schema_problems(cf.raw, cf.trainer, cf.dialect, fields=None) if p.kind != "unknown-key"),
        hardware_problems=tuple(hardware_problems(cf.raw, cf.dialect, gpu_bf16=cf.gpu_bf16, gpu_name=cf.gpu_name)),
        memory=memory, fit_changes=fit_changes, errors=errors,
    )


def key_lines(lines: Mapping[str, int], dialect: str) -> dict[str, int]:
    """The line of each TRL-named key, found under the name ``dialect`` writes it as.

    >>> key_lines({"lora_rank": 3, "stage": 1}, "llama-factory")["lora_r"]
    3
    """
    renamed = SOURCE_KEYS.get(dialect, {})
    out = {k: v for k, v in lines.items() if k not in renamed}
    for trl, src in renamed.items():
        for name in src if isinstance(src, tuple) else (src,):
            if name in lines:
                out[trl] = lines[name]
                break
        else:
            out.pop(trl, None)
    return out


def _model_summary(m: ModelFacts, method: str) -> ModelSummary:
    pc = m.param_counts()
    return ModelSummary(name=m.name, size_b=m.size_b, dtype=m.dtype, model_type=m.model_type,
                        module_names=tuple(m.module_names()), params_total=pc.total,
                        params_unquantized=pc.unquantized, is_guess=m.is_guess)


def _table_row(row: Mapping[str, Any]) -> TableRow:
    return TableRow(id=str(row.get("id", "")), source=str(row.get("source", "")), values=dict(row))


def _misspelt(cf: ConfigFacts) -> frozenset[str]:
    """The :data:`MEANT_KEYS` that an unknown key of the file misspells (judged against the
    installed TRL's fields; nothing without them)."""
    if cf.trl_fields is None:
        return frozenset()
    unknown = [k for k in cf.raw if k not in cf.trl_fields]
    return frozenset(key for key in MEANT_KEYS if any(did_you_mean(k, [key]) == key for k in unknown))


def _unknown_keys(cf: ConfigFacts) -> tuple[Problem, ...]:
    """Keys the installed TRL does not know; for LLaMA-Factory, keys its key table lacks."""
    if cf.dialect == "llama-factory":
        found = schema_problems(cf.raw, cf.trainer, "llama-factory")
    elif cf.dialect == "trl" and cf.trl_fields is not None:
        found = schema_problems(cf.raw, cf.trainer, "trl", fields=cf.trl_fields)
    else:
        return ()
    return tuple(p for p in found if p.kind == "unknown-key")


def _memory(cf: ConfigFacts, rules: Iterable[Rule], errors: dict[str, Exception]
            ) -> tuple[MemoryPeak | None, dict[float, tuple[FitChange, ...]]]:
    """The memory estimate against the capacity and, per headroom of a fit rule that the config
    misses, the planner's two cheapest config-only changes (more GPUs also need another launch
    command: ``tuneterm plan`` shows it). Computing either may fail: the error is kept for the
    detector that needs it."""
    if cf.model is None or cf.gpu_memory_gib is None:
        return None, {}
    from tuneterm.plan.memory import estimate

    try:
        setup = setup_from_config(cf)
        est = estimate(cf.model, setup)
    except Exception as exc:  # noqa: BLE001 - reported as the fit rule's own failure
        errors["memory"] = exc
        return None, {}
    biggest = max(est.components, key=lambda c: c.bytes)
    peak = MemoryPeak(peak_gib=est.peak_gib, peak_phase=est.peak_phase, largest=biggest.name,
                      largest_gib=biggest.gib, gradient_checkpointing=setup.gradient_checkpointing,
                      batch_size=setup.batch_size)
    cap = float(cf.gpu_memory_gib)
    headrooms = {float(r.params["headroom"]) for r in rules
                 if r.detector == _FIT_DETECTOR and "headroom" in r.params}
    changes: dict[float, tuple[FitChange, ...]] = {}
    if cf.dialect != "trl":
        return peak, changes  # the planner's changes are TRL keys
    from tuneterm.plan.fit import FitOptions, to_fit

    for head in sorted(h for h in headrooms if est.peak_gib * (1 + h) > cap):
        try:
            found = [c for c in to_fit(cf.model, setup, cap, head, FitOptions(liger=False)) if not c.command]
        except Exception as exc:  # noqa: BLE001 - reported as the fit rule's own failure
            errors["fit"] = exc
            break
        changes[head] = tuple(FitChange(set=dict(c.set), peak_gib=c.peak_gib, cost=c.cost) for c in found[:2])
    return peak, changes


def _token(v: Any) -> str | None:
    if isinstance(v, Mapping):
        v = v.get("content")
    return v if isinstance(v, str) else None


def tokenizer_special_tokens(model_dir: Path | None) -> dict[str, Any]:
    """pad/eos tokens (strings or ids) from a local model directory's tokenizer files; {} if none."""
    out: dict[str, Any] = {}
    if model_dir is None:
        return out
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        p = model_dir / name
        try:
            if p.is_file() and p.stat().st_size < 8 * 1024 * 1024:
                data = json.loads(p.read_text(encoding="utf-8"))
                if isinstance(data, Mapping):
                    for k in ("pad_token", "eos_token"):
                        if k not in out and k in data:
                            out[k] = _token(data[k])
                    out.setdefault("file", name)
        except (OSError, ValueError, UnicodeDecodeError):
            continue
    return out
