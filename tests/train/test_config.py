"""Config reading, --set parsing, trainer inference and validation against TRL's schema (from the
schema cache in the launcher; with TRL's own dataclasses for ``full=True``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.train.conftest import HAS_TRL, TINY, TINY_DPO, TINY_GRPO
from tuneterm.cli import main
from tuneterm.errors import ConfigError, InputError
from tuneterm.train.config import method_of, parse_set, read_config_file, resolve, trainer_directive

pytestmark = pytest.mark.skipif(not HAS_TRL, reason="needs the train extra (trl)")


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "cfg.yaml"
    p.write_text(text)
    return p


def test_parse_set_yaml_scalars() -> None:
    got = parse_set(["learning_rate=2e-5", "use_peft=true", "lora_r=16", "output_dir=out", "lora_target_modules=[q, v]"])
    assert got == {"learning_rate": 2e-5, "use_peft": True, "lora_r": 16, "output_dir": "out", "lora_target_modules": ["q", "v"]}
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_set(["learning_rate"])


def test_method_of() -> None:
    assert method_of({}) == "full"
    assert method_of({"use_peft": True}) == "lora"
    assert method_of({"use_peft": True, "use_dora": True}) == "dora"
    assert method_of({"use_peft": True, "load_in_4bit": True}) == "qlora"


def test_tiny_configs_resolve_with_the_right_trainer() -> None:
    assert resolve(TINY).trainer == "sft"
    dpo = resolve(TINY_DPO)
    assert (dpo.trainer, dpo.method) == ("dpo", "lora")
    assert trainer_directive(TINY_DPO) == "dpo"
    grpo = resolve(TINY_GRPO)
    assert grpo.trainer == "grpo" and grpo.values["reward_funcs"] == ["length_reward", "format_reward"]


def test_yaml_string_numbers_are_converted_like_trl_cli(tmp_path: Path) -> None:
    # YAML 1.1 reads 2e-5 (no dot) as a string; TRL's argparse path turns it into a float.
    cfg = resolve(_write(tmp_path, "model_name_or_path: m\ndataset_name: d\nlearning_rate: 2e-5\nbf16: false\n"))
    assert cfg.values["learning_rate"] == pytest.approx(2e-5)
    # a scalar for a list field is kept as TRL keeps it
    cfg = resolve(_write(tmp_path, "model_name_or_path: m\ndataset_name: d\nuse_peft: true\nlora_target_modules: all-linear\nbf16: false\n"))
    assert cfg.values["lora_target_modules"] == "all-linear"


def test_unknown_key_names_it_and_suggests(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'learning_rat' for trl sft \(did you mean 'learning_rate'\?\)"):
        resolve(_write(tmp_path, "model_name_or_path: m\ndataset_name: d\nlearning_rat: 1.0e-4\n"))


def test_grpo_needs_rewards_and_known_names(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown reward function 'nonsense'"):
        resolve(_write(tmp_path, "model_name_or_path: m\ndataset_name: d\nreward_funcs: [nonsense]\nbf16: false\n"))
    ok = resolve(_write(tmp_path, "model_name_or_path: m\ndataset_name: d\nreward_funcs: [my_rewards:score, format_reward]\nbf16: false\n"))
    assert ok.trainer == "grpo"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("model_name_or_path: m\ndataset_name: d\nbogus_key: 1\n", "unknown key 'bogus_key'"),
        ("model_name_or_path: m\ndataset_name: d\nlearning_rate: fast\n", "key 'learning_rate' expects a number"),
        ("model_name_or_path: m\ndataset_name: d\nmax_steps: [1, 2]\n", "key 'max_steps' expects an integer"),
        ("model_name_or_path: m\ndataset_name: d\nuse_peft: maybe\n", "key 'use_peft' expects true/false"),
        ("dataset_name: d\nlearning_rate: 1.0e-4\n", "missing key 'model_name_or_path'"),
        ("model_name_or_path: m\n", "missing key 'dataset_name'"),
        ("model_name_or_path: m\ndataset_name: d\nload_in_4bit: true\n", "needs 'use_peft: true'"),
        ("- just\n- a list\n", "expected a mapping"),
        ("model_name_or_path: [unclosed\n", "invalid YAML"),
    ],
)
def test_cli_refuses_bad_configs_with_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, needle: str
) -> None:
    cfg = _write(tmp_path, text)
    with pytest.raises(SystemExit) as exc:
        main(["train", str(cfg), "--runs-dir", str(tmp_path / "runs"), "--detach"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tuneterm: error:") and needle in err[0], err
    assert not (tmp_path / "runs").exists(), "nothing may be launched for a refused config"


def test_cli_set_override_is_validated(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["train", str(TINY), "--set", "max_steps=many", "--runs-dir", str(tmp_path), "--detach"])
    assert exc.value.code == 2
    assert "key 'max_steps' expects an integer, got 'many'" in capsys.readouterr().err


def test_missing_and_binary_config_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such config file"):
        read_config_file(tmp_path / "nope.yaml")
    junk = tmp_path / "junk.yaml"
    junk.write_bytes(b"\xff\xfe\x00\x01binary")
    with pytest.raises(ConfigError, match="invalid UTF-8"):
        read_config_file(junk)


@pytest.mark.parametrize(
    "preset",
    # pipeline files (stages:) are checked stage by stage in tests/train/test_pipeline_spec.py
    sorted(p.name for p in (TINY.parent).glob("*.yaml") if "stages" not in (yaml.safe_load(p.read_text()) or {})),
)
def test_every_preset_validates_against_trl(preset: str) -> None:
    import torch

    # transformers refuses bf16 on a machine without a bf16 GPU (a correct refusal); the presets
    # are for GPU boxes, so the CPU test checks everything else.
    overrides = {} if torch.cuda.is_available() else {"bf16": False}
    cfg = resolve(TINY.parent / preset, overrides=overrides, full=True)
    assert cfg.values["model_name_or_path"]
    expected = {"dpo-qwen2.5-0.5b.yaml": "dpo", "tiny-dpo.yaml": "dpo", "grpo-qwen2.5-0.5b.yaml": "grpo",
                "tiny-grpo.yaml": "grpo"}.get(preset, "sft")
    assert cfg.trainer == expected
    if preset.startswith("qlora"):
        assert cfg.method == "qlora"
