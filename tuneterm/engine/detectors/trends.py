"""Shape detectors over one series: spikes, sustained divergence, plateaus."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from tuneterm.engine.detectors._common import (
    eval_series,
    lr_warming_up,
    pct,
    run_ended,
    steps_text,
    train,
    train_points,
)
from tuneterm.engine.model import Detection, Fix, Severity
from tuneterm.engine.registry import Param, detector
from tuneterm.engine.stats import (
    finite_points,
    head_tail,
    median,
    relative_change,
    rolling_median,
    series_blocks,
)
from tuneterm.logs.model import Run


@detector(
    "spike",
    params={
        "metric": Param("str", "the series to scan (train)"),
        "window": Param("int", "trailing window (logged points) for the baseline median", min=3),
        "min_history": Param("int", "points needed before a spike can be judged", min=2),
        "ratio": Param("float", "a spike is at least this many times the baseline median", min=1),
        "mad_k": Param("float", "... and at least baseline + mad_k x MAD", min=0),
        "min_jump": Param("float", "... and at least this much above the baseline in absolute terms", min=0),
        "min_value": Param("float", "ignore peaks below this absolute value", min=0),
        "use_max_grad_norm": Param("bool", "raise min_value to the run's max_grad_norm when known", False),
        "warn_ratio": Param("float", "a peak this many times the baseline is a warning (else info)", min=1),
        "warn_count": Param("int", "this many spikes is a warning whatever their size", min=1),
        "ratio_floor": Param(
            "float", "the baseline that ratios (ratio, warn_ratio) are judged against is never below this: at a "
            "near-zero loss any outlier batch is a large multiple of the median", 0.0, min=0
        ),
    },
    evidence=("metric", "count", "peak_step", "peak", "baseline", "factor", "steps_text", "recovered"),
)
def spike(run: Run, params: Mapping[str, Any]) -> list[Detection]:
    """Find isolated jumps of a series above its trailing median.

    A point is a spike when it is at least ``ratio`` x and ``mad_k`` MADs above the median of the
    ``window`` points before it (block medians for very long series, so the pass stays O(n)).
    ``recovered`` says whether the series came back under 1.5x the baseline afterwards. Severity:
    a warning when the peak is ``warn_ratio`` x the baseline, there are ``warn_count`` spikes, or
    the series did not recover; otherwise info (isolated spikes that recover are mostly harmless).
    Both ratios are taken against the baseline raised to ``ratio_floor``: a classifier whose loss
    sits at 2e-4 meets one misclassified batch at 0.18, "900x" its median and yet noise at the
    floor, not the start of a divergence (the reported ``factor`` stays the plain ratio).

    >>> from tuneterm.logs.model import Run
    >>> run = Run("x", "test")
    >>> for s in range(1, 41):
    ...     run.add_train("grad_norm", s, 40.0 if s == 30 else 1.0 + 0.01 * (s % 3))
    >>> p = dict(metric="grad_norm", window=20, min_history=5, ratio=10, mad_k=5, min_jump=0, min_value=0,
    ...          use_max_grad_norm=False, warn_ratio=30, warn_count=3, ratio_floor=0.0)
    >>> d = spike(run, p)[0]
    >>> d.first_step, d.severity.value
    (30, 'warning')
    """
    s = train(run, params["metric"])
    if s is None:
        return []
    steps, values = finite_points(s)
    b = series_blocks(s)
    n = len(b.medians)
    hist = params["min_history"]
    if n <= hist:
        return []
    window = max(3, params["window"] // b.size)
    min_value = params["min_value"]
    if params["use_max_grad_norm"] and run.facts.max_grad_norm:
        min_value = max(min_value, run.facts.max_grad_norm)
    floor = params.get("ratio_floor", 0.0)
    found: list[tuple[int, float, float]] = []  # (index into finite points, value, baseline)
    for i in range(hist, n):
        peak = b.maxima[i]
        if peak < min_value:
            continue
        ref = b.medians[max(0, i - window) : i]
        base = median(ref)
        if not base > 0 or peak < params["ratio"] * max(base, floor):
            continue
        spread = median([abs(v - base) for v in ref])
        if peak < base + params["mad_k"] * max(spread, 1e-12 * base) or peak - base < params["min_jump"]:
            continue
        found.append((b.argmax[i], peak, base))
    if not found:
        return []
    idx, peak, base = max(found, key=lambda f: f[1] / f[2])
    after = values[idx + 1 : idx + 1 + max(5, b.size * 5)]
    recovered = bool(after) and min(after) <= 1.5 * base
    factor = peak / base
    loud = peak / max(base, floor) >= params["warn_ratio"] or len(found) >= params["warn_count"] or not recovered
    severity = Severity.WARNING if loud else Severity.INFO
    spike_steps = [steps[f[0]] for f in found]
    evidence = {
        "metric": params["metric"],
        "count": len(found),
        "peak_step": steps[idx],
        "peak": peak,
        "baseline": base,
        "factor": round(factor, 1),
        "steps_text": steps_text(spike_steps),
        "recovered": recovered,
    }
    return [Detection(spike_steps[0], spike_steps[-1], evidence, severity)]


def _phases(medians: list[float], block: int, params: Mapping[str, Any]) -> tuple[bool, float, float, int, float, float]:
    """Multi-phase divergence on a finely smoothed series (see :func:`divergence`).

    The wide trailing window of the sustained test lags a noisy loss by 5% of the run, so a best
    level held for a few hundred steps between two divergent phases disappears from it; here the
    window is ``phase_smooth_fraction`` of the points (never under ``min_window``).

    Returns (fires, share of the points after the run first reached its best level at
    ``phase_ratio`` x that level or more, the level, the index where it was first reached, the
    smoothed end, the smoothed start).
    """
    w = max(params["min_window"], round(len(medians) * params["phase_smooth_fraction"]))
    sm = rolling_median(medians, w)
    if len(sm) <= w:
        return False, 0.0, math.nan, 0, math.nan, math.nan
    lo = min(sm[w:])  # past the first window: no half-filled medians
    # Phases count from the first time the run reached its best level (within 20%): a late dip to
    # the same level between two divergent phases must not hide the phases before it.
    imin = next(i for i in range(w, len(sm)) if sm[i] <= 1.2 * lo)
    end = sm[-1]
    after = sm[imin + 1 :]
    if not lo > 0 or not after:
        return False, 0.0, lo, imin, end, sm[w - 1]
    high = sum(1 for v in after if v >= params["phase_ratio"] * lo)
    share = high / len(after)
    fires = (
        end >= max(params["rise_ratio"] * lo, lo + params["min_abs_rise"])
        and share >= params["min_phase_share"]
        and high * block >= params["min_phase_points"]
    )
    return fires, share, lo, imin, end, sm[w - 1]


@detector(
    "divergence",
    params={
        "metric": Param("str", "the series (train)", "loss"),
        "min_points": Param("int", "finite points needed", min=3),
        "smooth_fraction": Param("float", "rolling-median window as a fraction of the points", min=0, max=0.5),
        "rise_ratio": Param("float", "fire when the smoothed end is this many times the smoothed minimum", min=1),
        "min_abs_rise": Param("float", "... and at least this much above it in absolute terms", min=0),
        "min_window": Param("int", "the rolling-median window spans at least this many logged points", 3, min=1),
        "min_sustain": Param("int", "the rise holds for at least this many smoothed points at the end", 5, min=2),
        "phase_smooth_fraction": Param("float", "multi-phase divergence: rolling-median window as a fraction of the points", 0.02, min=0, max=0.5),
        "phase_ratio": Param("float", "... the smoothed loss returns to this many times its minimum ...", 2.5, min=1),
        "min_phase_share": Param("float", "... for at least this share of the points after the minimum ...", 0.25, min=0, max=1),
        "min_phase_points": Param("int", "... and at least this many logged points, and ends rise_ratio x above it", 100, min=1),
    },
    evidence=("metric", "start", "minimum", "min_step", "end", "factor", "worse_than_start", "pattern", "phase_share_pct", "phase_note"),
)
def divergence(run: Run, params: Mapping[str, Any]) -> list[Detection]:
    """Find a sustained rise of a series from its minimum to the end of the run.

    The series is smoothed with a trailing rolling median (window ``smooth_fraction`` of the
    points); the detection fires when the last smoothed points all stay at least ``rise_ratio``
    times the smoothed minimum. It is an error when the end is worse than the start.

    **Phases of divergence.** A noisy per-step loss can diverge, partly recover and diverge again:
    then the last smoothed points do not all stay up, and the end can still be below a high start,
    so neither "sustained" nor "worse than the start" sees it (and the wide smoothing window blurs
    a best level held between two phases away). The detector also fires when the loss, smoothed
    over ``phase_smooth_fraction`` of the points, returns to ``phase_ratio`` x its minimum for at least ``min_phase_share`` of the
    points after the minimum (and ``min_phase_points`` logged points: hundreds of steps, not a
    bad stretch) and ends at least ``rise_ratio`` x above the minimum.

    Minimum evidence, so that the first 10-20 noisy points of a run (a live watch, where an
    error can stop the run) do not read as divergence: the window is never shorter than
    ``min_window`` points (a 10% window of 20 points is a single point, so one lucky low batch
    would be "the minimum"), and the rise must hold for the last ``min_sustain`` smoothed points
    (three high batches in a row are a bad stretch, not a trend). While the learning rate is
    still warming up (:func:`lr_warming_up`) an end worse than the start is a warning, not an
    error: the rate has not reached the size that diverges, the loss moves with batch noise,
    and ``--stop-on error`` must not kill the run before its schedule has started.

    >>> from tuneterm.logs.model import Run
    >>> run = Run("x", "test")
    >>> for s, v in enumerate([1.0, 4.3, 8.8, 13.5, 17.0, 20.1, 22.0, 25.3, 27.9, 29.6], 1):
    ...     run.add_train("loss", s * 10, v)
    >>> p = {"metric": "loss", "min_points": 5, "smooth_fraction": 0.1, "rise_ratio": 1.5, "min_abs_rise": 0.1,
    ...      "min_window": 3, "min_sustain": 5, "phase_smooth_fraction": 0.02, "phase_ratio": 2.5, "min_phase_share": 0.25,
    ...      "min_phase_points": 100}
    >>> d = divergence(run, p)[0]
    >>> d.severity.value, d.evidence["min_step"]
    ('error', 10)
    """
    s = train(run, params["metric"])
    if s is None:
        return []
    steps, values = finite_points(s)
    if len(values) < params["min_points"]:
        return []
    b = series_blocks(s)
    w = max(params["min_window"], round(len(b.medians) * params["smooth_fraction"]))
    sm = rolling_median(b.medians, w)
    imin = min(range(len(sm)), key=sm.__getitem__)
    lo = sm[imin]
    if not lo > 0:
        return []
    floor = max(params["rise_ratio"] * lo, lo + params["min_abs_rise"])
    sustain = max(params["min_sustain"], w)
    tail = sm[-sustain:]
    sustained = imin < len(sm) - 1 and len(sm) - imin > sustain and min(tail) >= floor
    phased, share, p_lo, p_imin, p_end, p_start = _phases(b.medians, b.size, params)
    if not (sustained or phased):
        return []
    start, end = sm[0], sm[-1]
    if not sustained:  # the fine smoothing found the best level the wide window blurred away
        lo, imin, start, end = p_lo, p_imin, p_start, p_end
    worse = end > start
    severity = Severity.ERROR if worse and not lr_warming_up(run) else None
    evidence = {
        "metric": params["metric"],
        "start": start,
        "minimum": lo,
        "min_step": b.steps[imin],
        "end": end,
        "factor": round(end / lo, 2),
        "worse_than_start": worse,
        "pattern": "sustained rise" if sustained else "phases of divergence",
        "phase_share_pct": pct(share),
        "phase_note": (
            f"; back above {params['phase_ratio']:g}x its minimum for {pct(share)}% of the run after it" if phased else ""
        ),
    }
    causes = []
    lr = train(run, "learning_rate")
    if lr is not None and lr.values and max(lr.values) >= 1e-4 and not run.facts.is_peft:
        causes.append(f"learning rate {max(lr.values):.3g} is high for full fine-tuning")
    if run.facts.lora_r is not None and run.facts.lora_r >= 128:
        causes.append(f"LoRA rank {run.facts.lora_r} with an LR not rescaled for it")
    fixes: list[Fix] = []
    if lr is not None and lr.values and max(lr.values) > 0:
        peak = max(lr.values)
        fixes.append(Fix(key="learning_rate", value=float(f"{peak / 10:.2g}"), why=f"a tenth of the peak {peak:.3g}: the usual resolution of divergence"))
    return [Detection(b.steps[imin], s.steps[-1], evidence, severity, tuple(fixes), tuple(causes))]


def _eval_still_falling(run: Run, from_step: int, min_points: int, min_improvement: float) -> bool:
    """True when some eval set's loss fell (strictly) at every eval from ``from_step`` on (at least
    ``min_points`` of them) and by at least ``min_improvement`` (a fraction) in all.

    >>> run = Run("x", "test")
    >>> for i, v in enumerate([1.275, 1.225, 1.19, 1.175, 1.164]):
    ...     run.add_eval("eval", "loss", 10 * (i + 1), v)
    >>> _eval_still_falling(run, 10, 4, 0.01), _eval_still_falling(run, 30, 4, 0.01)
    (True, False)
    """
    for _, s in eval_series(run, "loss"):
        steps, values = finite_points(s)
        stretch = [v for st, v in zip(steps, values, strict=True) if st >= from_step]
        if len(stretch) < min_points or stretch[0] <= 0:
            continue
        falling = all(b < a for a, b in zip(stretch, stretch[1:]))
        if falling and relative_change(stretch[0], stretch[-1]) >= min_improvement:
            return True
    return False


@detector(
    "plateau",
    params={
        "metric": Param("str", "the series (train)", "loss"),
        "min_points": Param("int", "finite points needed", min=4),
        "head_fraction": Param("float", "share of points at each end whose medians are compared", min=0.01, max=0.5),
        "min_improvement": Param("float", "fire when the whole run improved less than this fraction", min=0),
        "late_start": Param("float", "where the late stretch starts, as a fraction of the run", min=0, max=0.9),
        "min_late_improvement": Param("float", "... or when the late stretch improved less than this", min=0),
        "min_level": Param("float", "never fire when the end value is at or below this (converged)", min=0),
        "lora_learning_rate": Param("float", "LR to suggest for LoRA runs whose peak LR is lower", min=0),
        "min_plan_share": Param(
            "float", "the flat stretch spans at least this share of max_steps (when known and not yet reached)", 0.2, min=0, max=1
        ),
        "converged_improvement": Param(
            "float", "a flat late stretch after the loss already fell by at least this fraction is convergence, not a plateau",
            0.25, min=0,
        ),
        "untrained_level": Param(
            "float", "a loss whose late median is at or above this (nats) has learned nothing: flat unless it fell by "
            "converged_improvement, judged without waiting for min_plan_share of the plan (0 = never)", 0.0, min=0
        ),
        "min_eval_points": Param(
            "int", "evals within the flat stretch needed before a steadily falling eval loss vetoes the plateau", 4, min=2
        ),
        "eval_improvement": Param(
            "float", "no plateau while the eval loss fell at every eval of the flat stretch and by at least this "
            "fraction in all: the model still generalises better, the train loss is only noisy or slow", 0.003, min=0
        ),
    },
    evidence=(
        "metric", "first", "last", "change_pct", "start", "end", "improvement_pct", "late_from",
        "late_improvement_pct", "stretch", "peak_lr",
    ),
)
def plateau(run: Run, params: Mapping[str, Any]) -> list[Detection]:
    """Find a run whose loss does not meaningfully improve (overall, or for most of the run).

    Compares the median of the first ``head_fraction`` of points with the median of the last
    ``head_fraction``: fires when the relative change is within +-``min_improvement``; also when
    the stretch from ``late_start`` of the run to the end changed less than
    ``min_late_improvement`` either way (a run that learned early, then stalled) -- unless the
    loss had already fallen by ``converged_improvement`` or more: a run that cut its loss by a
    quarter and then flattened has converged, the usual shape of a fine-tune. A loss that got
    clearly worse is not a plateau (see the divergence detector). Nor is a flat train loss while
    the eval loss keeps improving: when at least ``min_eval_points`` evals fall within the flat
    stretch, each strictly lower than the one before and ``eval_improvement`` lower in all, the
    run is still learning what it is judged on (an eval loss is measured on a fixed set, so a fall
    at every one of several evals is a trend, not sampling noise; the floor keeps a numerically
    frozen eval loss out). Computes a learning-rate fix
    for LoRA runs trained at a full-fine-tuning LR.

    "Most of the run" is judged against the planned run: while ``max_steps`` (from the config or
    the log header) is known and not yet reached, the flat stretch must span at least
    ``min_plan_share`` of it. A live run that learned fast in its first 300 of 6,700 steps and
    then held still for 400 steps has not plateaued; a run that is over (finished, or interrupted
    or crashed after its last metric line: :func:`run_ended`) is judged on what it did. A loss
    whose late median is still at or above ``untrained_level`` is the exception: one that never
    left the level of a uniform guess over a large vocabulary has learned nothing, however early
    in the plan, and a few percent of per-step noise between its ends (less than
    ``converged_improvement``) is no improvement.

    >>> from tuneterm.logs.model import Run
    >>> run = Run("x", "test")
    >>> for s in range(1, 21):
    ...     run.add_train("loss", s * 25, 2.7335 - 0.001 * s)
    >>> p = dict(metric="loss", min_points=10, head_fraction=0.1, min_improvement=0.03, late_start=0.3,
    ...          min_late_improvement=0.01, min_level=0.05, lora_learning_rate=1e-4, min_plan_share=0.2,
    ...          converged_improvement=0.25, min_eval_points=4, eval_improvement=0.003, untrained_level=9.0)
    >>> plateau(run, p)[0].evidence["improvement_pct"] < 1
    True
    >>> run.facts.max_steps = 5000  # the same 500 steps as the first tenth of a 5,000-step run
    >>> plateau(run, p)
    []
    """
    pts = train_points(run, params["metric"], params["min_points"])
    if pts is None:
        return []
    steps, values = pts
    n = len(values)
    k = max(2, int(n * params["head_fraction"]))
    head, tail = head_tail(values, params["head_fraction"], min_count=2)
    if tail <= params["min_level"] or head <= 0:
        return []
    overall = relative_change(head, tail)
    late_i = int(n * params["late_start"])
    late_head = median(values[late_i : late_i + k])
    late = relative_change(late_head, tail)
    # "Flat" means within a band around zero: a loss that got clearly *worse* is divergence's case.
    # A loss still at the untrained level after a noisy few percent of "improvement" is flat too.
    untrained = 0 < params.get("untrained_level", 0.0) <= tail
    uniform_flat = untrained and -params["min_improvement"] < overall < params.get("converged_improvement", math.inf)
    if abs(overall) < params["min_improvement"] or uniform_flat:
        stretch = "the whole run"
        first = steps[0]
    elif abs(late) < params["min_late_improvement"] and -params["min_improvement"] < overall < params.get("converged_improvement", math.inf):
        stretch = f"steps {steps[late_i]}-{steps[-1]}"
        first = steps[late_i]
    else:
        return []
    planned = run.facts.max_steps
    early = planned and steps[-1] < planned and steps[-1] - first < params["min_plan_share"] * planned
    if early and not untrained and not run_ended(run):
        return []  # too little of the planned run to call it a plateau yet
    if _eval_still_falling(run, first, params.get("min_eval_points", 4), params.get("eval_improvement", 0.003)):
        return []
    lr = train(run, "learning_rate")
    peak_lr = max(lr.values) if lr is not None and all(math.isfinite(v) for v in lr.values) else run.facts.learning_rate
    fixes: list[Fix] = []
    causes: list[str] = []
    lora_lr = params["lora_learning_rate"]
    if run.facts.is_peft and peak_lr is not None and peak_lr < lora_lr:
        causes.append(f"LoRA trained at a full-fine-tuning learning rate ({peak_lr:.3g}); adapters need ~10x more")
        fixes.append(Fix(key="learning_rate", value=lora_lr, why=f"LoRA/QLoRA adapters train well around {lora_lr:g} (TRL docs: ~1e-4 for adapters); {peak_lr:.3g} is a full fine-tuning rate"))
    evidence = {
        "metric": params["metric"],
        "first": values[0],
        "last": values[-1],
        "change_pct": pct(relative_change(values[0], values[-1])),
        "start": head,
        "end": tail,
        "improvement_pct": pct(overall),
        "late_from": steps[late_i],
        "late_improvement_pct": pct(late),
        "stretch": stretch,
        "peak_lr": peak_lr,
    }
    return [Detection(first, steps[-1], evidence, None, tuple(fixes), tuple(causes))]
