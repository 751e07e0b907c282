"""The training process's rendering of the recipe data shapes (tuneterm.train.data_prepare), on the
built-in datasets loaded through `datasets` as the runner loads them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.train.conftest import TINY, metrics, needs_trl, run_cli


@needs_trl
def test_prepare_renders_instruction_rows_with_seeded_templates(tiny_model: str) -> None:
    from tuneterm.assets.builtin import load_builtin_dataset
    from tuneterm.train.data_prepare import prepare

    data = load_builtin_dataset("tuneterm:tiny-instructions")
    out = prepare(data, {"templates": ["random"], "template_seed": 0}, tiny_model)
    assert set(out) == {"train", "test"} and out["train"].column_names == ["prompt", "completion"]
    heads = {p.split("\n", 1)[0].split(" ", 1)[0] for p in out["train"]["prompt"]}
    assert len(heads) >= 3  # several templates in use
    same = prepare(data, {"templates": ["random"], "template_seed": 0}, tiny_model)
    assert same["train"]["prompt"] == out["train"]["prompt"]


@needs_trl
@pytest.mark.parametrize(("name", "columns"), [("tuneterm:tiny-sharegpt", ["messages"]),
                                                ("tuneterm:tiny-prompt-output", ["prompt", "completion"])])
def test_prepare_renders_sharegpt_and_prompt_output_rows(name: str, columns: list[str], tiny_model: str) -> None:
    from tuneterm.assets.builtin import load_builtin_dataset
    from tuneterm.train.data_prepare import prepare

    out = prepare(load_builtin_dataset(name), None, tiny_model)
    assert out["train"].column_names == columns
    if columns == ["messages"]:
        assert out["train"][0]["messages"][0]["role"] == "user"
    else:  # the tiny model has a chat template: prompt/output become chat turns
        assert out["train"][0]["prompt"][0]["role"] == "user"


@needs_trl
def test_prepare_leaves_trl_formats_alone(tiny_model: str) -> None:
    from tuneterm.assets.builtin import load_builtin_dataset
    from tuneterm.train.data_prepare import prepare

    data = load_builtin_dataset("tuneterm:tiny-dpo")
    for options in ({"templates": ["random"]}, None):
        out = prepare(data, options, tiny_model)
        assert out["train"].column_names == data["train"].column_names
        assert out["train"][0] == data["train"][0]


@needs_trl
def test_one_run_trains_on_instruction_rows_with_random_templates(tmp_path: Path, tiny_model: str) -> None:
    runs = tmp_path / "runs"
    r = run_cli(["train", str(TINY), "--headless", "--runs-dir", str(runs), "--name", "t", "--sample-every", "1000",
                 "--set", "dataset_name=tuneterm:tiny-instructions", "--set", "max_steps=3",
                 "--templates", "random", "--template-seed", "5"], cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    launch = json.loads((runs / "t" / "launch.json").read_text(encoding="utf-8"))
    assert launch["data"] == {"templates": ["random"], "template_seed": 5}
    assert len(metrics(runs / "t")) >= 3
    bad = run_cli(["train", str(TINY), "--templates", "mine"], cwd=tmp_path)
    assert bad.returncode == 2 and "only 'random'" in bad.stderr
