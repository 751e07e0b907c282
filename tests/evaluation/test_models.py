"""Resolving the fine-tuned argument: run directory, adapter, merged model, hub id, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuneterm.errors import InputError
from tuneterm.evaluation.models import resolve_name, resolve_target


def _adapter(d: Path, base: str = "org/base") -> Path:
    d.mkdir(parents=True)
    (d / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": base, "peft_type": "LORA"}))
    return d


def _merged(d: Path) -> Path:
    d.mkdir(parents=True)
    (d / "config.json").write_text("{}")
    (d / "model.safetensors").write_bytes(b"")
    return d


def test_adapter_and_merged_dirs(tmp_path: Path) -> None:
    a = resolve_target(str(_adapter(tmp_path / "ad")))
    assert a.kind == "adapter" and a.is_adapter and a.base == "org/base"
    m = resolve_target(str(_merged(tmp_path / "m")))
    assert m.kind == "merged" and not m.is_adapter and m.base is None


def test_run_directory_finds_its_final_adapter_base_and_data(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "r1"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(
        "model_name_or_path: tuneterm:tiny-llama\ndataset_name: tuneterm:tiny-sft\nlearning_rate: 0.0002\n"
    )
    (run / "status.json").write_text('{"state": "finished"}')
    _adapter(run / "output" / "checkpoint-10")
    _adapter(run / "output" / "checkpoint-20")
    t = resolve_target(str(run))
    assert t.kind == "run" and t.is_adapter and t.model_path.endswith("checkpoint-20")
    assert t.base == "tuneterm:tiny-llama" and t.train_data == "tuneterm:tiny-sft" and t.train_split == "train"
    _adapter(run / "output" / "final", base="x")
    (run / "output" / "adapter_config.json").write_text("{}")  # the final save at the top wins
    assert resolve_target(str(run)).model_path == str(run / "output")


def test_run_directory_without_a_model_is_a_clear_error(tmp_path: Path) -> None:
    run = tmp_path / "r"
    run.mkdir()
    (run / "config.yaml").write_text("model_name_or_path: m\n")
    (run / "status.json").write_text("{}")
    with pytest.raises(InputError, match="no saved model"):
        resolve_target(str(run))


def test_bad_targets(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="not a run directory, adapter"):
        resolve_target(str(tmp_path / "empty"))
    f = tmp_path / "file.bin"
    f.write_bytes(b"\x00")
    with pytest.raises(InputError, match="is a file"):
        resolve_target(str(f))
    with pytest.raises(InputError, match="no such model directory"):
        resolve_target("./missing/dir")
    assert resolve_target("Qwen/Qwen2.5-0.5B-Instruct").kind == "hub"
    with pytest.raises(InputError, match="no such model directory"):
        resolve_name("/definitely/not/here")
