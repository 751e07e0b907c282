"""degenerate-generations on a live run's samples: one bad sampling round is not reported until the
next round confirms it (a live finding stays shown and ``--stop-on error`` acts on it); a finished,
failed or stopped run is judged on its last round alone."""

from __future__ import annotations

from typing import Any

from tuneterm.engine import load_rules
from tuneterm.logs.model import Run, RunStatus
from tuneterm.engine.detectors.samples import samples_findings

GOOD = "Paris is the capital of France."
BAD = "is is is is is is is is is is is is"


def _run(rounds: list[tuple[int, str]], state: str | None = "running", finished: bool = False) -> Run:
    run = Run("runs/r", "run_dir")
    run.facts.finished = finished
    if state is not None:
        run.status = RunStatus(state=state)
    run.samples = [{"step": step, "prompt": f"p{i}", "completion": text} for step, text in rounds for i in range(3)]
    return run


def _found(run: Run) -> list[Any]:
    return samples_findings(run, load_rules(scopes=["eval"]))


def test_one_bad_round_while_running_is_held_back() -> None:
    assert _found(_run([(10, GOOD), (50, BAD)])) == []
    assert _found(_run([(10, GOOD), (50, GOOD), (90, BAD)])) == []


def test_two_bad_rounds_while_running_are_reported() -> None:
    (f,) = _found(_run([(10, GOOD), (50, BAD), (90, BAD)]))
    assert f.name == "degenerate-generations" and f.severity.value == "error" and f.first_step == 90


def test_ended_runs_are_judged_on_the_last_round() -> None:
    for state, finished in (("finished", True), ("failed", False), ("stopped", False), ("died", False)):
        (f,) = _found(_run([(10, GOOD), (50, BAD)], state=state, finished=finished))
        assert f.severity.value == "error", state
