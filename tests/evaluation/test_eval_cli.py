"""``tuneterm eval`` end to end on tiny models trained in the session (CPU, real generation).

* a LoRA adapter trained on the task vs its base: ROUGE improves with a CI above 0, no error;
* a model collapsed by a huge learning rate: degenerate-generations and catastrophic-forgetting,
  exit 1 (the real console script in a subprocess);
* a tuneterm run directory: finds its adapter, base and training data, drops overlapping examples;
  dataset text with Rich markup and escape sequences is shown inert;
* bad input: exit 2 with one line.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tuneterm.cli import main

pytestmark = [pytest.mark.slow, pytest.mark.train]

FAST = ["--max-new-tokens", "24", "--quiet"]


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(args)
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


def _console(args: list[str], timeout: int = 240) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("tuneterm")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "tuneterm"]
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "120", "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd + args, capture_output=True, text=True, timeout=timeout, env=env, check=False)


def test_trained_adapter_beats_its_base(tiny_models: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _cli(["eval", str(tiny_models["adapter"]), "--base", str(tiny_models["base"]),
                         "--data", str(tiny_models["test"]), "--format", "json", *FAST], capsys)
    doc: dict[str, Any] = json.loads(out)
    assert code == 0, doc["findings"]
    rl = doc["metrics"]["deltas"]["rougeL"]
    assert rl["ci_low"] > 0 and rl["verdict"] == "better", rl
    assert doc["metrics"]["finetuned"]["rougeL"] > doc["metrics"]["base"]["rougeL"] + 0.2
    assert doc["metrics"]["deltas"]["rouge1"]["resamples"] == 1000
    assert not [f for f in doc["findings"] if f["severity"] == "error"]
    assert doc["data"]["how"] == "file" and doc["data"]["n"] == len(doc["examples"]) > 0
    assert doc["settings"]["decoding"] == "greedy" and doc["settings"]["prompt_format"]["finetuned"] == "chat"
    probes = doc["probes"]
    assert probes["perplexity"]["ratio"] < 1.5 and probes["pass_rate"]["finetuned"] >= 0.6
    ex = doc["examples"][0]
    assert {"prompt", "reference", "base", "finetuned", "delta_rougeL"} <= set(ex)
    # Worst first: ROUGE-L deltas are non-decreasing among non-degenerate examples.
    deltas = [e["delta_rougeL"] for e in doc["examples"] if not e["finetuned"]["check"]["degenerate"]]
    assert deltas == sorted(deltas)


def test_collapsed_model_is_flagged(tiny_models: dict[str, Path]) -> None:
    proc = _console(["eval", str(tiny_models["collapsed"]), "--base", str(tiny_models["base"]),
                     "--data", str(tiny_models["test"]), "--examples", "2", *FAST])
    assert proc.returncode == 1, proc.stderr
    out = proc.stdout
    assert "E101 catastrophic-forgetting [error]" in out
    assert "E102 degenerate-generations [error]" in out
    assert "fix: learning_rate" in out and "fix: use_peft: true" in out
    assert "Examples, worst first (2 of" in out and "prompt" in out and "reference" in out
    assert "Traceback" not in proc.stderr


def test_run_directory_excludes_training_data_and_shows_text_inert(
    tiny_models: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "runs" / "colour-lora"
    shutil.copytree(tiny_models["adapter"], run / "output")
    train = tmp_path / "train.jsonl"
    shutil.copy(tiny_models["train"], train)
    (run / "config.yaml").write_text(f"model_name_or_path: {tiny_models['base']}\ndataset_name: {train}\n"
                                     "learning_rate: 0.005\nuse_peft: true\n")
    (run / "status.json").write_text('{"state": "finished"}')
    rows = tiny_models["test"].read_text().splitlines()[:3]
    rows.append(tiny_models["train"].read_text().splitlines()[0])  # seen in training: must be dropped
    hostile = {"messages": [{"role": "user", "content": "What colour is the [bold red]flag[/] \x1b[31mnow\x1b[0m?"},
                            {"role": "assistant", "content": "The flag is red in colour."}]}
    rows.append(json.dumps(hostile))
    data = tmp_path / "heldout.jsonl"
    data.write_text("\n".join(rows) + "\n")
    code, out, _ = _cli(["eval", str(run), "--data", str(data), "--probes", "none", *FAST,
                         "--examples", "10", "--width", "400"], capsys)
    assert code == 0
    assert "1 dropped (in the run's training data)" in out
    assert "4 examples" in out
    assert "[bold red]flag[/]" in out and "\x1b" not in out
    code, out, _ = _cli(["eval", str(run), "--data", str(data), "--probes", "none", *FAST,
                         "--format", "json"], capsys)
    doc = json.loads(out)
    assert doc["target"]["kind"] == "run" and doc["target"]["is_adapter"]
    assert doc["data"]["overlap_removed"] == 1 and doc["probes"] is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["eval", "/nonexistent/model", "--base", "x", "--data", "d.jsonl"], "no such model directory"),
        (["eval", "Qwen/Qwen2.5-0.5B", "--data", "d.jsonl"], "--base"),
    ],
)
def test_bad_input_exits_2_with_one_line(args: list[str], message: str) -> None:
    proc = _console(args, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tuneterm: error:") and message in lines[0]


def test_bad_data_file_exits_2(tiny_models: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "test.jsonl"
    bad.write_text('{"question": "a", "answer": "b"}\n{"question": ')
    code, out, err = _cli(["eval", str(tiny_models["adapter"]), "--base", str(tiny_models["base"]),
                           "--data", str(bad)], capsys)
    assert code == 2 and out == ""
    assert "test.jsonl:2: malformed JSON line" in err and err.count("\n") == 1
