"""Published measured peak-memory points used to check the estimator (research/memory.md section 5).

Each point names its memory.md row, its source, the exact configuration the source states, the
metric the source measured (allocated / reserved / device) and the unit it printed (GB = 1e9
bytes, GiB = 2**30). Only well-specified HF/PEFT-stack and LitGPT points are used, as the brief
asks: PEFT's method-comparison benchmark (5.H), the Qwen README (5.D), ms-swift's benchmark (5.E)
and LitGPT's resource tables (5.C). Points whose configuration is ambiguous (Qwen full fine-tune,
GPTQ checkpoints, DeepSpeed multi-node totals) are left out.

ms-swift points carry ``mean_sample_tokens=3234`` (its dataset is unpacked with lengths 3234 +-
2548 tokens and it reports max_memory_reserved over the run: the allocator's cache fragments, see
``tuneterm.plan.memory.VARLEN_VOCAB_SETS``) and ``gpu_total_gib=80`` (A100-80GB).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Point:
    row: str
    source: str
    model: str
    measured: float
    unit: str  # "GB" or "GiB"
    metric: str  # "allocated" | "reserved" | "device"
    setup: dict[str, Any] = field(default_factory=dict)
    # Why a point is reported but kept out of the accuracy median ("" = counted).
    excluded: str = ""


def _peft(row: str, measured_bytes: int, **kw: Any) -> Point:
    base = dict(batch_size=4, seq_len=768, gradient_checkpointing=False, attn="sdpa", optimizer="adamw_torch",
                lora_r=32, lora_targets=("q_proj", "v_proj"), lora_dropout=0.0, stack="hf")
    base.update(kw)
    return Point(row, "PEFT MetaMathQA benchmark [S18]", "meta-llama/Llama-3.2-3B", measured_bytes / 1e9, "GB", "reserved", base)


def _litgpt(row: str, model: str, seq: int, targets: tuple[str, ...], mb: int, quant: str | None, gb: float) -> Point:
    setup = dict(method="qlora" if quant else "lora", double_quant=quant == "nf4-dq", batch_size=mb, seq_len=seq,
                 gradient_checkpointing=False, lora_r=8, lora_targets=targets, lora_dropout=0.05,
                 optimizer="adamw_torch_fused", stack="litgpt", attn="sdpa")
    return Point(row, "LitGPT resource tables [S6]", model, gb, "GB", "allocated", setup)


def _qwen(row: str, model: str, seq: int, g: float) -> Point:
    setup = dict(method="lora", lora_r=64, lora_targets=("c_attn", "c_proj", "w1", "w2"), lora_dropout=0.05,
                 batch_size=1, seq_len=seq, gradient_checkpointing=True, attn="flash_attention_2", grad_accum=8,
                 optimizer="adamw_torch", stack="hf")
    return Point(row, "Qwen README profiling [S19]", model, g, "GiB", "device", setup)


def _unsloth(row: str, gpu_gib: float, seq: int) -> Point:
    # Unsloth README "Context length benchmarks", HF + FA2 column: Llama-3.1-8B-Instruct, 4-bit QLoRA
    # on every linear, r 32, batch 1, padded to length; the largest context that fit on the card, so
    # the device-level peak at that length equals the card's memory. The HF baseline of that time
    # (TRL < 0.12, transformers 4.4x) called prepare_model_for_kbit_training and checkpointed every
    # layer; Unsloth's examples use adamw_8bit and lora_dropout 0.
    setup = dict(method="qlora", lora_r=32, lora_targets="all-linear", lora_dropout=0.0, batch_size=1, seq_len=seq,
                 gradient_checkpointing=True, attn="flash_attention_2", optimizer="adamw_8bit", stack="hf-legacy",
                 gpu_total_gib=gpu_gib)
    return Point(row, "Unsloth context-length boundaries [S13]", "meta-llama/Llama-3.1-8B", gpu_gib, "GiB", "device", setup)


def _swift(row: str, model: str, seq: int, gib: float, excluded: str = "", **kw: Any) -> Point:
    setup = dict(method="lora", lora_r=8, lora_targets=("c_attn",), lora_dropout=0.05, batch_size=1, seq_len=seq,
                 gradient_checkpointing=True, attn="flash_attention_2", grad_accum=16, optimizer="adamw_torch",
                 # ms-swift 1.x ran transformers 4.3x and called prepare_model_for_kbit_training
                 stack="hf-legacy",
                 # cls-fudan-news-zh, unpacked, bs 1: 3234.4 +- 2547.5 tokens per sample (Benchmark.md)
                 mean_sample_tokens=3234,
                 # A100-SXM4-80GB: 80 GiB
                 gpu_total_gib=80.0)
    setup.update(kw)
    return Point(row, "ms-swift benchmark [S20]", model, gib, "GiB", "reserved", setup, excluded)


PHI, STABLE, L7, L13 = "microsoft/phi-1_5", "stabilityai/stablelm-base-alpha-3b", "meta-llama/Llama-2-7b-hf", "meta-llama/Llama-2-13b-hf"
QV = ("q_proj", "v_proj")
NEOX = ("query_key_value",)
Q18, Q7, Q14 = "Qwen/Qwen-1_8B-Chat", "Qwen/Qwen-7B-Chat", "Qwen/Qwen-14B-Chat"

POINTS: list[Point] = [
    # 5.H PEFT benchmark: Llama-3.2-3B, bs 4, <= 768 tokens, no GC, SDPA, AdamW, bytes as logged
    _peft("182", 22_273_851_392, method="lora"),
    _peft("183", 24_540_872_704, method="dora"),
    _peft("184", 37_241_225_216, method="full"),
    # 5.I Unsloth HF + FA2 context boundaries on a 24 GB and an 80 GB card (rows 188, 191)
    _unsloth("188", 24.0, 5789),
    _unsloth("191", 80.0, 28454),
    # 5.C LitGPT: A100-40GB, bf16-true, LoRA q+v r8, no AC, longest Alpaca sample, max allocated (GB)
    _litgpt("17", PHI, 1044, QV, 1, None, 4.82),
    _litgpt("18", PHI, 1044, QV, 1, "nf4", 3.78),
    _litgpt("19", PHI, 1044, QV, 1, "nf4-dq", 3.72),
    _litgpt("20", PHI, 1044, QV, 2, None, 6.76),
    _litgpt("21", PHI, 1044, QV, 4, None, 10.68),
    _litgpt("22", STABLE, 1034, NEOX, 1, None, 9.69),
    _litgpt("23", STABLE, 1034, NEOX, 1, "nf4", 6.35),
    _litgpt("24", STABLE, 1034, NEOX, 1, "nf4-dq", 6.19),
    _litgpt("25", STABLE, 1034, NEOX, 2, None, 12.10),
    _litgpt("26", STABLE, 1034, NEOX, 4, None, 16.92),
    _litgpt("27", L7, 1304, QV, 1, None, 21.30),
    _litgpt("28", L7, 1304, QV, 1, "nf4", 14.14),
    _litgpt("29", L7, 1304, QV, 1, "nf4-dq", 13.84),
    _litgpt("30", L7, 1304, QV, 2, None, 29.07),
    _litgpt("32", L13, 1304, QV, 1, None, 38.12),
    _litgpt("33", L13, 1304, QV, 1, "nf4", 23.14),
    _litgpt("34", L13, 1304, QV, 1, "nf4-dq", 22.55),
    # 5.D Qwen README: A100-80G, FA2, bs 1, GC, LoRA r64 on c_attn/c_proj/w1/w2
    *[_qwen(str(46 + i), Q18, s, g) for i, (s, g) in enumerate(zip((256, 512, 1024, 2048, 4096, 8192), (6.7, 7.4, 8.4, 11.0, 16.2, 21.8)))],
    *[_qwen(str(60 + i), Q7, s, g) for i, (s, g) in enumerate(zip((256, 512, 1024, 2048, 4096, 8192), (20.1, 20.4, 21.5, 23.8, 29.7, 36.6)))],
    _qwen("78", Q14, 256, 34.6), _qwen("79", Q14, 2048, 37.4), _qwen("80", Q14, 8192, 55.2),
    # 5.E ms-swift: A100-80G, bs 1, GC, FA, LoRA r8 on c_attn, max_length varied
    # Rows 101-105 (qwen-1_8b) were left out in session 1 as "a smaller model with a higher per-token
    # cost". Their increments per length step equal the 7B rows' within 0.4 GiB (512->1024: 3.72 vs
    # 3.72 GiB; 4096->8192: 13.23 vs 13.10): the excess is vocab-sized and model-independent, which
    # the variable-length term now models, so they are counted.
    *[_swift(str(101 + i), Q18, s, g) for i, (s, g) in enumerate(zip((512, 1024, 2048, 4096, 8192), (6.99, 10.71, 16.35, 23.80, 37.03)))],
    *[_swift(str(106 + i), Q7, s, g) for i, (s, g) in enumerate(zip((512, 1024, 2048, 4096, 8192), (18.01, 21.73, 27.74, 35.31, 48.41)))],
    *[_swift(str(111 + i), Q14, s, g) for i, (s, g) in enumerate(zip((512, 1024, 2048, 4096, 8192), (30.14, 34.43, 40.14, 47.95, 60.74)))],
    _swift("92", Q7, 2048, 23.85, method="qlora"),
    _swift("150", Q7, 2048, 37.70, gradient_checkpointing=False),
    _swift("151", Q7, 2048, 27.71, attn="eager"),
    _swift("152", Q7, 2048, 57.67, attn="eager", gradient_checkpointing=False),
    _swift("153", Q7, 2048, 27.72, lora_r=2),
    _swift("154", Q7, 2048, 27.85, lora_r=64),
    _swift("155", Q7, 2048, 27.87, lora_targets="all-linear"),
    # Added in session 2 (same Benchmark.md, same defaults, one setting varied each):
    # batch size 2 / 4 / 8 (padded to the longest of the batch), and gradient accumulation 1
    *[_swift(str(147 + i), Q7, 2048, g, batch_size=b) for i, (b, g) in enumerate(zip((2, 4, 8), (43.11, 63.81, 76.14)))],
    _swift("156", Q7, 2048, 27.73, grad_accum=1),
    # 4-bit bnb on qwen-14b-chat (like row 92)
    _swift("96", Q14, 2048, 30.05, method="qlora"),
    # full fine-tuning on one A100 (bf16 weights, torch AdamW: 8 B/param; memory.md 5.E observation)
    *[_swift(str(139 + i), Q7, s, g, method="full") for i, (s, g) in enumerate(zip((512, 1024, 2048, 4096), (73.37, 73.64, 74.26, 78.76)))],
    _swift("144", Q18, 512, 18.16, method="full"),
    # Rows 145-146 are reported but not counted: 512 -> 2048 adds 17.0 GiB (11.3 MiB/token) while
    # 2048 -> 8192 adds 3.8 GiB (0.6 MiB/token); no memory component costs less per token at a longer
    # length and 38.9 GiB is far from the 80 GiB limit, so one of the two is not the stated setup.
    *[_swift(str(145 + i), Q18, s, g, excluded="not monotone: 512->2048 adds 11.3 MiB/token, 2048->8192 adds 0.6 MiB/token",
             method="full") for i, (s, g) in enumerate(zip((2048, 8192), (35.11, 38.93)))],
]
