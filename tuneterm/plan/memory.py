"""Peak GPU memory of a fine-tuning run, as a breakdown a person can check.

The peak is the static state (weights,
trainable copies, optimizer states, reference model, CUDA context) plus the **largest** transient
phase (forward end with all saved activations and the logits/loss chain; backward with gradients
and the recomputed layer; optimizer step with its temporaries), not the sum of every transient.

Three numbers come out (PyTorch's own metrics, PyTorch docs 'CUDA semantics'): ``allocated`` (what
``torch.cuda.max_memory_allocated`` would show), ``reserved`` (the caching allocator's segments)
and ``device`` (reserved + CUDA context + NCCL + paged optimizer states + a vLLM pool: what
``nvidia-smi`` shows and what decides an OOM). ``peak_gib`` is the device number.

Nothing here imports torch: the estimate is arithmetic on :class:`~tuneterm.plan.facts.ModelFacts`.

Example:
    >>> from tuneterm.plan.facts import table_facts
    >>> est = estimate(table_facts("meta-llama/Llama-3.1-8B"), TrainSetup(method="qlora", seq_len=2048))
    >>> 8 < est.peak_gib < 16
    True
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from tuneterm.errors import ConfigError
from tuneterm.plan.facts import LinearModule, ModelFacts

GIB = 1024**3

METHODS = ("full", "lora", "qlora", "dora")
TRAINERS = ("sft", "dpo", "grpo")
SHARDING = ("ddp", "zero2", "zero3", "fsdp")
ATTENTION = ("sdpa", "flash_attention_2", "eager")

# --- global constants (the only calibration knobs; each justified) --------------------------------
# CUDA context + loaded kernels of one process: 0.3-1.5 GB (transformers' "Model training anatomy"
# guide measured 1.34 GB on CUDA 11.2; lazy loading on CUDA >= 11.7 lowers it, flash-attn/bnb kernels raise it): the
# midpoint of that range, 0.9 GB.
CUDA_CONTEXT_GIB = 0.85
# NCCL communicators and buffers per rank when more than one GPU takes part (a few hundred MB to
# ~1 GB per rank).
NCCL_GIB = 0.5
# Caching-allocator overhead: reserved is 1.02-1.3x allocated for fixed shapes (torchtune README,
# AnswerDotAI/fsdp_qlora benchmarks);
# 5% is the low-middle of that range for padded/packed batches.
ALLOCATOR_OVERHEAD = 0.05
# Eager attention saves the fp32 softmax and its bf16 copy: ~5 bytes per head per query-key pair
# (measured from ms-swift's Qwen-7B benchmark with flash attention on and off,
# modelscope/ms-swift docs/source_en/LLM/Benchmark.md).
EAGER_BYTES_PER_SCORE = 5.0
# Variable-length batches (no packing, padding to the longest of the batch) and a cache that is
# never emptied: the caching allocator cuts the few vocab-sized blocks of the logits/loss chain
# (hundreds of MB to GBs each; see STACKS) for whatever length arrives. When the longest batch
# comes, the blocks cut for the typical earlier batch cannot hold its larger requests and are not
# merged with new segments, so the reserved peak carries one more set of vocab-sized blocks sized
# for a typical batch: min(mean sample length, max_length) tokens. The layers' activations are
# many small (s x h) tensors that are served from split cached blocks and do not add a set; that
# is why the ms-swift GC-off rows (150, 152) show the same excess as the GC-on rows. Evidence:
# ms-swift reports torch.cuda.max_memory_reserved over a whole run on cls-fudan-news-zh (3234 +-
# 2548 tokens per sample) and exceeds the fixed-shape estimate by about one logits chain up to
# max_length 2048, 0.7x at 4096 and 0.4x at 8192 (ms-swift Benchmark.md); the ratios follow
# min(3234, max_length) / max_length. The Qwen README rows of the same model code, padded to a
# fixed length, show no such excess (QwenLM/Qwen README, "Profiling of Memory and Speed"). With
# variable lengths reserved can reach ~3x the average allocated (huggingface/peft method_comparison).
VARLEN_VOCAB_SETS = 1.0


@dataclass(frozen=True, slots=True)
class Stack:
    """What the training framework does that changes memory (transformers/TRL, LLaMA-Factory, LitGPT ...).

    Attributes:
        name: preset key.
        logits_bytes_per_vocab: bytes per vocab entry per token held by the logits/loss chain at
            its peak (bf16 logits, fp32 upcast, saved log-softmax, its gradient). 0 with chunked or
            fused cross-entropy (one chunk is counted instead).
        norm_bytes_per_hidden: bytes per hidden unit per token saved by the two RMSNorms of a
            layer: inputs and outputs (2+2+2+2) plus, for HF/LitGPT RMSNorm that upcasts to fp32
            and saves the copy, 2 x 4 more (16); fused norms save 8. LayerNorm architectures
            (Phi-1/2, GPT-NeoX) always use 8.
        adapter_bytes: dtype size of LoRA/DoRA parameters on a 16-bit base (PEFT fp32: 4).
        qlora_adapter_bytes: the same on a k-bit base (TRL >= 0.2x casts them to bf16: 2).
        kbit_upcast: ``prepare_model_for_kbit_training`` casts every non-quantized parameter
            (embeddings, head, norms) to fp32 (LLaMA-Factory, Axolotl, older TRL).
        chunk_tokens: tokens per chunk of a chunked loss.
    """

    name: str
    logits_bytes_per_vocab: float
    norm_bytes_per_hidden: float
    adapter_bytes: int
    qlora_adapter_bytes: int
    kbit_upcast: bool
    chunk_tokens: int = 0
    description: str = ""


STACKS: dict[str, Stack] = {
    # HF transformers >= 4.46 ForCausalLMLoss: bf16 logits (2) + fp32 upcast (4) + saved log-softmax
    # (4) + the gradient pieces alive at the start of backward: k ~ 11-12 measured from the
    # QwenLM/Qwen README slope and the Cut Cross-Entropy paper on Gemma-2 (arXiv:2411.09009).
    "hf": Stack("hf", 12.0, 16.0, 4, 2, False,
                description="transformers/TRL/PEFT (what `tuneterm train` runs)"),
    # transformers <= 4.45 era trainers (TRL < 0.12, ms-swift 1.x, many forks): logits upcast inside
    # forward plus a contiguous fp32 shift copy (k ~ 14-18; 17.5 from the context-length limits
    # of HF+FA2 in the unslothai/unsloth README) and prepare_model_for_kbit_training on k-bit models.
    "hf-legacy": Stack("hf-legacy", 17.5, 16.0, 4, 4, True,
                       description="transformers <= 4.45 trainers (fp32 logits copies, k-bit prep)"),
    # LLaMA-Factory / Axolotl / older TRL: same model code, plus k-bit preparation (fp32 upcast).
    "peft-kbit": Stack("peft-kbit", 12.0, 16.0, 4, 4, True,
                       description="LLaMA-Factory/Axolotl (prepare_model_for_kbit_training)"),
    # LitGPT bf16-true with chunked lm_head/CE (128-token chunks), bf16 adapters and Adam states.
    "litgpt": Stack("litgpt", 0.0, 16.0, 2, 2, False, chunk_tokens=128,
                    description="LitGPT bf16-true, chunked cross-entropy"),
    # Liger / Cut-Cross-Entropy on top of HF: no full logits tensor.
    "hf-fused-ce": Stack("hf-fused-ce", 0.0, 16.0, 4, 2, False, chunk_tokens=1024,
                         description="HF with Liger/Cut-CE fused linear cross-entropy"),
}


@dataclass(frozen=True, slots=True)
class TrainSetup:
    """Everything about a run that moves its memory, in TRL vocabulary where one exists.

    Attributes:
        method: ``full``, ``lora``, ``qlora`` (4-bit NF4 base + LoRA) or ``dora``.
        lora_r: LoRA rank.
        lora_targets: ``"all-linear"`` or module names (``("q_proj", "v_proj")``).
        lora_dropout: > 0 makes PEFT keep a dropped-out copy of each adapted module's input.
        batch_size: per-device micro-batch (``per_device_train_batch_size``).
        seq_len: tokens of the longest padded sample (``max_length``: the worst batch sets the peak).
        gradient_checkpointing: recompute activations layer by layer in backward.
        optimizer: TRL/transformers ``optim`` name.
        trainer: ``sft``, ``dpo`` or ``grpo``.
        gpus: data-parallel world size.
        sharding: ``ddp``, ``zero2``, ``zero3`` or ``fsdp`` (FULL_SHARD).
        cpu_offload: optimizer states (and with zero3/fsdp, parameters) live on the CPU.
        attn: ``sdpa``, ``flash_attention_2`` or ``eager``.
        dtype: load dtype of the weights (``bfloat16``, ``float16`` or ``float32``; float32 with
            bf16 autocast is "mixed precision", 16-18 bytes per trained parameter).
        quant: ``None``, ``nf4`` or ``int8`` (qlora implies nf4).
        double_quant: NF4 nested quantization (``use_bnb_nested_quant``).
        grad_accum: gradient accumulation steps (>1 keeps gradients alive through forward).
        stack: key of :data:`STACKS`.
        num_generations, max_prompt_length, max_completion_length: GRPO shapes.
        ref_model: a separate frozen reference model is resident (DPO full FT, GRPO beta > 0);
            ``None`` picks TRL's default for the trainer and method.
        use_vllm: GRPO generation through vLLM colocated (a fixed pool of GPU memory).
        vllm_gpu_memory_utilization: that pool as a fraction of the GPU.
        gpu_total_gib: capacity of one GPU (for the vLLM pool and the cap on cached blocks);
            None if unknown.
        mean_sample_tokens: mean tokens per sample of the dataset (before truncation) when batches
            are *not* of fixed shape: no packing, padding only to the longest sample of the batch,
            so the sequence length changes from step to step and the allocator's cache is never
            emptied. ``None`` (default) means fixed shapes (packed, or padded to ``seq_len``).
            Moves only the reserved and device peaks (see :data:`VARLEN_VOCAB_SETS`); with
            ``gpu_total_gib`` set, that extra stops at the GPU's capacity (the allocator frees
            cached blocks before it raises OOM).
    """

    method: str = "lora"
    lora_r: int = 16
    lora_targets: tuple[str, ...] | str = "all-linear"
    lora_dropout: float = 0.05
    batch_size: int = 1
    seq_len: int = 1024
    gradient_checkpointing: bool = True
    optimizer: str = "adamw_torch_fused"
    trainer: str = "sft"
    gpus: int = 1
    sharding: str = "ddp"
    cpu_offload: bool = False
    attn: str = "sdpa"
    dtype: str = "bfloat16"
    quant: str | None = None
    double_quant: bool = False
    grad_accum: int = 1
    stack: str = "hf"
    num_generations: int = 8
    max_prompt_length: int = 512
    max_completion_length: int = 256
    ref_model: bool | None = None
    use_vllm: bool = False
    vllm_gpu_memory_utilization: float = 0.3
    gpu_total_gib: float | None = None
    mean_sample_tokens: int | None = None

    def validated(self) -> TrainSetup:
        """Check values and fill implied ones (qlora → nf4). Raises ConfigError, one line."""
        if self.method not in METHODS:
            raise ConfigError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.trainer not in TRAINERS:
            raise ConfigError(f"trainer must be one of {', '.join(TRAINERS)}, got {self.trainer!r}")
        if self.sharding not in SHARDING:
            raise ConfigError(f"sharding must be one of {', '.join(SHARDING)}, got {self.sharding!r}")
        if self.attn not in ATTENTION:
            raise ConfigError(f"attention must be one of {', '.join(ATTENTION)}, got {self.attn!r}")
        if self.stack not in STACKS:
            raise ConfigError(f"stack must be one of {', '.join(STACKS)}, got {self.stack!r}")
        if self.dtype not in ("bfloat16", "float16", "float32"):
            raise ConfigError(f"dtype must be bfloat16, float16 or float32, got {self.dtype!r}")
        for name in ("lora_r", "batch_size", "seq_len", "gpus", "grad_accum", "num_generations"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name} must be a positive integer, got {v!r}")
        m = self.mean_sample_tokens
        if m is not None and (isinstance(m, bool) or not isinstance(m, int) or m < 1):
            raise ConfigError(f"mean_sample_tokens must be a positive integer or None, got {m!r}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ConfigError(f"lora_dropout must be in [0, 1), got {self.lora_dropout!r}")
        quant = self.quant
        if self.method == "qlora":
            quant = "nf4"
        if quant not in (None, "nf4", "int8"):
            raise ConfigError(f"quant must be nf4 or int8, got {quant!r}")
        if quant is not None and self.method == "full":
            raise ConfigError("full fine-tuning of a quantized model is not possible; use qlora")
        return replace(self, quant=quant)


@dataclass(frozen=True, slots=True)
class Component:
    """One line of the breakdown: a name, bytes, and how it was computed."""

    name: str
    bytes: float
    detail: str
    phase: str = "static"  # static | forward | backward | step | generate | reference | overhead

    @property
    def gib(self) -> float:
        """Size in GiB."""
        return self.bytes / GIB

    def to_dict(self) -> dict[str, Any]:
        """JSON form: name, gib (3 decimals), phase, detail."""
        return {"name": self.name, "gib": round(self.gib, 3), "phase": self.phase, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class MemoryEstimate:
    """Result of :func:`estimate`, per GPU.

    ``components`` is the breakdown; ``phases`` maps each transient phase to its bytes (the peak
    takes the largest); ``peak_phase`` names it.
    """

    setup: TrainSetup
    model: ModelFacts
    components: tuple[Component, ...]
    phases: dict[str, float]
    peak_phase: str
    allocated: float
    reserved: float
    device: float
    trainable_params: int
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def peak_gib(self) -> float:
        """Predicted device-level peak per GPU, GiB (the number that decides an OOM)."""
        return self.device / GIB

    @property
    def allocated_gib(self) -> float:
        """Predicted ``torch.cuda.max_memory_allocated``, GiB."""
        return self.allocated / GIB

    @property
    def reserved_gib(self) -> float:
        """Predicted ``torch.cuda.max_memory_reserved``, GiB."""
        return self.reserved / GIB

    def fits(self, capacity_gib: float, headroom: float = 0.0) -> bool:
        """True when the device peak plus ``headroom`` (a fraction) fits in ``capacity_gib``."""
        return self.peak_gib * (1.0 + headroom) <= capacity_gib

    def to_dict(self) -> dict[str, Any]:
        """JSON form: ``peak_gib`` at the top, the breakdown beside it."""
        return {
            "peak_gib": round(self.peak_gib, 3),
            "allocated_gib": round(self.allocated_gib, 3),
            "reserved_gib": round(self.reserved_gib, 3),
            "peak_phase": self.peak_phase,
            "phases_gib": {k: round(v / GIB, 3) for k, v in self.phases.items()},
            "breakdown": [c.to_dict() for c in self.components],
            "trainable_params": self.trainable_params,
            "setup": {k: (list(v) if isinstance(v, tuple) else v) for k, v in _setup_dict(self.setup).items()},
            "notes": list(self.notes),
        }


def _setup_dict(s: TrainSetup) -> dict[str, Any]:
    return {name: getattr(s, name) for name in TrainSetup.__dataclass_fields__}


# ---------------------------------------------------------------------------- pieces
_OPT_STATE_FACTOR = {  # state bytes per trainable parameter, as a multiple of the param dtype size
    "adamw_torch": 2.0, "adamw_torch_fused": 2.0, "adamw_hf": 2.0, "adamw_apex_fused": 2.0,
    "adamw_torch_xla": 2.0, "adamw_anyprecision": 2.0, "adam": 2.0, "adamw": 2.0,
    "lion_32bit": 1.0, "paged_lion_32bit": 1.0, "sgd": 0.0, "adagrad": 1.0, "rmsprop": 1.0,
    "paged_adamw_32bit": 2.0, "adamw_32bit": 2.0,
}
_OPT_STATE_BYTES_8BIT = {  # absolute state bytes per parameter
    "adamw_8bit": 2.0, "adamw_bnb_8bit": 2.0, "paged_adamw_8bit": 2.0, "bnb_8bit": 2.0,
    "lion_8bit": 1.0, "paged_lion_8bit": 1.0, "adamw_torch_8bit": 2.0,
}


def optimizer_state_bytes(optimizer: str, params: int, param_bytes: int, matrices: list[tuple[int, int]]) -> tuple[float, float, str]:
    """State bytes, step-time temporaries and a description for ``optimizer`` on ``params``.

    ``matrices`` lists the (rows, cols) of the trainable matrices (for Adafactor's factored
    second moment). Unknown names are costed as AdamW, with a note in the description.
    """
    o = optimizer.lower()
    if o in _OPT_STATE_BYTES_8BIT:
        return _OPT_STATE_BYTES_8BIT[o] * params, 0.0, f"{_OPT_STATE_BYTES_8BIT[o]:g} B/param (8-bit states)"
    if o.startswith("adafactor"):
        # factored second moment: one row and one column vector per matrix, fp32
        b = sum(4.0 * (r + c) for r, c in matrices)
        return b, 0.0, "factored second moment, ~4(rows+cols) B per matrix"
    if o in _OPT_STATE_FACTOR:
        f = _OPT_STATE_FACTOR[o]
        # torch's foreach (non-fused) AdamW materialises intermediate lists about one state in size
        temp = params * param_bytes if o in ("adamw_torch", "adamw_hf", "adam", "adamw", "adamw_32bit", "paged_adamw_32bit") else 0.0
        return f * param_bytes * params, temp, f"{f * param_bytes:g} B/param ({f:g} x {param_bytes}-byte states)"
    return 2.0 * param_bytes * params, params * param_bytes, f"unknown optimizer {optimizer!r}: costed as AdamW"


def _dtype_bytes(dtype: str) -> int:
    return 4 if dtype == "float32" else 2


def selected_modules(model: ModelFacts, targets: tuple[str, ...] | str) -> list[LinearModule]:
    """The decoder-layer linears a LoRA target list selects (``all-linear`` selects every one).

    Explicit names match PEFT's suffix rule: ``q_proj`` selects ``...self_attn.q_proj``. Names that
    do not exist in the architecture select nothing (the config check reports them).
    """
    # fused experts are parameters, not modules: target_modules never reaches them
    mods = [m for m in model.linear_modules() if not (model.fused_experts and m.group == "expert")]
    if isinstance(targets, str):
        if targets == "all-linear":
            return mods
        targets = tuple(t.strip() for t in targets.split(",") if t.strip())
    wanted = set(targets)
    return [m for m in mods if m.name in wanted]


def lora_param_count(model: ModelFacts, targets: tuple[str, ...] | str, r: int, dora: bool = False) -> int:
    """Trainable LoRA (and DoRA magnitude) parameters: ``r * (d_in + d_out)`` per adapted linear.

    >>> from tuneterm.plan.facts import table_facts
    >>> lora_param_count(table_facts("meta-llama/Llama-2-7b-hf"), ("q_proj", "v_proj"), 8)
    4194304
    """
    def per_module(m: LinearModule) -> int:
        if m.group == "expert":
            # one adapter per expert (per-expert linears of remote-code MoE models)
            return model.experts * (r * (model.hidden + model.intermediate) + (m.d_out // model.experts if dora else 0))
        return r * (m.d_in + m.d_out) + (m.d_out if dora else 0)

    return model.layers * sum(per_module(m) for m in selected_modules(model, targets))


# ---------------------------------------------------------------------------- estimator
# The estimate is assembled from named terms, one function each; every term returns the bytes and
# the breakdown lines it adds. Shapes use the model's own names (layers, hidden, vocab ...).


@dataclass(frozen=True, slots=True)
class _Batch:
    """Tokens one forward/backward processes, per GPU.

    ``rows`` sequences of ``seq`` tokens (DPO concatenates chosen and rejected; GRPO scores
    prompt + completion), ``tokens`` = rows x seq, ``detail`` the human form.
    """

    rows: int
    seq: int
    tokens: int
    detail: str


def _batch(s: TrainSetup) -> _Batch:
    if s.trainer == "dpo":
        return _Batch(2 * s.batch_size, s.seq_len, 2 * s.batch_size * s.seq_len,
                      f"2 x {s.batch_size} x {s.seq_len} tokens (chosen + rejected)")
    if s.trainer == "grpo":
        seq = s.max_prompt_length + s.max_completion_length
        return _Batch(s.batch_size, seq, s.batch_size * seq,
                      f"{s.batch_size} completions x ({s.max_prompt_length}+{s.max_completion_length}) tokens")
    return _Batch(s.batch_size, s.seq_len, s.batch_size * s.seq_len, f"{s.batch_size} x {s.seq_len} tokens")


def _sharding(s: TrainSetup) -> str:
    """The effective sharding: ``ddp`` on one GPU unless ZeRO/FSDP was asked for explicitly."""
    return s.sharding if s.gpus > 1 or s.sharding != "ddp" else "ddp"


def _nf4_bytes_per_param(double_quant: bool) -> float:
    """Stored bytes per NF4 weight: 4 bits + the block-64 absmax (fp32, or 8-bit with a second-level
    fp32 absmax per 256 blocks under double quantization; QLoRA paper section 3)."""
    return 0.5 + (8 / 64 + 32 / (64 * 256)) / 8 if double_quant else 0.5 + 4 / 64


def weight_term(model: ModelFacts, s: TrainSetup, st: Stack) -> Component:
    """Resident base weights: 16/32-bit, or k-bit linears plus the unquantized rest.

    bitsandbytes replaces only the decoder layers' ``nn.Linear``; embeddings, the output head and
    norms stay in the load dtype, or fp32 when the stack runs PEFT's
    ``prepare_model_for_kbit_training`` ("cast all non INT8 parameters to fp32").
    """
    pc = model.param_counts()
    load_b = _dtype_bytes(s.dtype)
    other_b = 4 if (s.quant and st.kbit_upcast) else load_b
    upcast = " (fp32 upcast by k-bit preparation)" if (s.quant and st.kbit_upcast) else ""
    # bitsandbytes quantizes nn.Linear only: fused experts stay in the load dtype
    experts = model.expert_params if model.fused_experts else 0
    linear = pc.linear - experts
    kept = f" + {experts / 1e9:.2f}B fused expert params at {load_b} B (not quantized)" if experts else ""
    if s.quant == "nf4":
        qb = _nf4_bytes_per_param(s.double_quant)
        size = linear * qb + experts * load_b + pc.unquantized * other_b
        detail = (f"{linear / 1e9:.2f}B linear params in NF4 ({qb:.4f} B/param incl. absmax"
                  f"{', double-quant' if s.double_quant else ''}){kept} + {pc.unquantized / 1e9:.2f}B embeddings/head/norms "
                  f"at {other_b} B{upcast}")
    elif s.quant == "int8":
        row_scales = model.layers * sum(4 * m.d_out for m in model.linear_modules() if not (experts and m.group == "expert"))
        size = linear * 1.0 + row_scales + experts * load_b + pc.unquantized * other_b
        detail = f"{linear / 1e9:.2f}B linear params in int8 (+ row scales){kept} + {pc.unquantized / 1e9:.2f}B at {other_b} B{upcast}"
    else:
        size = pc.total * load_b
        detail = f"{pc.total / 1e9:.2f}B params x {load_b} B ({s.dtype})"
    shard = _sharding(s)
    if shard in ("zero3", "fsdp"):
        size /= s.gpus
        detail += f", sharded over {s.gpus} GPUs ({shard})"
    return Component("weights", size, detail)


@dataclass(frozen=True, slots=True)
class _Trainable:
    """What training adds per GPU: trainable parameters, their gradients and optimizer state."""

    params: int
    param_bytes: int
    grads: float  # per GPU, after sharding
    optimizer: float  # per GPU, after sharding; 0 when offloaded
    optimizer_temp: float  # step-time temporaries
    paged: bool
    components: tuple[Component, ...]
    notes: tuple[str, ...]


def trainable_terms(model: ModelFacts, s: TrainSetup, st: Stack) -> _Trainable:
    """Adapters (or the whole model), gradients, optimizer states and ZeRO's fp32 master copies."""
    n, shard, peft = s.gpus, _sharding(s), s.method != "full"
    notes: list[str] = []
    comps: list[Component] = []
    if peft:
        targets = selected_modules(model, s.lora_targets)
        trainable = lora_param_count(model, tuple(m.name for m in targets), s.lora_r, s.method == "dora")
        if not targets:
            notes.append("no LoRA target module exists in this architecture: nothing would train")
        tb = st.qlora_adapter_bytes if s.quant else st.adapter_bytes
        matrices = [(m.d_in, s.lora_r) for m in targets] * model.layers + [(s.lora_r, m.d_out) for m in targets] * model.layers
        comps.append(Component("adapter weights", trainable * tb,
                               f"{trainable / 1e6:.1f}M {'DoRA' if s.method == 'dora' else 'LoRA'} params (r={s.lora_r}, "
                               f"{len(targets)} modules/layer) x {tb} B"))
    else:
        trainable, tb = model.params, _dtype_bytes(s.dtype)
        matrices = ([(m.d_in, m.d_out) for m in model.linear_modules()] * model.layers
                    + [(model.vocab, model.hidden)] * (1 if model.tied else 2))
        if s.dtype == "float32":
            notes.append("float32 weights with bf16/fp16 autocast: 16-18 B per parameter (load in bfloat16 for 8)")
    grad_bytes = trainable * tb
    opt_bytes, opt_temp, opt_detail = optimizer_state_bytes(s.optimizer, trainable, tb, matrices)
    paged = s.optimizer.lower().startswith("paged_")
    master = 0.0
    if shard == "ddp":
        grads, opt = grad_bytes, opt_bytes
        if n > 1 and not peft:
            notes.append("DDP keeps a gradient-sized bucket copy (gradient_as_bucket_view=False)")
    elif shard == "zero2":
        # DeepSpeed mixed precision: 16-bit params whole; 16-bit grads, fp32 grads, fp32 master and
        # fp32 states partitioned over N (2 + 18/N B/param, DeepSpeed's own estimator)
        grads = grad_bytes / n
        master = trainable * (4 + 4) / n if tb == 2 else 0.0
        opt = opt_bytes * (4 / tb if tb == 2 else 1.0) / n
    else:  # zero3 / fsdp
        grads = grad_bytes / n
        master = trainable * 4 / n if (tb == 2 and shard == "zero3") else 0.0
        opt = opt_bytes * (4 / tb if (tb == 2 and shard == "zero3") else 1.0) / n
    split = f", / {n} GPUs" if shard != "ddp" else ""
    if s.cpu_offload:
        comps.append(Component("optimizer states", 0.0, f"offloaded to CPU ({(opt_bytes + master * n) / GIB:.1f} GiB of CPU RAM)"))
        opt, master, opt_temp = 0.0, 0.0, 0.0
    else:
        if shard != "ddp" and tb == 2 and (shard != "fsdp"):
            # DeepSpeed keeps the optimizer states in fp32 whatever the model dtype: label the fp32 size
            opt_detail = optimizer_state_bytes(s.optimizer, trainable, 4, matrices)[2] + " (DeepSpeed keeps fp32 states)"
        comps.append(Component("optimizer states", 0.0 if paged else opt,
                               f"{s.optimizer}: {opt_detail}{split}"
                               + ("; paged (unified memory, not in torch stats; counted at device level)" if paged else "")))
        if master:
            comps.append(Component("fp32 master weights + grads", master, f"{shard} mixed precision, / {n} GPUs"))
    persist = s.grad_accum > 1
    comps.append(Component("gradients", grads, f"{trainable / 1e6:.1f}M trainable x {tb} B"
                           + (f" / {n}" if shard != "ddp" else "")
                           + ("; kept through forward (gradient accumulation)" if persist else "; freed after each step"),
                           phase="static" if persist else "backward"))
    return _Trainable(trainable, tb, grads, opt, opt_temp, paged, tuple(comps), tuple(notes))


