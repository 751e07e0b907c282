"""Sizing a run to a GPU: the largest micro-batch that fits, checkpointing only when needed, the
smallest changes that make a setup fit, and a fit table against common cards.

Everything here is arithmetic on :func:`tuneterm.plan.memory.estimate`; nothing imports torch or
TRL. What the installed libraries allow (the Liger kernel, bitsandbytes, valid config keys) comes
in as :class:`FitOptions`, filled by the caller (the CLI) that may look at the installed packages.

>>> from tuneterm.plan.facts import table_facts
>>> from tuneterm.plan.memory import TrainSetup
>>> f = table_facts("meta-llama/Llama-3.1-8B")
>>> largest_batch(f, TrainSetup(method="lora", seq_len=1024), 80.0, 0.10, 32) >= 4
True
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from tuneterm.plan.facts import ModelFacts
from tuneterm.plan.memory import MemoryEstimate, TrainSetup, estimate

COMMON_CARDS: tuple[tuple[str, float], ...] = (
    # (label, total memory in GiB as NVML reports it)
    ("24 GB (RTX 3090/4090, A10)", 23.99),
    ("40 GB (A100 40GB)", 39.5),
    ("48 GB (L40S, RTX 6000 Ada, A6000)", 44.99),
    ("80 GB (A100/H100 80GB)", 79.2),
    ("141 GB (H200)", 139.8),
)
"""The cards of the no-GPU fit table; the memory is what the driver reports, below the label."""


@dataclass(frozen=True, slots=True)
class FitOptions:
    """What the installed stack allows, for the changes :func:`to_fit` may propose.

    Attributes:
        liger: the Liger kernel is installed and ``use_liger_kernel`` is a key of the installed
            TRL/transformers config (fused linear cross-entropy: no full logits tensor).
        bitsandbytes: bitsandbytes is installed (8-bit/paged optimizers, 4-bit QLoRA).
        max_gpus: the most GPUs a multi-GPU proposal may ask for.
        checkpointing_key: the config key that turns activation checkpointing on in the installed
            transformers (``activation_checkpointing`` where ``TrainingArguments`` has it, else
            ``gradient_checkpointing``; see :mod:`tuneterm.keynames`).
    """

    liger: bool = False
    bitsandbytes: bool = True
    max_gpus: int = 8
    checkpointing_key: str = "gradient_checkpointing"


@dataclass(frozen=True, slots=True)
class FitChange:
    """One way to make a setup fit: config keys to set, the predicted peak, and what it costs.

    Attributes:
        set: TRL/transformers config keys and values (valid keys of the installed config).
        peak_gib: the predicted per-GPU peak with the change.
        cost: what the change costs in throughput or quality, in words.
        rank: lower is cheaper; :func:`to_fit` returns changes sorted by it.
        command: a launch command the change needs (more GPUs), else None.
        setup: the changed setup (not in JSON).
    """

    set: dict[str, Any]
    peak_gib: float
    cost: str
    rank: int
    command: str | None = None
    setup: TrainSetup | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form: ``{"set", "peak_gib", "cost"}`` (+ ``command``)."""
        d: dict[str, Any] = {"set": dict(self.set), "peak_gib": round(self.peak_gib, 1), "cost": self.cost}
        if self.command:
            d["command"] = self.command
        return d


@dataclass(frozen=True, slots=True)
class CardFit:
    """One row of the fit table: a common card, whether the setup fits and with what batch."""

    card: str
    capacity_gib: float
    fits: bool
    batch_size: int
    gradient_checkpointing: bool
    peak_gib: float

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"card": self.card, "capacity_gib": round(self.capacity_gib, 1), "fits": self.fits,
                "batch_size": self.batch_size if self.fits else None,
                "gradient_checkpointing": self.gradient_checkpointing, "peak_gib": round(self.peak_gib, 1)}


def _fits(model: ModelFacts, s: TrainSetup, capacity: float, headroom: float) -> tuple[bool, MemoryEstimate]:
    e = estimate(model, replace(s, gpu_total_gib=s.gpu_total_gib or capacity))
    return e.fits(capacity, headroom), e


