"""Rules on half-written runs: no false alarm on an early part of a run (issue: live evaluation).

``tuneterm watch`` and ``tuneterm train`` evaluate the rules on a run that is still growing
(:class:`tuneterm.runs.live.LiveEvaluator`); a finding once reported stays reported, and
``--stop-on error`` kills the run on the first error. So every rule must hold on every *prefix* of
a run, not just on the whole log it was tuned on:

- a corpus file labelled healthy in shared/corpus/INDEX.md gives no warning or error at any
  prefix;
- any other corpus file gives, at every prefix, only errors whose rule is an error on the whole
  log too (an early error the whole log does not confirm would have killed the run);
- a real ``tuneterm train configs/tiny.yaml --headless`` run directory is clean at every step;
- replaying healthy logs line by line through the real :class:`LiveEvaluator` (the follower's
  incremental parse, not :meth:`Run.prefix`) reports nothing.

Prefixes are taken with :meth:`tuneterm.logs.model.Run.prefix` at the first 1, 2, 3, 5, 10 and 20
logged steps and at every 10% of the logged steps (``cut_steps``).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import CORPUS, corpus_file, corpus_files
from tests.engine.test_corpus_labels import HEALTHY
from tuneterm.engine import Finding, RuleSet, Severity, evaluate, load_rules
from tuneterm.runs.load import load_source as load_run
from tuneterm.logs.model import LogEvent, Run, RunStatus

FIRST_STEPS = (1, 2, 3, 5, 10, 20)

# (corpus prefix, rule code) -> why an error at some prefix is genuine although the whole log does
# not make that rule an error. Empty: every early error found so far was a false alarm and was
# fixed in its detector (minimum-evidence guards); add an entry only with a reason.
GENUINE_EARLY_ERRORS: dict[tuple[str, str], str] = {}


def index_labels() -> dict[str, str]:
    """Corpus number ("001") -> primary label ("healthy", "nan", "unclear (...)") from INDEX.md."""
    if CORPUS is None:
        return {}
    out: dict[str, str] = {}
    for line in (CORPUS / "INDEX.md").read_text(encoding="utf-8").splitlines():
        m = re.match(r"\| `(\d{3})_[^`]*` .*?\| \*\*([^*]+)\*\* \|", line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


LABELS = index_labels()


def logged_steps(run: Run) -> list[int]:
    """Every distinct step at which any training or eval series has a point, ascending."""
    steps: set[int] = set()
    for s in run.train.values():
        steps.update(s.steps)
    for bucket in run.evals.values():
        for s in bucket.values():
            steps.update(s.steps)
    return sorted(steps)


def cut_steps(steps: list[int]) -> list[int]:
    """The prefix ends checked: the 1st, 2nd, 3rd, 5th, 10th, 20th logged step and every 10%.

    >>> cut_steps(list(range(10, 310, 10)))[:8]
    [10, 20, 30, 50, 60, 90, 100, 120]
    """
    n = len(steps)
    idx = {k - 1 for k in FIRST_STEPS if k <= n}
    idx |= {max(0, math.ceil(n * tenth / 10) - 1) for tenth in range(1, 11)}
    return [steps[i] for i in sorted(idx)]


def loud(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity is not Severity.INFO]


def show(k: int, f: Finding) -> str:
    return f"prefix to step {k}: {f.code} {f.name} {f.severity.value}: {f.message}"


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    return load_rules(scopes=["log"])


def test_labels_read_from_index_match_the_label_tests() -> None:
    if CORPUS is None:
        pytest.skip("../shared/corpus not present")
    assert sorted(k for k, v in LABELS.items() if v == "healthy") == sorted(HEALTHY)
    assert len(LABELS) == len(corpus_files())


@pytest.mark.parametrize("path", corpus_files(), ids=lambda p: p.name[:40])
def test_no_early_false_alarm(rules: RuleSet, path: Path) -> None:
    run = load_run(path)  # every corpus file loads; a parser regression must fail here, not skip
    if not run.has_metrics():
        pytest.skip("no metrics (nothing to watch)")
    number = path.name[:3]
    healthy = LABELS.get(number) == "healthy"
    whole_errors = {f.code for f in evaluate(run, rules) if f.severity is Severity.ERROR}
    problems: list[str] = []
    for k in cut_steps(logged_steps(run)):
        for f in loud(evaluate(run.prefix(k), rules)):
            if healthy:
                problems.append(show(k, f))
            elif f.severity is Severity.ERROR and f.code not in whole_errors and (number, f.code) not in GENUINE_EARLY_ERRORS:
                problems.append(show(k, f) + " (not an error on the whole log)")
    assert problems == []


def test_prefix_cuts_series_events_and_end_facts() -> None:
    run = load_run(corpus_file("049_"))  # console log: header facts, an interrupt at the end
    assert run.events and run.facts.max_steps == 8264
    p = run.prefix(100)
    assert p.last_step == 100 and p.facts.global_step == 100 and p.facts.finished is False
    assert all(s.steps[-1] <= 100 for s in p.train.values() if len(s))
    assert p.events == [e for e in run.events if e.step is None or e.step <= 100]
    assert not any(e.code == "KeyboardInterrupt" for e in p.events)  # written after step 244
    assert p.facts.max_steps == run.facts.max_steps and p.facts.warmup_steps == run.facts.warmup_steps
    assert p.facts.epoch == p.train["epoch"].last() and p.summary == {}
    # the original run is untouched, and a cut at (or past) the last step is the whole run again
    assert run.last_step == 244 and len(run.train["loss"]) > len(p.train["loss"])
    whole = run.prefix(10**9)
    assert whole.facts == run.facts and whole.events == run.events and whole.summary == run.summary
    assert {k: list(s) for k, s in whole.train.items()} == {k: list(s) for k, s in run.train.items()}


def test_prefix_of_a_run_directory_is_still_running() -> None:
    run = Run(source="rd", format="run_dir")
    run.status = RunStatus(state="failed", exit_code=1)
    run.facts.finished = False
    for step in (1, 2, 3):
        run.add_train("loss", step, 2.0)
    run.events.append(LogEvent("exception", "RuntimeError: boom", step=3, code="RuntimeError"))
    p = run.prefix(2)
    assert p.status == RunStatus(state="running") and p.events == []
    assert run.status.state == "failed"


# The real tiny run (`tuneterm train configs/tiny.yaml --headless`) is trained once, by
# tests/train/test_train_runs.py::test_headless_tiny_run_exits_0_with_complete_run_dir, which calls
# the two checks below on it (a second training run here would cost the suite ~30 s).


def assert_clean_at_every_step(run_dir: Path) -> None:
    """No warning or error at any prefix of a finished healthy run directory."""
    rules = load_rules(scopes=["log"])
    run = load_run(run_dir)  # metrics.jsonl + status.json, as the watcher reads it
    steps = logged_steps(run)
    assert run.facts.finished and run.facts.max_steps == len(steps) == 30
    problems = [show(k, f) for k in steps for f in loud(evaluate(run.prefix(k), rules))]
    assert problems == []


def assert_clean_when_replayed(run_dir: Path, tmp_path: Path) -> None:
    """The real incremental path: metrics.jsonl appended line by line to a run directory whose
    status.json says "running", polled after every line (the follower's own parse and facts)."""
    from tuneterm.runs.live import LiveEvaluator

    rules = load_rules(scopes=["log"])
    rd = tmp_path / "rd"
    rd.mkdir()
    status = json.loads((run_dir / "status.json").read_text())
    # A live run: its process (here: this test) is alive, nothing recorded how it ended.
    status.update(state="running", pid=os.getpid(), pid_start=None, pgid=None, worker_pid=None, exit_code=None, ended=None)
    (rd / "status.json").write_text(json.dumps(status))
    for name in ("config.yaml", "launch.json"):
        if (run_dir / name).is_file():
            shutil.copy(run_dir / name, rd / name)
    live = LiveEvaluator(rd, rules)
    lines = (run_dir / "metrics.jsonl").read_text().splitlines(keepends=True)
    with (rd / "metrics.jsonl").open("w") as fh:
        for line in lines:
            fh.write(line)
            fh.flush()
            live.poll(force=True)
    assert live.evaluations == len(lines)
    assert [f"{f.code} {f.name}: {f.message}" for f in loud(list(live.fired.values()))] == []


@pytest.mark.parametrize("number", ["019", "021"])
def test_healthy_log_replayed_through_the_live_evaluator(rules: RuleSet, number: str, tmp_path: Path) -> None:
    # 019: a console (stdout) DPO run; 021: a LLaMA-Factory trainer_log.jsonl. Appended line by
    # line and polled after each, as `tuneterm watch FILE` sees them.
    from tuneterm.runs.live import LiveEvaluator

    src = corpus_file(number + "_")
    dst = tmp_path / src.name
    dst.write_bytes(b"")
    live = LiveEvaluator(dst, rules)
    with dst.open("wb") as fh:
        for line in src.read_bytes().splitlines(keepends=True):
            fh.write(line)
            fh.flush()
            live.poll(force=True)
    assert live.evaluations > 20
    assert [f"{f.code} {f.name}: {f.message}" for f in loud(list(live.fired.values()))] == []
