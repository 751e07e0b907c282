"""Model facts: local config.json, HF cache, the family table, the name guess; offline path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuneterm.errors import ConfigError, InputError
from tuneterm.plan import facts as F

QWEN05_CONFIG = {  # Qwen/Qwen2.5-0.5B-Instruct config.json (shapes)
    "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 896, "intermediate_size": 4864,
    "num_attention_heads": 14, "num_hidden_layers": 24, "num_key_value_heads": 2, "vocab_size": 151936,
    "tie_word_embeddings": True, "torch_dtype": "bfloat16", "max_position_embeddings": 32768,
}


def test_table_counts_match_published_sizes() -> None:
    for row in F.table_rows():
        counted = F.table_facts(row["id"]).size_b
        assert abs(counted / row["params_b"] - 1) < 0.02, (row["id"], counted)


def test_local_directory(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(QWEN05_CONFIG))
    f = F.resolve_model(str(tmp_path))
    assert f.source == "local" and f.local_dir == tmp_path
    assert f.model_type == "qwen2" and f.tied and f.bias == "qkv" and f.head_dim == 64
    assert 0.49e9 < f.params < 0.50e9  # counted from the architecture


def test_multimodal_text_config(tmp_path: Path) -> None:
    cfg = {"model_type": "gemma3", "text_config": {"model_type": "gemma3_text", "num_hidden_layers": 34, "hidden_size": 2560,
           "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256, "intermediate_size": 10240,
           "vocab_size": 262208}, "torch_dtype": "bfloat16"}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    f = F.resolve_model(str(tmp_path / "config.json"))
    assert f.layers == 34 and f.tied  # gemma ties by default
    assert abs(f.size_b - 3.88) < 0.05


def test_hf_cache_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    snap = tmp_path / "hub" / "models--acme--Tiny-7B" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text(json.dumps(QWEN05_CONFIG))
    (tmp_path / "hub" / "models--acme--Tiny-7B" / "refs").mkdir()
    (tmp_path / "hub" / "models--acme--Tiny-7B" / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    f = F.resolve_model("acme/Tiny-7B")
    assert f.source == "cache" and f.layers == 24  # from the cached config, not the "7B" in the name


@pytest.mark.train
def test_offline_never_calls_the_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*a, **k):  # pragma: no cover - must not run
        raise AssertionError("hub lookup attempted while offline")

    monkeypatch.setattr("huggingface_hub.hf_hub_download", boom)
    assert F.fetch_from_hub("Qwen/Qwen2.5-0.5B") is None
    f = F.resolve_model("Qwen/Qwen2.5-0.5B-Instruct")
    assert f.source == "table" and "Qwen2.5-0.5B" in f.source_detail


def test_name_guess_is_flagged() -> None:
    f = F.resolve_model("someorg/Unknown-13B-v2")
    assert f.is_guess and f.source == "guess" and 12 < f.size_b < 14
    with pytest.raises(ConfigError):
        F.resolve_model("someorg/mystery-model")


def test_bad_local_config(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(InputError, match="invalid JSON"):
        F.resolve_model(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "num_hidden_layers": "32"}))
    with pytest.raises(ConfigError, match="num_hidden_layers"):
        F.resolve_model(str(tmp_path))
    (tmp_path / "config.json").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(InputError):
        F.resolve_model(str(tmp_path))
    with pytest.raises(InputError, match="no such model directory"):
        F.resolve_model("./does/not/exist")


def test_fused_module_names() -> None:
    assert F.table_facts("microsoft/Phi-3-mini-4k-instruct").module_names()[:2] == ["qkv_proj", "o_proj"]
    assert "c_attn" in F.table_facts("Qwen/Qwen-7B-Chat").module_names()


def test_moe_config_json_is_read(tmp_path: Path) -> None:
    """Local config.json files of mixtures of experts (shapes as published on the Hub)."""
    qwen3 = {"model_type": "qwen3_moe", "num_hidden_layers": 48, "hidden_size": 2048, "num_attention_heads": 32,
             "num_key_value_heads": 4, "head_dim": 128, "intermediate_size": 6144, "moe_intermediate_size": 768,
             "num_experts": 128, "num_experts_per_tok": 8, "vocab_size": 151936, "tie_word_embeddings": False}
    ds = {"model_type": "deepseek", "num_hidden_layers": 28, "hidden_size": 2048, "num_attention_heads": 16,
          "num_key_value_heads": 16, "intermediate_size": 10944, "moe_intermediate_size": 1408, "n_routed_experts": 64,
          "n_shared_experts": 2, "num_experts_per_tok": 6, "first_k_dense_replace": 1, "vocab_size": 102400,
          "tie_word_embeddings": False, "auto_map": {"AutoConfig": "configuration_deepseek.DeepseekConfig"}}
    out = {}
    for name, cfg in (("qwen3", qwen3), ("ds", ds)):
        d = tmp_path / name
        d.mkdir()
        (d / "config.json").write_text(json.dumps(cfg))
        out[name] = F.resolve_model(str(d))
    q, d = out["qwen3"], out["ds"]
    assert (q.experts, q.experts_per_token, q.intermediate) == (128, 8, 768) and q.fused_experts
    assert 29.5 < q.size_b < 31.5 and 3.0 < q.active_params / 1e9 < 3.6
    assert (d.shared_intermediate, d.dense_layers, d.dense_intermediate) == (2 * 1408, 1, 10944) and not d.fused_experts
    assert 16.0 < d.size_b < 16.8 and 2.6 < d.active_params / 1e9 < 3.0
