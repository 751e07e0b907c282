"""The machine formats of ``tuneterm check``: each parses back and carries the contract."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from tuneterm import __version__
from tuneterm.engine.model import Severity
from tuneterm.report import FORMATS, render
from tuneterm.report.github import escape_data, escape_property
from tuneterm.report.result import display_path, json_safe

from .builders import HOSTILE, RULES, clean_result, make_result

SOURCE = "runs/a/trainer_state.json"


def test_text_golden() -> None:
    out = render("text", [make_result(SOURCE), clean_result()])
    assert out == (
        "runs/a/trainer_state.json: G101 zero-grad-norm [error] grad_norm is 0.0 at 49 of 50 logged steps\n"
        "runs/a/trainer_state.json:7: X101 run-crashed [warning] the run ended in KeyboardInterrupt: [bold red]x[/]\n"
        "runs/a/trainer_state.json: S103 low-data-coverage [info] the run saw 8.9% of one epoch\n"
        "runs/a/trainer_state.json: note: salvaged 50 entries [bold red]x[/]\n"
        "1 error, 1 warning, 1 info in 2 files\n"
    )


def test_json_contract_single_path() -> None:
    doc = json.loads(render("json", [make_result(SOURCE)]))
    assert set(doc) == {"tool", "version", "source", "findings", "summary"}
    assert (doc["tool"], doc["version"], doc["source"]) == ("tuneterm", __version__, SOURCE)
    assert doc["summary"] == {
        "errors": 1,
        "warnings": 1,
        "infos": 1,
        "trainer": "sft",
        "steps": 500,
        "format": "trainer_state",
        "notes": [f"salvaged 50 entries {HOSTILE}"],
    }
    first = doc["findings"][0]
    assert set(first) >= {"code", "name", "severity", "category", "message", "first_step", "last_step",
                          "evidence", "causes", "fixes", "references"}
    assert (first["code"], first["severity"], first["first_step"]) == ("G101", "error", 10)
    # Non-finite evidence is written as strings, so the document is strict JSON.
    assert first["evidence"]["worst"] == "nan" and first["evidence"]["peak"] == "inf"
    assert first["fixes"][0] == {"key": "gradient_checkpointing_kwargs", "value": {"use_reentrant": False},
                                 "why": "re-enables input grads so LoRA gets a gradient"}
    assert first["fixes"][1]["command"].startswith("python -c")
    assert doc["findings"][1]["line"] == 7


def test_json_is_strict_and_arrays_for_several_paths() -> None:
    text = render("json", [make_result(SOURCE), clean_result()])

    def no_constants(name: str) -> Any:
        raise AssertionError(f"non-standard JSON constant {name}")

    docs = json.loads(text, parse_constant=no_constants)
    assert isinstance(docs, list) and len(docs) == 2
    assert docs[1]["findings"] == [] and docs[1]["summary"]["errors"] == 0
    # Several paths on the command line with one readable: still an array.
    assert isinstance(json.loads(render("json", [clean_result()], as_array=True)), list)


def test_json_safe_converts_nested_values() -> None:
    assert json_safe({"a": (float("-inf"), {1: float("nan")}), "b": "x\udcff"}) == {
        "a": ["-inf", {"1": "nan"}],
        "b": "x?",
    }


def _check_sarif(doc: dict[str, Any]) -> None:
    """The parts of the SARIF 2.1.0 schema GitHub code scanning relies on (no network)."""
    assert doc["version"] == "2.1.0" and doc["$schema"].startswith("https://")
    assert isinstance(doc["runs"], list) and len(doc["runs"]) == 1
    run = doc["runs"][0]
    driver = run["tool"]["driver"]
    assert driver["name"] == "tuneterm" and driver["version"] == __version__
    assert driver["informationUri"].startswith("https://")
    for rule in driver["rules"]:
        assert isinstance(rule["id"], str) and isinstance(rule["name"], str)
        for key in ("shortDescription", "fullDescription"):
            assert isinstance(rule[key]["text"], str) and rule[key]["text"]
        assert isinstance(rule["help"]["text"], str) and isinstance(rule["help"]["markdown"], str)
        assert rule["defaultConfiguration"]["level"] in {"error", "warning", "note"}
        assert all(isinstance(t, str) for t in rule["properties"]["tags"])
    ids = [r["id"] for r in driver["rules"]]
    assert len(ids) == len(set(ids))
    for res in run["results"]:
        assert res["level"] in {"error", "warning", "note"}
        assert driver["rules"][res["ruleIndex"]]["id"] == res["ruleId"]
        assert isinstance(res["message"]["text"], str) and res["message"]["text"]
        for loc in res["locations"]:
            phys = loc["physicalLocation"]
            uri = phys["artifactLocation"]["uri"]
            assert isinstance(uri, str) and "\\" not in uri and not uri.startswith("..")
            assert isinstance(phys["region"]["startLine"], int) and phys["region"]["startLine"] >= 1
        assert all(isinstance(v, str) for v in res["partialFingerprints"].values())


def test_sarif_structure() -> None:
    doc = json.loads(render("sarif", [make_result(SOURCE), clean_result()]))
    _check_sarif(doc)
    run = doc["runs"][0]
    assert [r["id"] for r in run["tool"]["driver"]["rules"]] == ["G101", "X101", "S103"]
    g101 = run["tool"]["driver"]["rules"][0]
    assert g101["fullDescription"]["text"].startswith("With zero gradients")
    assert "gradient_checkpointing_kwargs" in g101["help"]["markdown"]
    levels = [r["level"] for r in run["results"]]
    assert levels == ["error", "warning", "note"]
    regions = [r["locations"][0]["physicalLocation"]["region"]["startLine"] for r in run["results"]]
    assert regions == [1, 7, 1]
    assert run["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == SOURCE
    # Fingerprints are stable and distinct.
    again = json.loads(render("sarif", [make_result(SOURCE)]))
    fps = [r["partialFingerprints"]["tuneterm/v2"] for r in run["results"]]
    assert fps == [r["partialFingerprints"]["tuneterm/v2"] for r in again["runs"][0]["results"]]
    assert len(set(fps)) == 3


def test_sarif_with_jsonschema_subset_when_available() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = {
        "type": "object",
        "required": ["version", "runs"],
        "properties": {
            "version": {"const": "2.1.0"},
            "runs": {"type": "array", "items": {"type": "object", "required": ["tool", "results"]}},
        },
    }
    jsonschema.validate(json.loads(render("sarif", [make_result(SOURCE)])), schema)


def test_display_path_is_relative_with_forward_slashes(tmp_path) -> None:
    assert display_path(str(tmp_path / "a" / "b.json"), tmp_path) == "a/b.json"
    assert display_path("/elsewhere/x.log", tmp_path) == "/elsewhere/x.log"


def test_github_annotations() -> None:
    out = render("github", [make_result("runs/a,b:c/log.txt")]).splitlines()
    assert len(out) == 3
    assert out[0].startswith("::error file=runs/a%2Cb%3Ac/log.txt,line=1,title=tuneterm G101 zero-grad-norm::")
    assert "%0AFix: gradient_checkpointing_kwargs: {\"use_reentrant\": false}" in out[0]
    assert out[1].startswith("::warning file=runs/a%2Cb%3Ac/log.txt,line=7,title=tuneterm X101 run-crashed::")
    assert out[2].startswith("::notice ")
    assert escape_data("100%\r\n") == "100%25%0D%0A"
    assert escape_property("a:b,c%") == "a%3Ab%2Cc%25"
    assert render("github", [clean_result()]) == ""


@pytest.mark.parametrize(("fail_on", "failures"), [(Severity.ERROR, 1), (Severity.WARNING, 2), (Severity.INFO, 3)])
def test_junit_testcases_and_failures(fail_on: Severity, failures: int) -> None:
    text = render("junit", [make_result(SOURCE), clean_result()], fail_on)
    root = ET.fromstring(text.encode("utf-8"))
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert len(suites) == 2
    assert [len(s.findall("testcase")) for s in suites] == [len(RULES), len(RULES)]
    assert int(suites[0].get("failures")) == failures == len(suites[0].findall("testcase/failure"))
    assert int(suites[1].get("failures")) == 0
    assert int(root.get("tests")) == 2 * len(RULES) and int(root.get("failures")) == failures
    g101 = next(c for c in suites[0].findall("testcase") if c.get("name") == "G101 zero-grad-norm")
    fail = g101.find("failure")
    assert fail is not None and fail.get("type") == "error"
    assert "gradient_checkpointing_kwargs" in (fail.text or "")
    if fail_on is Severity.ERROR:  # below the threshold: passes, but the finding is still visible
        x101 = next(c for c in suites[0].findall("testcase") if c.get("name") == "X101 run-crashed")
        assert x101.find("failure") is None and "KeyboardInterrupt" in (x101.findtext("system-out") or "")


@pytest.mark.parametrize("fmt", FORMATS)
def test_no_escape_sequence_or_control_char_reaches_output(fmt: str) -> None:
    out = render(fmt, [make_result()], Severity.INFO)
    assert "\x1b" not in out and "\x07" not in out
    if fmt in ("json", "sarif"):
        # JSON keeps the raw text as data (escaped as \u001b): a consumer gets what the log said.
        assert "\\u001b" in out
        json.loads(out)
    if fmt == "junit":
        ET.fromstring(out.encode("utf-8"))
    if fmt in ("text", "github", "junit"):
        assert "[bold red]x[/]" in out  # markup is shown literally, escape sequences are gone
        assert "pwned" not in out


def test_unknown_format_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown format"):
        render("yaml", [clean_result()])
