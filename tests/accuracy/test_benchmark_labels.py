"""The accuracy benchmark: real public logs, labelled from their numbers, keep their verdicts.

Every clear label of ``benchmarks/accuracy/labels.yaml`` is reproduced by tuneterm's real
diagnosis (the ``check`` code path): on a problem file each labelled rule fires at warning or
error level, on a healthy file nothing fires at warning or error level (rules a label lists under
``also_ok`` may). The files tuneterm currently gets wrong are listed, with the reason, in
``benchmarks/accuracy/known_misses.yaml``; the test holds them to exactly that, so a detector
change that fixes one fails here and asks for the list to shrink, and one that breaks a file
that was right fails as a regression.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
_SPEC = importlib.util.spec_from_file_location("accuracy_benchmark", REPO / "benchmarks" / "accuracy_benchmark.py")
assert _SPEC is not None and _SPEC.loader is not None
ab = importlib.util.module_from_spec(_SPEC)
sys.modules["accuracy_benchmark"] = ab  # dataclasses resolve their module by name
_SPEC.loader.exec_module(ab)

LOGS = ab.load_labels()
CLEAR = [log for log in LOGS if log.clear]
ENTRIES = yaml.safe_load(ab.LABELS.read_text(encoding="utf-8"))["logs"]
KNOWN = {e["file"]: e for e in yaml.safe_load(ab.KNOWN_MISSES.read_text(encoding="utf-8"))["known_misses"]}
TRAINERS = {"sft", "dpo", "orpo", "kto", "grpo", "other"}


def _rule_names() -> set[str]:
    from tuneterm.report import CheckOptions

    return {rule.name for rule in CheckOptions().ruleset(None).rules}


def test_benchmark_size_and_balance() -> None:
    """At least 150 logs, at least a third of them healthy, problems of several kinds."""
    assert len(LOGS) >= 150
    assert sum(1 for log in LOGS if log.healthy) * 3 >= len(LOGS)
    assert len({name for log in CLEAR for name in log.problems}) >= 8


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["file"] for e in ENTRIES])
def test_log_is_the_recorded_git_blob(entry: dict) -> None:
    """Each file is byte-for-byte the git blob named in its provenance (git's object hash)."""
    data = (ab.ACCURACY / "logs" / entry["file"]).read_bytes()
    assert len(data) == entry["bytes"]
    blob = hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()  # git's object id
    assert blob == entry["blob"], f"{entry['file']} is not the blob of {entry['repository']}:{entry['path']}"
    assert len(entry["commit"]) == 40 and "/" in entry["repository"]


def test_labels_use_real_rule_names() -> None:
    """Labels and also_ok name existing rules; trainers are from the fixed list; names are unique."""
    names = _rule_names()
    for log in LOGS:
        assert log.problems <= names, (log.name, sorted(log.problems - names))
        assert log.also_ok <= names, (log.name, sorted(log.also_ok - names))
        assert not log.problems & log.also_ok, log.name
        assert log.trainer in TRAINERS, log.name
    assert len({log.name for log in LOGS}) == len(LOGS)


def test_known_misses_name_clear_files_with_reasons() -> None:
    """Every known miss is a clear benchmark file, says what goes wrong and why."""
    clear = {log.name for log in CLEAR}
    for name, entry in KNOWN.items():
        assert name in clear, f"{name}: not a clear benchmark file"
        wrong = {*entry["missed"], *entry["false_alarms"]} | ({"unreadable"} if entry.get("unreadable") else set())
        assert wrong, name
        assert set(entry["why"]) == wrong, f"{name}: every miss, false alarm or unreadable file says why"
        assert all(len(text) > 20 for text in entry["why"].values()), name


@pytest.mark.parametrize("log", CLEAR, ids=[log.name for log in CLEAR])
def test_clear_label_is_reproduced(log: ab.Labelled) -> None:
    """The diagnosis matches the label, or goes wrong exactly as known_misses.yaml records."""
    outcome = ab.diagnose(log)
    got = {"missed": sorted(outcome.missed), "false_alarms": sorted(outcome.false_alarms),
           "unreadable": outcome.error is not None}
    known = KNOWN.get(log.name)
    if known is None:
        assert outcome.correct, f"{log.name}: {got} (label {sorted(log.problems) or 'healthy'})"
    else:
        assert got == {"missed": known["missed"], "false_alarms": known["false_alarms"],
                       "unreadable": known.get("unreadable", False)}, (
            f"{log.name} changed against known_misses.yaml: now {got}; if it is fixed, remove or "
            f"shrink its entry"
        )


def test_shrink_known_misses_only_removes(tmp_path: Path) -> None:
    """Shrinking drops entries that are now right and rules that no longer go wrong, adds nothing."""
    wrong = next(log for log in CLEAR if log.name in KNOWN)
    right = next(log for log in CLEAR if log.name not in KNOWN)
    entry = KNOWN[wrong.name]
    stale = dict(entry, false_alarms=sorted({*entry["false_alarms"], "zero-loss"}),
                 why=dict(entry["why"], **{"zero-loss": "an old false alarm that no longer fires"}))
    path = tmp_path / "known_misses.yaml"
    path.write_text(yaml.safe_dump({"known_misses": [
        stale, {"file": right.name, "missed": ["overfitting"], "false_alarms": [], "why": {"overfitting": "x" * 30}},
    ]}), encoding="utf-8")
    outcomes = [ab.diagnose(wrong), ab.diagnose(right)]
    changed, new_wrong = ab.shrink_known_misses(outcomes, path)
    assert sorted(changed) == sorted([wrong.name, right.name])
    assert new_wrong == []
    kept = yaml.safe_load(path.read_text(encoding="utf-8"))["known_misses"]
    assert [e["file"] for e in kept] == [wrong.name]
    assert kept[0]["false_alarms"] == entry["false_alarms"]
    assert "zero-loss" not in kept[0]["why"]


def test_benchmark_script_json() -> None:
    """The script runs as a program and its --json figures agree with the known misses."""
    import json
    import subprocess

    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "accuracy_benchmark.py"), "--json"],
                          capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(proc.stdout)
    assert doc["files"] == len(LOGS) and doc["clear"] == len(CLEAR)
    assert sorted(w["file"] for w in doc["wrong"]) == sorted(KNOWN)
    assert 0 < doc["recall"] <= 1 and 0 <= doc["false_alarm_rate"] <= 1
    assert doc["rules"]["overfitting"]["tp"] > 0


def test_markdown_figures_match_the_summary() -> None:
    """--markdown prints the recall and false-alarm figures and one table row per scored rule."""
    logs = [next(log for log in CLEAR if log.healthy)] + [log for log in CLEAR if "overfitting" in log.problems][:2]
    outcomes = [ab.diagnose(log) for log in logs]
    summary = ab.summarise(outcomes)
    text = ab.render_markdown(summary, outcomes)
    assert f"{summary.problem_pairs_found}/{summary.problem_pairs} labelled rules" in text
    assert f"{summary.healthy_with_false_alarm}/{summary.clear_healthy_files}" in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| rule")]
    assert len(rows) == len(summary.rules) and any(row.startswith("| overfitting |") for row in rows)
