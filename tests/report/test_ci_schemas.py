"""SARIF and JUnit output against the schemas CI systems enforce, on real logs through the CLI.

Schemas kept as test data (tests/report/data/): the official SARIF 2.1.0 JSON schema
(oasis-tcs/sarif-spec, sarif-2.1/schema/sarif-schema-2.1.0.json; checked with its formats,
``uri-reference`` included) and the Jenkins xunit plugin's JUnit schema (jenkinsci/xunit-plugin,
src/main/resources/org/jenkinsci/plugins/xunit/types/model/xsd/junit-10.xsd).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from lxml import etree

from tests.conftest import REPO

DATA = Path(__file__).with_name("data")
OVERFIT = "012_multi-evalset-overfit_trainer_state.json"  # six eval sets, all overfitting
NO_EVAL = "015_mistral-translator_trainer_state.json"  # healthy, no evaluation data


def _check(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tuneterm", "check", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120, check=False, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})


def _validate_sarif(doc: dict[str, Any]) -> None:
    schema = json.loads((DATA / "sarif-schema-2.1.0.json").read_text(encoding="utf-8"))
    validator = jsonschema.Draft4Validator(schema, format_checker=jsonschema.FormatChecker())
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:5])


def _validate_junit(text: str) -> etree._Element:
    schema = etree.XMLSchema(etree.parse(str(DATA / "junit-10.xsd")))
    root = etree.fromstring(text.encode("utf-8"))
    assert schema.validate(root), schema.error_log
    return root


@pytest.fixture()
def logs(corpus: Path, tmp_path: Path) -> Path:
    """A working directory with the two corpus logs under a directory whose name has a space."""
    d = tmp_path / "work" / "my runs"
    d.mkdir(parents=True)
    for name in (OVERFIT, NO_EVAL):
        shutil.copy(corpus / name, d / name)
    return tmp_path / "work"


def test_the_schema_format_check_is_live() -> None:
    # The uri-reference check needs rfc3986-validator; without it every uri would pass unseen.
    assert not jsonschema.FormatChecker().conforms("my runs/x.json", "uri-reference")


def test_sarif_validates_and_keeps_alerts_of_one_file_apart(logs: Path) -> None:
    proc = _check([f"my runs/{OVERFIT}", "--format", "sarif", "--sarif-category", "tuneterm-nightly"], logs)
    assert proc.returncode == 1 and proc.stderr == "", proc.stderr  # the run also has an error finding
    doc = json.loads(proc.stdout)
    _validate_sarif(doc)
    run = doc["runs"][0]
    # Every result of the file has its own identity (rule + file + series), so code scanning does
    # not merge them into one alert; the overfitting result names the eval set it is about.
    fps = [r["partialFingerprints"]["tuneterm/v2"] for r in run["results"]]
    assert len(set(fps)) == len(fps)
    overfit = [r for r in run["results"] if r["properties"]["name"] == "overfitting"]
    assert overfit and all(r["properties"]["series"].startswith("eval_g") for r in overfit)
    loc = overfit[0]["locations"][0]["physicalLocation"]["artifactLocation"]
    assert loc == {"uri": f"my%20runs/{OVERFIT}", "uriBaseId": "%SRCROOT%"}
    assert run["originalUriBaseIds"]["%SRCROOT%"]["uri"] == (logs.resolve().as_uri() + "/")
    assert run["invocations"][0]["workingDirectory"]["uri"] == logs.resolve().as_uri() + "/"
    assert run["automationDetails"] == {"id": "tuneterm-nightly/"}
    rule = next(r for r in run["tool"]["driver"]["rules"] if r["name"] == "overfitting")
    assert rule["properties"]["precision"] in ("high", "medium", "low")
    assert rule["properties"]["problem.severity"] in ("error", "warning", "recommendation")
    # Stable across runs of the same check.
    again = json.loads(_check([f"my runs/{OVERFIT}", "--format", "sarif"], logs).stdout)
    assert fps == [r["partialFingerprints"]["tuneterm/v2"] for r in again["runs"][0]["results"]]


def test_sarif_paths_outside_the_working_directory_use_a_declared_base(logs: Path) -> None:
    inside = logs / "sub"
    inside.mkdir()
    proc = _check([str(logs / "my runs" / OVERFIT), "--format", "sarif"], inside)
    doc = json.loads(proc.stdout)
    _validate_sarif(doc)
    run = doc["runs"][0]
    loc = run["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]
    assert loc["uriBaseId"] == "LOGROOT" and not loc["uri"].startswith(("/", "file:"))
    base = run["originalUriBaseIds"]["LOGROOT"]["uri"]
    assert base.startswith("file:///") and base.endswith("/") and "my%20runs" in base + loc["uri"]


def test_junit_validates_against_the_xunit_schema_and_skips_rules_that_cannot_run(logs: Path) -> None:
    proc = _check([f"my runs/{OVERFIT}", f"my runs/{NO_EVAL}", "--format", "junit", "--fail-on", "warning"], logs)
    assert proc.returncode == 1, proc.stderr
    root = _validate_junit(proc.stdout)
    assert all(case.get("file") is None for case in root.iter("testcase"))
    overfit_suite, no_eval_suite = root.findall("testsuite")
    assert overfit_suite.get("file") == f"my runs/{OVERFIT}"
    o101 = next(c for c in overfit_suite.iter("testcase") if c.get("name") == "O101 overfitting")
    assert o101.find("failure") is not None
    o101 = next(c for c in no_eval_suite.iter("testcase") if c.get("name") == "O101 overfitting")
    skipped = o101.find("skipped")
    assert skipped is not None and "no evaluation data" in skipped.get("message")
    assert int(no_eval_suite.get("skipped")) == len(no_eval_suite.findall("testcase/skipped")) >= 1
    assert int(overfit_suite.get("skipped")) == 0


def test_six_eval_sets_overfitting_at_one_step_are_six_alerts(tmp_path: Path) -> None:
    # The shape corpus 012 produced before overfitting findings were merged per run: one result
    # per eval set, same rule, same file, same first step, same line.
    from tuneterm.engine.model import Finding, Severity
    from tuneterm.report import render
    from tuneterm.report.result import CheckResult

    findings = tuple(
        Finding("O101", "overfitting", Severity.WARNING, "generalization", f"eval_g{i} loss rose", 401, 12030,
                {"eval_set": f"eval_g{i}", "best_step": 401}, (), (), ())
        for i in range(6)
    )
    result = CheckResult(source="my runs/trainer_state.json", subject="log", format="trainer_state", findings=findings)
    doc = json.loads(render("sarif", [result]))
    _validate_sarif(doc)
    results = doc["runs"][0]["results"]
    assert len({r["partialFingerprints"]["tuneterm/v2"] for r in results}) == 6
    assert {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in results} == {"my%20runs/trainer_state.json"}
