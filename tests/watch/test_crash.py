"""Crash diagnosis: each crash rule fires on its crash, stays silent otherwise, and a crash is
reported once (the generic run-crashed rule defers to the specific one)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.watch.helpers import make_run_dir, traceback
from tuneterm.engine import RuleSet, load_rules
from tuneterm.logs import load_run
from tuneterm.runs.diagnose import evaluate_run as evaluate_all
from tuneterm.runs.load import load_source as load_checked

CRASH_RULES = ("cuda-out-of-memory", "distributed-error", "missing-package", "download-failed", "killed-by-signal", "run-vanished", "run-crashed", "run-interrupted")


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
    found = crash_findings(d, rules)
    assert "killed-by-signal" in found
    assert [n for n, f in found.items() if f.severity.value == "error"] == ["killed-by-signal"]  # one cause


# ---------------------------------------------------------------- signal death after an exception
SIG_FAILED = {"state": "failed", "ended": "2025-01-01T00:10:00Z"}


def _sig_status(code: int, name: str) -> dict[str, object]:
    # what the supervisor records when the training process dies by a signal (tuneterm/train/child.py)
    return {**SIG_FAILED, "exit_code": code, "signal": name, "error": f"training process killed by {name}"}


def test_exception_just_before_a_signal_death_is_context_not_a_second_cause(tmp_path: Path, rules: RuleSet) -> None:
    # A CUDA error raised, then native teardown aborts: the signal is the cause of death, the
    # exception is the last thing printed before it and is kept as a warning.
    line = "RuntimeError: CUDA error: an illegal memory access was encountered"
    d = make_run_dir(tmp_path, "abrt", status=_sig_status(-6, "SIGABRT"), stderr=traceback(line) + "terminate called after throwing an instance of 'c10::Error'\n")
    found = crash_findings(d, rules)
    assert set(found) == {"killed-by-signal", "run-crashed"}, found
    assert found["killed-by-signal"].severity.value == "error" and found["killed-by-signal"].evidence["signal"] == "SIGABRT"
    rc = found["run-crashed"]
    assert rc.severity.value == "warning" and rc.evidence["exception"] == "RuntimeError"
    assert rc.evidence["pattern"] == "raised just before the process was killed by SIGABRT"
    assert rc.message.startswith("RuntimeError (raised just before the process was killed by SIGABRT) near step 10:")


def test_signal_death_with_a_128_plus_n_exit_status(tmp_path: Path, rules: RuleSet) -> None:
    # `watch -- COMMAND` through a shell: 137 = 128 + SIGKILL
    d = make_run_dir(tmp_path, "sh", status={**SIG_FAILED, "exit_code": 137}, stderr=traceback("KeyError: 'labels'"))
    found = crash_findings(d, rules)
    assert found["killed-by-signal"].evidence["signal"] == "SIGKILL"
    assert found["run-crashed"].severity.value == "warning"


def test_handled_exception_before_a_signal_death_is_not_reported(tmp_path: Path, rules: RuleSet) -> None:
    for name, last in (
        ("wandb", "wandb.errors.CommError: Network error (ConnectionError), entering retry loop."),
        ("ignored", "Exception ignored in: <function _MultiProcessingDataLoaderIter.__del__ at 0x7f>"),
        ("warn", "UserWarning: this is only a warning"),
        ("ctrlc", "KeyboardInterrupt"),
    ):
        d = make_run_dir(tmp_path, name, status=_sig_status(-9, "SIGKILL"), stderr=traceback(last))
        assert set(crash_findings(d, rules)) == {"killed-by-signal"}, name


def test_exception_not_last_before_a_signal_death_is_not_reported(tmp_path: Path, rules: RuleSet) -> None:
    # The run printed more after the exception (here a known warning line): it went on; the
    # exception has nothing to do with the later SIGKILL.
    stderr = traceback("ValueError: bad sample 17, skipped") + "None of the inputs have requires_grad=True. Gradients will be None\n"
    d = make_run_dir(tmp_path, "later", status=_sig_status(-9, "SIGKILL"), stderr=stderr)
    assert set(crash_findings(d, rules)) == {"killed-by-signal"}


def test_oom_traceback_before_sigkill_is_context_of_the_signal(tmp_path: Path, rules: RuleSet) -> None:
    d = make_run_dir(tmp_path, "oomkill", status=_sig_status(-9, "SIGKILL"), stderr=CASES["cuda-out-of-memory"])
    found = crash_findings(d, rules)
    assert found["killed-by-signal"].severity.value == "error"
    assert "cuda-out-of-memory" not in found  # the final event is the signal
    assert found["run-crashed"].severity.value == "warning" and found["run-crashed"].evidence["exception"] == "OutOfMemoryError"


def test_stopped_run_with_an_exception_is_interrupted_not_crashed(tmp_path: Path, rules: RuleSet) -> None:
    d = make_run_dir(tmp_path, "stopped", status={"state": "stopped", "exit_code": -15, "signal": "SIGTERM", "error": "stopped on request"},
                     stderr=traceback("ValueError: printed before the stop"))
    found = crash_findings(d, rules)
    assert set(found) == {"run-interrupted"} and found["run-interrupted"].severity.value == "info"
    assert found["run-interrupted"].evidence["pattern"] == "interrupted"


def test_stop_on_error_stop_is_info_without_resume_advice(tmp_path: Path, rules: RuleSet) -> None:
    # What stop_for_finding records (tuneterm/watch/loop.py): the run was stopped on purpose
    # because of a finding; that finding has the fixes, resuming would repeat it.
    why = "N101 nan-or-inf: loss is NaN at 3 of 12 logged steps (persistent)"
    d = make_run_dir(tmp_path, "stopon", status={"state": "stopped", "exit_code": -15, "signal": "SIGTERM", "stop_reason": why,
                                                 "error": f"stopped by tuneterm watch --stop-on error: {why}"})
    found = crash_findings(d, rules)
    assert set(found) == {"run-interrupted"}, found
    f = found["run-interrupted"]
    assert f.severity.value == "info" and "stopped by tuneterm" in f.message and "N101" in f.message
    assert not f.fixes


def test_run_dir_crash_is_an_error_whatever_the_line_numbers(tmp_path: Path, rules: RuleSet) -> None:
    # metrics.jsonl (100 lines) and stderr.log (traceback on line 4) are different files: their
    # line numbers say nothing about order. The failed status says the run ended with it.
    d = make_run_dir(tmp_path, "long", status=FAILED, stderr=traceback("ValueError: boom"), steps=100)
    f = crash_findings(d, rules)["run-crashed"]
    assert f.severity.value == "error" and f.evidence["pattern"] == "crashed"
    # the same traceback in a run that finished: printed mid-run, the run went on
    d2 = make_run_dir(tmp_path, "fine", status={"state": "finished", "exit_code": 0}, stderr=traceback("ValueError: boom"), steps=100)
    assert crash_findings(d2, rules)["run-crashed"].severity.value == "info"


def test_crash_before_the_first_metric_says_so(tmp_path: Path, rules: RuleSet) -> None:
    d = make_run_dir(tmp_path, "early", status=FAILED, stderr=traceback("ValueError: boom"), steps=0)
    f = crash_findings(d, rules)["run-crashed"]
    assert f.severity.value == "error" and f.first_step is None
    assert f.message == "ValueError (crashed) before the first logged step: ValueError: boom"


def test_sigterm_and_stop_are_not_crashes(tmp_path: Path, rules: RuleSet) -> None:
    d = make_run_dir(tmp_path, "term", status={"state": "stopped", "exit_code": -15, "signal": "SIGTERM", "error": "stopped on request"})
    found = crash_findings(d, rules)
    assert "killed-by-signal" not in found and "run-crashed" not in found
    assert found["run-interrupted"].severity.value == "info"
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
