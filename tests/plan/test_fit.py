"""Sizing a run to the GPU: the batch that uses the GPU, checkpointing only when needed, ranked
changes that make a setup fit, and the no-GPU fit table."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from tuneterm.plan.facts import resolve_model, table_facts
from tuneterm.plan.fit import (
    FitOptions,
    batch_for_effective,
    choose_batch,
    fit_table,
    to_fit,
)
from tuneterm.plan.memory import TrainSetup, estimate
from tuneterm.plan.recommend import recommend

HEADROOM = 0.10


def test_mistral_small_qlora_on_80gb_uses_the_gpu() -> None:
    f = resolve_model("mistralai/Mistral-Small-3.1-24B-Instruct-2503")
    p = recommend(f, method="qlora", gpu_memory_gib=80.0, fixed=frozenset({"method"}))
    s = p.setup
    assert p.fits is True
    assert s.batch_size >= 8, "batch 1 x 32 at a 19 GiB peak leaves most of the GPU idle"
    assert s.batch_size * s.grad_accum == 32  # the table's effective batch, through accumulation
    assert p.estimate.peak_gib > 30.0
    # one more doubling of the micro-batch would not fit with the stated headroom
    if s.batch_size < 32:
        assert not estimate(f, replace(s, batch_size=s.batch_size * 2)).fits(80.0, HEADROOM)


def test_llama8b_lora_on_80gb_is_not_batch_two() -> None:
    p = recommend(table_facts("meta-llama/Llama-3.1-8B"), method="lora", gpu_memory_gib=80.0, fixed=frozenset({"method"}))
    assert p.fits is True and p.setup.batch_size > 2
    assert p.get("per_device_train_batch_size").value == p.setup.batch_size


def test_no_checkpointing_with_memory_to_spare() -> None:
    # a 0.5B model on 80 GiB fits the whole effective batch without recomputing anything
    f = table_facts("Qwen/Qwen2.5-0.5B")
    p = recommend(f, method="lora", gpu_memory_gib=80.0, fixed=frozenset({"method"}))
    assert p.setup.gradient_checkpointing is False
    assert p.get("gradient_checkpointing").value is False and "not needed" in p.get("gradient_checkpointing").why
    assert p.setup.batch_size >= 16 and p.setup.batch_size * p.setup.grad_accum == 32


def test_checkpointing_when_needed_to_fit() -> None:
    f = table_facts("meta-llama/Llama-3.1-8B")
    choice = choose_batch(f, TrainSetup(method="qlora", seq_len=4096), 24.0, HEADROOM, 32)
    assert choice.gradient_checkpointing is True and choice.largest_without_gc < choice.largest_with_gc
    assert "needed" in choice.why_gc


def test_batch_for_effective_divides_exactly() -> None:
    assert batch_for_effective(12, 32, 1) == (8, 4)
    assert batch_for_effective(1, 32, 4) == (1, 8)
    assert batch_for_effective(100, 32, 1) == (32, 1)


def test_qwen7b_qlora_batch4_on_24gib_gets_a_ranked_path_to_fit() -> None:
    f = table_facts("Qwen/Qwen2.5-7B")
    base = TrainSetup(method="qlora", seq_len=2048, batch_size=4)
    p = recommend(f, method="qlora", gpu_memory_gib=24.0, seq_len=2048, base=base,
                  fixed=frozenset({"method", "batch_size", "seq_len"}), options=FitOptions(liger=True))
    assert p.fits is False and p.setup.batch_size == 4
    changes = p.to_fit
    assert len(changes) >= 3
    assert [c.rank for c in changes] == sorted(c.rank for c in changes)
    first = changes[0]
    assert first.set["per_device_train_batch_size"] == 2 and first.set["gradient_accumulation_steps"] == 2 * p.setup.grad_accum
    kinds = [next(iter(c.set)) for c in changes]
    assert "use_liger_kernel" in kinds and "max_length" in kinds
    for c in changes:  # each with its own predicted peak, each fitting
        assert c.peak_gib * (1 + HEADROOM) <= 24.0
        assert c.to_dict()["peak_gib"] == round(c.peak_gib, 1) and c.cost
    liger = next(c for c in changes if "use_liger_kernel" in c.set)
    assert liger.peak_gib < first.peak_gib  # no full logits tensor at batch 4


def test_liger_only_where_installed() -> None:
    f = table_facts("Qwen/Qwen2.5-7B")
    s = TrainSetup(method="qlora", seq_len=2048, batch_size=4)
    assert not any("use_liger_kernel" in c.set for c in to_fit(f, s, 24.0, HEADROOM, FitOptions(liger=False)))


def test_nothing_to_change_when_it_fits() -> None:
    assert to_fit(table_facts("Qwen/Qwen2.5-0.5B"), TrainSetup(), 80.0, HEADROOM) == ()


def test_full_finetune_too_big_gets_lora_qlora_more_gpus_and_smaller_model() -> None:
    f = table_facts("meta-llama/Llama-3.1-8B")
    changes = to_fit(f, TrainSetup(method="full", seq_len=1024), 24.0, HEADROOM)
    keys = {k for c in changes for k in c.set}
    assert {"use_peft", "load_in_4bit", "model_name_or_path"} <= keys
    gpus = [c for c in changes if "fsdp" in c.set and c.command and "--num_processes" in c.command]
    assert gpus and re.search(r"--num_processes \d+", gpus[0].command)


def test_fit_table_without_a_gpu() -> None:
    f = table_facts("meta-llama/Llama-3.1-8B")
    rows = fit_table(f, TrainSetup(method="lora"), HEADROOM, 32)
    assert [r.card.split()[0] for r in rows] == ["24", "40", "48", "80", "141"]
    batches = [r.batch_size for r in rows if r.fits]
    assert batches == sorted(batches) and batches[-1] > batches[0]
    p = recommend(f, method="lora", gpu_memory_gib=None)
    assert len(p.fit_table) == 5 and p.fits is None and "fit_table" in p.to_dict()


@pytest.mark.parametrize("name,layers,hidden,experts", [
    ("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", 28, 3584, 1),
    ("deepseek-ai/DeepSeek-R1-Distill-Llama-8B", 32, 4096, 1),
    ("Qwen/Qwen3-30B-A3B", 48, 2048, 128),
    ("openai/gpt-oss-20b", 24, 2880, 32),
    ("openai/gpt-oss-120b", 36, 2880, 128),
    ("mistralai/Mixtral-8x7B-Instruct-v0.1", 32, 4096, 8),
])
def test_derivatives_and_moe_map_to_real_configs(name: str, layers: int, hidden: int, experts: int) -> None:
    f = table_facts(name)
    assert (f.layers, f.hidden, f.experts) == (layers, hidden, experts) and not f.is_guess


def test_moe_total_vs_active_and_all_experts_resident() -> None:
    f = table_facts("Qwen/Qwen3-30B-A3B")
    assert 29.5 < f.params / 1e9 < 31.5 and 3.0 < f.active_params / 1e9 < 3.6
    e = estimate(f, TrainSetup(method="lora"))
    weights = next(c for c in e.components if c.name == "weights")
    assert weights.bytes == f.params * 2  # every expert resident in bf16
    dense = table_facts("Qwen/Qwen3-32B")
    # activations follow the routed experts (8 x 768), not a dense 25600-wide MLP
    a_moe = next(c for c in estimate(f, TrainSetup(gradient_checkpointing=False)).components if c.name.startswith("activations"))
    a_dense = next(c for c in estimate(dense, TrainSetup(gradient_checkpointing=False)).components if c.name.startswith("activations"))
    assert a_moe.bytes < a_dense.bytes / 2


def test_guessed_architecture_is_marked() -> None:
    f = resolve_model("someorg/Unknown-13B-Instruct", online=False)
    assert f.is_guess and f.source == "guess" and "GUESSED" in f.source_detail
    assert any("GUESSED" in n for n in estimate(f, TrainSetup()).notes)


def test_recommendation_sources_are_public() -> None:
    p = recommend(table_facts("Qwen/Qwen2.5-7B"), method="lora", dataset_size=5000, gpu_memory_gib=24.0)
    for r in p.recommendations:
        assert not re.search(r"seeds?/|issue \d|memory\.md|failure_modes", r.source + r.why), r


def test_fused_experts_are_not_quantized_or_lora_targets() -> None:
    # transformers 5 stores MoE experts as fused 3-D parameters: bitsandbytes (nn.Linear only)
    # leaves them in 16-bit and LoRA target_modules cannot reach them
    f = table_facts("Qwen/Qwen3-30B-A3B")
    assert f.fused_experts and f.expert_params > 0.9 * f.params
    q = estimate(f, TrainSetup(method="qlora"))
    weights = next(c for c in q.components if c.name == "weights")
    assert weights.bytes > f.expert_params * 2 and "not quantized" in weights.detail
    assert any("fused" in n for n in q.notes)
    lora = estimate(f, TrainSetup(method="lora", lora_targets="all-linear"))
    attn_only = estimate(f, TrainSetup(method="lora", lora_targets=("q_proj", "k_proj", "v_proj", "o_proj")))
    assert lora.trainable_params == attn_only.trainable_params
    # a remote-code MoE keeps per-expert linears: quantized, and each expert gets its adapter
    ds = table_facts("deepseek-ai/deepseek-moe-16b-base")
    assert not ds.fused_experts
    assert estimate(ds, TrainSetup(method="qlora")).peak_gib < 0.5 * estimate(ds, TrainSetup(method="lora")).peak_gib


def test_cheap_changes_combined_when_none_fits_alone() -> None:
    # full fine-tuning of 8B at batch 8 x 4096 without checkpointing on 80 GiB: no cheap change
    # fits alone; fused cross-entropy + checkpointing together do, and beat truncating the data
    f = table_facts("meta-llama/Llama-3.1-8B")
    s = TrainSetup(method="full", seq_len=4096, batch_size=8, gradient_checkpointing=False)
    changes = to_fit(f, s, 80.0, HEADROOM, FitOptions(liger=True))
    combo = changes[0]
    assert len(combo.set) >= 2 and combo.cost.startswith("together:")
    assert combo.set.get("gradient_checkpointing") is True and combo.peak_gib * (1 + HEADROOM) <= 80.0
    assert any("max_length" in c.set for c in changes[1:])
    # minimal: without any one of its parts it would not fit
    for key in combo.set:
        if key == "gradient_checkpointing":
            assert not estimate(f, replace(s, stack="hf-fused-ce")).fits(80.0, HEADROOM)
