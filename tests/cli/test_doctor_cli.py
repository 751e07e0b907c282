"""``tuneterm doctor`` and ``tuneterm rules`` / ``tuneterm rule`` through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.cells import cell_len

from tests.conftest import corpus_file
from tuneterm.engine import load_rules
from tuneterm.resources import samples_dir

from .helpers import nan_run, run_cli, run_script


def test_doctor_report_on_a_corpus_file(capsys) -> None:
    code, out, err = run_cli(capsys, "doctor", str(corpus_file("001_")), "--width", "80")
    assert code == 0 and err == ""  # intermittent zero grad norm: warnings only
    lines = out.splitlines()
    assert lines[0].startswith("! ") and "001_gpt2-chatbot-zero-gradnorm_trainer_state.json" in out
    assert "zero-grad-norm" in out and "┤" in out  # a finding and a chart
    assert all(cell_len(line) <= 80 for line in lines)
    assert "\x1b" not in out  # not a terminal: no escape codes


def test_doctor_exit_codes(tmp_path: Path, capsys) -> None:
    code, out, _ = run_cli(capsys, "doctor", str(nan_run(tmp_path / "trainer_state.json")), "--no-charts")
    assert code == 1 and out.startswith("✗ ")
    code, out, err = run_cli(capsys, "doctor", str(corpus_file("031_")))
    assert (code, out) == (3, "") and "no training metrics" in err
    code, out, err = run_cli(capsys, "doctor", str(tmp_path / "missing"))
    assert (code, out) == (2, "") and err.startswith("tuneterm: error: ")
    code, _, err = run_cli(capsys, "doctor")
    assert code == 2 and "--demo" in err


def test_doctor_demo(capsys) -> None:
    assert samples_dir().is_dir() and any(p.is_dir() for p in samples_dir().iterdir())
    code, out, err = run_cli(capsys, "doctor", "--demo", "--width", "80", "--no-charts")
    assert code in (0, 1) and out and err == ""
    assert out.count(" in ") >= 2


def test_doctor_hostile_path_is_inert(tmp_path: Path) -> None:
    d = tmp_path / "[red]x[blink]"
    d.mkdir()
    proc = run_script("doctor", str(nan_run(d / "trainer_state.json")), "--width", "400", env={"NO_COLOR": "1"})
    assert proc.returncode == 1
    assert "[red]x[blink]" in proc.stdout and "\x1b" not in proc.stdout


def test_rules_lists_every_rule(capsys) -> None:
    rules = load_rules().rules
    code, out, _ = run_cli(capsys, "rules", "--width", "120")
    assert code == 0
    for r in rules:
        assert r.code in out and r.name in out
    code, out, _ = run_cli(capsys, "rules", "--format", "json")
    data = json.loads(out)
    assert code == 0 and [d["code"] for d in data] == [r.code for r in rules]
    assert {"code", "name", "severity", "category", "trainers", "summary", "fixes", "params"} <= set(data[0])


@pytest.mark.parametrize("query", ["zero-grad-norm", "code"])
def test_rule_explains_one(capsys, query: str) -> None:
    rule = load_rules().get("zero-grad-norm")
    assert rule is not None
    code, out, _ = run_cli(capsys, "rule", rule.code if query == "code" else query, "--width", "80")
    assert code == 0
    for heading in ("What it detects", "Why it matters", "Likely causes", "Fixes", "Parameters"):
        assert heading in out
    assert f"detector {rule.detector}" in out
    assert all(cell_len(line) <= 80 for line in out.splitlines())
    code, out, _ = run_cli(capsys, "rule", rule.code.lower(), "-f", "json")
    assert code == 0 and json.loads(out)["name"] == "zero-grad-norm"


def test_unknown_rule_suggests_the_closest(capsys) -> None:
    code, out, err = run_cli(capsys, "rule", "zero-grad")
    assert (code, out) == (2, "")
    assert err.strip() == "tuneterm: error: unknown rule 'zero-grad'; did you mean 'zero-grad-norm'?"
