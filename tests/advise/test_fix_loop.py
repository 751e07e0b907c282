"""Close the loop on real tiny CPU runs: train a broken config, `doctor RUN --fix -o fixed.yaml`,
`train fixed.yaml --headless`, and the error is gone. Where no config change cures the run (a GRPO
reward that never varies) the prescription says what must change and writes no patch.

The trainings are few and shared: each scenario trains once in a module-scoped fixture, and the
broken runs double as the fault cases "learning rate 0 -> lr-zero" and "constant GRPO reward ->
grpo-zero-reward-variance" (asserted here rather than trained again elsewhere).
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.advise.test_invariants import parse_tuneterm
from tests.integration.test_faults import _findings, _need
from tests.train.conftest import HAS_TRL, TINY, TINY_GRPO, run_cli, status

pytestmark = [pytest.mark.slow, pytest.mark.train,
              pytest.mark.skipif(not HAS_TRL, reason="needs the train extra (trl)")]


@dataclass(frozen=True)
class Loop:
    """One scenario: the broken run, doctor's --fix output, the fixed run (when a patch exists)."""

    root: Path
    broken: Path
    train_broken: subprocess.CompletedProcess[str]
    doctor: subprocess.CompletedProcess[str]
    fixed_yaml: Path
    fixed: Path | None
    train_fixed: subprocess.CompletedProcess[str] | None


def codes(run_dir: Path, cwd: Path) -> dict[str, str]:
    """code -> severity of every finding `tuneterm check RUN --format json` reports."""
    proc = run_cli(["check", str(run_dir), "--format", "json"], cwd=cwd)
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    return {f["code"]: f["severity"] for f in json.loads(proc.stdout)["findings"]}


def prescription(run_dir: Path, cwd: Path) -> dict[str, Any]:
    proc = run_cli(["check", str(run_dir), "--format", "json"], cwd=cwd)
    return json.loads(proc.stdout)["prescription"]


def loop(root: Path, name: str, config: Path, sets: list[str], *, fix_and_train: bool = True) -> Loop:
    """Train ``config`` with ``sets``, then doctor --fix it, then train the fixed file."""
    root.mkdir(parents=True, exist_ok=True)
    args = ["train", str(config), "--headless", "--runs-dir", "runs", "--name", name]
    for s in sets:
        args += ["--set", s]
    proc = run_cli(args, cwd=root)
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    broken = root / "runs" / name
    fixed_yaml = root / f"{name}-fixed.yaml"
    doctor = run_cli(["doctor", str(broken), "--fix", "-o", str(fixed_yaml), "--no-charts", "--width", "100"], cwd=root)
    assert doctor.returncode in (0, 1), doctor.stderr[-3000:]
    if not (fix_and_train and fixed_yaml.exists()):
        return Loop(root, broken, proc, doctor, fixed_yaml, None, None)
    train_fixed = run_cli(["train", str(fixed_yaml), "--headless", "--runs-dir", "runs", "--name", f"{name}-fixed"], cwd=root)
    return Loop(root, broken, proc, doctor, fixed_yaml, root / "runs" / f"{name}-fixed", train_fixed)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tuneterm.assets.builtin import resolve_model

    resolve_model("tuneterm:tiny-llama")  # build the tiny model once, before the runs
    return tmp_path_factory.mktemp("fixloop")


@pytest.fixture(scope="module")
def lr_zero(root: Path) -> Loop:
    return loop(root, "lr0", TINY, ["learning_rate=0", "max_steps=12"])


@pytest.fixture(scope="module")
def collapse(root: Path) -> Loop:
    return loop(root, "hot", TINY, ["learning_rate=5", "max_steps=20"])


@pytest.fixture(scope="module")
def sliver(root: Path) -> Loop:
    # 4 steps x 2 examples of 84: a tenth of one epoch; checkpoints for --resume-from
    return loop(root, "sliver", TINY, ["max_steps=4", "per_device_train_batch_size=2", "save_strategy=steps",
                                       "save_steps=2", "warmup_steps=0"])


@pytest.fixture(scope="module")
def grpo_constant(root: Path) -> Loop:
    # GRPO with a reward that never varies: no config change cures it, so no fixed run
    return loop(root, "grpo-const", TINY_GRPO, ["reward_funcs=[constant_reward]", "max_steps=6"], fix_and_train=False)


def _assert_cured(lp: Loop, code: str) -> None:
    before = codes(lp.broken, lp.root)
    assert code in before, f"{code} did not fire on the broken run: {before}"
    assert lp.fixed_yaml.is_file(), lp.doctor.stderr[-2000:]
    assert "Prescription" in lp.doctor.stdout
    fixed_cfg = yaml.safe_load(lp.fixed_yaml.read_text())
    assert "output_dir" not in fixed_cfg  # the new run gets its own
    check = run_cli(["check", str(lp.fixed_yaml)], cwd=lp.root)  # the pre-flight accepts the file
    assert check.returncode in (0, 1), check.stderr[-2000:]
    assert lp.train_fixed is not None and lp.fixed is not None
    assert lp.train_fixed.returncode == 0, (lp.train_fixed.stdout[-2000:], lp.train_fixed.stderr[-2000:])
    assert status(lp.fixed)["state"] == "finished"
    after = codes(lp.fixed, lp.root)
    assert code not in after, after
    assert "error" not in after.values(), after


