"""What to change after a CUDA out-of-memory: fixes computed with the planner, static otherwise.

When the run's model is known to the planner (a local path, the HF cache, or the model table of
``rules/models.yaml``; never the network) and the GPU's capacity is known (PyTorch prints it in the
OOM message: "GPU 0 has a total capacity of 79.25 GiB"), :func:`oom_fixes` asks the memory
estimator (:func:`tuneterm.plan.memory.estimate`) for the largest ``per_device_train_batch_size``
that fits with the run's sequence length, and otherwise the longest ``max_length`` that fits with
a batch of 1, with 10% headroom. Everything else (unknown model, no capacity, an estimator error)
falls back to the static remedies: halve the per-device batch and double gradient accumulation
(same effective batch), gradient checkpointing, shorter sequences, QLoRA.

Nothing here imports torch; the planner is imported lazily and its absence is tolerated.

>>> from tuneterm.logs.model import RunFacts
>>> [f.key for f in oom_fixes(RunFacts(train_batch_size=8, gradient_accumulation_steps=2), "")][:2]
['per_device_train_batch_size', 'gradient_accumulation_steps']
"""

from __future__ import annotations

import re
from typing import Any

from tuneterm.engine.model import Fix
from tuneterm.kinds import TRAINERS
from tuneterm.logs.model import RunFacts

_CAPACITY = re.compile(r"total capacity of ([\d.]+) ?(GiB|MiB|GB|MB)", re.IGNORECASE)
HEADROOM = 0.10  # keep 10% of the GPU free: fragmentation, eval passes, longer-than-usual batches


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


def _method(f: RunFacts) -> str:
    if f.quantization in ("nf4", "int8") or (f.quantization or "").startswith("4"):
        return "qlora"
    if f.use_dora:
        return "dora"
    if f.is_peft:
        return "lora"
    return "full"


def planned_fixes(f: RunFacts, text: str) -> list[Fix]:
    """Fixes from the memory estimator, or ``[]`` when it cannot say (see the module docstring)."""
    cap = capacity_gib(text)
    if cap is None or not f.model_name:
        return []
    try:
        from tuneterm.plan.facts import resolve_model
        from tuneterm.plan.memory import TrainSetup, estimate
    except ImportError:
        return []
    try:
        model = resolve_model(f.model_name, online=False)
        trainer = f.trainer_kind if f.trainer_kind in TRAINERS else "sft"
        batch = f.train_batch_size or 1
        seq = f.max_length or 1024
        base: dict[str, Any] = {
            "method": _method(f),
            "trainer": trainer,
            "seq_len": seq,
            "gradient_checkpointing": bool(f.gradient_checkpointing),
            "lora_r": f.lora_r or 16,
            "gpus": 1,
        }

        def fits(**over: Any) -> bool:
            return estimate(model, TrainSetup(**{**base, **over})).fits(cap, HEADROOM)

        fixes: list[Fix] = []
        ga = f.gradient_accumulation_steps or 1
        for gc in ([base["gradient_checkpointing"], True] if not base["gradient_checkpointing"] else [True]):
            for b in range(batch - 1 if gc == base["gradient_checkpointing"] else batch, 0, -1):
                if fits(batch_size=b, gradient_checkpointing=gc):
                    if gc and not base["gradient_checkpointing"]:
                        fixes.append(Fix(key="gradient_checkpointing", value=True, why="the estimator says the run fits with activations recomputed in the backward pass (~20-30% slower)"))
                    if b != batch:
                        new_ga = max(1, round(batch * ga / b))
                        fixes.append(Fix(key="per_device_train_batch_size", value=b, why=f"largest batch the memory estimator fits in {cap:.1f} GiB with {HEADROOM:.0%} headroom at max_length {seq} (tuneterm plan)"))
                        fixes.append(Fix(key="gradient_accumulation_steps", value=new_ga, why=f"keeps the effective batch near {batch * ga}"))
                    return fixes
        for s in (seq * 3 // 4, seq // 2, seq // 4):
            if s >= 128 and fits(batch_size=1, seq_len=s, gradient_checkpointing=True):
                return [
                    Fix(key="per_device_train_batch_size", value=1, why="even one sequence of the current length does not fit"),
                    Fix(key="gradient_accumulation_steps", value=batch * ga, why=f"keeps the effective batch at {batch * ga}"),
                    Fix(key="gradient_checkpointing", value=True, why="recompute activations in the backward pass"),
                    Fix(key="max_length", value=s, why=f"longest max_length the memory estimator fits in {cap:.1f} GiB (check your length distribution first)"),
                ]
        if base["method"] in ("full", "lora", "dora"):
            return [Fix(command=f"tuneterm plan {f.model_name} --method qlora", why=f"the estimator fits no batch/length of this setup in {cap:.1f} GiB; QLoRA stores the base in 4 bits")]
    except Exception:  # noqa: BLE001 - a planner problem must never hide the static advice
        return []
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
    """Remedies for an OOM inside the Trainer's evaluation loop (failure_modes.md FM-36).

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
    """Remedies for an OOM while GRPO / online RL samples completions (failure_modes.md FM-38).

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
    :attr:`tuneterm.logs.model.LogEvent.phase`), else planner fixes when available, else
    :func:`static_fixes`.

    >>> [x.key for x in oom_fixes(RunFacts(train_batch_size=8), "", "eval")][:2]
    ['eval_accumulation_steps', 'per_device_eval_batch_size']
    """
    if phase == "eval":
        return eval_fixes(f)
    if phase == "generation":
        return generation_fixes(f, text)
    return planned_fixes(f, text) or static_fixes(f)
