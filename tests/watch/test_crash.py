"""Crash diagnosis: each crash rule fires on its crash, stays silent otherwise, and a crash is
reported once (the generic run-crashed rule defers to the specific one)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.watch.helpers import make_run_dir, traceback
from tuneterm.engine import RuleSet, load_rules
from tuneterm.logs import load_run
from tuneterm.watch.live import evaluate_all, load_checked

CRASH_RULES = ("cuda-out-of-memory", "distributed-error", "missing-package", "download-failed", "killed-by-signal", "run-vanished", "run-crashed")


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    return load_rules(scopes=["log", "eval"])


def crash_findings(path: Path, rules: RuleSet) -> dict[str, object]:
    run = load_checked(path)
    return {f.name: f for f in evaluate_all(run, rules) if f.name in CRASH_RULES}


FAILED = {"state": "failed", "exit_code": 1, "ended": "2025-01-01T00:10:00Z"}

CASES = {
    "cuda-out-of-memory": traceback("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 23.69 GiB of which 10.56 MiB is free."),
    "distributed-error": traceback("torch.distributed.DistBackendError: NCCL error in: ../torch/csrc/distributed/c10d/NCCLUtils.hpp:275, unhandled system error, NCCL version 2.19.3"),
    "missing-package": traceback("ModuleNotFoundError: No module named 'bitsandbytes'"),
    "download-failed": traceback("OSError: We couldn't connect to 'https://huggingface.co' to load this file, couldn't find it in the cached files and it looks like meta-llama/Llama-3.2-1B is not the path to a directory containing a file named config.json."),
}


@pytest.mark.parametrize("rule", sorted(CASES))
def test_crash_rule_fires_once(tmp_path: Path, rules: RuleSet, rule: str) -> None:
    d = make_run_dir(tmp_path, rule, status=FAILED, stderr=CASES[rule])
    found = crash_findings(d, rules)
    assert set(found) == {rule}, found  # and not run-crashed as well
    f = found[rule]
    assert f.severity.value == "error" and f.fixes


@pytest.mark.parametrize("rule", sorted(CASES))
def test_crash_rule_silent_while_running(tmp_path: Path, rules: RuleSet, rule: str) -> None:
    # A traceback printed by a run that is still running (status running, its pid alive: ours)
    # is not how the run ended.
    import os

    d = make_run_dir(tmp_path, rule, status={"state": "running", "pid": os.getpid()}, stderr=CASES[rule])
    assert crash_findings(d, rules) == {}


def test_other_exception_stays_with_run_crashed(tmp_path: Path, rules: RuleSet) -> None:
    d = make_run_dir(tmp_path, "valueerror", status=FAILED, stderr=traceback("ValueError: too many dimensions 'str'"))
    assert set(crash_findings(d, rules)) == {"run-crashed"}


def test_oom_fixes_from_planner(tmp_path: Path, rules: RuleSet) -> None:
    cfg = "model_name_or_path: Qwen/Qwen2.5-7B-Instruct\nper_device_train_batch_size: 16\nmax_length: 4096\nuse_peft: true\nlora_r: 16\ngradient_checkpointing: true\n"
    d = make_run_dir(tmp_path, "oom", status=FAILED, stderr=CASES["cuda-out-of-memory"], config=cfg)
    f = crash_findings(d, rules)["cuda-out-of-memory"]
    assert f.evidence["capacity_gib"] == pytest.approx(23.69)
    assert f.evidence["advice"].startswith("sizes from the memory estimator"), f.evidence
    fixes = {x.key: x.value for x in f.fixes if x.key}
    assert 1 <= fixes["per_device_train_batch_size"] < 16
    # what the estimator picked must actually fit, and one more must not
    from tuneterm.plan.facts import resolve_model
    from tuneterm.plan.memory import TrainSetup, estimate

    model = resolve_model("Qwen/Qwen2.5-7B-Instruct", online=False)
    if "max_length" not in fixes:
        b = fixes["per_device_train_batch_size"]
        ok = estimate(model, TrainSetup(method="lora", batch_size=b, seq_len=4096)).fits(23.69, 0.10)
        assert ok
        assert not estimate(model, TrainSetup(method="lora", batch_size=b + 1, seq_len=4096)).fits(23.69, 0.10)


def test_oom_static_fixes_without_model(tmp_path: Path, rules: RuleSet) -> None:
    cfg = "per_device_train_batch_size: 8\ngradient_accumulation_steps: 2\nmax_length: 2048\n"
    d = make_run_dir(tmp_path, "oom", status=FAILED, stderr=traceback("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1 GiB"), config=cfg)
    f = crash_findings(d, rules)["cuda-out-of-memory"]
    fixes = {x.key: x.value for x in f.fixes if x.key}
    assert fixes["per_device_train_batch_size"] == 4 and fixes["gradient_accumulation_steps"] == 4
    assert fixes["gradient_checkpointing"] is True and fixes["max_length"] == 1024


def test_missing_package_names_pip_command(tmp_path: Path, rules: RuleSet) -> None:
    d = make_run_dir(tmp_path, "mod", status=FAILED, stderr=traceback("ModuleNotFoundError: No module named 'sklearn.metrics'"))
    f = crash_findings(d, rules)["missing-package"]
    assert f.evidence["package"] == "scikit-learn"
    assert f.fixes[0].command == "pip install scikit-learn"
    d2 = make_run_dir(tmp_path, "imp", status=FAILED, stderr=traceback("ImportError: cannot import name 'SFTConfig' from 'trl' (/x/trl/__init__.py)"))
    f2 = crash_findings(d2, rules)["missing-package"]
    assert f2.fixes[0].command == "pip install -U trl"


def test_download_gated_repo_advises_token(tmp_path: Path, rules: RuleSet) -> None:
    line = "huggingface_hub.errors.GatedRepoError: 401 Client Error. Cannot access gated repo for url https://huggingface.co/meta-llama/Llama-3.2-1B/resolve/main/config.json."
    d = make_run_dir(tmp_path, "gated", status=FAILED, stderr=traceback(line))
    f = crash_findings(d, rules)["download-failed"]
    assert "authentication" in f.evidence["kind"]
    assert any("HF_TOKEN" in (x.command or "") for x in f.fixes)


def test_distributed_port_in_use(tmp_path: Path, rules: RuleSet) -> None:
    line = "torch.distributed.DistNetworkError: The server socket has failed to listen on any local network address. port: 29500, useIpv6: 0, code: -98, name: EADDRINUSE, message: Address already in use"
    d = make_run_dir(tmp_path, "port", status=FAILED, stderr=traceback(line))
    f = crash_findings(d, rules)["distributed-error"]
    assert f.evidence["kind"] == "port in use"


@pytest.mark.parametrize(("code", "signal_name"), [(-9, "SIGKILL"), (137, "SIGKILL"), (-11, "SIGSEGV")])
def test_killed_by_signal(tmp_path: Path, rules: RuleSet, code: int, signal_name: str) -> None:
    d = make_run_dir(tmp_path, "sig", status={"state": "failed", "exit_code": code, "signal": signal_name, "error": f"training process killed by {signal_name}"})
    found = crash_findings(d, rules)
    assert set(found) == {"killed-by-signal"}, found
    assert found["killed-by-signal"].evidence["signal"] == signal_name
    if signal_name == "SIGKILL":
        assert any("dmesg" in (x.command or "") for x in found["killed-by-signal"].fixes)


def test_signal_beats_an_earlier_traceback(tmp_path: Path, rules: RuleSet) -> None:
    # A caught, printed exception earlier in stderr; then the OOM killer: the signal is the cause.
    d = make_run_dir(tmp_path, "sig2", status={"state": "failed", "exit_code": -9}, stderr=traceback("ValueError: a warning-ish traceback the script caught"))
    assert "killed-by-signal" in crash_findings(d, rules)


def test_sigterm_and_stop_are_not_crashes(tmp_path: Path, rules: RuleSet) -> None:
    d = make_run_dir(tmp_path, "term", status={"state": "stopped", "exit_code": -15, "signal": "SIGTERM", "error": "stopped on request"})
    found = crash_findings(d, rules)
    assert "killed-by-signal" not in found
    assert found.get("run-crashed") is None or found["run-crashed"].severity.value == "warning"
    d2 = make_run_dir(tmp_path, "forced", status={"state": "stopped", "exit_code": -9, "signal": "SIGKILL", "error": "stopped on request (forced: SIGKILL)"})
    assert "killed-by-signal" not in crash_findings(d2, rules)


def test_finished_run_has_no_crash_finding(tmp_path: Path, rules: RuleSet) -> None:
    d = make_run_dir(tmp_path, "ok", status={"state": "finished", "exit_code": 0})
    assert crash_findings(d, rules) == {}


def test_run_vanished(tmp_path: Path, rules: RuleSet) -> None:
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()  # a pid that surely is gone now
    d = make_run_dir(tmp_path, "gone", status={"state": "running", "pid": p.pid})
    found = crash_findings(d, rules)
    assert set(found) == {"run-vanished"}
    # the same run recorded on another host cannot be judged
    d2 = make_run_dir(tmp_path, "elsewhere", status={"state": "running", "pid": p.pid, "host": "some-other-host"})
    assert crash_findings(d2, rules) == {}


def test_plain_console_log_crash(tmp_path: Path, rules: RuleSet) -> None:
    log = tmp_path / "train.log"
    log.write_text(
        "{'loss': 2.0, 'grad_norm': 1.0, 'learning_rate': 1e-4, 'epoch': 0.1}\n"
        "{'loss': 1.9, 'grad_norm': 1.0, 'learning_rate': 1e-4, 'epoch': 0.2}\n"
        + traceback("ModuleNotFoundError: No module named 'flash_attn'"),
        encoding="utf-8",
    )
    found = {f.name: f for f in evaluate_all(load_run(log), rules) if f.name in CRASH_RULES}
    assert set(found) == {"missing-package"}
    assert found["missing-package"].fixes[0].command.startswith("pip install flash-attn")
    # the same traceback followed by more metric lines: the run carried on, not this rule's crash
    log.write_text(log.read_text() + "{'loss': 1.8, 'grad_norm': 1.0, 'learning_rate': 1e-4, 'epoch': 0.3}\n")
    assert "missing-package" not in {f.name for f in evaluate_all(load_run(log), rules)}


def test_run_crashed_defers_exactly_what_the_crash_rules_own(rules: RuleSet) -> None:
    generic = rules.get("run-crashed")
    assert generic is not None
    codes: set[str] = set()
    texts: set[str] = set()
    for r in rules:
        if r.detector.startswith("crash-"):
            codes |= set(r.params["codes"])
            texts |= set(r.params["texts"])
    assert set(generic.params["defer_codes"]) == codes
    assert set(generic.params["defer_texts"]) == texts
