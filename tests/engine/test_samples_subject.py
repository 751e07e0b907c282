"""A run's sample generations are a subject of the engine's one evaluation loop: ``diagnose``
judges them with the ``eval`` rules (``degenerate-generations``), and a detector that fails on
them is that rule's "detector crashed" finding, never an exception; the other eval rule
(``catastrophic-forgetting``, which needs a base model) has nothing to judge in samples."""

from __future__ import annotations

from tuneterm.engine import Subject, load_rules
from tuneterm.engine.detectors.samples import RunSamples, samples_subject
from tuneterm.logs.model import Run, RunStatus
from tuneterm.runs.diagnose import diagnose

GOOD = "Paris is the capital of France."
BAD = "is is is is is is is is is is is is"


def _run(samples: list[dict[str, object]], state: str = "finished") -> Run:
    run = Run("runs/r", "run_dir")
    run.facts.trainer_kind = "sft"
    run.facts.finished = state == "finished"
    run.status = RunStatus(state=state)
    for step in range(1, 6):
        run.add_train("loss", step * 10, float("nan") if step == 5 else 2.0)
    run.samples = samples
    return run


def _rounds(*rounds: tuple[int, str]) -> list[dict[str, object]]:
    return [{"step": step, "prompt": f"p{i}", "completion": text} for step, text in rounds for i in range(3)]


def test_samples_are_an_eval_subject_judged_through_diagnose() -> None:
    run = _run(_rounds((10, GOOD), (50, BAD)))
    subject = samples_subject(run)
    assert isinstance(subject, Subject) and subject.scope == "eval" and subject.source == "runs/r"
    assert isinstance(subject.value, RunSamples) and not subject.value.still_running
    rules = load_rules(scopes=["log", "eval"])
    alone = diagnose(subject, rules).findings
    assert [(f.name, f.severity.value, f.first_step) for f in alone] == [("degenerate-generations", "error", 50)]
    # The run's diagnosis holds its log findings and the very same samples finding.
    found = diagnose(run, rules).findings
    assert "nan-or-inf" in [f.name for f in found]
    assert [f.to_dict() for f in found if f.name == "degenerate-generations"] == [alone[0].to_dict()]
    # Without the eval scope the samples are not judged.
    assert "degenerate-generations" not in [f.name for f in diagnose(run, rules, scopes=("log",)).findings]


def test_sane_samples_give_no_finding_from_any_eval_rule() -> None:
    found = diagnose(samples_subject(_run(_rounds((10, GOOD), (50, GOOD)))), load_rules(scopes=["eval"])).findings
    assert found == ()


def test_a_samples_detector_that_crashes_is_its_rules_crash_finding() -> None:
    # A Run built through the Python API may hold samples that samples.jsonl's reader would have
    # dropped (a step that is not a number): the detector raises on them.
    run = _run([{"step": "ten", "prompt": "p", "completion": GOOD}])
    found = diagnose(run, load_rules(scopes=["log", "eval"])).findings
    (crash,) = [f for f in found if f.name == "degenerate-generations"]
    assert crash.severity.value == "info" and "detector crashed" in crash.message
    assert "ValueError" in crash.message and crash.source == "runs/r"
    assert "nan-or-inf" in [f.name for f in found]  # the log rules still ran
