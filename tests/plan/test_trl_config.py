"""`tuneterm plan -o FILE` writes a config TRL 1.16's own parser accepts, for sft, dpo and grpo."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuneterm.plan.facts import table_facts
from tuneterm.plan.recommend import recommend
from tuneterm.plan.trl_config import write_config
from tuneterm.preflight.plan_request import fit_options

pytestmark = [pytest.mark.slow, pytest.mark.train]


@pytest.mark.parametrize("trainer,method", [("sft", "qlora"), ("sft", "full"), ("dpo", "lora"), ("grpo", "dora")])
def test_trl_parser_accepts_written_config(tmp_path: Path, trainer: str, method: str) -> None:
    trl = pytest.importorskip("trl")
    from trl import (
        DPOConfig,
        GRPOConfig,
        ModelConfig,
        ScriptArguments,
        SFTConfig,
        TrlParser,
    )

    plan = recommend(table_facts("Qwen/Qwen2.5-0.5B"), method=method, trainer=trainer, dataset_size=2000, gpu_memory_gib=24.0,
                     options=fit_options(trainer))  # the installed stack, as `tuneterm plan -o` plans
    path = write_config(tmp_path / f"{trainer}.yaml", plan, dataset_name="trl-lib/Capybara", dataset_size=2000)
    if trainer == "grpo":
        from trl.scripts.grpo import GRPOScriptArguments as Script
    else:
        Script = ScriptArguments
    cfg_cls = {"sft": SFTConfig, "dpo": DPOConfig, "grpo": GRPOConfig}[trainer]
    parser = TrlParser((Script, cfg_cls, ModelConfig))
    # CPU here: the written bf16 / 4-bit settings are valid keys; override what CPU cannot run
    script, cfg, model = parser.parse_args_and_config(["--config", str(path), "--use_cpu", "true", "--bf16", "false"])
    assert model.model_name_or_path == "Qwen/Qwen2.5-0.5B"
    assert cfg.learning_rate == next(r.value for r in plan.recommendations if r.key == "learning_rate")
    assert cfg.per_device_train_batch_size == plan.setup.batch_size
    assert model.use_peft is (method != "full")
    if method == "qlora":
        assert model.load_in_4bit is True and model.lora_alpha == 2 * model.lora_r
    if trainer == "grpo":
        assert cfg.num_generations == plan.setup.num_generations
    assert script.dataset_name == "trl-lib/Capybara"
    del trl


@pytest.mark.parametrize("trainer", ["sft", "dpo"])
def test_local_jsonl_is_written_the_way_trl_loads_it(tmp_path: Path, trainer: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A local JSONL file becomes a `datasets:` mixture entry (path: json + data_files) that TRL's own
    parser (TrlParser with DatasetMixtureConfig) reads and TRL's get_dataset loads, from any directory."""
    import json

    pytest.importorskip("trl")
    from trl import (
        DatasetMixtureConfig,
        DPOConfig,
        ModelConfig,
        ScriptArguments,
        SFTConfig,
        TrlParser,
        get_dataset,
    )

    data = tmp_path / "data" / "train.jsonl"
    data.parent.mkdir()
    rows = ([{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]} for i in range(3)]
            if trainer == "sft" else [{"prompt": f"p{i}", "chosen": "good", "rejected": "bad"} for i in range(3)])
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    plan = recommend(table_facts("Qwen/Qwen2.5-0.5B"), method="lora", trainer=trainer, gpu_memory_gib=24.0,
                     options=fit_options(trainer))
    path = write_config(tmp_path / "cfg" / f"{trainer}.yaml", plan, dataset_name=str(data))
    monkeypatch.chdir(tmp_path / "cfg")  # relative to nothing: the data file path is absolute
    cfg_cls = {"sft": SFTConfig, "dpo": DPOConfig}[trainer]
    parser = TrlParser((ScriptArguments, cfg_cls, ModelConfig, DatasetMixtureConfig))
    script, _cfg, _model, mixture = parser.parse_args_and_config(["--config", str(path), "--use_cpu", "true", "--bf16", "false"])
    assert script.dataset_name is None and len(mixture.datasets) == 1
    assert mixture.datasets[0].path == "json" and mixture.datasets[0].data_files == str(data.resolve())
    loaded = get_dataset(mixture)
    assert loaded["train"].num_rows == 3 and set(loaded["train"].column_names) == set(rows[0])
