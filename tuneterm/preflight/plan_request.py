"""One plan flow for ``tuneterm plan`` and the app's Plan screen: a :class:`PlanRequest` in, a
:class:`PlanOutcome` out.

The flow: resolve the model's facts, choose the GPU memory to fit to (a typed size, else the total
memory of the smallest GPU found, :func:`tuneterm.plan.verdict.gpu_target`), build the setup with
the fields the person chose (never changed by the planner), recommend with what the installed
stack allows (:func:`fit_options`), and judge the fit (:func:`tuneterm.plan.verdict.fit_verdict`).
Both faces call :func:`plan_for`, so for the same inputs they show the same plan and verdict;
each words the outcome its own way.

It sits in ``preflight`` because :func:`fit_options` reads the installed TRL config's keys through
:mod:`tuneterm.preflight.schema`; everything else comes from :mod:`tuneterm.plan`. Nothing here
imports torch: GPUs come from NVML, model facts from config.json or the family table.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tuneterm.plan.fit import FitOptions
    from tuneterm.plan.gpu import SystemProfile
    from tuneterm.plan.memory import TrainSetup
    from tuneterm.plan.recommend import Plan
    from tuneterm.plan.verdict import FitVerdict, GpuTarget


@dataclass(frozen=True, slots=True)
class PlanRequest:
    """What a person asks the planner. A field left None is the planner's to choose; a field given
    is kept as given (the planner sizes everything else around it).

    Attributes:
        model: a local model directory, a config.json, or a hub id.
        method: ``full``, ``lora``, ``qlora`` or ``dora``.
        trainer: ``sft``, ``dpo`` or ``grpo``.
        task: the task type of the LoRA rank table (``instruction``, ``chat``, ``code`` ...).
        seq_len: tokens of the longest padded sample (``max_length``).
        batch_size: per-device micro-batch, or None for the largest that fits.
        lora_r: LoRA rank, or None for the task's.
        lora_targets: ``"all-linear"`` or module names, or None for the planner's.
        gradient_checkpointing: on/off, or None for "on when activations dominate".
        optimizer: TRL ``optim`` name.
        gpus: data-parallel GPUs, or None for the GPUs found (1 without any, or with a typed size).
        gpu_memory: memory of one GPU as typed (``24GiB``, ``80GB``), or None for the GPUs found.
        sharding: ``ddp``, ``zero2``, ``zero3`` or ``fsdp``.
        attn: ``sdpa``, ``flash_attention_2`` or ``eager``.
        double_quant: NF4 nested quantization (QLoRA).
        cpu_offload: optimizer states (and sharded parameters) on the CPU.
        stack: key of :data:`tuneterm.plan.memory.STACKS`.
        dataset_size: training samples, for epochs and steps, or None.
    """

    model: str
    method: str = "lora"
    trainer: str = "sft"
    task: str = "instruction"
    seq_len: int = 1024
    batch_size: int | None = None
    lora_r: int | None = None
    lora_targets: tuple[str, ...] | str | None = None
    gradient_checkpointing: bool | None = None
    optimizer: str = "adamw_torch_fused"
    gpus: int | None = None
    gpu_memory: str | None = None
    sharding: str = "ddp"
    attn: str = "sdpa"
    double_quant: bool = False
    cpu_offload: bool = False
    stack: str = "hf"
    dataset_size: int | None = None


@dataclass(frozen=True, slots=True)
class PlanOutcome:
    """The planner's answer to a :class:`PlanRequest`.

    Attributes:
        plan: the recommended setup, its memory estimate, and the ranked changes that would make it
            fit; ``plan.capacity_gib`` is the memory it was fitted to, ``plan.setup.gpus`` the GPUs.
        verdict: FITS / DOES NOT FIT against that memory and, when the memory came from the GPUs
            found, each GPU's free memory now.
        source: where the memory came from, one line: ``--gpu-memory 24GiB`` when typed, else
            :attr:`GpuTarget.source` (``2 x Tesla T4 (15.0 GiB)``, or why there is none). Contains
            GPU names: untrusted text.
        target: the choice made from the GPUs found; None when the size was typed.
    """

    plan: Plan
    verdict: FitVerdict
    source: str
    target: GpuTarget | None


def plan_for(request: PlanRequest, profile: SystemProfile | None = None) -> PlanOutcome:
    """Plan ``request``: the one flow behind ``tuneterm plan`` and the Plan screen.

    Args:
        request: what the person asked.
        profile: the GPUs found, when the caller has probed them; probed here (NVML) when it is
            None and no size was typed.

    Returns:
        A :class:`PlanOutcome`.

    Raises:
        TunetermError: unknown model, a size that is not one, a bad method/trainer/... value
            (ConfigError / InputError), one line.
    """
    from tuneterm.plan.facts import resolve_model
    from tuneterm.plan.recommend import recommend
    from tuneterm.plan.sizes import parse_size_gib
    from tuneterm.plan.verdict import fit_verdict, gpu_target

    facts = resolve_model(request.model)
    typed = request.gpu_memory if request.gpu_memory and request.gpu_memory.strip() else None
    target: GpuTarget | None = None
    if typed is not None:
        cap, cc, source = parse_size_gib(typed), None, f"--gpu-memory {typed}"
    else:
        if profile is None:
            from tuneterm.plan.gpu import probe

            profile = probe()
        target = gpu_target(profile)  # the smallest GPU's total memory (every rank needs its share)
        cap, cc, source = target.capacity_gib, target.compute_capability, target.source
    gpus = request.gpus or (target.gpus if target is not None else 0) or 1
    base, fixed = _base_setup(request, gpus)
    plan = recommend(facts, method=request.method, trainer=request.trainer, task=request.task,
                     dataset_size=request.dataset_size, gpu_memory_gib=cap, gpus=gpus, compute_capability=cc,
                     seq_len=request.seq_len, base=base, fixed=fixed, options=fit_options(request.trainer))
    # A typed size is not the GPUs present: their free memory says nothing about it.
    verdict = fit_verdict(plan, profile if target is not None else None)
    return PlanOutcome(plan=plan, verdict=verdict, source=source, target=target)


def _base_setup(request: PlanRequest, gpus: int) -> tuple[TrainSetup, frozenset[str]]:
    """The setup the planner starts from and the names of the fields the person fixed.

    Raises:
        ConfigError: a bad method, trainer, sharding ... value (one line, before any work).
    """
    from tuneterm.plan.memory import TrainSetup

    base = TrainSetup(method=request.method, seq_len=request.seq_len, optimizer=request.optimizer,
                      trainer=request.trainer, gpus=gpus, sharding=request.sharding, attn=request.attn,
                      double_quant=request.double_quant, cpu_offload=request.cpu_offload, stack=request.stack)
    fixed = {"method"}
    chosen = {"lora_targets": request.lora_targets, "lora_r": request.lora_r, "batch_size": request.batch_size,
              "gradient_checkpointing": request.gradient_checkpointing}
    for name, value in chosen.items():
        if value is not None:
            base, fixed = replace(base, **{name: value}), fixed | {name}
    base.validated()
    return base, frozenset(fixed)


def fit_options(trainer: str) -> FitOptions:
    """What the installed stack allows for the changes the planner proposes when a setup does not
    fit: the Liger kernel only when it is installed and ``use_liger_kernel`` is a key of the
    installed TRL config for ``trainer`` (read from the schema cache), 8-bit/paged optimizers and
    QLoRA only with bitsandbytes installed, checkpointing under the installed transformers' name
    (``activation_checkpointing`` where it is a field, else ``gradient_checkpointing``)."""
    from tuneterm.keynames import preferred
    from tuneterm.plan.fit import FitOptions

    fields: frozenset[str] | None = None
    try:
        from tuneterm.preflight.schema import load_schema

        fields = frozenset(load_schema().trainers[trainer].fields)
    except Exception:  # noqa: BLE001 - no schema (TRL missing or broken): no Liger key, the old checkpointing name
        fields = None
    liger = _installed("liger_kernel") and fields is not None and "use_liger_kernel" in fields
    gc_key = preferred("gradient_checkpointing", None if fields is None else fields.__contains__)
    return FitOptions(liger=liger, bitsandbytes=_installed("bitsandbytes"), checkpointing_key=gc_key)


def _installed(name: str) -> bool:
    """``name`` can be imported (found on the path, not imported)."""
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False
