"""RL / DPO dynamics rules (R103-R105, P103) on real series: corpus logs and real tiny TRL runs.

The corpus holds reward-flat (034/035) and length-drift (010) cases; KL/entropy instability and DPO
saturation have no corpus example, so they are produced by real GRPO/DPO runs of the built-in tiny
model on CPU (slow tests, ~10-15 s each). A length collapse to short answers was also produced for
real (full fine-tune at lr 0.02, 60 steps: 62 -> 21 tokens while the reward rose, R103 info); that
run took over two minutes on 2 cores, so the shorter-direction branch is covered by case files and
010 covers a real drift.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests.conftest import REPO, corpus_file
from tuneterm.engine import RuleSet, evaluate, load_rules
from tuneterm.engine.model import Finding
from tuneterm.runs.load import load_source as load_run
from tuneterm.logs.model import Run

MINE = ("R103", "R104", "R105", "P103")
HAS_TRL = importlib.util.find_spec("trl") is not None


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    return load_rules(scopes=["log"]).select(list(MINE), None)


def _findings(run: Run, rules: RuleSet, code: str) -> list[Finding]:
    return [f for f in evaluate(run, rules) if f.code == code]


@pytest.mark.parametrize("prefix", ["034", "035"])
def test_noisy_flat_grpo_reward_is_info(rules: RuleSet, prefix: str) -> None:
    # 250 steps, 3 epochs, reward median 0.52 -> 0.39 with sd 0.56: no gain, but 50 logs cannot
    # rule out a ~0.8 sd gain, so it is reported as info, not a warning.
    (f,) = _findings(load_run(corpus_file(prefix + "_")), rules, "R104")
    assert f.severity.value == "info"
    assert f.evidence["gain_sd"] < 0 and 0.5 < f.evidence["upper_gain_sd"] < 1.0
    assert f.evidence["count"] == 50 and f.evidence["reward_std"] > 0.5


def test_reward_that_rose_is_not_flat(rules: RuleSet) -> None:
    # 010: reward 0.95 -> 1.03 (+0.54 sd); 007: dead groups (R101's case); 008: frac_reward_zero_std 0.6.
    for prefix in ("010", "007", "008"):
        assert _findings(load_run(corpus_file(prefix + "_")), rules, "R104") == [], prefix


def test_length_growth_below_cap_is_info(rules: RuleSet) -> None:
    (f,) = _findings(load_run(corpus_file("010_")), rules, "R103")
    assert f.severity.value == "info" and f.evidence["direction"] == "longer"
    assert f.evidence["end"] > 3 * f.evidence["start"]


def test_kl_spikes_are_not_instability(rules: RuleSet) -> None:
    # 010 logs single KL values of 66.8-197 around a steady ~0.4: grad-norm-spike's business.
    run = load_run(corpus_file("010_"))
    assert max(run.train["kl"].values) > 100
    assert _findings(run, rules, "R105") == []


@pytest.mark.parametrize("prefix", ["017", "018", "019", "045", "020", "021"])
def test_dpo_corpus_runs_do_not_saturate(rules: RuleSet, prefix: str) -> None:
    # 017 healthy zephyr DPO; 018/019 slow DPO; 045 noisy accuracies of 1.0 at batch 4; 020/021 ORPO.
    assert _findings(load_run(corpus_file(prefix + "_")), rules, "P103") == []


@pytest.mark.parametrize("prefix", ["010", "034", "017"])
def test_live_prefixes_of_real_runs_stay_quiet_early(rules: RuleSet, prefix: str) -> None:
    """The first quarter of each run (what a live watcher sees first) gives nothing above info."""
    run = load_run(corpus_file(prefix + "_"))
    last = run.last_step
    assert last is not None
    for cut in range(max(1, last // 40), last // 4, max(1, last // 40)):
        loud = [f.code for f in evaluate(run.prefix(cut), rules) if f.severity.value != "info"]
        assert loud == [], (cut, loud)


# -- real tiny TRL runs ------------------------------------------------------------------------


def _train(tmp_path: Path, config: str, overrides: dict[str, object]) -> Run:
    from tuneterm.assets.builtin import resolve_model
    from tuneterm.train.config import resolve
    from tuneterm.train.launch import launch

    resolve_model("tuneterm:tiny-llama")  # build the tiny model once (cached between tests)
    cfg = resolve(REPO / "configs" / config, overrides=overrides)
    launched = launch(cfg, runs_dir=tmp_path, name="r", sample_every=1000)
    assert launched.proc.wait(timeout=400) == 0, (tmp_path / "r" / "stderr.log").read_text()[-3000:]
    return load_run(tmp_path / "r")


needs_trl = pytest.mark.skipif(not HAS_TRL, reason="needs the train extra (trl)")


@pytest.mark.slow
@needs_trl
def test_real_grpo_at_lr_0_2_blows_up_kl_and_collapses_entropy(rules: RuleSet, tmp_path: Path) -> None:
    run = _train(tmp_path, "tiny-grpo.yaml", {
        "use_peft": False, "learning_rate": 0.2, "lr_scheduler_type": "constant", "beta": 0.04,
        "max_completion_length": 16, "max_steps": 24,
    })
    (f,) = _findings(run, rules, "R105")
    assert f.severity.value == "error" and f.evidence["what"] == "KL blow-up and entropy collapse"
    assert f.evidence["kl_end"] > 1.0 and f.evidence["entropy_end"] < 0.2 * f.evidence["entropy_start"]
    assert any(x.key == "learning_rate" for x in f.fixes)
    # The first logs of the same run are not yet a sustained blow-up.
    assert _findings(run.prefix(6), rules, "R105") == []


@pytest.mark.slow
@needs_trl
def test_real_dpo_with_beta_5_saturates(rules: RuleSet, tmp_path: Path) -> None:
    run = _train(tmp_path, "tiny-dpo.yaml", {"beta": 5.0, "max_steps": 30})
    (f,) = _findings(run, rules, "P103")
    assert f.severity.value == "warning" and f.evidence["onset_step"] <= 8
    assert f.evidence["accuracy"] == 1.0 and f.evidence["loss"] < 0.01
    assert [x.value for x in f.fixes if x.key == "beta"][:1] == [0.1]
