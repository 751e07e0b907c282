"""Follow a launched run from the launcher: plain progress lines, evaluation, ``--stop-on error``.

This is the plain-text follower used by ``tuneterm train --headless`` and (until the live view
lands) by ``tuneterm train`` in a terminal. It tails ``metrics.jsonl`` (complete lines only), prints
one line per training/eval log event, re-evaluates the rules on the run directory every couple of
seconds when ``stop_on == "error"`` (stopping the run on the first error finding), and evaluates
the finished run once more at the end, writing ``findings.json``.

Evaluation is the same as ``tuneterm doctor RUN`` and ``tuneterm watch`` (:func:`evaluate_dir`:
:func:`tuneterm.runs.diagnose.diagnose`), so findings.json
holds the crash finding of a run that died before its first metric; where the rules cannot be read
the follower still reports the run's own outcome.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from tuneterm.engine import load_rules
from tuneterm.engine.model import Finding, Rule
from tuneterm.errors import TunetermError
from tuneterm.logs.model import Run
from tuneterm.runs.diagnose import Diagnosis, diagnose
from tuneterm.runs.files import parse_row
from tuneterm.runs.layout import TERMINAL_STATES, RunDir
from tuneterm.runs.load import load_source
from tuneterm.report.text import finding_summary
from tuneterm.runs.writer import write_json_atomic
from tuneterm.textsafe import inert_line

if TYPE_CHECKING:
    from tuneterm.report.prescription import Prescription


class MetricsTail:
    """Read new complete lines of a JSONL file since the last call (a partial last line waits)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self._partial = b""

    def poll(self) -> list[dict[str, Any]]:
        """New JSON objects appended since the previous call (malformed lines skipped)."""
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                chunk = fh.read()
        except FileNotFoundError:
            return []
        self.offset += len(chunk)
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()
        return [row for raw in lines if (row := parse_row(raw)) is not None]


def _num(v: Any) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return inert_line(v, 20)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
        return f"{v:.2e}"
    return f"{v:.4f}"


def progress_line(row: dict[str, Any], max_steps: int | None) -> str | None:
    """One plain line for a metrics row, or None for rows with nothing to show.

    >>> progress_line({"step": 3, "loss": 2.5, "grad_norm": float("nan"), "learning_rate": 1e-4}, 30)
    'step 3/30  loss 2.5000  grad_norm nan  lr 1.00e-04'
    """
    step = row.get("step")
    where = f"step {step}/{max_steps}" if max_steps else f"step {step}"
    parts: list[str] = []
    if "train_runtime" in row:
        rt = row.get("train_runtime")
        parts.append(f"done in {_num(rt)} s" if isinstance(rt, (int, float)) else "done")
        if "train_loss" in row:
            parts.append(f"train_loss {_num(row['train_loss'])}")
        return f"{where}  " + "  ".join(parts)
    keys = [("loss", "loss"), ("grad_norm", "grad_norm"), ("learning_rate", "lr"), ("reward", "reward"),
            ("rewards/margins", "margin"), ("eval_loss", "eval_loss")]
    for key, label in keys:
        if key in row:
            parts.append(f"{label} {_num(row[key])}")
    if not parts:
        return None
    return f"{where}  " + "  ".join(parts)


def evaluate_dir(rd: RunDir, notes: list[str] | None = None) -> Diagnosis | None:
    """Evaluate the run directory exactly as ``tuneterm doctor RUN`` and ``tuneterm watch`` do.

    The run is judged by :func:`tuneterm.runs.diagnose.diagnose` (a run whose process vanished
    is marked ``died``) with the ``log`` and ``eval`` rules: the training rules, the crash rules (``run-crashed``, ``cuda-out-of-memory``,
    ``missing-package`` ... from status.json and stderr.log, so a run that died before its first
    metric is still diagnosed) and ``degenerate-generations`` on samples.jsonl.

    Args:
        rd: the run directory.
        notes: where the reason goes when the run or the rules cannot be read.

    Returns:
        The evaluation (no findings while there are no metrics, no error events and the run is not
        dead), or None when the run directory or the rules could not be read.
    """
    try:
        run = load_source(rd.path)
    except TunetermError as exc:
        if notes is not None:
            notes.append(f"run directory could not be read: {exc}")
        return None
    try:
        rules = tuple(load_rules(scopes=["log", "eval"]))
    except TunetermError as exc:
        if notes is not None:
            notes.append(f"rules could not be loaded: {exc}")
        return None
    return diagnose(run, rules)


def evaluate_run(rd: RunDir, notes: list[str] | None = None) -> list[Finding] | None:
    """The findings of :func:`evaluate_dir` (what ``tuneterm doctor RUN`` reports), or None where
    the run directory or the rules could not be read (the reason is appended to ``notes``)."""
    ev = evaluate_dir(rd, notes)
    return None if ev is None else list(ev.findings)


def advise_notice(run: Run, findings: Sequence[Finding]) -> Prescription:
    """The advisor's prescription for a notification (:data:`tuneterm.report.notify.Advisor`),
    imported when a message is composed, not when the launcher starts."""
    from tuneterm.advise import advise

    return advise(run, findings)


