"""Evaluation-set detectors: eval loss rising while train loss falls, eval loss frozen."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tuneterm.engine.detectors._common import eval_series, pct, train
from tuneterm.engine.model import Detection, Fix, Severity
from tuneterm.engine.registry import Param, detector
from tuneterm.engine.stats import finite_points, median, value_at
from tuneterm.logs.model import Run, Series


def _set_rise(run: Run, set_name: str, s: Series, tr: Series | None, params: Mapping[str, Any]) -> Detection | None:
    """One eval set's overfitting detection (see :func:`eval_rise`), or ``None``."""
    steps, values = finite_points(s)
    n = len(values)
    if n < params["min_evals"]:
        return None
    imin = min(range(n), key=values.__getitem__)
    best = values[imin]
    if n - 1 - imin < params["min_after"] or best <= 0:
        return None
    last = values[-1]
    rise = (last - best) / best
    rising_end = values[-1] > values[-2] or (n >= 3 and values[-2] > values[-3])
    severity: Severity | None
    if rise >= params["rise"]:
        severity = None
    elif rise >= params["onset_rise"] and rising_end:
        severity = Severity.INFO
    else:
        return None
    train_best = value_at(tr, steps[imin]) if tr is not None else None
    train_last = value_at(tr, steps[-1]) if tr is not None else None
    if tr is not None and len(tr) >= 2:
        # Train loss must still be falling: compare medians around the best eval and at the end.
        tsteps, tvals = finite_points(tr)
        before = [v for st, v in zip(tsteps, tvals) if st <= steps[imin]][-5:]
        after = tvals[-5:]
        if before and after and median(after) >= median(before):
            return None
    if (
        severity is None
        and last >= params["error_factor"] * best
        and train_last is not None
        and train_last < params["error_train_below"]
    ):
        severity = Severity.ERROR
    evidence = {
        "eval_set": set_name,
        "best": best,
        "best_step": steps[imin],
        "last": last,
        "last_step_eval": steps[-1],
        "rise_pct": pct(rise),
        "train_at_best": train_best,
        "train_last": train_last,
        "evals": n,
    }
    return Detection(steps[imin], steps[-1], evidence, severity)


def _rank(d: Detection) -> tuple[int, float]:
    sev = (d.severity or Severity.WARNING).rank
    return sev, float(d.evidence["rise_pct"])


