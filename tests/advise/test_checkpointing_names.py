"""transformers 5 renamed ``gradient_checkpointing`` to ``activation_checkpointing`` (the old name
is a deprecated alias, used only when the new one is not set). Every face reads both names as one
setting, and what tuneterm writes (prescriptions, ``doctor --fix -o``, ``plan -o``, the config
``tuneterm train`` launches) names the key the run's config uses, else the installed one."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.advise.test_cli import cli
from tests.watch.helpers import make_run_dir
from tests.watch.test_crash import CASES, FAILED, crash_findings
from tuneterm.advise import Prescription, advise
from tuneterm.advise.apply import fix_document
from tuneterm.advise.context import read_context
from tuneterm.preflight.advice_context import key_schema
from tuneterm.engine import evaluate, load_rules
from tuneterm.keynames import preferred
from tuneterm.logs import load_run
from tuneterm.preflight.config import check_config
from tuneterm.preflight.schema import dataclass_types

HERE = Path(__file__).resolve().parent
GC_NAMES = ("gradient_checkpointing", "activation_checkpointing")
OOM_CONFIG = ("model_name_or_path: Qwen/Qwen2.5-7B-Instruct\nper_device_train_batch_size: 8\n"
              "gradient_accumulation_steps: 2\nlearning_rate: 1.0e-4\nuse_peft: true\nlora_r: 16\n")


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNETERM_OFFLINE", "1")


def installed_name() -> str:
    """The name the installed transformers prefers (the new one where TrainingArguments has it)."""
    schema = key_schema(build=True)
    assert schema is not None
    return preferred("gradient_checkpointing", lambda k: schema.accepts("sft", k))


def oom_log(tmp_path: Path, checkpointing: str) -> tuple[Path, Prescription]:
    """The OOM-in-the-loss log beside a TRL config whose checkpointing lines are ``checkpointing``."""
    log = tmp_path / "train.log"
    shutil.copy(HERE / "oom_loss.log", log)
    (tmp_path / "sft_config.yaml").write_text(OOM_CONFIG + checkpointing)
    run = load_run(str(log))
    return log, advise(run, evaluate(run, load_rules(scopes=["log"])), schema=key_schema(build=True))


def parse_without_future_warning(values: dict[str, Any], trainer: str = "sft") -> tuple[Any, ...]:
    """TRL's own parser on ``values`` with transformers' deprecation warning made an error."""
    from trl.scripts._hf_argparser import HfArgumentParser

    values = {**values, "use_cpu": True, "bf16": False}
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        return HfArgumentParser(dataclass_types(trainer)).parse_dict(values)  # type: ignore[no-any-return]


# --- reading: both names are one setting ----------------------------------------------------------


def _c111(tmp_path: Path, checkpointing: str) -> Any:
    p = tmp_path / f"c{abs(hash(checkpointing))}.yaml"
    p.write_text("model_name_or_path: Qwen/Qwen2.5-7B\nper_device_train_batch_size: 4\nmax_length: 4096\n"
                 "use_peft: true\nlearning_rate: 2.0e-4\n" + checkpointing)
    _, findings = check_config(p, gpu_memory_gib=24.0)
    return next(f for f in findings if f.code == "C111")


def test_config_check_reads_activation_checkpointing(tmp_path: Path) -> None:
    on_new, on_old = _c111(tmp_path, "activation_checkpointing: true\n"), _c111(tmp_path, "gradient_checkpointing: true\n")
    off_new, off_old = _c111(tmp_path, "activation_checkpointing: false\n"), _c111(tmp_path, "gradient_checkpointing: false\n")
    # the same estimate under either name: on is on, off is off
    assert on_new.evidence["peak_gib"] == on_old.evidence["peak_gib"] < off_new.evidence["peak_gib"] == off_old.evidence["peak_gib"]
    # no advice to enable what is on
    assert not [x for x in on_new.fixes if x.key in GC_NAMES]
    # off: the fix names the key the config uses (the other name would be ignored, or warn)
    assert {x.key: x.value for x in off_new.fixes if x.key in GC_NAMES} == {"activation_checkpointing": True}
    assert {x.key: x.value for x in off_old.fixes if x.key in GC_NAMES} == {"gradient_checkpointing": True}
    # both names set: the new one is in effect, as in transformers
    both = _c111(tmp_path, "activation_checkpointing: false\ngradient_checkpointing: true\n")
    assert both.evidence["peak_gib"] == off_new.evidence["peak_gib"]


def test_reentrant_check_reads_the_new_kwargs_name(tmp_path: Path) -> None:
    p = tmp_path / "c108.yaml"
    p.write_text("model_name_or_path: Qwen/Qwen2.5-0.5B\nuse_peft: true\nactivation_checkpointing: true\n"
                 "activation_checkpointing_kwargs: {use_reentrant: true}\n")
    _, findings = check_config(p, gpu_memory_gib=80.0)
    (c108,) = [f for f in findings if f.code == "C108"]
    assert c108.evidence["line"] == 4
    assert [(x.key, x.value) for x in c108.fixes if x.key] == [("activation_checkpointing_kwargs", {"use_reentrant": False})]


def test_run_facts_read_activation_checkpointing(tmp_path: Path) -> None:
    rules = load_rules(scopes=["log", "eval"])
    cfg = "model_name_or_path: Qwen/Qwen2.5-7B-Instruct\nper_device_train_batch_size: 16\nmax_length: 4096\nuse_peft: true\nlora_r: 16\n"
    on = make_run_dir(tmp_path, "on", status=FAILED, stderr=CASES["cuda-out-of-memory"], config=cfg + "activation_checkpointing: true\n")
    assert load_run(str(on)).facts.gradient_checkpointing is True
    assert not [x for x in crash_findings(on, rules)["cuda-out-of-memory"].fixes if x.key in GC_NAMES]
    off = make_run_dir(tmp_path, "off", status=FAILED, stderr=CASES["cuda-out-of-memory"],
                       config=cfg + "gradient_checkpointing: true\nactivation_checkpointing: false\n")
    assert load_run(str(off)).facts.gradient_checkpointing is False  # the alias is ignored beside the new name


# --- writing: the prescription, doctor --fix -o ----------------------------------------------------


def test_oom_with_checkpointing_on_under_the_new_name_gets_no_checkpointing_change(tmp_path: Path) -> None:
    _, p = oom_log(tmp_path, "activation_checkpointing: true\n")
    assert not set(p.patch()) & set(GC_NAMES)
    assert p.patch()["per_device_train_batch_size"] == 4  # the rest of the OOM advice stays


def test_oom_with_checkpointing_off_under_the_new_name_is_prescribed_there(tmp_path: Path) -> None:
    log, p = oom_log(tmp_path, "activation_checkpointing: false\n")
    (change,) = [c for c in p.changes if c.key in GC_NAMES]
    assert (change.key, change.value, change.was) == ("activation_checkpointing", True, False)
    doc = yaml.safe_load(fix_document(p, read_context(load_run(str(log)), schema=key_schema(build=True))) or "")
    assert doc["activation_checkpointing"] is True and "gradient_checkpointing" not in doc


def test_oom_with_the_old_name_keeps_it(tmp_path: Path) -> None:
    _, p = oom_log(tmp_path, "gradient_checkpointing: false\n")
    assert [(c.key, c.value, c.was) for c in p.changes if c.key in GC_NAMES] == [("gradient_checkpointing", True, False)]


def test_doctor_fix_writes_one_name_that_trl_accepts_without_warning(tmp_path: Path) -> None:
    # both names set, the new one (false) in effect: the fix is written there and the ignored alias dropped
    log, _ = oom_log(tmp_path, "gradient_checkpointing: true\nactivation_checkpointing: false\n")
    out = tmp_path / "fixed.yaml"
    proc = cli("doctor", str(log), "--fix", "-o", str(out), cwd=tmp_path)
    assert out.is_file(), proc.stderr
    doc = yaml.safe_load(out.read_text())
    assert doc["activation_checkpointing"] is True and "gradient_checkpointing" not in doc
    _, cfg, _model, *_ = parse_without_future_warning({k: v for k, v in doc.items() if k != "model_name_or_path"})
    assert cfg.activation_checkpointing is True


# --- writing: plan -o and the config tuneterm train launches ----------------------------------------


def test_plan_writes_the_installed_name_and_trl_parses_it_without_warning(tmp_path: Path) -> None:
    from trl import ModelConfig, ScriptArguments, SFTConfig, TrlParser

    from tuneterm.cli import main

    out = tmp_path / "plan.yaml"
    with pytest.raises(SystemExit) as exc:
        main(["plan", "--model", "Qwen/Qwen2.5-0.5B", "--gpu-memory", "24GiB", "--no-gradient-checkpointing", "-o", str(out)])
    assert exc.value.code in (0, None)
    doc = yaml.safe_load(out.read_text())
    name = installed_name()
    assert doc[name] is False and [k for k in doc if k in GC_NAMES] == [name]
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        _, cfg, _ = TrlParser((ScriptArguments, SFTConfig, ModelConfig)).parse_args_and_config(
            ["--config", str(out), "--use_cpu", "true", "--bf16", "false"])
    assert cfg.activation_checkpointing is False  # what was written is what TRL runs


@pytest.mark.parametrize(("written", "on"), [
    ("gradient_checkpointing: true\n", True),
    ("gradient_checkpointing: true\nactivation_checkpointing: false\n", False),
])
def test_train_launches_the_installed_name(tmp_path: Path, written: str, on: bool) -> None:
    from tuneterm.train.config import resolve

    p = tmp_path / "c.yaml"
    p.write_text("model_name_or_path: tuneterm:tiny-llama\ndataset_name: tuneterm:tiny-sft\n" + written)
    values = resolve(p, trainer="sft").values
    name = installed_name()
    assert [k for k in values if k in GC_NAMES] == [name] and values[name] is on
    _, cfg, *_ = parse_without_future_warning(values)
    assert cfg.activation_checkpointing is on


def test_set_under_the_old_name_overrides_the_new_one_in_the_file(tmp_path: Path) -> None:
    from tuneterm.train.config import resolve

    p = tmp_path / "c.yaml"
    p.write_text("model_name_or_path: tuneterm:tiny-llama\ndataset_name: tuneterm:tiny-sft\nactivation_checkpointing: true\n")
    values = resolve(p, trainer="sft", overrides={"gradient_checkpointing": False}).values
    assert [(k, v) for k, v in values.items() if k in GC_NAMES] == [(installed_name(), False)]


def test_finding_fixes_follow_the_configs_spelling(tmp_path: Path) -> None:
    from tuneterm.preflight.advice_context import advise_results
    from tuneterm.report import CheckOptions, check_subject

    log, _ = oom_log(tmp_path, "activation_checkpointing: false\n")
    (result,) = advise_results([check_subject(str(log), CheckOptions())])
    (oom,) = [f for f in result.findings if f.code == "X110"]
    assert [x.key for x in oom.fixes if x.key in GC_NAMES] == ["activation_checkpointing"]