def reference_term(model: ModelFacts, s: TrainSetup) -> tuple[Component | None, str | None]:
    """A frozen reference model (DPO full fine-tuning by default), or a note why there is none."""
    peft = s.method != "full"
    ref = s.ref_model if s.ref_model is not None else (s.trainer == "dpo" and not peft)
    if ref:
        pc = model.param_counts()
        load_b = _dtype_bytes(s.dtype)
        size = pc.total * load_b / (s.gpus if _sharding(s) in ("zero3", "fsdp") else 1)
        return Component("reference model", size, f"frozen copy of the policy ({pc.total / 1e9:.2f}B x {load_b} B)"), None
    if s.trainer == "dpo" and peft:
        return None, "DPO with an adapter uses the base model with adapters disabled as reference: no second copy"
    return None, None


def activation_width(model: ModelFacts, m: LinearModule) -> int:
    """Input width of ``m`` that one token's activations span: an expert projection of a mixture
    of experts (modelled as one linear over every expert) sees only the routed experts."""
    if m.group == "expert" and m.d_in == model.intermediate * model.experts:
        return model.intermediate * max(1, model.experts_per_token)
    return m.d_in


def layer_bytes_per_token(model: ModelFacts, s: TrainSetup, st: Stack) -> float:
    """Bytes one decoder layer saves for backward per token (Korthikanti et al., arXiv:2205.05198, adapted to
    Llama-style layers).

    The norms' inputs/outputs (and fp32 copies for HF-style RMSNorm; LayerNorm architectures save
    only their 16-bit input/output), q and the attention output (2 B each), k and v (2 B each of
    the KV width), the MLP's saved tensors (gate, up, act(gate), product for a gated MLP; two for
    a plain one) over the experts a token is routed to, PEFT's dropout copies, DoRA's outputs.
    """
    norm_b = 8.0 if model.bias == "all" else st.norm_bytes_per_hidden
    per_token = norm_b * model.hidden + 4 * model.q_width + 4 * model.kv_width
    per_token += (8 if model.mlp == "gated" else 4) * model.active_intermediate
    if s.method != "full":
        targets = selected_modules(model, s.lora_targets)
        if s.lora_dropout > 0:
            per_token += sum(3 * activation_width(model, m) for m in targets)  # dropout(x) (2 B) + mask (1 B) per module
        if s.method == "dora":
            per_token += sum(4 * m.d_out for m in targets)  # base and LoRA outputs for the magnitude rescale
    return per_token