def test_lr_zero_is_cured(lr_zero: Loop) -> None:
    # the headless run that ended with an error says how to get the prescription, runnable as printed
    hint = next(line for line in lr_zero.train_broken.stderr.splitlines() if "what to change" in line)
    command = hint.split("what to change: ", 1)[1]
    parse_tuneterm(command)
    assert command.startswith("tuneterm doctor ") and command.endswith("--fix -o fixed.yaml")
    # findings.json is what `check RUN --format json` prints: the prescription included
    written = json.loads((lr_zero.broken / "findings.json").read_text())["prescription"]
    assert [c["key"] for c in written["changes"]] == [c["key"] for c in prescription(lr_zero.broken, lr_zero.root)["changes"]]
    assert "learning_rate" in [c["key"] for c in written["changes"]]
    _assert_cured(lr_zero, "S101")
    cfg = yaml.safe_load(lr_zero.fixed_yaml.read_text())
    assert cfg["learning_rate"] > 0 and cfg["model_name_or_path"] == "tuneterm:tiny-llama"
    assert "learning_rate: 0 → " in lr_zero.doctor.stdout.replace("\n", " ") or "learning_rate: 0 →" in lr_zero.doctor.stdout


def test_lr_zero_run_reports_lr_zero_and_fails(lr_zero: Loop) -> None:
    # The broken run of the lr-zero loop is `tuneterm train configs/tiny.yaml --headless --set
    # learning_rate=0 --set max_steps=12`: what the headless launcher reports for it.
    proc = lr_zero.train_broken
    assert proc.returncode == 1, proc.stdout + proc.stderr[-1500:]
    assert "lr-zero" in proc.stdout
    assert status(lr_zero.broken)["state"] == "finished"
    # The same real run is issue 2's "learning rate 0 -> lr-zero" fault: an error-severity finding.
    doc = json.loads((lr_zero.broken / "findings.json").read_text())
    assert any(f["name"] == "lr-zero" and f["severity"] == "error" for f in doc["findings"]), doc["findings"]


def test_collapse_is_cured_and_cannot_resume(collapse: Loop) -> None:
    _assert_cured(collapse, "L102")
    cfg = yaml.safe_load(collapse.fixed_yaml.read_text())
    assert cfg["learning_rate"] < 5 * 0.01
    # a checkpoint restores the old optimizer state (its learning rate): resuming would not apply the fix
    proc = run_cli(["train", str(collapse.fixed_yaml), "--resume-from", "hot", "--runs-dir", "runs", "--headless"], cwd=collapse.root)
    assert proc.returncode == 2 and "learning_rate" in proc.stderr and "Traceback" not in proc.stderr


def test_sliver_of_data_is_cured(sliver: Loop) -> None:
    _assert_cured(sliver, "S103")
    cfg = yaml.safe_load(sliver.fixed_yaml.read_text())
    eff = cfg["per_device_train_batch_size"] * cfg["gradient_accumulation_steps"]
    assert cfg["max_steps"] * eff >= 84  # at least one epoch of the 84 examples the run logged


def test_resume_from_starts_at_the_checkpoint_before_the_first_bad_step(sliver: Loop) -> None:
    # The fixed file changes the effective batch: saved steps would count other data, so no resume.
    refused = run_cli(["train", str(sliver.fixed_yaml), "--resume-from", "sliver", "--runs-dir", "runs", "--headless"], cwd=sliver.root)
    assert refused.returncode == 2 and "effective batch" in refused.stderr
    # Raising max_steps alone can resume: from the last checkpoint (no bad step in this run).
    cfg = yaml.safe_load((sliver.broken / "config.yaml").read_text())
    cfg.pop("output_dir", None)
    cfg["max_steps"] = 6
    more = sliver.root / "more.yaml"
    more.write_text(yaml.safe_dump(cfg))
    proc = run_cli(["train", str(more), "--resume-from", "sliver", "--runs-dir", "runs", "--name", "more", "--detach"], cwd=sliver.root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rd = sliver.root / "runs" / "more"
    try:
        launched = yaml.safe_load((rd / "config.yaml").read_text())
        # the last checkpoint before the first step a finding marks bad (schedule findings mark none)
        findings = json.loads(run_cli(["check", "runs/sliver", "--format", "json"], cwd=sliver.root).stdout)["findings"]
        bad = [f["first_step"] for f in findings if f["severity"] != "info" and f["code"] not in ("S102", "S103")
               and f["first_step"] is not None]
        expected = max(s for s in (2, 4) if not bad or s < min(bad))
        assert launched["resume_from_checkpoint"] == str((sliver.broken / "output" / f"checkpoint-{expected}").resolve())
        assert "resuming from" in proc.stderr and f"checkpoint-{expected}" in proc.stderr
    finally:
        run_cli(["stop", "more", "--runs-dir", "runs", "--force"], cwd=sliver.root)


def test_grpo_constant_reward_gives_zero_reward_variance(grpo_constant: Loop) -> None:
    _need("grpo-zero-reward-variance")
    rd = grpo_constant.broken
    assert status(rd)["state"] == "finished"
    found = _findings(rd)
    assert "grpo-zero-reward-variance" in found, sorted(found)


def test_constant_grpo_reward_gets_no_patch(grpo_constant: Loop) -> None:
    lp = grpo_constant
    before = codes(lp.broken, lp.root)
    assert "R101" in before, before
    p = prescription(lp.broken, lp.root)
    assert any("reward function" in b for b in p["blockers"]), p
    assert not [c for c in p["changes"] if c["key"] in ("num_generations", "max_completion_length", "temperature")]
    assert not lp.fixed_yaml.exists() and "nothing written" in lp.doctor.stderr and "reward function" in lp.doctor.stderr
    assert "must change" in lp.doctor.stdout
