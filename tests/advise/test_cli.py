"""The prescription's faces through the real CLI: doctor's section, check --format json, --fix -o."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import corpus_file
from tuneterm.resources import samples_dir

SAMPLE = samples_dir() / "qlora-undertrained"


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tuneterm", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, check=False)


def t4_log(tmp_path: Path) -> Path:
    """An Unsloth console log from a T4 (sm_75, no bf16) whose loss turns NaN at step 11."""
    lines = ["==((====))==  Unsloth 2024.8: Fast Llama patching.",
             "   \\\\   /|    GPU: Tesla T4. Max memory: 14.748 GB. Platform = Linux.",
             "***** Running training *****", "  Num examples = 1,000",
             "  Instantaneous batch size per device = 2", "  Gradient Accumulation steps = 4",
             "  Total optimization steps = 60"]
    for i in range(1, 31):
        v = "nan" if i > 10 else f"{2.0 - i * 0.01:.3f}"
        lines.append(f"{{'loss': {v}, 'grad_norm': {'nan' if i > 10 else '1.5'}, 'learning_rate': 0.0002, 'epoch': {i * 8 / 1000:.3f}}}")
    p = tmp_path / "t4.log"
    p.write_text("\n".join(lines) + "\n")
    return p


def test_check_json_carries_one_prescription(tmp_path: Path) -> None:
    proc = cli("check", str(SAMPLE), "--format", "json", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(proc.stdout)
    p = doc["prescription"]
    keys = [c["key"] for c in p["changes"]]
    assert len(keys) == len(set(keys)) and keys
    for c in p["changes"]:
        assert set(c) == {"key", "value", "was", "why", "findings"} and c["findings"]
    for s in p["steps"]:
        assert set(s) == {"command", "why"}
    by = {c["key"]: c for c in p["changes"]}
    assert by["learning_rate"]["was"] == 5e-5 and by["learning_rate"]["value"] == 1e-4
    assert "warmup_ratio" not in by and "is_trainable" not in by
    assert all(f["fixes"] is not None for f in doc["findings"])  # per-finding fixes stay (SARIF, annotations)


def test_doctor_ends_with_the_prescription(tmp_path: Path) -> None:
    proc = cli("doctor", str(SAMPLE), "--no-charts", "--width", "120", cwd=tmp_path)
    assert proc.returncode == 1
    out = proc.stdout
    tail = out[out.index("Prescription"):]
    assert "learning_rate: 5e-05 → 0.0001" in tail and "· fixes L103" in tail
    assert tail.index("print_trainable_parameters") < tail.index("learning_rate:")  # diagnostics first


def test_fix_writes_the_runs_config_with_the_changes(tmp_path: Path) -> None:
    out = tmp_path / "fixed.yaml"
    proc = cli("doctor", str(SAMPLE), "--fix", "-o", str(out), "--no-charts", cwd=tmp_path)
    assert proc.returncode == 1 and out.is_file(), proc.stderr
    cfg = yaml.safe_load(out.read_text())
    original = yaml.safe_load((SAMPLE / "training_config.yaml").read_text())
    assert cfg["model_name_or_path"] == original["model_name_or_path"]
    assert cfg["learning_rate"] == 1e-4 and cfg["max_steps"] == 2000
    assert cfg["per_device_train_batch_size"] * cfg["gradient_accumulation_steps"] == 32
    assert "the run's config" in out.read_text().splitlines()[1]
    check = cli("check", str(out), "--gpu-memory", "80GiB", cwd=tmp_path)  # a config check accepts it
    assert check.returncode in (0, 1), check.stderr


def test_fix_without_a_config_writes_a_marked_fragment(tmp_path: Path) -> None:
    out = tmp_path / "fragment.yaml"
    proc = cli("doctor", str(corpus_file("006_")), "--fix", "-o", str(out), "--no-charts", cwd=tmp_path)
    assert proc.returncode in (0, 1) and out.is_file(), proc.stderr
    text = out.read_text()
    assert "NOT a complete config" in text
    cfg = yaml.safe_load(text)
    assert cfg["learning_rate"] < 5 * 0.01 and "model_name_or_path" not in cfg  # one rate, not 0.5 and 2e-4


def test_fix_needs_one_path_and_output(tmp_path: Path) -> None:
    assert cli("doctor", str(SAMPLE), "--fix", cwd=tmp_path).returncode == 2
    proc = cli("doctor", str(SAMPLE), "-o", str(tmp_path / "x.yaml"), cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_no_bf16_on_a_t4(tmp_path: Path) -> None:
    proc = cli("check", str(t4_log(tmp_path)), "--format", "json", cwd=tmp_path)
    doc = json.loads(proc.stdout)
    assert any(x.get("key") == "bf16" for f in doc["findings"] for x in f["fixes"])  # the rule's generic fix
    p = doc["prescription"]
    assert "bf16" not in [c["key"] for c in p["changes"]]
    assert any("T4" in a and "bf16" in a for a in p["assumptions"])


def test_empty_responses_one_liner_keeps_rows_with_an_empty_input(tmp_path: Path) -> None:
    """The data rule's fix drops only rows whose response is empty, never Alpaca rows with "input": ""."""
    import shlex

    from tuneterm.engine import load_rules

    rule = load_rules().get("empty-responses")
    assert rule is not None
    command = next(f.command for f in rule.fixes if f.command)
    words = shlex.split(command.split("<")[0])
    assert words[:2] == ["python", "-c"]
    rows = [{"instruction": "Say hi", "input": "", "output": "Hi!"},
            {"instruction": "Add", "input": "2+2", "output": "  "},
            {"instruction": "Name a colour", "input": "", "output": ""},
            {"instruction": "Echo", "input": "x", "output": "x"}]
    data = "".join(json.dumps(r) + "\n" for r in rows)
    proc = subprocess.run([sys.executable, "-c", words[2], *words[3:]], input=data, capture_output=True, text=True,
                          check=True, timeout=60)
    kept = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert [r["instruction"] for r in kept] == ["Say hi", "Echo"]
