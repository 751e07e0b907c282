"""``tuneterm check``: exit codes, formats parsed back, rule selection, stdout vs stderr."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.conftest import corpus_file
from tuneterm.engine import load_rules

from .helpers import nan_run, run_cli, run_script

HEALTHY = "014_"  # TinyLlama SFT, eval loss falls at every evaluation (INDEX.md: healthy)


def _no_traceback(err: str) -> None:
    assert "Traceback" not in err
    for line in err.splitlines():
        assert line.startswith("tuneterm: "), line


def test_healthy_corpus_file_passes(capsys) -> None:
    code, out, err = run_cli(capsys, "check", str(corpus_file(HEALTHY)))
    assert code == 0, out + err
    assert out.splitlines()[-1].startswith("0 errors, 0 warnings")
    assert err == ""


def test_nan_run_fails_the_gate(tmp_path: Path, capsys) -> None:
    code, out, err = run_cli(capsys, "check", str(nan_run(tmp_path / "trainer_state.json")))
    assert code == 1, out + err
    assert " nan-or-inf [error] " in out
    assert err == ""


def test_nan_corpus_file_is_found(capsys) -> None:
    path = str(corpus_file("057_"))  # grad_norm NaN at steps 1-3 (JSON NaN literals)
    code, out, _ = run_cli(capsys, "check", path, "--select", "nan-or-inf", "--fail-on", "info", "--format", "json")
    doc = json.loads(out)
    assert code == 1 and [f["name"] for f in doc["findings"]] == ["nan-or-inf"]
    assert doc["findings"][0]["first_step"] == 1


def test_missing_path_is_exit_2_with_one_line(capsys, tmp_path: Path) -> None:
    code, out, err = run_cli(capsys, "check", str(tmp_path / "nope.json"))
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and "nope.json" in err and err.startswith("tuneterm: error: ")


def test_binary_junk_is_exit_2(capsys, tmp_path: Path) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(bytes(range(256)) * 64 + b"\x00\xff\x1b[2J")
    code, out, err = run_cli(capsys, "check", str(junk))
    assert (code, out) == (2, "")
    _no_traceback(err)
    assert "\x1b" not in err


@pytest.mark.parametrize("prefix", ["046_", "031_"])
def test_no_metrics_is_exit_3(capsys, prefix: str) -> None:
    path = str(corpus_file(prefix))
    code, out, err = run_cli(capsys, "check", path)
    assert (code, out) == (3, "")
    assert err.startswith("tuneterm: error: no training metrics in ") and Path(path).name in err


def test_some_paths_empty_warns_and_checks_the_rest(capsys) -> None:
    empty, healthy = str(corpus_file("046_")), str(corpus_file(HEALTHY))
    code, out, err = run_cli(capsys, "check", empty, healthy, "--format", "json")
    assert code == 0
    docs = json.loads(out)
    assert isinstance(docs, list) and [d["source"] for d in docs] == [healthy]
    assert err.startswith("tuneterm: warning: no training metrics in ") and "skipped" in err


def test_unreadable_among_readable_is_exit_2_but_reports_the_rest(capsys, tmp_path: Path) -> None:
    code, out, err = run_cli(capsys, "check", str(corpus_file(HEALTHY)), str(tmp_path / "missing"), "-f", "json")
    assert code == 2
    assert len(json.loads(out)) == 1 and "missing" in err


def test_fail_on_warning_vs_error(tmp_path: Path, capsys) -> None:
    # 001: grad_norm exactly 0 at 8 of 75 steps: intermittent, a warning and not an error.
    path = str(corpus_file("001_"))
    code_err, out, _ = run_cli(capsys, "check", path, "--select", "zero-grad-norm", "-f", "json")
    doc = json.loads(out)
    assert [(f["name"], f["severity"]) for f in doc["findings"]] == [("zero-grad-norm", "warning")]
    assert code_err == 0
    code_warn, _, _ = run_cli(capsys, "check", path, "--select", "zero-grad-norm", "--fail-on", "warning")
    assert code_warn == 1


def test_select_and_ignore_by_name_code_and_prefix(tmp_path: Path, capsys) -> None:
    path = str(nan_run(tmp_path / "trainer_state.json"))
    rule = load_rules().get("nan-or-inf")
    assert rule is not None

    def names(*flags: str) -> set[str]:
        code, out, err = run_cli(capsys, "check", path, "-f", "json", "--fail-on", "info", *flags)
        assert code in (0, 1), err
        return {f["name"] for f in json.loads(out)["findings"]}

    everything = names()
    assert "nan-or-inf" in everything
    assert names("--select", "nan-or-inf") == {"nan-or-inf"}
    assert names("--select", rule.code) == {"nan-or-inf"}
    assert names("--select", rule.code[0]) >= {"nan-or-inf"}
    assert names("--select", rule.code[0]) <= {r.name for r in load_rules().rules if r.code[0] == rule.code[0]}
    assert "nan-or-inf" not in names("--ignore", "nan-or-inf")
    assert "nan-or-inf" not in names("--ignore", rule.code)
    same_letter = {r.name for r in load_rules().rules if r.code[0] == rule.code[0]}
    assert names("--ignore", f"{rule.code},{rule.code[0]}") == everything - same_letter
    assert names("--select", "nan-or-inf", "--select", "zero-grad-norm") <= {"nan-or-inf", "zero-grad-norm"}


def test_unknown_rule_name_is_usage_error(capsys) -> None:
    code, out, err = run_cli(capsys, "check", str(corpus_file(HEALTHY)), "--select", "no-such-rule")
    assert (code, out) == (2, "")
    assert "no-such-rule" in err and err.startswith("tuneterm: error: ")


def test_bad_format_is_usage_error(capsys) -> None:
    code, out, err = run_cli(capsys, "check", str(corpus_file(HEALTHY)), "--format", "yaml")
    assert code == 2 and out == "" and "yaml" in err


@pytest.mark.parametrize("fmt", ["text", "json", "sarif", "github", "junit"])
def test_every_format_parses_back(fmt: str, tmp_path: Path, capsys) -> None:
    bad = str(nan_run(tmp_path / "trainer_state.json"))
    zero = str(corpus_file("001_"))
    code, out, err = run_cli(capsys, "check", bad, zero, "--format", fmt, "--fail-on", "warning")
    assert code == 1 and err == ""
    if fmt == "text":
        lines = out.splitlines()
        assert any(" nan-or-inf [error] " in ln for ln in lines)
        assert lines[-1].endswith("in 2 files")
    elif fmt == "json":
        docs = json.loads(out)
        assert [d["tool"] for d in docs] == ["tuneterm", "tuneterm"]
        assert docs[0]["summary"]["errors"] >= 1 and docs[0]["summary"]["trainer"] == "sft"
    elif fmt == "sarif":
        doc = json.loads(out)
        assert doc["version"] == "2.1.0"
        rules = doc["runs"][0]["tool"]["driver"]["rules"]
        results = doc["runs"][0]["results"]
        assert results and all(rules[r["ruleIndex"]]["id"] == r["ruleId"] for r in results)
        uris = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in results}
        assert all("\\" not in u for u in uris)
    elif fmt == "github":
        lines = out.splitlines()
        assert lines and all(ln.startswith(("::error ", "::warning ", "::notice ")) for ln in lines)
        assert any("title=tuneterm " in ln and "nan-or-inf::" in ln for ln in lines)
    else:
        root = ET.fromstring(out.encode("utf-8"))
        suites = root.findall("testsuite")
        assert len(suites) == 2 and int(root.get("failures")) >= 2
        assert all(len(s.findall("testcase")) > 5 for s in suites)


def test_output_file(tmp_path: Path, capsys) -> None:
    target = tmp_path / "report.sarif"
    code, out, err = run_cli(capsys, "check", str(corpus_file(HEALTHY)), "-f", "sarif", "--output", str(target))
    assert (code, out, err) == (0, "", "")
    assert json.loads(target.read_text(encoding="utf-8"))["runs"][0]["results"] == []


def test_console_script_end_to_end(tmp_path: Path) -> None:
    # The real entry point: exit codes survive the process boundary; stdout is data only.
    ok = run_script("check", str(corpus_file(HEALTHY)), "--format", "json")
    assert ok.returncode == 0 and json.loads(ok.stdout)["summary"]["errors"] == 0 and ok.stderr == ""
    bad = run_script("check", str(nan_run(tmp_path / "trainer_state.json")))
    assert bad.returncode == 1 and "nan-or-inf" in bad.stdout
    missing = run_script("check", str(tmp_path / "missing.json"))
    assert missing.returncode == 2 and missing.stdout == "" and "Traceback" not in missing.stderr
    empty = run_script("check", str(corpus_file("031_")))
    assert empty.returncode == 3 and "no training metrics" in empty.stderr
