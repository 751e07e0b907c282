"""`tuneterm check CONFIG.yaml`: every config rule with a failing and a passing case, the three
dialects, and bad input. Model facts come from the family table or a local directory (offline)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.plan.conftest import make_fake_nvml
from tuneterm.errors import ConfigError, InputError
from tuneterm.preflight.config import check_config, looks_like_config


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNETERM_OFFLINE", "1")
    monkeypatch.setitem(__import__("sys").modules, "pynvml", None)  # no GPU probing in these tests


GOOD = """\
model_name_or_path: Qwen/Qwen2.5-0.5B-Instruct
dataset_name: trl-lib/Capybara
learning_rate: 5.0e-5
per_device_train_batch_size: 4
gradient_accumulation_steps: 8
num_train_epochs: 1
lr_scheduler_type: cosine
warmup_steps: 0.03
bf16: true
max_length: 512
"""


def write(tmp_path: Path, text: str, name: str = "train.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def codes(path: Path, **kw) -> dict[str, str]:
    _facts, findings = check_config(path, **kw)
    return {f.code: f.severity.value for f in findings}


def test_clean_config_has_no_findings(tmp_path: Path) -> None:
    p = write(tmp_path, GOOD)
    facts, findings = check_config(p, gpu_memory_gib=24.0)
    assert findings == [] and facts["trainer"] == "sft" and facts["method"] == "full"
    assert facts["effective_batch"] == 32 and 0 < facts["estimated_peak_gib"] < 24


def test_c101_seed_24b_at_5e5(tmp_path: Path) -> None:
    p = write(tmp_path, "model_name_or_path: mistralai/Mistral-Small-3.1-24B-Instruct-2503\nlearning_rate: 5.0e-5\nwarmup_steps: 10\n")
    _, findings = check_config(p)
    f = next(f for f in findings if f.code == "C101")
    assert f.severity.value == "error" and f.line == 2 and "above the range 1e-06-5e-06" in f.message
    assert f.fixes[0].key == "learning_rate" and 1e-6 <= f.fixes[0].value <= 5e-6
    assert "C101" not in codes(write(tmp_path, "model_name_or_path: mistralai/Mistral-Small-3.1-24B-Instruct-2503\n"
                                            "learning_rate: 2.0e-6\nwarmup_steps: 10\n", "ok.yaml"))


def test_c101_lora_range_and_low_rate(tmp_path: Path) -> None:
    low = write(tmp_path, GOOD.replace("5.0e-5", "1.0e-7"))
    assert codes(low)["C101"] == "error"
    lora = write(tmp_path, GOOD.replace("5.0e-5", "2.0e-4") + "use_peft: true\n", "lora.yaml")
    assert "C101" not in codes(lora)


SEED_001 = """\
model_name_or_path: meta-llama/Llama-3.2-3B-Instruct
learning_rate: 5.0e-5
per_device_train_batch_size: 1
gradient_accumulation_steps: 8
max_steps: 500
lr_scheduler_type: cosine
use_peft: true
load_in_4bit: true
use_bnb_nested_quant: true
lora_r: 16
lora_alpha: 32
# tuneterm-dataset-size: 45000
"""


def test_c102_c103_c104_seed_001(tmp_path: Path) -> None:
    c = codes(write(tmp_path, SEED_001))
    assert {"C102", "C103", "C104"} <= set(c)
    _, findings = check_config(write(tmp_path, SEED_001, "again.yaml"))
    cov = next(f for f in findings if f.code == "C102")
    assert cov.evidence["coverage_pct"] == 8.9 and cov.fixes[0].value == 5625
    fixed = SEED_001.replace("max_steps: 500", "max_steps: 6000").replace("5.0e-5", "1.0e-4").replace("lr_scheduler_type: cosine",
                                                                        "lr_scheduler_type: cosine\nwarmup_steps: 0.03")
    c2 = codes(write(tmp_path, fixed, "fixed.yaml"))
    assert not {"C102", "C103", "C104"} & set(c2)


def test_c102_dataset_size_from_local_jsonl(tmp_path: Path) -> None:
    (tmp_path / "data.jsonl").write_text("\n".join(json.dumps({"text": str(i)}) for i in range(1000)) + "\n")
    p = write(tmp_path, GOOD + "max_steps: 10\ndataset_name: data.jsonl\n")
    facts, findings = check_config(p)
    assert facts["dataset_size"] == 1000 and any(f.code == "C102" for f in findings)
    assert "C102" not in codes(p, dataset_size=200)


def test_c105_fp16_on_bf16_model(tmp_path: Path) -> None:
    assert "C105" in codes(write(tmp_path, GOOD.replace("bf16: true", "fp16: true")))
    # Llama-2 was released in float16: fp16 is fine there
    p = write(tmp_path, GOOD.replace("bf16: true", "fp16: true").replace("Qwen/Qwen2.5-0.5B-Instruct", "meta-llama/Llama-2-7b-hf")
              .replace("5.0e-5", "1.0e-5"), "l2.yaml")
    assert "C105" not in codes(p)


def test_c106_alpha_rank(tmp_path: Path) -> None:
    base = GOOD.replace("5.0e-5", "2.0e-4") + "use_peft: true\n"
    assert "C106" in codes(write(tmp_path, base + "lora_r: 64\nlora_alpha: 16\n"))
    assert "C106" not in codes(write(tmp_path, base + "lora_r: 64\nlora_alpha: 128\n", "ok.yaml"))
    assert "C106" not in codes(write(tmp_path, base + "lora_r: 64\nlora_alpha: 8\nuse_rslora: true\n", "rs.yaml"))


def test_c107_targets_not_in_architecture(tmp_path: Path) -> None:
    base = GOOD.replace("5.0e-5", "2.0e-4").replace("Qwen/Qwen2.5-0.5B-Instruct", "microsoft/Phi-3-mini-4k-instruct") + "use_peft: true\n"
    _, findings = check_config(write(tmp_path, base + "lora_target_modules: [q_proj, v_proj]\n"))
    f = next(f for f in findings if f.code == "C107")
    assert f.severity.value == "error" and f.evidence["missing"] == ["q_proj", "v_proj"]
    assert f.fixes[0].value == ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]
    assert "C107" not in codes(write(tmp_path, base + "lora_target_modules: [qkv_proj, o_proj]\n", "ok.yaml"))
    assert "C107" not in codes(write(tmp_path, base + "lora_target_modules: all-linear\n", "all.yaml"))


def test_c108_reentrant_with_peft(tmp_path: Path) -> None:
    base = GOOD.replace("5.0e-5", "2.0e-4") + "use_peft: true\ngradient_checkpointing: true\n"
    assert "C108" in codes(write(tmp_path, base + "gradient_checkpointing_kwargs: {use_reentrant: true}\n"))
    assert "C108" not in codes(write(tmp_path, base + "gradient_checkpointing_kwargs: {use_reentrant: false}\n", "ok.yaml"))


def _model_dir(tmp_path: Path, pad: str, eos: str) -> Path:
    d = tmp_path / f"model-{pad.strip('<>|')}"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model_type": "qwen2", "hidden_size": 896, "intermediate_size": 4864,
                                               "num_attention_heads": 14, "num_hidden_layers": 24, "num_key_value_heads": 2,
                                               "vocab_size": 151936, "tie_word_embeddings": True, "torch_dtype": "bfloat16"}))
    (d / "tokenizer_config.json").write_text(json.dumps({"pad_token": pad, "eos_token": {"content": eos}}))
    return d


def test_c109_pad_equals_eos_with_local_tokenizer(tmp_path: Path) -> None:
    bad = _model_dir(tmp_path, "<|im_end|>", "<|im_end|>")
    assert "C109" in codes(write(tmp_path, GOOD.replace("Qwen/Qwen2.5-0.5B-Instruct", str(bad))))
    ok = _model_dir(tmp_path, "<|endoftext|>", "<|im_end|>")
    assert "C109" not in codes(write(tmp_path, GOOD.replace("Qwen/Qwen2.5-0.5B-Instruct", str(ok)), "ok.yaml"))


def test_c110_trust_remote_code(tmp_path: Path) -> None:
    assert "C110" in codes(write(tmp_path, GOOD + "trust_remote_code: true\n"))
    assert "C110" not in codes(write(tmp_path, GOOD + "trust_remote_code: false\n", "ok.yaml"))


def test_c111_does_not_fit(tmp_path: Path) -> None:
    p = write(tmp_path, GOOD.replace("Qwen/Qwen2.5-0.5B-Instruct", "meta-llama/Llama-3.1-8B").replace("5.0e-5", "1.0e-5"))
    _, findings = check_config(p, gpu_memory_gib=24.0)
    f = next(f for f in findings if f.code == "C111")
    assert f.severity.value == "error" and f.evidence["peak_gib"] > 24 and findings[0].code == "C111"
    assert any(x.key == "use_peft" for x in f.fixes)
    assert "C111" not in codes(p, gpu_memory_gib=141.0, gpus=1) or codes(p, gpu_memory_gib=141.0)["C111"] != "error"
    assert "C111" not in codes(write(tmp_path, GOOD, "small.yaml"), gpu_memory_gib=24.0)
    assert "C111" not in codes(p)  # no GPU and no --gpu-memory: the fit is not checked


def test_c112_peft_base_in_float32(tmp_path: Path) -> None:
    """TRL's ModelConfig.dtype defaults to float32: a LoRA/QLoRA config without dtype loads its
    frozen base in float32 (FM-34); the memory estimate uses float32 too."""
    qlora = GOOD.replace("5.0e-5", "2.0e-4").replace("Qwen/Qwen2.5-0.5B-Instruct", "Qwen/Qwen2.5-7B-Instruct") + (
        "use_peft: true\nload_in_4bit: true\nlora_r: 16\nlora_alpha: 32\n")
    _, findings = check_config(write(tmp_path, qlora, "qlora.yaml"))
    f = next(f for f in findings if f.code == "C112")
    assert f.severity.value == "warning" and "compute in float32" in f.message
    assert f.fixes[0].key == "dtype" and f.fixes[0].value == "bfloat16"
    lora = qlora.replace("load_in_4bit: true", "load_in_4bit: false")
    f = next(f for f in check_config(write(tmp_path, lora, "lora.yaml"))[1] if f.code == "C112")
    # Qwen2.5-7B: 7.6B parameters -> ~28 GiB in float32 vs ~14 GiB in bfloat16
    assert 27 < f.evidence["frozen_gib_float32"] < 30 and 13 < f.evidence["frozen_gib_16bit"] < 15
    assert "C112" not in codes(write(tmp_path, lora + "dtype: bfloat16\n", "bf16.yaml"))
    assert "C112" not in codes(write(tmp_path, lora + "model_init_kwargs:\n  dtype: auto\n", "auto.yaml"))
    assert "C112" not in codes(write(tmp_path, GOOD, "full.yaml"))  # full FT: fp32 master weights + autocast
    # The estimate follows the dtype actually loaded: float32 weights take twice the bytes.
    f32, _ = check_config(write(tmp_path, lora, "lora.yaml"), gpu_memory_gib=80.0)
    b16, _ = check_config(write(tmp_path, lora + "dtype: bfloat16\n", "bf16.yaml"), gpu_memory_gib=80.0)
    assert f32["estimated_peak_gib"] > b16["estimated_peak_gib"] + 12


def test_llama_factory_dialect(tmp_path: Path) -> None:
    p = write(tmp_path, """\
