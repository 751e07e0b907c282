"""Route a path to the checker for its kind of subject: *detect subject -> produce a CheckResult*.

``tuneterm check PATH`` accepts training logs, training configs, pipelines and datasets. Each kind is a :class:`SubjectHandler`: a cheap ``claims(path)`` test (file
name, suffix, first bytes; it must not import anything heavy) and a ``check(path, options)`` that
returns a :class:`~tuneterm.report.result.CheckResult` or raises a
:class:`~tuneterm.errors.TunetermError`. :func:`check_subject` asks the handlers in priority order
and the first that claims the path checks it; logs are the fallback.

Adding a subject kind: write a module with a handler and call :func:`register_subject` at its
import, then add the module's dotted name to :data:`tuneterm.plugins.SUBJECT_MODULES` so the dispatcher imports it
(lazily, on the first check). A handler imports its own heavy dependencies inside ``check``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from tuneterm import plugins
from tuneterm.errors import InputError, NoMetricsError
from tuneterm.report.result import CheckResult

if TYPE_CHECKING:  # annotations only: nothing here may import the parsers or engine eagerly
    from tuneterm.engine.model import Finding, Rule
    from tuneterm.engine.rules import RuleSet
    from tuneterm.logs.model import MemoryRecord, Run

HANDLER_MODULES: tuple[str, ...] = plugins.SUBJECT_MODULES
"""Modules that register extra subject handlers when imported (named in :mod:`tuneterm.plugins`)."""


@dataclass(frozen=True, slots=True)
class CheckOptions:
    """What the user asked for, shared by every subject kind.

    Attributes:
        select: rule names, codes or code prefixes to run (empty: all).
        ignore: rule names, codes or code prefixes to skip.
        rules_dir: a rule directory other than the shipped ``rules/`` (tests, custom rules).
        gpu_memory_gib, gpus: capacity for the config fit check (None: the GPUs found by NVML).
        trainer: force the trainer kind of a config or dataset (``sft``/``dpo``/``grpo``).
        model, max_length, sample: dataset checks (tokenizer / chat template, truncation length,
            rows to sample).
    """

    select: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    rules_dir: Path | None = None
    gpu_memory_gib: float | None = None
    gpus: int | None = None
    trainer: str | None = None
    model: str | None = None
    max_length: int | None = None
    sample: int | None = None

    def ruleset(self, scope: str | None = "log") -> RuleSet:
        """The selected rules of ``scope`` (``None``: every scope), loaded once per distinct options.

        Only the detectors of that scope are imported, so ``check LOG`` stays light. A
        ``--select``/``--ignore`` name that belongs to another scope (a data rule while checking a
        log) is not an error; a name known nowhere is (TunetermError, exit 2).
        """
        return _load_ruleset(self.rules_dir, self.select, self.ignore, scope)


@lru_cache(maxsize=16)
def _load_ruleset(
    rules_dir: Path | None, select: tuple[str, ...], ignore: tuple[str, ...], scope: str | None
) -> RuleSet:
    from tuneterm.engine import load_rules

    rules = load_rules(rules_dir, scopes=None if scope is None else [scope])
    if not (select or ignore):
        return rules
    everywhere: RuleSet | None = None

    def in_scope(tokens: tuple[str, ...]) -> list[str]:
        nonlocal everywhere
        kept = []
        for token in tokens:
            if rules._match(token):
                kept.append(token)
                continue
            if everywhere is None:  # rare path: validate the name against every scope
                everywhere = load_rules(rules_dir)
            if not everywhere._match(token):
                kept.append(token)  # unknown everywhere: select() reports it
        return kept

    chosen, skipped = in_scope(select), in_scope(ignore)
    if select and not chosen:  # only other scopes' rules were selected: nothing runs here
        return rules.select(None, [r.code for r in rules.rules])
    return rules.select(chosen or None, skipped or None)


@dataclass(frozen=True, slots=True)
class SubjectHandler:
    """One kind of thing ``tuneterm check`` understands.

    Attributes:
        kind: ``"log"``, ``"config"``, ``"data"`` ...
        claims: cheap test of whether this handler should check the path.
        check: produce the result; raise InputError / NoMetricsError / TunetermError on failure.
        priority: handlers are asked highest first; the log fallback is ``-100``.
        remote: the handler also accepts names that are not local paths (a hub dataset id);
            only such handlers are asked about a path that does not exist.
    """

    kind: str
    claims: Callable[[Path], bool]
    check: Callable[[Path, CheckOptions], CheckResult]
    priority: int = 0
    remote: bool = False


_HANDLERS: list[SubjectHandler] = []
_loaded_plugins = False


def register_subject(handler: SubjectHandler) -> None:
    """Add ``handler`` (replacing any handler of the same ``kind``)."""
    _HANDLERS[:] = [h for h in _HANDLERS if h.kind != handler.kind]
    _HANDLERS.append(handler)


def handlers() -> list[SubjectHandler]:
    """Registered handlers, highest priority first (imports :data:`HANDLER_MODULES` once)."""
    global _loaded_plugins
    if not _loaded_plugins:
        _loaded_plugins = True
        for name in HANDLER_MODULES:
            importlib.import_module(name)
    return sorted(_HANDLERS, key=lambda h: -h.priority)


def check_subject(path: str | Path, options: CheckOptions) -> CheckResult:
    """Check one path with the handler that claims it.

    Raises:
        InputError: the path does not exist (or the handler could not read it).
        NoMetricsError: the input was read but holds nothing to check (exit 3).
        TunetermError: any other clear, one-line failure (bad rule file, unknown rule name).
    """
    p = Path(path)
    local = p.exists()
    for handler in handlers():
        if (local or handler.remote) and handler.claims(p):
            return handler.check(p, options)
    if not local:
        raise InputError(f"{path}: no such file or directory")
    raise InputError(f"{path}: not a training log, config or dataset tuneterm can read")


# --- the log subject --------------------------------------------------------------------------


def result_from_run(run: Run, findings: list[Finding], rules: tuple[Rule, ...] = ()) -> CheckResult:
    """Build the CheckResult of a parsed and evaluated log (shared with watch / the TUI)."""
    facts = run.facts
    summary: dict[str, object] = {"trainer": facts.trainer_kind, "steps": run.last_step}
    if facts.max_steps is not None:
        summary["max_steps"] = facts.max_steps
    if facts.model_name or facts.model_type:
        summary["model"] = facts.model_name or facts.model_type
    # A tuneterm run's planner estimate against its measured GPU peak (run directories only).
    if run.memory is not None:
        summary["memory"] = _memory_summary(run.memory)
    return CheckResult(
        source=run.source,
        subject="log",
        format=run.format,
        findings=tuple(findings),
        rules=tuple(rules),
        facts=summary,
        notes=tuple(run.notes),
        run=run,
    )


def _memory_summary(record: MemoryRecord) -> dict[str, object]:
    """The ``summary.memory`` object of the JSON report: what was recorded, in this order."""
    mem: dict[str, object] = {}
    for key, value in (
        ("measured_peak_allocated_gib", record.peak_allocated_gib),
        ("measured_peak_reserved_gib", record.peak_reserved_gib),
        ("gpu_name", record.gpu_name),
        ("estimate", record.estimate),
    ):
        if value is not None:
            mem[key] = value
    return mem


def applicable_rules(run: Run, ruleset: RuleSet) -> tuple[Rule, ...]:
    """The log rules that apply to ``run``'s trainer kind (what evaluate() runs), by code."""
    kind = run.facts.trainer_kind
    return tuple(r for r in ruleset.rules if r.scope == "log" and kind in r.trainers)


def _check_log(path: Path, options: CheckOptions) -> CheckResult:
    # Judged exactly as `tuneterm watch` judges it (runs.diagnose), so a later doctor sees what the
    # watcher saw: a run directory whose process vanished is marked, and the sample generations it
    # recorded are judged too (degenerate-generations lives with the eval rules).
    from tuneterm.engine.detectors.crash import final_crash
    from tuneterm.runs.load import load_source
    from tuneterm.runs.diagnose import diagnose

    ruleset = options.ruleset()
    run = load_source(path)
    if run.format != "run_dir" or final_crash(run) is None:  # a run that died before its first metric still says why
        _require_metrics(run, path)
    sample_rules = options.ruleset("eval").rules if run.samples else ()
    found = diagnose(run, (*ruleset.rules, *sample_rules)).findings
    return result_from_run(run, list(found), applicable_rules(run, ruleset))


def _require_metrics(run: Run, path: Path) -> None:
    if not run.has_metrics():
        why = f" ({'; '.join(run.notes)})" if run.notes else ""
        raise NoMetricsError(f"no training metrics in {path}{why}")


register_subject(SubjectHandler(kind="log", claims=lambda p: True, check=_check_log, priority=-100))
