"""Recommendations for the seeds' scenarios match the seeds' tables; every one names its row."""

from __future__ import annotations

from tuneterm.plan.facts import resolve_model, table_facts
from tuneterm.plan.recommend import recommend


def test_half_billion_full_gets_5e5_to_1e4() -> None:
    p = recommend(resolve_model("Qwen/Qwen2.5-0.5B-Instruct"), method="full", gpu_memory_gib=24.0)
    r = p.get("learning_rate")
    assert 5e-5 <= r.value <= 1e-4 and r.range == (5e-5, 1e-4)
    assert r.row == "recommend/learning_rate.yaml#sft-full-tiny" and "TRL SFTConfig" in r.source
    assert p.fits is True and p.setup.method == "full"


def test_24b_full_gets_1e6_to_5e6() -> None:
    p = recommend(resolve_model("mistralai/Mistral-Small-3.1-24B-Instruct-2503"), method="full", gpu_memory_gib=None,
                  fixed=frozenset({"method"}))
    r = p.get("learning_rate")
    assert 1e-6 <= r.value <= 5e-6 and r.range == (1e-6, 5e-6)


def test_lora_rate_is_about_ten_times_full_and_rl_lower() -> None:
    f = table_facts("Qwen/Qwen2.5-7B")
    full = recommend(f, method="full", fixed=frozenset({"method"})).get("learning_rate").value
    lora = recommend(f, method="lora").get("learning_rate").value
    dpo = recommend(f, method="lora", trainer="dpo").get("learning_rate").value
    grpo = recommend(f, method="lora", trainer="grpo").get("learning_rate").value
    assert 5 <= lora / full <= 20
    assert dpo < lora and grpo < lora


def test_rank_by_task_and_alpha_2r() -> None:
    f = table_facts("meta-llama/Llama-3.1-8B")
    inst = recommend(f, method="lora", task="instruction")
    assert 16 <= inst.get("lora_r").value <= 32 and inst.get("lora_r").range == (16, 32)
    assert inst.get("lora_alpha").value == 2 * inst.get("lora_r").value
    assert recommend(f, method="lora", task="classification").get("lora_r").value == 8
    assert recommend(f, method="lora", task="code").get("lora_r").value == 64
    assert "gate_proj" in inst.get("lora_target_modules").value


def test_targets_follow_architecture() -> None:
    p = recommend(table_facts("microsoft/Phi-3-mini-4k-instruct"), method="lora")
    assert p.get("lora_target_modules").value == ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]


def test_method_ladder_and_batch_that_fits() -> None:
    f = table_facts("meta-llama/Llama-3.1-8B")
    p = recommend(f, method="full", gpu_memory_gib=24.0)  # 8B full FT needs ~64 GiB of state alone
    assert p.get("method").value in ("lora", "qlora") and p.fits is True
    assert p.estimate.fits(24.0, 0.10)
    big = recommend(f, method="qlora", gpu_memory_gib=80.0)
    # the largest micro-batch that fits, up to the effective batch: the GPU is used, not a size table
    assert big.setup.batch_size >= 8 and big.estimate.peak_gib > 0.3 * 80.0
    tiny = recommend(table_facts("meta-llama/Llama-3.1-70B"), method="full", gpu_memory_gib=16.0)
    assert tiny.fits is False
    smaller = [c for c in tiny.to_fit if "model_name_or_path" in c.set]
    assert smaller and table_facts(smaller[0].set["model_name_or_path"]).size_b < 10


def test_precision_by_gpu_and_epochs_by_data() -> None:
    f = table_facts("Qwen/Qwen2.5-1.5B")
    old = recommend(f, method="lora", compute_capability=7.5, dataset_size=500)
    assert old.get("fp16").value is True and old.warnings
    assert old.get("num_train_epochs").value == 3
    new = recommend(f, method="lora", compute_capability=9.0, dataset_size=100_000)
    assert new.get("bf16").value is True and new.get("num_train_epochs").value == 1


def test_every_recommendation_names_row_and_source() -> None:
    p = recommend(table_facts("Qwen/Qwen2.5-7B"), method="lora", dataset_size=5000, gpu_memory_gib=24.0)
    assert len(p.recommendations) >= 8
    for r in p.recommendations:
        assert r.row.startswith("recommend/") and r.source and r.why
