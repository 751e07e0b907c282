"""The one diagnosis entry for every scope: a config read by preflight is handed down to
``runs.diagnose`` as an engine subject, judged by its own scope only; the config detectors live in
the engine and only compare the facts computed when the config was read; the engine loads every
scope's detectors without numpy (not a core dependency)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from tuneterm.engine.config_subject import ConfigSubject
from tuneterm.engine.rules import load_rules
from tuneterm.engine.subjects import Subject
from tuneterm.preflight.config import check_config, subject_of
from tuneterm.preflight.config_read import read_config
from tuneterm.runs.diagnose import diagnose

# An 8B full fine-tune at a LoRA learning rate on a 24 GiB GPU: C101 (rate) and C111 (fit) fire.
CONFIG = """\
model_name_or_path: meta-llama/Llama-3.1-8B
dataset_name: trl-lib/Capybara
learning_rate: 2.0e-4
per_device_train_batch_size: 4
warmup_steps: 10
"""


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNETERM_OFFLINE", "1")
    monkeypatch.setitem(sys.modules, "pynvml", None)  # no GPU probing


@pytest.fixture()
def config(tmp_path: Path) -> Path:
    p = tmp_path / "train.yaml"
    p.write_text(CONFIG)
    return p


def test_a_config_subject_is_judged_by_diagnose_as_check_does(config: Path) -> None:
    rules = tuple(load_rules(scopes=["config"]).for_scope("config"))
    cf = read_config(config, gpu_memory_gib=24.0, trl_fields=None)
    subject = subject_of(cf, rules)
    assert isinstance(subject, Subject) and isinstance(subject.value, ConfigSubject)
    diag = diagnose(subject, rules, scopes=("config",))
    codes = [f.code for f in diag.findings]
    assert {"C101", "C111"} <= set(codes)
    assert diag.run is None and diag.subject is subject
    # The same findings, in the same order, as `tuneterm check CONFIG` (which goes through diagnose too).
    _, checked = check_config(config, gpu_memory_gib=24.0, trl_fields={})
    assert [f.to_dict() for f in checked if f.code in ("C101", "C111")] == [
        f.to_dict() for f in diag.findings if f.code in ("C101", "C111")
    ]
    # Scopes select what is judged: a config subject asked for log rules yields nothing.
    assert diagnose(subject, rules, scopes=("log",)).findings == ()


def test_a_fact_that_failed_to_compute_is_its_rules_crash_finding(config: Path) -> None:
    rules = tuple(load_rules(scopes=["config"]).for_scope("config"))
    cf = read_config(config, gpu_memory_gib=24.0, trl_fields=None)
    subject = subject_of(cf, rules)
    broken = dataclasses.replace(subject.value, errors={"memory": ValueError("estimator refused the setup")})
    found = diagnose(dataclasses.replace(subject, value=broken), rules).findings
    (c111,) = [f for f in found if f.code == "C111"]
    assert c111.severity.value == "info" and "detector crashed" in c111.message
    assert "estimator refused the setup" in c111.message
    assert any(f.code == "C101" and f.severity.value != "info" for f in found)  # the other rules still ran


def test_the_engine_loads_every_scope_without_numpy() -> None:
    """A core-only install (no numpy, no training stack): every rule loads and validates, and
    the detectors of every scope register (`tuneterm rules`, `tuneterm check LOG`)."""
    code = (
        "import sys\n"
        "for m in ('numpy', 'torch', 'transformers', 'trl', 'peft', 'datasets', 'tokenizers'):\n"
        "    sys.modules[m] = None\n"
        "from tuneterm.engine import all_detectors, load_rules\n"
        "scopes = sorted({s.scope for s in all_detectors().values()})\n"
        "print(len(load_rules().rules), scopes)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    count, scopes = out.stdout.split(" ", 1)
    assert int(count) > 50 and scopes.strip() == "['config', 'data', 'eval', 'log']"