def kbit_kept_inputs_per_token(model: ModelFacts, s: TrainSetup, st: Stack) -> float:
    """Bytes per token and layer that 4-bit linears keep for backward beyond what a 16-bit layer keeps.

    bitsandbytes' ``MatMul4Bit.forward`` stores its input (``ctx.tensors = (A, B)``) whenever any
    input needs a gradient, although the input gradient alone does not need it; a frozen 16-bit
    ``nn.Linear`` keeps only its weight. So each distinct input of a quantized linear stays alive
    until backward unless something else keeps it already (a LoRA adapter on that module). When
    k-bit preparation left the residual stream in fp32, each module casts its input to the
    16-bit compute dtype separately and keeps its own copy.
    """
    if not s.quant:
        return 0.0
    mods = model.linear_modules()
    if st.kbit_upcast:
        return float(sum(2 * activation_width(model, m) for m in mods))
    targeted = {m.name for m in selected_modules(model, s.lora_targets)} if s.method != "full" else set()
    groups: dict[str, tuple[int, bool]] = {}  # input tensor -> (width, kept by an adapter)
    for m in mods:
        key = _input_group(model, m)
        width, kept = groups.get(key, (activation_width(model, m), False))
        groups[key] = (width, kept or m.name in targeted)
    return float(sum(2 * width for width, kept in groups.values() if not kept))


