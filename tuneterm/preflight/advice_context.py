"""The advisor's inputs, gathered as ``doctor``, ``check``, ``train --resume-from`` and the app's
Doctor screen all need them: the installed TRL's accepted keys, the model's size, the local GPU.

The advisor itself may not import the planner or the training schema; this module, in the
pre-flight layer (above the planner, below the commands and the app), may, so the commands and
the app share it. Imported inside those commands only; nothing heavy at import time (the schema
comes from its JSON cache; TRL is imported only to build a missing cache, and only when asked).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from tuneterm.advise import Hardware, KeySchema, Prescription, prescribe, read_context
from tuneterm.advise.context import RunContext
from tuneterm.advise.resume import ResumePoint, resume_point
from tuneterm.advise.spelling import respell_fixes
from tuneterm.keynames import spelled_as
from tuneterm.report.result import CheckResult


def key_schema(*, build: bool = False) -> KeySchema | None:
    """The accepted config keys per trainer from ``tuneterm train``'s schema cache (see
    :func:`tuneterm.preflight.schema.key_schema`; ``build`` for ``doctor --fix``: a file to train with
    must hold only valid keys)."""
    from tuneterm.preflight.schema import key_schema as train_key_schema

    return train_key_schema(build=build)


def model_size_b(model: str | None) -> float | None:
    """The model's size in billions from the planner's facts (local files, HF cache, model table;
    never the network), or ``None`` when it is not known."""
    if not model:
        return None
    from tuneterm.plan.facts import resolve_model

    try:
        facts = resolve_model(model, online=False)
    except Exception:  # noqa: BLE001 - an unknown or unreadable model only means "size unknown"
        return None
    return facts.size_b


def local_gpu() -> Hardware:
    """This machine's first GPU through NVML, for a run that does not name its own (``doctor`` is
    usually run on the box that trained); ``Hardware()`` when NVML finds none."""
    from tuneterm.plan.gpu import probe

    gpus = probe().gpus
    if not gpus:
        return Hardware()
    g = gpus[0]
    cc = None if g.compute_capability is None else g.compute_capability[0] + g.compute_capability[1] / 10
    return Hardware(gpu_name=g.name, compute_capability=cc, source="nvml")


def context_of(result: CheckResult, schema: KeySchema | None) -> RunContext | None:
    """The advisor's context of a log result (``None`` for other subjects)."""
    if result.subject != "log" or result.run is None:
        return None
    ctx = read_context(result.run, schema=schema)
    if ctx.hardware.source == "unknown":
        ctx = replace(ctx, hardware=local_gpu())
    if ctx.model_size_b is None:
        size = model_size_b(ctx.model)
        if size is not None:
            ctx = replace(ctx, model_size_b=size)
    return ctx


def advise_results(results: Sequence[CheckResult], *, build_schema: bool = False) -> list[CheckResult]:
    """``results`` with the prescription of every log subject set (and the fixes of a renamed key
    in its findings written as that run's config spells it, when it does: :mod:`tuneterm.keynames`)."""
    if not any(r.subject == "log" and r.run is not None for r in results):
        return list(results)
    schema = key_schema(build=build_schema)
    out = []
    for r in results:
        ctx = context_of(r, schema)
        if ctx is None or r.run is None:
            out.append(r)
            continue
        p: Prescription = prescribe(r.run, r.findings, ctx)
        # the findings' own fixes of a renamed key (gradient_checkpointing) as this run's config spells
        # it: under the other name transformers would ignore them (the prescription also follows the
        # installed transformers where the config names neither)
        findings = tuple(respell_fixes(r.findings, lambda key, cfg=ctx.config: spelled_as(cfg, key) or key))
        out.append(replace(r, prescription=p, findings=findings))
    return out


def resume_checkpoint(run: str, new_values: Mapping[str, Any], runs_dir: str | None = None) -> ResumePoint:
    """Diagnose ``run`` (a run name or directory) and find where ``new_values`` may resume it.

    Raises:
        InputError: ``run`` is neither a run in the runs directory nor a readable path.
    """
    from tuneterm.errors import InputError
    from tuneterm.report import CheckOptions, check_subject
    from tuneterm.runs.info import resolve_target

    result = check_subject(resolve_target(run, runs_dir), CheckOptions())
    ctx = context_of(result, None)
    if ctx is None:
        raise InputError(f"--resume-from {run}: not a training run")
    return resume_point(result.findings, ctx, new_values)
