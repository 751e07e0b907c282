"""Preference-optimisation (DPO family) detectors."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from tuneterm.engine.detectors._common import train, train_points
from tuneterm.engine.model import Detection, Severity
from tuneterm.engine.registry import Param, detector
from tuneterm.engine.stats import finite_points, head_tail, median, runs, slope
from tuneterm.logs.model import Run

LN2 = math.log(2.0)


@detector(
    "chosen-reward-decline",
    params={
        "tail_fraction": Param("float", "the late share of the run whose trend is judged", min=0.05, max=1),
        "min_points": Param("int", "points of rewards/chosen needed", min=3),
        "max_tail_reward": Param("float", "the late rewards/chosen median must be below this", ),
        "min_logps_drop": Param("float", "relative fall of logps/chosen (start to end) that makes it a warning", min=0),
    },
    evidence=("reward_start", "reward_end", "logps_start", "logps_end", "logps_drop_pct", "margin_end"),
)
def chosen_reward_decline(run: Run, params: Mapping[str, Any]) -> list[Detection]:
    """Find DPO chosen rewards (and chosen log-probs) falling: likelihood displacement.

    Fires when ``rewards/chosen`` is negative and trending down over the last ``tail_fraction`` of
    the run and ``logps/chosen`` ends lower than it started. Info unless ``logps/chosen`` fell by
    at least ``min_logps_drop`` (relative): negative chosen rewards alone are not a failure when
    the margin grows (DPO optimises the margin).

    >>> from tuneterm.logs.model import Run
    >>> run = Run("x", "test")
    >>> for s in range(1, 21):
    ...     run.add_train("rewards/chosen", s, -0.1 * s); run.add_train("logps/chosen", s, -100.0 - 5 * s)
    >>> p = dict(tail_fraction=0.3, min_points=10, max_tail_reward=0.0, min_logps_drop=0.2)
    >>> chosen_reward_decline(run, p)[0].severity.value
    'warning'
    """
    pts = train_points(run, "rewards/chosen", params["min_points"])
    if pts is None:
        return []
    steps, values = pts
    n = len(values)
    k = max(3, int(n * params["tail_fraction"]))
    tail_steps, tail_vals = steps[-k:], values[-k:]
    if median(tail_vals) >= params["max_tail_reward"] or slope(tail_steps, tail_vals) >= 0:
        return []
    r_start, r_end = head_tail(values, 0.1, min_count=2)
    if r_end >= r_start:
        return []
    lp = train(run, "logps/chosen")
    lp_start = lp_end = drop = None
    if lp is not None:
        _, lv = finite_points(lp)
        if len(lv) >= 4:
            lp_start, lp_end = head_tail(lv, 0.1, min_count=2)
            if lp_end >= lp_start:
                return []  # chosen log-probs hold up: the reward fall is the reference side moving
            drop = (lp_start - lp_end) / abs(lp_start) if lp_start else None
    margins = train(run, "rewards/margins")
    margin_end = median(list(margins.values)[-k:]) if margins is not None and margins.values else None
    severity = Severity.WARNING if drop is not None and drop >= params["min_logps_drop"] else Severity.INFO
    ev = {
        "reward_start": r_start,
        "reward_end": r_end,
        "logps_start": lp_start,
        "logps_end": lp_end,
        "logps_drop_pct": round(100 * drop, 2) if drop is not None else None,
        "margin_end": margin_end,
    }
    return [Detection(tail_steps[0], steps[-1], ev, severity)]


@detector(
    "preference-stuck",
    params={
        "tolerance": Param("float", "|loss - ln 2| at most this", min=0),
        "max_margin": Param("float", "|rewards/margins| at most this (when logged)", min=0),
        "min_consecutive": Param("int", "stuck points in a row needed", min=2),
        "skip_algorithms": Param("str_list", "preference losses not centred on ln 2", ["orpo", "kto", "cpo", "simpo"]),
    },
    evidence=("count", "total", "loss", "margin", "steps_text"),
)
def preference_stuck(run: Run, params: Mapping[str, Any]) -> list[Detection]:
    """Find a DPO loss stuck at ln 2 with ~zero margins: the policy equals the reference.

    >>> from tuneterm.logs.model import Run
    >>> run = Run("x", "test")
    >>> for s in range(1, 16):
    ...     run.add_train("loss", s, 0.6931); run.add_train("rewards/margins", s, 0.0)
    >>> p = dict(tolerance=0.002, max_margin=0.001, min_consecutive=10, skip_algorithms=["orpo"])
    >>> preference_stuck(run, p)[0].evidence["count"]
    15
    """
    if run.facts.algorithm in params["skip_algorithms"]:
        return []
    loss = train(run, "loss")
    if loss is None:
        return []
    steps, values = finite_points(loss)
    margins = train(run, "rewards/margins")
    mtable = dict(zip(margins.steps, margins.values)) if margins is not None else {}
    flags = []
    for st, v in zip(steps, values):
        m = mtable.get(st)
        ok_margin = m is None if margins is None else (m is not None and abs(m) <= params["max_margin"])
        flags.append(abs(v - LN2) <= params["tolerance"] and (margins is None or ok_margin))
    long_runs = [(b, e) for b, e in runs(flags) if e - b + 1 >= params["min_consecutive"]]
    if not long_runs:
        return []
    b, e = max(long_runs, key=lambda r: r[1] - r[0])
    ev = {
        "count": e - b + 1,
        "total": len(values),
        "loss": values[e],
        "margin": mtable.get(steps[e]),
        "steps_text": f"{steps[b]}-{steps[e]}",
    }
    return [Detection(steps[b], steps[e], ev)]
