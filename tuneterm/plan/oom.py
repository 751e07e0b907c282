"""Sizes that fit a run that died of CUDA out-of-memory into its GPU, from the memory estimator.

The ``cuda-out-of-memory`` rule (:func:`tuneterm.engine.detectors.runtime.crash_oom`) sits below
the planner, so it cannot call the estimator itself; the program installs :func:`fitting_fixes`
into it (:func:`install`, called by :mod:`tuneterm.main` and the training processes) through the
typed hook :class:`tuneterm.engine.detectors.oomfix.OomSizer`.

When the run's model is known to the planner (a local path, the HF cache, or the model table of
``rules/models.yaml``; never the network), :func:`fitting_fixes` asks the estimator
(:func:`tuneterm.plan.memory.estimate`) for the largest ``per_device_train_batch_size`` that fits
the stated GPU capacity with the run's sequence length (turning on gradient checkpointing first when
that is what makes it fit), and otherwise the longest ``max_length`` that fits with a batch of 1,
with 10% headroom; when nothing fits, the QLoRA plan. It returns ``[]`` when it cannot say (unknown
model, an estimator error), and the rule falls back to the standard remedies.

The estimator is imported on the first out-of-memory crash, not when the hook is installed, so
``tuneterm --help`` stays light.
"""

from __future__ import annotations

from typing import Any

from tuneterm.engine.detectors.oomfix import use_sizer
from tuneterm.engine.model import Fix
from tuneterm.kinds import TRAINERS
from tuneterm.logs.model import RunFacts

HEADROOM = 0.10  # keep 10% of the GPU free: fragmentation, eval passes, longer-than-usual batches


def install() -> None:
    """Let the out-of-memory rule size its fixes with :func:`fitting_fixes`."""
    use_sizer(fitting_fixes)


def _method(f: RunFacts) -> str:
    if f.quantization in ("nf4", "int8") or (f.quantization or "").startswith("4"):
        return "qlora"
    if f.use_dora:
        return "dora"
    if f.is_peft:
        return "lora"
    return "full"


def fitting_fixes(f: RunFacts, cap: float) -> list[Fix]:
    """Fixes that fit the run of facts ``f`` into ``cap`` GiB, or ``[]`` when the estimator cannot
    say (see the module docstring)."""
    if not f.model_name:
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
                    *([] if base["gradient_checkpointing"] else [Fix(key="gradient_checkpointing", value=True, why="recompute activations in the backward pass")]),
                    Fix(key="max_length", value=s, why=f"longest max_length the memory estimator fits in {cap:.1f} GiB (check your length distribution first)"),
                ]
        if base["method"] in ("full", "lora", "dora"):
            return [Fix(command=f"tuneterm plan {f.model_name} --method qlora", why=f"the estimator fits no batch/length of this setup in {cap:.1f} GiB; QLoRA stores the base in 4 bits")]
    except Exception:  # noqa: BLE001 - a planner problem must never hide the static advice
        return []
    return []