def _input_group(model: ModelFacts, m: LinearModule) -> str:
    """Which tensor feeds linear ``m``: q/k/v share the first norm's output, gate/up the second's
    (Phi-1/2 run attention and MLP in parallel on one norm's output), the others their own."""
    if m.group == "attn":
        return "attn-in" if m.d_in == model.hidden and m.name not in ("o_proj", "dense", "c_proj") else f"attn-{m.name}"
    if m.d_in == model.hidden:
        return "attn-in" if model.model_type == "phi" else "mlp-in"
    return f"mlp-{m.name}"


@dataclass(frozen=True, slots=True)
class _Activations:
    saved: float  # alive at the end of forward
    recompute: float  # one layer rebuilt in backward (checkpointing), else 0
    components: tuple[Component, ...]


def activation_terms(model: ModelFacts, s: TrainSetup, st: Stack, b: _Batch) -> _Activations:
    """Saved activations (all layers, or checkpoints + one recomputed layer) with eager attention's
    s^2 scores, 4-bit linears' kept inputs, and fp32 checkpoints of an upcast residual stream."""
    per_token = layer_bytes_per_token(model, s, st) + kbit_kept_inputs_per_token(model, s, st)
    eager = EAGER_BYTES_PER_SCORE * model.heads * b.seq * b.tokens if s.attn == "eager" else 0.0
    layer = b.tokens * per_token + eager
    h = model.hidden
    if s.gradient_checkpointing:
        # k-bit preparation casts the embeddings to fp32, so every layer input (the checkpoint) is fp32
        ck_b = 4 if (s.quant and st.kbit_upcast) else 2
        saved = model.layers * ck_b * b.tokens * h
        comps = [Component("activations (saved for backward)", saved,
                           f"checkpoints: {model.layers} layers x {ck_b} B x {h} x {b.detail}"
                           + (" (fp32 residual stream after k-bit preparation)" if ck_b == 4 else ""), phase="forward"),
                 Component("recomputed layer (checkpointing)", layer,
                           f"one layer's activations rebuilt in backward ({per_token / h:.1f}h B/token)", phase="backward")]
        return _Activations(saved, layer, tuple(comps))
    saved = model.layers * layer
    detail = (f"{model.layers} layers x {per_token / h:.1f}h B/token ({b.detail})"
              + (", eager attention s^2 scores" if eager else "")
              + (", incl. inputs kept by 4-bit matmuls" if s.quant else ""))
    return _Activations(saved, 0.0, (Component("activations (saved for backward)", saved, detail, phase="forward"),))