model_name_or_path: mistralai/Mistral-Small-24B-Instruct-2501
stage: dpo
finetuning_type: full
cutoff_len: 2048
per_device_train_batch_size: 1
gradient_accumulation_steps: 8
learning_rate: 5.0e-5
num_train_epochs: 3.0
lr_scheduler_type: cosine
warmup_ratio: 0.1
bf16: true
""")
    facts, findings = check_config(p)
    assert facts["dialect"] == "llama-factory" and facts["trainer"] == "dpo" and facts["method"] == "full"
    f = next(f for f in findings if f.code == "C101")
    assert f.severity.value == "error" and f.line == 7


def test_axolotl_dialect(tmp_path: Path) -> None:
    p = write(tmp_path, """\
base_model: meta-llama/Llama-3.1-8B
adapter: qlora
load_in_4bit: true
lora_r: 32
lora_alpha: 8
lora_target_modules: [q_proj, v_proj, c_attn]
sequence_len: 4096
micro_batch_size: 16
gradient_accumulation_steps: 2
learning_rate: 0.0002
warmup_steps: 10
optimizer: paged_adamw_8bit
""")
    facts, findings = check_config(p, gpu_memory_gib=16.0)
    assert facts["dialect"] == "axolotl" and facts["method"] == "qlora"
    got = {f.code for f in findings}
    assert {"C106", "C107", "C111"} <= got and "C101" not in got
    f107 = next(f for f in findings if f.code == "C107")
    assert f107.severity.value == "warning" and f107.evidence["missing"] == ["c_attn"]


def test_looks_like_config(tmp_path: Path) -> None:
    assert looks_like_config(write(tmp_path, GOOD))
    assert not looks_like_config(write(tmp_path, "rules:\n  - code: X\n", "rules.yaml"))
    assert not looks_like_config(write(tmp_path, '{"log_history": []}', "trainer_state.json"))
    assert not looks_like_config(write(tmp_path, "a: [unclosed\n", "broken.yaml"))
    assert not looks_like_config(tmp_path / "missing.yaml")


@pytest.mark.parametrize("content,exc,needle", [
    (b"a: [unclosed\n", ConfigError, "invalid YAML at line"),
    (b"- just\n- a list\n", ConfigError, "YAML mapping"),
    (b"\x00\x01\x02binary", InputError, "binary"),
    (b"learning_rate: \xff\xfe\n", InputError, "UTF-8"),
    (b"model_name_or_path: x/y-1B\nlearning_rate: fast\n", ConfigError, "learning_rate must be a number"),
    (b"model_name_or_path: x/y-1B\nper_device_train_batch_size: [1, 2]\n", ConfigError, "must be a number"),
])
def test_bad_files_raise_one_line(tmp_path: Path, content: bytes, exc: type, needle: str) -> None:
    p = tmp_path / "bad.yaml"
    p.write_bytes(content)
    with pytest.raises(exc) as e:
        check_config(p)
    assert needle in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(InputError, match="no such file"):
        check_config(tmp_path / "nope.yaml")


def test_guessed_model_size_still_checks_the_rate(tmp_path: Path) -> None:
    p = write(tmp_path, "model_name_or_path: \"[bold]evil\\e[31m-7B\"\nlearning_rate: 1.0\nwarmup_steps: 5\n")
    facts, findings = check_config(p)
    # the model is unknown-but-sized (a guess): the rate check still runs on the guessed size
    assert any(f.code == "C101" for f in findings)


# ---------------------------------------------------------------- the validation `train` runs
def _findings(path: Path, **kw) -> list:
    return check_config(path, **kw)[1]


def test_unknown_and_misspelt_keys_with_did_you_mean(tmp_path: Path) -> None:
    p = write(tmp_path, GOOD.replace("learning_rate: 5.0e-5\n", "learnig_rate: 5.0e-5\nfoo_bar: true\nlora_rnak: 8\n"))
    found = {f.evidence["key"]: f for f in _findings(p, gpu_memory_gib=24.0) if f.code == "C120"}
    assert set(found) == {"learnig_rate", "foo_bar", "lora_rnak"}
    assert all(f.severity.value == "error" for f in found.values())
    assert "did you mean 'learning_rate'" in found["learnig_rate"].message and found["learnig_rate"].line == 3
    assert found["learnig_rate"].fixes[0].key == "learning_rate" and found["learnig_rate"].fixes[0].value == 5e-5
    assert "did you mean 'lora_r'" in found["lora_rnak"].message
    # the misspelt rate is not judged as if TRL's default were meant
    assert "C101" not in codes(p, gpu_memory_gib=24.0)


def test_missing_dataset_and_conflicting_precision(tmp_path: Path) -> None:
    p = write(tmp_path, GOOD.replace("dataset_name: trl-lib/Capybara\n", "").replace("bf16: true\n", "bf16: true\nfp16: true\n"))
    msgs = [f.message for f in _findings(p, gpu_memory_gib=24.0) if f.code == "C121"]
    assert any("missing key 'dataset_name'" in m for m in msgs)
    assert any("bf16 and fp16 are both true" in m for m in msgs)
    assert "C121" not in codes(write(tmp_path, GOOD, "ok.yaml"), gpu_memory_gib=24.0)


def test_bf16_against_this_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # NVML answers but finds no driver: bf16, explicit or TRL's default, cannot run; train would refuse
    monkeypatch.setitem(__import__("sys").modules, "pynvml", make_fake_nvml([], init_error="Driver Not Loaded"))
    p = write(tmp_path, GOOD)
    (f,) = [f for f in _findings(p) if f.code == "C122"]
    assert f.severity.value == "error" and "Your setup doesn't support bf16/gpu" in f.message and f.line is not None
    implicit = write(tmp_path, GOOD.replace("bf16: true\n", ""), "implicit.yaml")
    assert "TRL turns bf16 on by default" in next(f.message for f in _findings(implicit) if f.code == "C122")
    cpu = write(tmp_path, GOOD.replace("bf16: true\n", "bf16: false\nuse_cpu: true\n"), "cpu.yaml")
    assert "C122" not in codes(cpu)
    # a typed --gpu-memory checks another machine: bf16 is not judged against this one
    assert "C122" not in codes(p, gpu_memory_gib=80.0)


def test_bf16_not_judged_without_nvml(tmp_path: Path) -> None:
    # pynvml hidden (autouse fixture): the GPUs are unknown, so no verdict on bf16
    assert "C122" not in codes(write(tmp_path, GOOD))


def test_bf16_on_a_gpu_without_it() -> None:
    from tuneterm.preflight.config_validate import hardware_problems

    (p,) = hardware_problems({"model_name_or_path": "m"}, "trl", gpu_bf16=False, gpu_name="Tesla T4")
    assert p.key == "bf16" and "Tesla T4 has no bf16" in p.message and (p.fix_key, p.fix_value) == ("fp16", True)
    assert hardware_problems({"fp16": True}, "trl", gpu_bf16=False, gpu_name="Tesla T4") == []
    assert hardware_problems({}, "trl", gpu_bf16=True) == []


LF = """\
model_name_or_path: Qwen/Qwen2.5-0.5B-Instruct
stage: sft
do_train: true
finetuning_type: lora
lora_rank: 8
dataset: alpaca_en_demo
template: qwen
cutoff_len: 1024
output_dir: saves/qwen
"""


def test_llama_factory_judged_with_its_own_defaults(tmp_path: Path) -> None:
    facts, findings = check_config(write(tmp_path, LF), gpu_memory_gib=24.0)
    assert facts["model"] == "Qwen/Qwen2.5-0.5B-Instruct"
    got = {f.code: f for f in findings}
    assert facts["dialect"] == "llama-factory"
    # LLaMA-Factory's lora_alpha defaults to 2 x lora_rank (TRL's 32 would be 4x r=8)
    assert "C106" not in got
    # its learning rate default is transformers' 5e-5, not TRL's 2e-5
    if "C101" in got:
        assert "LLaMA-Factory" in got["C101"].message and "TRL's" not in got["C101"].message
    assert "C120" not in got and "C121" not in got  # its own keys are not "unknown TRL keys"
    no_data = write(tmp_path, LF.replace("dataset: alpaca_en_demo\n", ""), "nodata.yaml")
    assert any("missing key 'dataset'" in f.message for f in _findings(no_data, gpu_memory_gib=24.0) if f.code == "C121")


def test_axolotl_needs_datasets(tmp_path: Path) -> None:
    ax = write(tmp_path, "base_model: Qwen/Qwen2.5-0.5B\nadapter: lora\nmicro_batch_size: 2\nsequence_len: 1024\nlearning_rate: 2.0e-4\n")
    msgs = [f.message for f in _findings(ax, gpu_memory_gib=24.0) if f.code == "C121"]
    assert any("missing key 'datasets'" in m for m in msgs)


def test_fit_verdict_on_a_guessed_architecture_says_so(tmp_path: Path) -> None:
    p = write(tmp_path, GOOD.replace("Qwen/Qwen2.5-0.5B-Instruct", "someorg/Mystery-70B"), "guess.yaml")
    facts, findings = check_config(p, gpu_memory_gib=24.0)
    (f,) = [f for f in findings if f.code == "C111"]
    assert "GUESSED architecture" in f.message and facts["model_source"] == "guess"
    known = write(tmp_path, GOOD.replace("Qwen/Qwen2.5-0.5B-Instruct", "meta-llama/Llama-3.1-70B"), "known.yaml")
    assert "GUESSED" not in next(f.message for f in check_config(known, gpu_memory_gib=24.0)[1] if f.code == "C111")


def test_does_not_fit_fixes_are_the_planners_ranked_changes(tmp_path: Path) -> None:
    cfg = ("model_name_or_path: Qwen/Qwen2.5-7B\ndataset_name: trl-lib/Capybara\nuse_peft: true\nload_in_4bit: true\n"
           "dtype: bfloat16\nmax_length: 2048\nper_device_train_batch_size: 8\nbf16: true\nlearning_rate: 1.0e-4\n")
    (f,) = [f for f in _findings(write(tmp_path, cfg, "q.yaml"), gpu_memory_gib=24.0) if f.code == "C111"]
    keys = [x.key for x in f.fixes if x.key]
    assert keys[:2] == ["per_device_train_batch_size", "gradient_accumulation_steps"]
    first = f.fixes[0]
    assert first.value < 8 and "predicted peak" in first.why and "cost:" in first.why


def test_llama_factory_unknown_keys_against_its_own_arguments(tmp_path: Path) -> None:
    # the keys of LLaMA-Factory's own examples/train_lora/llama3_lora_sft.yaml are all known
    example = LF + ("lora_target: all\nwarmup_ratio: 0.1\nlearning_rate: 1.0e-4\nper_device_train_batch_size: 1\n"
                    "gradient_accumulation_steps: 8\nnum_train_epochs: 3.0\nlr_scheduler_type: cosine\nbf16: true\n"
                    "logging_steps: 10\nsave_steps: 500\nplot_loss: true\noverwrite_cache: true\npreprocessing_num_workers: 16\n"
                    "max_samples: 1000\nddp_timeout: 180000000\nreport_to: none\noverwrite_output_dir: true\n")
    assert "C120" not in codes(write(tmp_path, example), gpu_memory_gib=24.0)
    typo = write(tmp_path, LF.replace("lora_rank: 8", "lora_rnak: 8"), "typo.yaml")
    (f,) = [f for f in _findings(typo, gpu_memory_gib=24.0) if f.code == "C120"]
    # one LLaMA-Factory version's key table, not the installed tool: a warning, with its own names
    assert f.severity.value == "warning" and "did you mean 'lora_rank'" in f.message
