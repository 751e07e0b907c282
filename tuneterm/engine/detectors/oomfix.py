"""What to change after a CUDA out-of-memory: by the phase it struck in, sized to the GPU when a
memory estimator is installed, the standard remedies otherwise.

An OOM in the evaluation loop or in GRPO's generation gets remedies for that phase. One in the
training step gets fixes computed by the installed :class:`OomSizer` when the OOM message states
the GPU's capacity ("GPU 0 has a total capacity of 79.25 GiB") and the run names its model: the
program installs the planner's memory estimator (:func:`tuneterm.plan.oom.fitting_fixes`; the
planner sits above the engine, so the engine only knows this typed hook). Everything else (no
sizer, unknown model, no capacity, an estimator error) falls back to the static remedies: halve
the per-device batch and double gradient accumulation (same effective batch), gradient
checkpointing, shorter sequences, QLoRA.

Nothing here imports torch or the planner.

>>> from tuneterm.logs.model import RunFacts
>>> [f.key for f in oom_fixes(RunFacts(train_batch_size=8, gradient_accumulation_steps=2), "")][:2]
['per_device_train_batch_size', 'gradient_accumulation_steps']
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from tuneterm.engine.model import Fix
from tuneterm.logs.model import RunFacts

_CAPACITY = re.compile(r"total capacity of ([\d.]+) ?(GiB|MiB|GB|MB)", re.IGNORECASE)


def capacity_gib(text: str) -> float | None:
    """The GPU capacity in GiB stated by a PyTorch OOM message, or ``None``.

    >>> capacity_gib("Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 23.69 GiB of which 1 MiB is free")
    23.69
    """
    m = _CAPACITY.search(text)
    if not m:
        return None
    value = float(m.group(1))
    return value / 1024 if m.group(2).lower().startswith("m") else value


class OomSizer(Protocol):
    """Fixes that fit a run which ran out of memory into its GPU: the run's facts and the GPU's
    capacity in GiB in, the fixes out (``[]`` when it cannot say; it must not raise)."""

    def __call__(self, facts: RunFacts, capacity_gib: float, /) -> list[Fix]: ...


@dataclass(slots=True)
class _Installed:
    sizer: OomSizer | None = None


_INSTALLED = _Installed()


def use_sizer(sizer: OomSizer | None) -> None:
    """Install ``sizer`` for every later out-of-memory diagnosis in this process (``None``: the
    static remedies only). The program and the training processes install the planner's
    (:func:`tuneterm.plan.oom.install`)."""
    _INSTALLED.sizer = sizer


def planned_fixes(f: RunFacts, text: str) -> list[Fix]:
    """Fixes from the installed sizer, or ``[]`` when it cannot say (see the module docstring)."""
    cap = capacity_gib(text)
    sizer = _INSTALLED.sizer
    if cap is None or not f.model_name or sizer is None:
        return []
    try:
        return list(sizer(f, cap))
    except Exception:  # noqa: BLE001 - a sizer problem must never hide the static advice
        return []


def static_fixes(f: RunFacts) -> list[Fix]:
    """The standard remedies, made concrete with the run's own numbers where known."""
    fixes: list[Fix] = []
    batch, ga = f.train_batch_size, f.gradient_accumulation_steps or 1
    if batch and batch > 1:
        pd = max(1, batch // 2)
        fixes.append(Fix(key="per_device_train_batch_size", value=pd, why="halves the activation memory"))
        fixes.append(Fix(key="gradient_accumulation_steps", value=ga * (batch // pd), why="keeps the effective batch while the per-device batch shrinks"))
    if not f.gradient_checkpointing:
        fixes.append(Fix(key="gradient_checkpointing", value=True, why="recompute activations in the backward pass: much less memory for ~20-30% more time"))
    if f.max_length:
        short = max(128, f.max_length // 2)
        fixes.append(Fix(key="max_length", value=short, why=f"activations and logits grow with sequence length; {f.max_length} -> {short} (check your length distribution first)"))
    if f.trainer_kind == "grpo" and f.max_completion_length:
        fixes.append(Fix(key="max_completion_length", value=max(64, f.max_completion_length // 2), why="generation memory grows with num_generations x completion length"))
    if not f.quantization and f.is_peft:
        fixes.append(Fix(key="load_in_4bit", value=True, why="QLoRA: the frozen base in 4 bits takes ~1/4 of the bf16 memory"))
    return fixes


def eval_fixes(f: RunFacts) -> list[Fix]:
    """Remedies for an OOM inside the Trainer's evaluation loop (huggingface/transformers#26702, #17089).

    The Trainer keeps every batch's ``[batch, seq, vocab]`` logits on the GPU until the whole eval
    set is done, for ``compute_metrics``; the training step itself fitted. So the fixes move or
    shrink what evaluation keeps, not the training batch.
    """
    return [
        Fix(key="eval_accumulation_steps", value=8, why="moves gathered logits to the CPU every 8 eval steps instead of keeping the whole eval set's logits on the GPU (watch host RAM)"),
        Fix(key="per_device_eval_batch_size", value=max(1, (f.train_batch_size or 2) // 2), why="evaluation batches hold full-vocabulary logits; smaller batches keep less at once"),
        Fix(key="prediction_loss_only", value=True, why="when only eval_loss is needed, no logits are kept at all"),
        Fix(command="trainer = SFTTrainer(..., preprocess_logits_for_metrics=lambda logits, labels: logits.argmax(-1))", why="keeps token ids instead of vocab-sized logits for compute_metrics (transformers#26702)"),
    ]


def generation_fixes(f: RunFacts, text: str) -> list[Fix]:
    """Remedies for an OOM while GRPO / online RL samples completions (huggingface/trl#2688, #2927).

    Generation memory is the KV cache of ``generation_batch_size`` sequences of prompt +
    ``max_completion_length`` tokens, plus vLLM's reserved share when it is colocated.
    """
    fixes: list[Fix] = []
    if f.max_completion_length:
        fixes.append(Fix(key="max_completion_length", value=max(64, f.max_completion_length // 2), why="the KV cache grows with the completion length of every sampled sequence"))
    if f.num_generations and f.num_generations > 2:
        fixes.append(Fix(key="num_generations", value=max(2, f.num_generations // 2), why="fewer completions per prompt: fewer sequences generated at once (the effective batch must stay divisible by it)"))
    fixes.append(Fix(key="generation_batch_size", value=max(2, (f.num_generations or 4)), why="samples fewer sequences per generation round (TRL's generation_batch_size)"))
    if "vllm" in text.lower():
        fixes.append(Fix(key="vllm_gpu_memory_utilization", value=0.3, why="colocated vLLM reserves this share of the GPU up front; the trainer needs the rest"))
    if not f.gradient_checkpointing:
        fixes.append(Fix(key="gradient_checkpointing", value=True, why="frees activation memory the policy's update needs beside the generation cache"))
    return fixes


def oom_fixes(f: RunFacts, text: str, phase: str | None = None) -> list[Fix]:
    """Fixes for an OOM: by phase first (evaluation, GRPO generation; see
    :attr:`tuneterm.logs.model.LogEvent.phase`), else the installed sizer's fixes when it has any, else
    :func:`static_fixes`.

    >>> [x.key for x in oom_fixes(RunFacts(train_batch_size=8), "", "eval")][:2]
    ['eval_accumulation_steps', 'per_device_eval_batch_size']
    """
    if phase == "eval":
        return eval_fixes(f)
    if phase == "generation":
        return generation_fixes(f, text)
    return planned_fixes(f, text) or static_fixes(f)
