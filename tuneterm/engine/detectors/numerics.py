"""NaN / Inf detection across every logged metric."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from tuneterm.engine.detectors._common import pairs, steps_text
from tuneterm.engine.model import Detection, Fix, Severity
from tuneterm.engine.registry import Param, detector
from tuneterm.engine.stats import all_finite
from tuneterm.logs.model import Run, Series


def _nonfinite(series: Series) -> tuple[list[int], list[float]]:
    if all_finite(series.values):
        return [], []
    isf = math.isfinite
    bad = [(s, v) for s, v in zip(series.steps, series.values) if not isf(v)]
    return [b[0] for b in bad], [b[1] for b in bad]


def _trailing_nonfinite(values: Sequence[float]) -> int:
    """How many non-finite values close ``values``."""
    n = 0
    for v in reversed(values):
        if math.isfinite(v):
            break
        n += 1
    return n


def _leading_only(series: Series, bad_steps: Sequence[int], max_leading: int) -> bool:
    """The non-finite points are the first ``<= max_leading`` points of ``series`` and finite
    points follow them."""
    n = len(bad_steps)
    if n == 0 or n > max_leading or len(series) <= n:
        return False
    return list(series.steps[:n]) == list(bad_steps) and all(math.isfinite(v) for v in series.values[n:])


@detector(
    "nonfinite",
    params={
        "metrics": Param("str_list", "metrics to scan ('*' = every train and eval series)", ["*"]),
        "error_fraction": Param("float", "non-finite share of a metric's points that makes it an error", min=0, max=1),
        "max_isolated": Param("int", "at most this many non-finite points, recovered from, is a warning", min=0),
        "min_trailing": Param(
            "int", "non-finite points in a row closing an unfinished log (after finite ones) that make it persistent", 2, min=1
        ),
        "max_leading": Param(
            "int", "non-finite gradient norms only in at most this many first logged steps, with a finite loss and "
            "finite norms after them: a loss scaler calibrating (info)", 3, min=0
        ),
    },
    evidence=("metric", "kind", "count", "total", "steps", "steps_text", "hidden", "hidden_note", "affected", "pattern"),
)
def nonfinite(run: Run, params: Mapping[str, Any]) -> list[Detection]:
    """Find NaN/Inf values in the loss, grad_norm or any other metric.

    One detection for the run, centred on the most important affected metric (train loss, then
    grad_norm, then eval loss, then others). The *hidden* form -- ``loss 0.0`` logged at a step
    whose ``grad_norm`` is NaN/Inf -- is called out: transformers' ``logging_nan_inf_filter``
    drops NaN step losses from the logged average, so a window of only-NaN steps logs ``0.0``.

    Severity: error when the loss itself is non-finite, the NaN is hidden, the metric's last value
    is non-finite, or at least ``error_fraction`` of its points are; a warning when at most
    ``max_isolated`` points are affected and the run recovered (e.g. an fp16 loss-scaler step).

    **Leading steps only** (info): a non-finite gradient norm at no more than the first
    ``max_leading`` logged steps, with a finite loss there and finite norms after, is a dynamic loss
    scaler finding its scale: torch's GradScaler starts at 2**16, skips the steps whose gradients
    overflow and halves the scale each time. The finite loss afterwards proves those steps were
    skipped (an applied NaN update would make every later loss NaN). Judged before the
    ``error_fraction`` test: on a short log three skipped first steps are a large share.

    A run still being written (``facts.finished`` not true) cannot show yet whether it recovers,
    so outside the loss a non-finite value needs more evidence before it is an error (``--stop-on
    error`` kills the run on it): more than ``max_isolated`` non-finite points for the
    ``error_fraction`` test, and for "the last value is non-finite" a closing run of at least
    ``min_trailing`` points -- or, when the log has no finite point yet, more than
    ``max_isolated`` (an fp16 loss scaler calibrating skips several of the first steps; later
    one skipped step is normal, a second in a row is not, and without a scaler the next step's
    loss is NaN anyway). Until then it is a warning, "not yet persistent".

    >>> from tuneterm.logs.model import Run
    >>> run = Run("x", "test")
    >>> for s in range(1, 11):
    ...     run.add_train("grad_norm", s, float("inf") if s == 2 else 1.0); run.add_train("loss", s, 2.0)
    >>> p = {"metrics": ["*"], "error_fraction": 0.2, "max_isolated": 2, "min_trailing": 2, "max_leading": 3}
    >>> d = nonfinite(run, p)[0]
    >>> d.evidence["metric"], d.evidence["kind"], d.severity.value
    ('grad_norm', 'Infinity', 'warning')
    >>> nonfinite(run.prefix(2), p)[0].evidence["pattern"]  # live, one inf so far: may recover
    'at the latest logged step; not yet persistent'
    """
    wanted = params["metrics"]
    candidates: list[tuple[str, Series]] = []
    for name, s in run.train.items():
        if "*" in wanted or name in wanted:
            candidates.append((name, s))
    for set_name, bucket in run.evals.items():
        for name, s in bucket.items():
            if "*" in wanted or name in wanted or f"{set_name}_{name}" in wanted:
                candidates.append((f"{set_name}_{name}", s))
    affected: dict[str, tuple[Series, list[int], list[float]]] = {}
    for label, s in candidates:
        if not len(s):
            continue
        steps, values = _nonfinite(s)
        if steps:
            affected[label] = (s, steps, values)
    if not affected:
        return []

    def priority(label: str) -> tuple[int, int]:
        order = {"loss": 0, "grad_norm": 1}
        rank = order.get(label, 2 if label.endswith("_loss") else 3)
        return rank, affected[label][1][0]

    metric = min(affected, key=priority)
    series, steps, values = affected[metric]
    kinds = {("NaN" if math.isnan(v) else "Infinity") for v in values}
    kind = " and ".join(sorted(kinds))
    total = len(series)
    # Hidden NaN: the loss logged as 0.0 at a step whose grad_norm is NaN/Inf.
    hidden_steps: list[int] = []
    grad = affected.get("grad_norm")
    loss = run.train.get("loss")
    if grad is not None and loss is not None and len(loss):
        zero_loss_steps = {s for s, v in zip(loss.steps, loss.values) if v == 0.0}
        hidden_steps = [s for s in grad[1] if s in zero_loss_steps]
    hidden = bool(hidden_steps)
    hidden_note = (
        f"; loss is logged as 0.0 at {len(hidden_steps)} of those steps: the NaN is hidden by "
        "logging_nan_inf_filter, this is not a perfect fit"
        if hidden
        else ""
    )
    last_bad = not math.isfinite(series.values[-1])
    fraction = len(steps) / total
    loss_bad = "loss" in affected or any(k.endswith("_loss") for k in affected)
    heavy = fraction >= params["error_fraction"]
    ends_bad = last_bad
    if not run.facts.finished:  # a live run: see the docstring
        trailing = _trailing_nonfinite(series.values) if last_bad else 0
        need = params["min_trailing"] if trailing < total else params["max_isolated"] + 1
        ends_bad = trailing >= need
        heavy = heavy and len(steps) > params["max_isolated"]
    if _leading_only(series, steps, params["max_leading"]) and not (loss_bad or hidden or last_bad):
        severity = Severity.INFO
        pattern = "only in the first logged steps, then finite: a loss scaler calibrating, those steps were skipped"
    elif loss_bad or hidden or ends_bad or heavy:
        severity = Severity.ERROR
        pattern = "persistent" if (ends_bad or heavy) else "in the loss"
    elif len(steps) <= params["max_isolated"]:
        severity = Severity.WARNING
        pattern = "at the latest logged step; not yet persistent" if last_bad else "isolated, the run recovered"
    else:
        severity = Severity.ERROR
        pattern = "repeated"
    causes: list[str] = []
    fixes: list[Fix] = []
    if run.facts.fp16:
        causes.append("fp16 overflow: fp16=True and the model was likely pretrained in bf16 (activations beyond 65,504)")
        fixes.append(Fix(key="bf16", value=True, why="bf16 has fp32's range; set fp16: false with it (Ampere or newer GPUs)"))
    if hidden:
        fixes.append(
            Fix(
                key="logging_nan_inf_filter",
                value=False,
                why="while debugging, log NaN step losses as NaN instead of hiding them as 0.0",
            )
        )
    if severity is Severity.INFO:
        causes.insert(0, "the fp16/amp loss scaler starts at a large scale and skips the first steps whose gradients overflow; harmless")
    elif pattern.startswith("isolated"):
        causes.append(
            "a single overflowing step skipped by the fp16 loss scaler or clipped away; harmless if it stays isolated"
        )
    evidence = {
        "metric": metric,
        "kind": kind,
        "count": len(steps),
        "total": total,
        "steps": pairs(steps, values),
        "steps_text": steps_text(steps),
        "hidden": hidden,
        "hidden_note": hidden_note,
        "affected": {k: len(v[1]) for k, v in sorted(affected.items())},
        "pattern": pattern,
    }
    return [Detection(steps[0], steps[-1], evidence, severity, tuple(fixes), tuple(causes))]