def largest_batch(model: ModelFacts, setup: TrainSetup, capacity: float, headroom: float, limit: int) -> int:
    """The largest micro-batch in 1..``limit`` at which ``setup`` fits ``capacity`` GiB with
    ``headroom``; 0 when even one sample does not fit. Peak memory grows with the batch, so a
    binary search over the range is exact."""
    lo, hi = 0, max(1, limit)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _fits(model, replace(setup, batch_size=mid), capacity, headroom)[0]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def batch_for_effective(largest: int, effective: int, gpus: int) -> tuple[int, int]:
    """(micro-batch, accumulation) reaching ``effective`` samples per optimizer step.

    The micro-batch is the largest divisor of the per-GPU share of ``effective`` that is at most
    ``largest``, so the effective batch is met exactly when it can be.

    >>> batch_for_effective(12, 32, 1)
    (8, 4)
    >>> batch_for_effective(64, 32, 2)
    (16, 1)
    """
    share = max(1, -(-effective // gpus))
    mb = max(d for d in range(1, share + 1) if share % d == 0 and d <= max(1, largest))
    return mb, max(1, -(-share // mb))


@dataclass(frozen=True, slots=True)
class BatchChoice:
    """The micro-batch, accumulation and checkpointing :func:`choose_batch` settled on, and why."""

    batch_size: int
    grad_accum: int
    gradient_checkpointing: bool
    largest_without_gc: int
    largest_with_gc: int
    why_gc: str


def choose_batch(model: ModelFacts, setup: TrainSetup, capacity: float, headroom: float, effective: int,
                 *, gc_fixed: bool = False, batch_fixed: bool = False) -> BatchChoice:
    """Checkpointing only when it is needed to fit, then the largest micro-batch up to the
    per-GPU share of ``effective``, with accumulation making up the rest.

    Checkpointing costs about one extra forward per step (20-30% slower), so it stays off when the
    run fits without it at a micro-batch at least half of what checkpointing would allow (or
    already the whole effective batch); otherwise it buys the larger micro-batch.
    """
    share = max(1, -(-effective // setup.gpus))
    if batch_fixed:
        largest_off = largest_on = setup.batch_size
    else:
        largest_off = largest_batch(model, replace(setup, gradient_checkpointing=False), capacity, headroom, share)
        largest_on = largest_batch(model, replace(setup, gradient_checkpointing=True), capacity, headroom, share)
    if gc_fixed:
        gc = setup.gradient_checkpointing
        why = "set on the command line"
    elif batch_fixed:
        gc = not _fits(model, replace(setup, gradient_checkpointing=False), capacity, headroom)[0]
        why = ("needed: without it batch " f"{setup.batch_size} does not fit") if gc else "not needed: the batch fits without it"
    elif largest_off >= 1 and (largest_off >= share or 2 * largest_off >= largest_on):
        gc, why = False, (f"not needed: batch {largest_off} fits without it"
                          + ("" if largest_off >= share else f" (with it: {largest_on})"))
    else:
        # also when nothing fits at all: checkpointing is then the least the run needs
        gc = True
        why = (f"needed to fit: batch {largest_off} without it, {largest_on} with it" if largest_off
               else "needed to fit: not even one sample fits without it")
    if batch_fixed:
        mb = setup.batch_size
        ga = max(1, -(-share // mb))
    else:
        largest = largest_on if gc else largest_off
        mb, ga = batch_for_effective(max(1, largest), effective, setup.gpus)
    return BatchChoice(mb, ga, gc, largest_off, largest_on, why)


# ------------------------------------------------------------------------------- to_fit
_COSTS = {
    "batch": (0, "same effective batch (more accumulation steps): same quality, slightly lower throughput"),
    "liger": (1, "none: the same loss computed in chunks (Liger fused linear cross-entropy), usually faster"),
    "gc": (2, "about 20-30% slower: one extra forward per step to rebuild activations"),
    "optim8": (3, "8-bit optimizer states: quality on par with 32-bit in published comparisons"),
    "paged": (4, "paged 8-bit states can spill to CPU memory under pressure: slower steps when they do"),
    "lora": (5, "trains low-rank adapters only: can trail full fine-tuning on large domain shifts"),
    "qlora": (5, "4-bit base weights: slightly lower quality than LoRA, 20-40% slower (dequantization)"),
    "seq": (6, "samples longer than the new max_length are truncated"),
    "gpus": (7, "needs more GPUs; sharding adds communication per step"),
    "offload": (8, "much slower: optimizer states and parameters live in CPU memory (needs CPU RAM)"),
    "smaller": (9, "a smaller, less capable model"),
}


def _change(kind: str, keys: dict[str, Any], e: MemoryEstimate, s: TrainSetup, command: str | None = None,
            cost: str | None = None) -> FitChange:
    rank, text = _COSTS[kind]
    return FitChange(keys, e.peak_gib, cost or text, rank, command, s)


def _single_changes(model: ModelFacts, s: TrainSetup, opts: FitOptions) -> list[tuple[str, dict[str, Any], TrainSetup, str | None]]:
    """Every one-step change that applies to ``s``: (kind, config keys, changed setup, command)."""
    out: list[tuple[str, dict[str, Any], TrainSetup, str | None]] = []
    if s.batch_size > 1:
        b = s.batch_size // 2
        out.append(("batch", {"per_device_train_batch_size": b, "gradient_accumulation_steps": s.grad_accum * 2},
                    replace(s, batch_size=b, grad_accum=s.grad_accum * 2), None))
    if opts.liger and s.stack == "hf":
        out.append(("liger", {"use_liger_kernel": True}, replace(s, stack="hf-fused-ce"), None))
    if not s.gradient_checkpointing:
        out.append(("gc", {opts.checkpointing_key: True}, replace(s, gradient_checkpointing=True), None))
    if opts.bitsandbytes and s.method == "full" and "8bit" not in s.optimizer:
        out.append(("optim8", {"optim": "adamw_8bit"}, replace(s, optimizer="adamw_8bit"), None))
        out.append(("paged", {"optim": "paged_adamw_8bit"}, replace(s, optimizer="paged_adamw_8bit"), None))
    if s.method == "full":
        out.append(("lora", {"use_peft": True, "lora_target_modules": "all-linear"}, replace(s, method="lora", lora_targets="all-linear"), None))
    if opts.bitsandbytes and s.method in ("lora", "dora", "full"):
        keys = {"use_peft": True, "load_in_4bit": True, "bnb_4bit_quant_type": "nf4"}
        out.append(("qlora", keys, replace(s, method="qlora", quant=None), None))
    return out


def _shorter_seq(model: ModelFacts, s: TrainSetup, capacity: float, headroom: float) -> FitChange | None:
    """The longest max_length (a multiple of 256, at least 256) at which ``s`` fits."""
    for seq in range((s.seq_len - 1) // 256 * 256, 255, -256):
        ok, e = _fits(model, replace(s, seq_len=seq), capacity, headroom)
        if ok:
            return _change("seq", {"max_length": seq}, e, replace(s, seq_len=seq))
    return None


def _more_gpus(model: ModelFacts, s: TrainSetup, capacity: float, headroom: float, opts: FitOptions) -> FitChange | None:
    """The fewest GPUs (2, 4, 8) over which ZeRO-3/FSDP full sharding fits."""
    n = max(2, s.gpus * 2)
    while n <= opts.max_gpus:
        cand = replace(s, gpus=n, sharding="fsdp")
        ok, e = _fits(model, cand, capacity, headroom)
        if ok:
            return _change("gpus", {"fsdp": "full_shard auto_wrap"}, e, cand,
                           command=f"trl {s.trainer} --config CONFIG --num_processes {n}")
        n *= 2
    return None


def _offload(model: ModelFacts, s: TrainSetup, capacity: float, headroom: float) -> FitChange | None:
    cand = replace(s, sharding="fsdp", cpu_offload=True)
    ok, e = _fits(model, cand, capacity, headroom)
    return _change("offload", {"fsdp": "full_shard offload auto_wrap"}, e, cand,
                   command=f"trl {s.trainer} --config CONFIG --num_processes {s.gpus}") if ok else None


def _smaller_model(model: ModelFacts, s: TrainSetup, capacity: float, headroom: float) -> FitChange | None:
    """The largest model of the same family (model table) that fits with the same setup."""
    from tuneterm.plan.facts import family_members

    for smaller in family_members(model):
        ok, e = _fits(smaller, s, capacity, headroom)
        if ok:
            return _change("smaller", {"model_name_or_path": smaller.name}, e, s,
                           cost=f"a smaller, less capable model ({smaller.size_b:.1f}B instead of {model.size_b:.1f}B)")
    return None


def to_fit(model: ModelFacts, s: TrainSetup, capacity: float, headroom: float,
           opts: FitOptions | None = None) -> tuple[FitChange, ...]:
    """The smallest changes that make ``s`` fit ``capacity`` GiB with ``headroom``, cheapest first.

    Each one-step change (a smaller micro-batch with more accumulation, fused cross-entropy,
    checkpointing, an 8-bit or paged optimizer, LoRA or QLoRA, a shorter max_length, more GPUs
    with FSDP, CPU offload, a smaller model of the family) is estimated on its own; those that
    fit are kept. When none fits alone, the cheap ones are combined in cost order until the
    setup fits, and that combination is offered. Empty when ``s`` already fits.
    """
    if _fits(model, s, capacity, headroom)[0]:
        return ()
    opts = opts or FitOptions()
    found: list[FitChange] = []
    singles = _single_changes(model, s, opts)
    for kind, keys, cand, cmd in singles:
        if kind == "batch":
            # halve until it fits (the smallest halving that does)
            while True:
                ok, e = _fits(model, cand, capacity, headroom)
                if ok or cand.batch_size == 1:
                    break
                cand = replace(cand, batch_size=cand.batch_size // 2, grad_accum=cand.grad_accum * 2)
            keys = {"per_device_train_batch_size": cand.batch_size, "gradient_accumulation_steps": cand.grad_accum}
        ok, e = _fits(model, cand, capacity, headroom)
        if ok:
            found.append(_change(kind, keys, e, cand, cmd))
    for fn in (lambda: _shorter_seq(model, s, capacity, headroom), lambda: _more_gpus(model, s, capacity, headroom, opts),
               lambda: _offload(model, s, capacity, headroom), lambda: _smaller_model(model, s, capacity, headroom)):
        ch = fn()
        if ch is not None:
            found.append(ch)
    # When no cheap change is enough alone, the cheap ones together may be (batch 1 + fused CE +
    # checkpointing usually beats truncating the data or renting GPUs).
    if not any(c.rank <= _COSTS["gc"][0] for c in found):
        combo = _combined(model, s, capacity, headroom, singles)
        if combo is not None and len(combo.set) > 1 and combo.set not in [c.set for c in found]:
            found.append(combo)
    return tuple(sorted(found, key=lambda c: (c.rank, -c.peak_gib)))


def _combined(model: ModelFacts, s: TrainSetup, capacity: float, headroom: float,
              singles: list[tuple[str, dict[str, Any], TrainSetup, str | None]]) -> FitChange | None:
    """Cheap changes applied together in cost order (batch 1, fused CE, checkpointing, 8-bit
    optimizer, LoRA/QLoRA) until the setup fits, then pruned of every part it fits without; None
    if even all of them together do not fit."""
    parts: list[tuple[str, dict[str, Any], dict[str, Any]]] = []  # (kind, setup fields, config keys)
    for kind, keys, cand, _cmd in sorted(singles, key=lambda t: _COSTS[t[0]][0]):
        if kind == "paged" or (kind == "qlora" and any(p[0] == "lora" for p in parts)):
            continue
        fields = {f: getattr(cand, f) for f in TrainSetup.__dataclass_fields__ if getattr(cand, f) != getattr(s, f)}
        if kind == "batch":
            fields = {"batch_size": 1, "grad_accum": s.grad_accum * s.batch_size}
            keys = {"per_device_train_batch_size": 1, "gradient_accumulation_steps": s.grad_accum * s.batch_size}
        parts.append((kind, fields, keys))

    def fits_with(chosen: list[tuple[str, dict[str, Any], dict[str, Any]]]) -> tuple[bool, MemoryEstimate]:
        cur = s
        for _kind, fields, _keys in chosen:
            cur = replace(cur, **fields)
        return _fits(model, cur, capacity, headroom)

    chosen: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    for part in parts:
        chosen.append(part)
        if fits_with(chosen)[0]:
            break
    else:
        return None
    for part in list(chosen):  # drop what the rest fits without (the most expensive kept last)
        rest = [p for p in chosen if p is not part]
        if rest and fits_with(rest)[0]:
            chosen = rest
    ok, e = fits_with(chosen)
    cur = s
    keys: dict[str, Any] = {}
    for _kind, fields, k in chosen:
        cur = replace(cur, **fields)
        keys.update(k)
    rank = max(_COSTS[p[0]][0] for p in chosen)
    cost = "together: " + "; ".join(_COSTS[p[0]][1] for p in chosen)
    return FitChange(keys, e.peak_gib, cost, rank, None, cur) if ok else None


def fit_table(model: ModelFacts, setup: TrainSetup, headroom: float, effective: int,
              cards: tuple[tuple[str, float], ...] = COMMON_CARDS, *, gc_fixed: bool = False,
              batch_fixed: bool = False) -> tuple[CardFit, ...]:
    """For each common card: does ``setup`` fit, with which micro-batch and checkpointing."""
    rows = []
    for label, cap in cards:
        choice = choose_batch(model, setup, cap, headroom, effective, gc_fixed=gc_fixed, batch_fixed=batch_fixed)
        s = replace(setup, batch_size=choice.batch_size, gradient_checkpointing=choice.gradient_checkpointing)
        ok, e = _fits(model, s, cap, headroom)
        rows.append(CardFit(label, cap, ok, choice.batch_size, choice.gradient_checkpointing, e.peak_gib))
    return tuple(rows)
