"""Side-by-side comparison of training runs: :func:`compare` -> :class:`Comparison`.

Any source ``doctor`` reads works (tuneterm run directories, ``trainer_state.json`` and checkpoint
directories, W&B runs, console logs, TensorBoard, MLflow ...). Each run is read and judged by
:func:`tuneterm.runs.diagnose.diagnose` exactly as ``doctor`` judges it, then put next to the
others:

* **curves**: every metric present in at least two runs, aligned on a common x axis: the
  optimizer step (default), the epoch (``x="epoch"``, from each run's logged ``epoch`` series) or
  the tokens seen (``x="tokens"``, TRL's ``num_tokens``); a run without that axis has no curve;
* **config diff**: the facts every format normalises (learning rate, batch geometry, schedule,
  LoRA, precision, model ...) with only the keys whose values differ;
* **findings diff**: each rule that fired in some runs and not in all, with its first step in each;
* **verdict**: one line, errors first: ``"loss-divergence (L102) fired in b from step 1,200; a
  did not; b's learning_rate is 4x a's (0.0004 vs 0.0001)"``.

The renderers live in :mod:`tuneterm.report.compare_text` (terminal) and :meth:`Comparison.to_dict`
(``--format json``); the TUI calls :func:`compare` and renders the same object.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tuneterm.engine.model import Finding
from tuneterm.logs.model import Run, RunFacts, Series

X_AXES = ("step", "epoch", "tokens")
_TOKEN_SERIES = ("num_tokens", "num_input_tokens_seen", "tokens")
# Facts about how far a run got or what it left behind, not how it was configured.
_SKIP_FACTS = frozenset({
    "global_step", "epoch", "finished", "trainer_kind", "num_examples", "checkpoints", "best_metric",
    "best_model_checkpoint", "best_global_step", "num_input_tokens_seen", "llamafactory_accuracy",
    "logging_steps_inferred", "trainable_params",
})
_LABELS = "abcdefghijklmnopqrstuvwxyz"


@dataclass(frozen=True, slots=True)
class ComparedRun:
    """One run of a comparison: its label (``a``, ``b`` ...), where it came from, what it is."""

    label: str
    source: str
    name: str
    format: str
    trainer: str
    last_step: int | None
    final: dict[str, float]  # last finite value of each training metric


@dataclass(frozen=True, slots=True)
class Curve:
    """One metric of one run on the chosen x axis (finite points only)."""

    label: str
    xs: tuple[float, ...]
    ys: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class MetricCurves:
    """One metric (``loss``, ``eval/loss``, ``grad_norm`` ...) across the runs that logged it."""

    metric: str
    curves: tuple[Curve, ...]


@dataclass(frozen=True, slots=True)
class ConfigDiff:
    """A config key whose value differs between runs (``None`` where a run does not say)."""

    key: str
    values: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class FindingDiff:
    """A rule that fired in some runs and not in others: its first step per run (``None``: did
    not fire; ``-1``: fired without a step)."""

    code: str
    name: str
    severity: str
    first_steps: tuple[int | None, ...]


@dataclass(frozen=True, slots=True)
class Comparison:
    """Everything ``tuneterm compare`` shows."""

    runs: tuple[ComparedRun, ...]
    x: str
    metrics: tuple[MetricCurves, ...]
    config: tuple[ConfigDiff, ...]
    findings: tuple[FindingDiff, ...]
    verdict: str

    def to_dict(self) -> dict[str, Any]:
        """The ``--format json`` document."""
        labels = [r.label for r in self.runs]
        return {
            "tool": "tuneterm",
            "x": self.x,
            "runs": [_jsonable(dataclasses.asdict(r)) for r in self.runs],
            "config_diff": [{"key": c.key, "values": dict(zip(labels, _jsonable(list(c.values)), strict=True))} for c in self.config],
            "findings_diff": [
                {"code": f.code, "name": f.name, "severity": f.severity,
                 "first_step": dict(zip(labels, f.first_steps, strict=True))}
                for f in self.findings
            ],
            "metrics": [
                {"metric": m.metric, "curves": [{"run": c.label, "x": list(c.xs), "y": _jsonable(list(c.ys))} for c in m.curves]}
                for m in self.metrics
            ],
            "verdict": self.verdict,
        }


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


# ------------------------------------------------------------------------------------------ load
def compare(
    sources: Sequence[str | os.PathLike[str]], *, x: str = "step", names: Sequence[str] | None = None
) -> Comparison:
    """Read, evaluate and compare the runs at ``sources`` (two or more).

    Args:
        sources: paths any reader of :func:`tuneterm.logs.load_run` accepts.
        x: ``"step"``, ``"epoch"`` or ``"tokens"``.
        names: display names (default: each source's directory or file name).

    Raises:
        InputError: a source cannot be read.
        ValueError: fewer than two sources, or an unknown ``x``.
    """
    from tuneterm.engine import load_rules
    from tuneterm.runs.diagnose import diagnose

    if len(sources) < 2:
        raise ValueError("compare needs at least two runs")
    rules = tuple(load_rules(scopes=["log", "eval"]))
    judged = [diagnose(s, rules) for s in sources]
    runs = [d.run for d in judged]
    findings = [list(d.findings) for d in judged]
    shown = list(names) if names else [_display_name(os.fspath(s)) for s in sources]
    return compare_runs(runs, findings, x=x, names=shown)


def _display_name(source: str) -> str:
    parts = [p for p in source.replace("\\", "/").split("/") if p and p != "."]
    if not parts:
        return source
    if parts[-1] in ("trainer_state.json", "metrics.jsonl") and len(parts) > 1:
        return parts[-2]
    return parts[-1]


def compare_runs(runs: Sequence[Run], findings: Sequence[Sequence[Finding]], *, x: str = "step", names: Sequence[str]) -> Comparison:
    """:func:`compare` on runs already read and evaluated (one findings list per run)."""
    if len(runs) < 2:
        raise ValueError("compare needs at least two runs")
    if x not in X_AXES:
        raise ValueError(f"x must be one of {', '.join(X_AXES)}, not {x!r}")
    labels = [_LABELS[i] if i < len(_LABELS) else f"r{i}" for i in range(len(runs))]
    compared = tuple(
        ComparedRun(
            label=lab,
            source=r.source,
            name=name,
            format=r.format,
            trainer=r.facts.trainer_kind,
            last_step=r.last_step,
            final={k: v for k, s in sorted(r.train.items()) if (v := _last_finite(s)) is not None},
        )
        for lab, r, name in zip(labels, runs, names, strict=True)
    )
    metrics = _metric_curves(runs, labels, x)
    config = config_diff([effective_facts(r) for r in runs])
    fdiff = findings_diff(findings)
    return Comparison(compared, x, metrics, config, fdiff, verdict_line(compared, config, fdiff))


# ------------------------------------------------------------------------------------------ curves
def _last_finite(s: Series) -> float | None:
    for v in reversed(s.values):
        if math.isfinite(v):
            return float(v)
    return None


def _axis(run: Run, x: str) -> dict[int, float] | None:
    """step -> x value for the run (``None`` when it lacks that axis)."""
    if x == "step":
        return {}
    names = ("epoch",) if x == "epoch" else _TOKEN_SERIES
    for name in names:
        s = run.train.get(name)
        if s is not None and len(s):
            return {int(st): float(v) for st, v in s if math.isfinite(v)}
    return None


def _on_axis(s: Series, axis: dict[int, float], x: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    xs: list[float] = []
    ys: list[float] = []
    for st, v in s:
        if not math.isfinite(v):
            continue
        if x == "step":
            xs.append(float(st))
        elif st in axis:
            xs.append(axis[st])
        else:
            continue
        ys.append(float(v))
    return tuple(xs), tuple(ys)


def _all_series(run: Run) -> dict[str, Series]:
    out = {k: s for k, s in run.train.items() if k not in ("epoch", *_TOKEN_SERIES)}
    for set_name, metrics in run.evals.items():
        for k, s in metrics.items():
            out[f"{set_name}/{k}"] = s
    return out


def _metric_curves(runs: Sequence[Run], labels: Sequence[str], x: str) -> tuple[MetricCurves, ...]:
    per_run = [_all_series(r) for r in runs]
    axes = [_axis(r, x) for r in runs]
    order: dict[str, None] = {}
    for first in ("loss", "eval/loss", "grad_norm", "learning_rate", "reward", "rewards/margins"):
        order[first] = None
    for series in per_run:
        for k in sorted(series):
            order[k] = None
    out: list[MetricCurves] = []
    for metric in order:
        curves = []
        for lab, series, axis in zip(labels, per_run, axes, strict=True):
            s = series.get(metric)
            if s is None or axis is None:
                continue
            xs, ys = _on_axis(s, axis, x)
            if xs:
                curves.append(Curve(lab, xs, ys))
        if len(curves) >= 2:
            out.append(MetricCurves(metric, tuple(curves)))
    return tuple(out)


# ------------------------------------------------------------------------------------------ diffs
def effective_facts(run: Run) -> RunFacts:
    """The run's facts, with the configured learning rate taken from the logged schedule's peak
    when no config said it (a bare ``trainer_state.json`` or console log)."""
    facts = run.facts
    if facts.learning_rate is None:
        s = run.train.get("learning_rate")
        peak = max((v for v in s.values if math.isfinite(v)), default=None) if s is not None else None
        if peak is not None:
            return dataclasses.replace(facts, learning_rate=peak)
    return facts


def config_diff(facts: Sequence[RunFacts]) -> tuple[ConfigDiff, ...]:
    """The normalised config facts whose values differ between runs (unknown on every run: left
    out; known on some: shown, ``None`` where unknown)."""
    out: list[ConfigDiff] = []
    for f in dataclasses.fields(RunFacts):
        if f.name in _SKIP_FACTS:
            continue
        values = tuple(getattr(fa, f.name) for fa in facts)
        if all(v is None for v in values) or len({repr(v) for v in values}) == 1:
            continue
        out.append(ConfigDiff(f.name, values))
    return tuple(out)


def findings_diff(findings: Sequence[Sequence[Finding]]) -> tuple[FindingDiff, ...]:
    """Rules that fired in some runs and not in all, most severe first."""
    fired: dict[str, tuple[Finding, list[int | None]]] = {}
    n = len(findings)
    for i, found in enumerate(findings):
        for f in found:
            entry = fired.setdefault(f.code, (f, [None] * n))
            if entry[1][i] is None:
                entry[1][i] = f.first_step if f.first_step is not None else -1
            if f.severity.rank > entry[0].severity.rank:
                fired[f.code] = (f, entry[1])
    out = [
        FindingDiff(f.code, f.name, f.severity.value, tuple(steps))
        for f, steps in fired.values()
        if any(s is None for s in steps)
    ]
    rank = {"error": 0, "warning": 1, "info": 2}
    out.sort(key=lambda d: (rank.get(d.severity, 3), d.code))
    return tuple(out)


# ------------------------------------------------------------------------------------------ verdict
def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def _ratio_text(key: str, values: Sequence[Any], labels: Sequence[str]) -> str | None:
    nums = [(lab, v) for lab, v in zip(labels, values, strict=True) if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if len(nums) < 2:
        return None
    (la, va), (lb, vb) = min(nums, key=lambda t: t[1]), max(nums, key=lambda t: t[1])
    if va == vb:
        return None
    if va > 0:
        ratio = vb / va
        shown = f"{ratio:.3g}x" if ratio < 100 else f"{ratio:.0f}x"
        return f"{lb}'s {key} is {shown} {la}'s ({_fmt(vb)} vs {_fmt(va)})"
    return f"{lb}'s {key} is {_fmt(vb)}, {la}'s {_fmt(va)}"


_PRIMARY_KEYS = ("learning_rate", "lora_r", "train_batch_size", "total_train_batch_size",
                 "gradient_accumulation_steps", "max_steps", "num_train_epochs", "beta", "max_grad_norm")


def verdict_line(runs: Sequence[ComparedRun], config: Sequence[ConfigDiff], findings: Sequence[FindingDiff]) -> str:
    """One line: the most severe difference in findings, then the config difference behind it
    (or, with no finding difference, how the final losses compare)."""
    labels = [r.label for r in runs]
    parts: list[str] = []
    top = next((f for f in findings if f.severity in ("error", "warning")), None)
    if top is not None:
        hit = [f"{lab}" + (f" from step {s:,}" if s is not None and s >= 0 else "") for lab, s in zip(labels, top.first_steps, strict=True) if s is not None]
        missed = [lab for lab, s in zip(labels, top.first_steps, strict=True) if s is None]
        parts.append(f"{top.name} ({top.code}) fired in {' and '.join(hit)}")
        parts.append(f"{' and '.join(missed)} did not")
    else:
        parts.append("no finding tells the runs apart")
        losses = [(r.label, r.final.get("loss")) for r in runs if r.final.get("loss") is not None]
        if len(losses) >= 2:
            best = min(losses, key=lambda t: t[1])
            worst = max(losses, key=lambda t: t[1])
            if worst[1] > 0 and best[1] != worst[1]:
                pct = 100.0 * (worst[1] - best[1]) / abs(worst[1])
                parts.append(f"{best[0]} ends at loss {best[1]:.4g}, {pct:.0f}% below {worst[0]}'s {worst[1]:.4g}")
            elif best[1] == worst[1]:
                parts.append(f"all end at loss {best[1]:.4g}")
    by_key = {c.key: c for c in config}
    for key in _PRIMARY_KEYS:
        if key in by_key:
            text = _ratio_text(key, by_key[key].values, labels)
            if text:
                parts.append(text)
                break
    else:
        known = next((c for c in config if sum(v is not None for v in c.values) >= 2), None)
        if known is not None:
            shown = ", ".join(f"{lab}: {_fmt(v)}" for lab, v in zip(labels, known.values, strict=True) if v is not None)
            parts.append(f"{known.key} differs ({shown})")
        else:
            parts.append("no config difference is known")
    return "; ".join(parts)