def logits_term(model: ModelFacts, st: Stack, b: _Batch) -> Component:
    """The logits/loss chain at its peak: tokens x vocab x k, or one chunk with a chunked/fused loss."""
    k = st.logits_bytes_per_vocab
    if k > 0:
        return Component("logits + cross-entropy", b.tokens * model.vocab * k,
                         f"{b.tokens} tokens x vocab {model.vocab} x {k:g} B (bf16 logits, fp32 upcast, log-softmax, grad)",
                         phase="forward")
    return Component("logits + cross-entropy", min(b.tokens, st.chunk_tokens) * model.vocab * 12.0,
                     f"chunked/fused cross-entropy: one {st.chunk_tokens}-token chunk x vocab {model.vocab} x 12 B", phase="forward")


def quant_transient_terms(model: ModelFacts, s: TrainSetup, st: Stack) -> tuple[Component, ...]:
    """Transients of a k-bit base, alive in forward and backward.

    * bitsandbytes dequantizes each 4-bit weight into a fresh 16-bit tensor for every matmul: one
      copy of the largest linear in forward and one in backward.
    * With the head upcast to fp32 by k-bit preparation, bf16 autocast casts it to bf16 for the
      logits matmul and autograd keeps that copy for the input gradient until backward
      (vocab x hidden x 2 B).
    """
    if not s.quant:
        return ()
    comps = [Component("dequantised weight (transient)", 2 * max(m.params for m in model.linear_modules()) * 2,
                       "bf16 copy of the largest linear, forward + backward", phase="forward")]
    if st.kbit_upcast:
        comps.append(Component("bf16 autocast copy of the fp32 head", model.vocab * model.hidden * 2.0,
                               f"vocab {model.vocab} x hidden {model.hidden} x 2 B, kept from forward to backward",
                               phase="forward"))
    return tuple(comps)