def write_findings(rd: RunDir, findings: Sequence[Finding], run: Run | None = None, rules: tuple[Rule, ...] = ()) -> None:
    """Write findings.json in the JSON contract of DESIGN.md.

    With the parsed ``run`` (from :func:`evaluate_dir`) the document is the one ``tuneterm check
    RUN --format json`` prints (and the watcher writes); without it the summary facts come from
    status.json.
    """
    from tuneterm.report.json_report import result_document
    from tuneterm.report.result import CheckResult

    if run is not None:
        from tuneterm.report.subjects import result_from_run

        from dataclasses import replace

        from tuneterm.advise import prescribe, read_context
        from tuneterm.preflight.schema import key_schema

        applicable = tuple(r for r in rules if r.scope == "log" and run.facts.trainer_kind in r.trainers)
        result = result_from_run(run, findings, applicable)
        # the prescription too, so the file is what `check RUN --format json` prints
        advice = prescribe(run, findings, read_context(run, schema=key_schema()))
        doc = result_document(replace(result, prescription=advice))
    else:
        status = rd.read_status()
        doc = result_document(
            CheckResult(
                source=str(rd.path),
                subject="log",
                format="run_dir",
                findings=tuple(findings),
                facts={"trainer": status.get("trainer"), "steps": status.get("step")},
            )
        )
    write_json_atomic(rd.findings, doc)


@dataclass(slots=True)
class Outcome:
    """How following ended: the run's final state (or None if still running: detached), its
    error line, the findings of the final evaluation (None: not evaluated), and whether the run
    was stopped because of an error finding."""

    state: str | None
    error: str | None = None
    findings: list[Finding] | None = None
    stopped_on_error: bool = False
    exit_code: int | None = None
    notes: list[str] = field(default_factory=list)


def follow(
    rd: RunDir,
    proc: Any,
    *,
    stop_on: str = "never",
    out: IO[str],
    poll_s: float = 0.5,
    eval_every_s: float = 2.0,
    grace_s: float = 30.0,
    should_detach: Callable[[], bool] = lambda: False,
    notify: tuple[str, ...] = (),
) -> Outcome:
    """Print progress until the supervisor ``proc`` exits (or ``should_detach()``), then evaluate.

    Args:
        rd: the run directory.
        proc: the supervisor ``Popen`` (the launcher is its parent).
        stop_on: ``"error"`` stops the run on the first error-severity finding; ``"never"`` does not.
        out: where progress lines go (stdout).
        should_detach: polled each tick; True leaves the run running and returns (state None).
        notify: apprise URLs (``--notify``): the error finding that stops the run and the run's
            end are notified (the end is the supervisor's to send; each once per run).
    """
    from tuneterm.runs.control import stop_run
    from tuneterm.report.notify import Notifier, notify_findings

    notifier = Notifier.configured(notify, advise=advise_notice)

    tail = MetricsTail(rd.metrics)
    max_steps: int | None = None
    last_eval = 0.0
    grew = False
    stopped_on_error = False

    def emit(line: str) -> None:
        print(line, file=out, flush=True)

    while True:
        rows = tail.poll()
        if rows:
            grew = True
            if max_steps is None:
                max_steps = rd.read_status().get("max_steps")
        for row in rows:
            line = progress_line(row, max_steps)
            if line:
                emit(line)
        finished = proc.poll() is not None
        if finished:
            for row in tail.poll():
                line = progress_line(row, max_steps)
                if line:
                    emit(line)
            break
        if should_detach():
            return Outcome(state=None)
        if stop_on == "error" and grew and time.monotonic() - last_eval >= eval_every_s:
            last_eval = time.monotonic()
            grew = False
            found = evaluate_run(rd) or []
            errors = [f for f in found if f.severity.value == "error"]
            if errors:
                notify_findings(notifier, rd.path, rd.name, errors[:1])
                emit(f"tuneterm: {finding_summary(errors[0], limit=400)}")
                emit(f"tuneterm: --stop-on error: stopping run {rd.name}")
                stop_run(rd, grace_s=grace_s, proc=proc)
                proc.wait()
                stopped_on_error = True
                break
        time.sleep(poll_s)

    status = rd.read_status()
    state = status.get("state") if status.get("state") in TERMINAL_STATES else "failed"
    notes: list[str] = []
    ev = evaluate_dir(rd, notes)
    findings = None if ev is None else list(ev.findings)
    if ev is not None:
        write_findings(rd, ev.findings, ev.run, ev.rules)
    if notifier is not None:
        parsed = ev.run if ev is not None else None
        notify_findings(notifier, rd.path, rd.name, findings or [], parsed)
        notifier.run_ended(rd, state, status.get("error"), findings or [], parsed)
        notifier.close()
    return Outcome(
        notes=notes,
        state=state,
        error=status.get("error"),
        findings=findings,
        stopped_on_error=stopped_on_error,
        exit_code=status.get("exit_code"),
    )
