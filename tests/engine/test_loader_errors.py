"""Broken rule files give one clear RuleFileError naming file and rule, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuneterm.engine import load_rules
from tuneterm.errors import RuleFileError

GOOD = """
rules:
  - code: L901
    name: test-plateau
    category: loss
    severity: warning
    trainers: [sft]
    detector: plateau
    params: {min_points: 8, head_fraction: 0.1, min_improvement: 0.03, late_start: 0.4,
             min_late_improvement: 0.025, min_level: 0.05, lora_learning_rate: 1.0e-4}
    summary: s
    message: "went from {start} to {end}"
    why: w
    fixes:
      - {key: learning_rate, value: 1.0e-4, why: because}
"""


def _write(tmp_path: Path, text: str, name: str = "diagnostics/t.yaml") -> Path:
    path = tmp_path / "rules" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return tmp_path / "rules"


def test_good_file_loads(tmp_path: Path) -> None:
    rules = load_rules(_write(tmp_path, GOOD))
    assert [r.code for r in rules] == ["L901"]
    assert rules.get("test-plateau").params["metric"] == "loss"  # default filled


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rules: [\n  - code: X1\n   bad indent", "invalid YAML at line"),
        (GOOD.replace("detector: plateau", "detector: flat"), "rule L901: unknown detector 'flat'"),
        (GOOD.replace("    why: w\n", ""), "rule L901: missing field 'why'"),
        (GOOD.replace("min_points: 8", "min_points: eight"), "param 'min_points' must be int"),
        (GOOD.replace("min_points: 8,", "min_points: 8, bogus: 1,"), "unknown param 'bogus'"),
        (GOOD.replace("min_points: 8, ", ""), "missing param 'min_points'"),
        (GOOD.replace("code: L901", "code: L9"), "code 'L9' must be"),
        (GOOD.replace("name: test-plateau", "name: Test_Plateau"), "must be kebab-case"),
        (GOOD.replace("severity: warning", "severity: fatal"), "unknown severity 'fatal'"),
        (GOOD.replace("trainers: [sft]", "trainers: [sft, ppo2]"), "unknown trainer kind 'ppo2'"),
        (GOOD.replace("{end}", "{nowhere}"), "placeholder {nowhere} is not filled"),
        (GOOD.replace("{end}", "{end.__class__}"), "must be a plain name"),
        (GOOD.replace(", why: because", ""), "every fix needs a 'why'"),
        (GOOD.replace("key: learning_rate, value: 1.0e-4, ", ""), "needs 'key' and 'value', or 'command'"),
        ("rules: {a: 1}\n", "expected a top-level 'rules:' list"),
        ("- just\n- a list\n", "expected a top-level 'rules:' list"),
        ("rules:\n  - !!python/object/apply:os.system ['echo pwned']\n", "invalid YAML"),
    ],
)
def test_broken_file(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(RuleFileError) as info:
        load_rules(_write(tmp_path, text))
    message = str(info.value)
    assert expected in message
    assert "\n" not in message and "rules/diagnostics/t.yaml" in message


def test_all_errors_collected(tmp_path: Path) -> None:
    bad = GOOD.replace("detector: plateau", "detector: flat").replace("severity: warning", "severity: x")
    with pytest.raises(RuleFileError) as info:
        load_rules(_write(tmp_path, bad))
    assert "1 more error" in str(info.value)
    assert len(info.value.problems) == 2  # type: ignore[attr-defined]


def test_duplicate_codes_and_names(tmp_path: Path) -> None:
    root = _write(tmp_path, GOOD, "diagnostics/a.yaml")
    _write(tmp_path, GOOD, "diagnostics/b.yaml")
    with pytest.raises(RuleFileError, match="code used twice"):
        load_rules(root)


def test_non_rule_tables_are_ignored(tmp_path: Path) -> None:
    root = _write(tmp_path, GOOD)
    (root / "models.yaml").write_text("families:\n  llama: {vocab: 32000}\n")
    assert len(load_rules(root)) == 1


def test_binary_junk_and_missing_dir(tmp_path: Path) -> None:
    root = _write(tmp_path, GOOD)
    (root / "diagnostics" / "junk.yaml").write_bytes(b"\xff\xfe\x00\x01garbage")
    with pytest.raises(RuleFileError, match="not valid UTF-8"):
        load_rules(root)
    with pytest.raises(RuleFileError, match="not found"):
        load_rules(tmp_path / "nope")