def distributed_terms(model: ModelFacts, s: TrainSetup, grad_bytes_full: float) -> tuple[Component, ...]:
    """DDP gradient buckets, DeepSpeed overlap_comm buckets, gathered ZeRO-3/FSDP layers."""
    n, shard = s.gpus, _sharding(s)
    if n <= 1:
        return ()
    comps: list[Component] = []
    if shard == "ddp" and s.method == "full":
        comps.append(Component("DDP gradient buckets", grad_bytes_full, "one gradient-sized copy", phase="backward"))
    elif shard in ("zero2", "zero3"):
        h = model.hidden
        comps.append(Component("DeepSpeed communication buckets", 2 * 4.5 * 2 * h * h,
                               "overlap_comm, reduce/allgather buckets = hidden^2", phase="backward"))
    if shard in ("zero3", "fsdp"):
        unit = 2 * sum(m.params for m in model.linear_modules()) * _dtype_bytes(s.dtype)
        comps.append(Component("gathered layers in flight", unit, f"{shard}: current + prefetched decoder layer", phase="forward"))
    return tuple(comps)


def generation_terms(model: ModelFacts, s: TrainSetup, b: _Batch) -> tuple[Component, ...]:
    """GRPO generation: a colocated vLLM pool, or HF ``generate``'s KV cache and last logits."""
    if s.trainer != "grpo":
        return ()
    if s.use_vllm:
        pool = (s.gpu_total_gib or 0.0) * GIB * s.vllm_gpu_memory_utilization
        return (Component("vLLM pool (colocate)", pool, f"vllm_gpu_memory_utilization {s.vllm_gpu_memory_utilization} x GPU"
                          + ("" if s.gpu_total_gib else " (GPU size unknown: not counted)"), phase="overhead"),)
    rows = s.batch_size * s.grad_accum
    kv = 2 * model.layers * model.kv_width * 2 * b.seq * rows
    return (Component("generation KV cache", kv + rows * model.vocab * 4 * 2,
                      f"HF generate: 2 x {model.layers} layers x {model.kv_width} x 2 B x {b.seq} tokens x {rows} sequences",
                      phase="generate"),)