@detector(
    "eval-rise",
    params={
        "metric": Param("str", "the eval metric (lower is better)", "loss"),
        "eval_sets": Param("str_list", "eval sets to check ('*' = all)", ["*"]),
        "min_evals": Param("int", "evaluations needed", min=3),
        "min_after": Param("int", "evaluations needed after the minimum", min=1),
        "rise": Param("float", "fire when the last eval is this fraction above the minimum", min=0),
        "onset_rise": Param("float", "a smaller rise that still counts (info) when rising at the end", min=0),
        "error_factor": Param("float", "error when the last eval is this many times the minimum ...", min=1),
        "error_train_below": Param("float", "... and the train loss is below this", min=0),
    },
    evidence=(
        "eval_set", "best", "best_step", "last", "last_step_eval", "rise_pct", "train_at_best", "train_last",
        "evals", "eval_sets", "also",
    ),
)
def eval_rise(run: Run, params: Mapping[str, Any]) -> list[Detection]:
    """Find eval loss rising from its minimum while the train loss keeps falling (overfitting).

    Each eval set (``eval``, ``eval_g0`` ...) is judged on its own: a rise of at least ``rise``
    is a warning; at least ``onset_rise`` with the last two evaluations rising is an info
    ("onset"); ``error_factor`` x the minimum with a train loss under ``error_train_below`` is an
    error. The sets that rose make **one** detection (one overfitting run, however many eval
    sets watched it): the headline is the most severe set (largest rise among equals), the
    message lists the others (``also``) and ``evidence["eval_sets"]`` keeps every set's numbers.

    >>> from tuneterm.logs.model import Run
    >>> run = Run("x", "test")
    >>> for i, e in enumerate([0.9, 0.6, 0.52, 0.6, 0.75, 0.92]):
    ...     run.add_eval("eval", "loss", (i + 1) * 100, e); run.add_train("loss", (i + 1) * 100, 1.5 / (i + 1))
    ...     run.add_eval("eval_b", "loss", (i + 1) * 100, e + 0.1)
    >>> p = dict(metric="loss", eval_sets=["*"], min_evals=3, min_after=2, rise=0.05, onset_rise=0.01,
    ...          error_factor=2.0, error_train_below=0.1)
    >>> (d,) = eval_rise(run, p)
    >>> d.first_step, d.evidence["eval_set"], sorted(d.evidence["eval_sets"])
    (300, 'eval', ['eval', 'eval_b'])
    """
    tr = train(run, "loss")
    found = [
        d for set_name, s in eval_series(run, params["metric"], params["eval_sets"])
        if (d := _set_rise(run, set_name, s, tr, params)) is not None
    ]
    if not found:
        return []
    head = max(found, key=_rank)
    others = [d for d in found if d is not head]
    ev = dict(head.evidence)
    ev["eval_sets"] = {
        d.evidence["eval_set"]: {k: d.evidence[k] for k in ("best", "best_step", "last", "last_step_eval", "rise_pct", "evals")}
        for d in found
    }
    ev["also"] = (
        " (also " + ", ".join(f"{d.evidence['eval_set']} +{d.evidence['rise_pct']:.4g}%" for d in others) + ")"
        if others else ""
    )
    set_name, best_step = head.evidence["eval_set"], head.evidence["best_step"]
    fixes = (
        Fix(key="load_best_model_at_end", value=True, why=f"keep the checkpoint from step {best_step} (best {set_name} loss) instead of the last one; needs save_steps aligned with eval_steps"),
        Fix(key="metric_for_best_model", value="eval_loss" if set_name == "eval" else f"{set_name}_loss", why="select the best checkpoint by this eval set's loss"),
    )
    first = min(d.first_step for d in found if d.first_step is not None)
    last = max(d.last_step for d in found if d.last_step is not None)
    return [Detection(first, last, ev, head.severity, fixes)]


@detector(
    "constant-series",
    params={
        "metric": Param("str", "the eval metric", "loss"),
        "eval_sets": Param("str_list", "eval sets to check ('*' = all)", ["*"]),
        "min_repeats": Param("int", "identical consecutive evaluations needed", min=2),
        "tolerance": Param("float", "relative difference still counted as identical", min=0),
    },
    evidence=("eval_set", "value", "count", "steps_text", "evals"),
)
def constant_series(run: Run, params: Mapping[str, Any]) -> list[Detection]:
    """Find an eval series that repeats the same value evaluation after evaluation.

    >>> from tuneterm.logs.model import Run
    >>> run = Run("x", "test")
    >>> for st in (150, 300, 450):
    ...     run.add_eval("eval", "loss", st, 2.931)
    >>> constant_series(run, dict(metric="loss", eval_sets=["*"], min_repeats=3, tolerance=1e-6))[0].evidence["count"]
    3
    """
    out: list[Detection] = []
    tol = params["tolerance"]
    for set_name, s in eval_series(run, params["metric"], params["eval_sets"]):
        raw_steps, raw_values = finite_points(s)
        # The same evaluation logged twice at one step (a final trainer.evaluate()) is one evaluation.
        steps, values = [], []
        for st, v in zip(raw_steps, raw_values):
            if steps and st == steps[-1]:
                values[-1] = v
                continue
            steps.append(st)
            values.append(v)
        best: tuple[int, int] | None = None
        start = 0
        for i in range(1, len(values) + 1):
            same = i < len(values) and abs(values[i] - values[start]) <= tol * max(abs(values[start]), 1e-12)
            if not same:
                if i - start >= params["min_repeats"] and (best is None or i - start > best[1] - best[0]):
                    best = (start, i)
                start = i
        if best is None:
            continue
        b, e = best
        evidence = {
            "eval_set": set_name,
            "value": values[b],
            "count": e - b,
            "steps_text": ", ".join(str(x) for x in steps[b:e][:8]) + (" ..." if e - b > 8 else ""),
            "evals": len(values),
        }
        out.append(Detection(steps[b], steps[e - 1], evidence))
    return out