def _bytes(comps: tuple[Component, ...] | list[Component], name: str) -> float:
    return sum(c.bytes for c in comps if c.name == name)


def estimate(model: ModelFacts, setup: TrainSetup) -> MemoryEstimate:
    """Estimate the per-GPU peak memory of training ``model`` with ``setup``.

    The static terms (weights, adapters, optimizer states, a reference model) are always resident;
    the transient ones are grouped into phases (forward with the loss, backward, optimizer step,
    GRPO generation) and only the largest phase adds to the peak.

    Returns:
        A :class:`MemoryEstimate` with the breakdown, the phases and the three peaks.

    Raises:
        ConfigError: an invalid setup (unknown method, non-positive sizes ...).
    """
    s = setup.validated()
    st = STACKS[s.stack]
    b = _batch(s)
    n, shard = s.gpus, _sharding(s)
    comps: list[Component] = [weight_term(model, s, st)]
    tr = trainable_terms(model, s, st)
    comps += tr.components
    notes: list[str] = list(tr.notes)
    ref, ref_note = reference_term(model, s)
    comps += [ref] if ref else []
    notes += [ref_note] if ref_note else []
    acts = activation_terms(model, s, st, b)
    comps += acts.components
    logits = logits_term(model, st, b)
    quant = quant_transient_terms(model, s, st)
    dist = distributed_terms(model, s, tr.params * tr.param_bytes)
    gen = generation_terms(model, s, b)
    comps += [logits, *quant, *dist, *gen]

    # --- phases: the peak is the static state plus the largest transient phase ------------------
    static = sum(c.bytes for c in comps if c.phase == "static")
    grads_live = 0.0 if s.grad_accum > 1 else tr.grads
    quant_b = sum(c.bytes for c in quant)
    ddp_bucket = _bytes(dist, "DDP gradient buckets")
    dist_b = sum(c.bytes for c in dist)
    # Backward starts with every saved tensor alive (checkpoints + the first rebuilt layer) and ends
    # with every gradient alive; activations are freed as gradients appear, so the two ends bound it.
    bwd_start = (acts.saved if s.gradient_checkpointing else 0.0) + acts.recompute
    bwd_end = grads_live + acts.recompute
    phases = {
        "forward+loss": acts.saved + logits.bytes + quant_b + (dist_b - ddp_bucket),
        "backward": max(bwd_start, bwd_end) + quant_b + dist_b,
        "optimizer step": grads_live + tr.optimizer_temp,
    }
    gen_b = _bytes(gen, "generation KV cache")
    if gen_b:
        phases["generate"] = gen_b + quant_b
    peak_phase = max(phases, key=lambda k: phases[k])
    allocated = static + phases[peak_phase]
    reserved = allocated * (1.0 + ALLOCATOR_OVERHEAD)
    varlen = _varlen_cache(s, st, logits.bytes, b.seq, reserved)
    reserved += varlen
    context = CUDA_CONTEXT_GIB * GIB + (NCCL_GIB * GIB if n > 1 else 0.0)
    overhead = context + (tr.optimizer if tr.paged and not s.cpu_offload else 0.0)
    overhead += sum(c.bytes for c in comps if c.phase == "overhead")
    comps.append(Component("CUDA context + kernels", CUDA_CONTEXT_GIB * GIB, "per process (CUDA runtime and loaded kernels)", phase="overhead"))
    if n > 1:
        comps.append(Component("NCCL buffers", NCCL_GIB * GIB, "per rank", phase="overhead"))
    comps.append(Component("allocator overhead", reserved - allocated - varlen, f"{ALLOCATOR_OVERHEAD:.0%} of the allocated peak (caching allocator)", phase="overhead"))
    if varlen:
        comps.append(Component("cached blocks of shorter batches", varlen,
                               f"variable lengths (mean {s.mean_sample_tokens} tokens/sample): one more set of vocab-sized "
                               f"logits/loss blocks for a {min(s.mean_sample_tokens or 0, b.seq)}-token batch stays reserved", phase="overhead"))
        notes.append("variable-length batches fragment the allocator's cache; packing or padding to max_length removes "
                     f"about {varlen / GIB:.1f} GiB of reserved memory")
    if s.seq_len and model.max_position and b.seq > model.max_position:
        notes.append(f"sequence length {b.seq} exceeds the model's max_position_embeddings {model.max_position}")
    if model.is_guess:
        notes.append("model shape GUESSED from its name: treat the estimate as rough")
    if model.fused_experts and s.method != "full":
        notes.append("the experts are fused parameters (transformers 5): LoRA target_modules reach attention and "
                     "dense/shared MLPs only (lora_target_parameters reaches the experts)"
                     + ("; bitsandbytes leaves the experts in 16-bit" if s.quant else ""))
    if shard != "ddp" and n == 1:
        notes.append(f"{shard} on one GPU shards nothing")
    return MemoryEstimate(setup=s, model=model, components=tuple(comps), phases=phases, peak_phase=peak_phase,
                          allocated=allocated, reserved=reserved, device=reserved + overhead,
                          trainable_params=tr.params, notes=tuple(notes))


def _varlen_cache(s: TrainSetup, st: Stack, logits: float, seq: int, reserved: float) -> float:
    """Reserved bytes that variable-length batches leave cached (see :data:`VARLEN_VOCAB_SETS`).

    Chunked/fused cross-entropy allocates fixed-size chunks: nothing vocab-sized to fragment.
    Under memory pressure the allocator frees its unused cached blocks and retries before raising
    OOM, so cached blocks never push reserved past the GPU (ms-swift row 149, batch 8: 76.1 GiB
    reserved on an 80 GiB A100).
    """
    if s.mean_sample_tokens is None or st.logits_bytes_per_vocab <= 0:
        return 0.0
    typical = min(s.mean_sample_tokens, seq)
    varlen = VARLEN_VOCAB_SETS * logits * typical / seq * (1.0 + ALLOCATOR_OVERHEAD)
    if s.gpu_total_gib:
        room = s.gpu_total_gib * GIB - CUDA_CONTEXT_GIB * GIB - (NCCL_GIB * GIB if s.gpus > 1 else 0.0) - reserved
        varlen = max(0.0, min(varlen, room))
    return varlen
