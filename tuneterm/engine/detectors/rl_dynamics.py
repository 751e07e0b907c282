"""Training-dynamics detectors for online RL (GRPO) and DPO: trends over a whole run, not single steps.

* ``completion-length-drift`` -- completion length moving far from where it started and staying
  there (collapse to short answers, or growth towards the cap; huggingface/open-r1#465,
  huggingface/trl PR#3138).
* ``reward-flat`` -- reward not improving while groups do have reward variance
  (huggingface/open-r1#436, huggingface/trl#2884).
* ``policy-instability`` -- KL to the reference blowing up, policy entropy collapsing or exploding
  (verl-project/verl#5953, rllm-org/rllm#116).
* ``preference-saturation`` -- DPO loss ~0 with accuracies ~1 early in the run (huggingface/trl#894).

All of them judge smoothed series (a trailing rolling median over block medians, so isolated
spikes such as single KL values of 197 in an otherwise steady GRPO run do not count) and need a minimum number of
logged points, because the live watcher evaluates half-written runs: the first steps of a
healthy run must not look like a trend.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from tuneterm.engine.detectors._common import pct, train, train_points
from tuneterm.engine.model import Detection, Fix, Severity
from tuneterm.engine.registry import Param, detector
from tuneterm.engine.stats import (
    finite_points,
    median,
    rolling_median,
    series_blocks,
    slope,
)
from tuneterm.logs.model import Run, Series


def _smoothed(s: Series, fraction: float) -> tuple[list[int], list[float]]:
    """Block steps and a trailing rolling median (window ``fraction`` of the blocks, at least 3)."""
    b = series_blocks(s)
    w = max(3, round(len(b.medians) * fraction))
    return b.steps, rolling_median(b.medians, w)


def _head_count(n: int, fraction: float, cap: int | None = None) -> int:
    k = max(3, int(n * fraction))
    return min(k, cap) if cap else k


def _pstdev(values: Sequence[float]) -> float:
    n = len(values)
    if n < 2:
        return 0.0
    m = sum(values) / n
    return math.sqrt(sum((v - m) ** 2 for v in values) / n)


def _fit(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """Least-squares slope of ``ys`` over ``xs`` and its standard error (``inf`` when undefined)."""
    n = len(xs)
    b = slope(xs, ys)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if n < 3 or sxx <= 0:
        return b, math.inf
    resid = sum((y - (my + b * (x - mx))) ** 2 for x, y in zip(xs, ys))
    return b, math.sqrt(resid / (n - 2) / sxx)


def _trend_gain(run: Run, name: str, fraction: float) -> float | None:
    """Median of the last ``fraction`` of ``name`` minus the median of its first ``fraction``,
    in units of the series' standard deviation (``None`` when absent or too short)."""
    s = train(run, name)
    if s is None:
        return None
    _, values = finite_points(s)
    if len(values) < 6:
        return None
    k = _head_count(len(values), fraction)
    sd = _pstdev(values)
    if sd == 0:
        return 0.0
    return (median(values[-k:]) - median(values[:k])) / sd


@detector(
    "completion-length-drift",
    params={
        "metric": Param("str", "the completion-length series", "completions/mean_length"),
        "min_points": Param("int", "logged points needed", min=6),
        "head_points": Param("int", "the baseline is the median of at most this many first logs", min=3),
        "min_change": Param("float", "relative change from the baseline that counts as drift", min=0),
        "sustain_fraction": Param("float", "the last share of the run that must all stay drifted", min=0.05, max=1),
        "smooth_fraction": Param("float", "rolling-median window as a share of the points", min=0, max=0.5),
        "flat_reward_sd": Param("float", "reward counts as flat when its gain is below this many sd", min=0),
        "cap_fraction": Param("float", "growth 'reaches the cap' at this fraction of max_completion_length", min=0, max=1),
    },
    evidence=("direction", "start", "end", "change_pct", "steps", "reward_trend", "cap"),
)
def completion_length_drift(run: Run, params: Mapping[str, Any]) -> list[Detection]:
    """Find GRPO completion length drifting far from its start and staying there (length collapse or growth).

    The baseline is the median of the first logs (at most ``head_points``, at most a quarter of
    the run); the series is smoothed with a rolling median; it fires when every smoothed point
    of the last ``sustain_fraction`` of the run is more than ``min_change`` (relative) away from
    the baseline on the same side, and the overall slope has that sign.

    Severity: shrinking while reward is flat (gain under ``flat_reward_sd`` sd) is a warning (a
    shortcut); shrinking while reward rises is info (shorter may be what the reward asks for).
    Growing to the cap (``completions/clipped_ratio`` median >= 0.5 at the end, or mean length
    >= ``cap_fraction`` of ``max_completion_length``) is a warning, an error when ``entropy`` rose
    as well (long gibberish); growing below the cap is info (longer reasoning can be healthy).

    >>> from tuneterm.logs.model import Run
    >>> run = Run("x", "test")
    >>> for s in range(1, 61):
    ...     run.add_train("completions/mean_length", s, 200.0 if s < 20 else 60.0)
    ...     run.add_train("reward", s, 0.5 + 0.01 * (s % 3))
    >>> p = dict(metric="completions/mean_length", min_points=30, head_points=20, min_change=0.5,
    ...          sustain_fraction=0.2, smooth_fraction=0.1, flat_reward_sd=0.5, cap_fraction=0.95)
    >>> d = completion_length_drift(run, p)[0]
    >>> d.evidence["direction"], d.severity.value
    ('shorter', 'warning')
    """
    s = train(run, params["metric"])
    if s is None:
        return []
    steps, values = finite_points(s)
    n = len(values)
    if n < params["min_points"]:
        return []
    head = _head_count(n, 0.25, params["head_points"])
    base = median(values[:head])
    if not base > 0:
        return []
    b_steps, sm = _smoothed(s, params["smooth_fraction"])
    sustain = max(3, round(len(sm) * params["sustain_fraction"]))
    tail = sm[-sustain:]
    changes = [(v - base) / base for v in tail]
    limit = params["min_change"]
    if all(c < -limit for c in changes):
        direction = "shorter"
    elif all(c > limit for c in changes):
        direction = "longer"
    else:
        return []
    trend = slope(list(steps), list(values))
    if (trend >= 0) if direction == "shorter" else (trend <= 0):
        return []
    end = median(tail)
    gain = _trend_gain(run, "reward", 0.2)
    reward_flat = gain is not None and gain < params["flat_reward_sd"]
    reward_trend = "unknown" if gain is None else ("flat or falling" if reward_flat else "rising")
    cap = run.facts.max_completion_length
    fixes: list[Fix] = []
    if direction == "shorter":
        severity = Severity.WARNING if reward_flat else Severity.INFO
    else:
        clipped = train(run, "completions/clipped_ratio")
        clip_end = None
        if clipped is not None:
            _, cv = finite_points(clipped)
            if len(cv) >= 3:
                clip_end = median(cv[-_head_count(len(cv), params["sustain_fraction"]):])
        at_cap = (clip_end is not None and clip_end >= 0.5) or (bool(cap) and end >= params["cap_fraction"] * cap)
        ent_gain = _trend_gain(run, "entropy", 0.2)
        if at_cap:
            severity = Severity.ERROR if ent_gain is not None and ent_gain > 0.5 else Severity.WARNING
            fixes.append(Fix(key="mask_truncated_completions", value=True, why="completions that run into the cap are left out of the loss instead of rewarding length (DAPO overlong filtering)"))
        else:
            severity = Severity.INFO
    ev = {
        "direction": direction,
        "start": round(base, 2),
        "end": round(end, 2),
        "change_pct": pct((end - base) / base),
        "steps": f"{steps[0]}-{steps[-1]}",
        "reward_trend": reward_trend,
        "cap": cap,
    }
    first = b_steps[len(sm) - sustain]
    return [Detection(first, steps[-1], ev, severity, tuple(fixes))]


@detector(
    "reward-flat",
    params={
        "min_points": Param("int", "logged reward points needed", min=6),
        "head_fraction": Param("float", "share of the run at each end whose medians are compared", min=0.05, max=0.5),
        "window_fraction": Param("float", "the late share of the run whose trend must not rise", min=0.1, max=1),
        "flat_sd": Param("float", "'flat': gain and late trend under this many sd of the reward", min=0),
        "confident_sd": Param("float", "warning when the run's trend could hide at most this many sd of gain (95%)", min=0),
        "max_zero_std_frac": Param("float", "skip when the median frac_reward_zero_std is at least this (R101's case)", min=0, max=1),
        "warn_after_fraction": Param("float", "at most info before this share of max_steps (when known) is done", min=0, max=1),
    },
    evidence=("start", "end", "gain_sd", "upper_gain_sd", "sd", "count", "steps", "reward_std"),
)
def reward_flat(run: Run, params: Mapping[str, Any]) -> list[Detection]:
    """Find a GRPO reward that does not improve although groups do have reward variance (a flat reward).

    "Flat" means both: the median of the last ``head_fraction`` of the reward is less than
    ``flat_sd`` standard deviations above the median of the first ``head_fraction`` (no gain over
    the run), and the least-squares trend over the last ``window_fraction`` is not demonstrably
    rising (its lower 95% bound, times the window's span, is under ``flat_sd`` sd). Runs with mostly zero-variance groups are left to
    ``zero-reward-variance`` (their flat reward has a known cause).

    Severity: a warning when the run is long enough to be sure -- the upper 95% bound of the
    whole-run trend (slope + 2 standard errors, times the span) is below ``confident_sd`` sd;
    otherwise info (no detectable gain, but the reward is too noisy for the number of logs to rule
    one out). Before ``warn_after_fraction`` of ``max_steps`` (a live run), at most info.

    >>> from tuneterm.logs.model import Run
    >>> run = Run("x", "test")
    >>> for s in range(1, 301):
    ...     run.add_train("reward", s, 0.5 + 0.1 * ((s * 7) % 5 - 2)); run.add_train("reward_std", s, 0.3)
    >>> p = dict(min_points=30, head_fraction=0.2, window_fraction=0.5, flat_sd=0.5, confident_sd=0.75,
    ...          max_zero_std_frac=0.5, warn_after_fraction=0.3)
    >>> reward_flat(run, p)[0].severity.value
    'warning'
    """
    pts = train_points(run, "reward", params["min_points"])
    if pts is None:
        return []
    steps, values = pts
    n = len(values)
    frac = train(run, "frac_reward_zero_std")
    if frac is not None:
        _, fv = finite_points(frac)
        if fv and median(fv) >= params["max_zero_std_frac"]:
            return []
    rstd = train(run, "reward_std")
    rstd_med = None
    if rstd is not None:
        _, rv = finite_points(rstd)
        if rv:
            rstd_med = median(rv)
            if rstd_med <= 1e-9:
                return []  # no variance at all: zero-reward-variance's case
    sd = _pstdev(values)
    if sd <= 0:
        return []
    k = _head_count(n, params["head_fraction"])
    start, end = median(values[:k]), median(values[-k:])
    gain = (end - start) / sd
    if gain >= params["flat_sd"]:
        return []
    w = max(3, int(n * params["window_fraction"]))
    wx, wy = list(steps[-w:]), list(values[-w:])
    late_b, late_se = _fit(wx, wy)
    if (late_b - 2 * late_se) * (wx[-1] - wx[0]) >= params["flat_sd"] * sd:
        return []  # demonstrably improving now, even if the gain has not shown at the ends yet
    xs, ys = list(steps), list(values)
    b, se = _fit(xs, ys)
    upper = (b + 2 * se) * (xs[-1] - xs[0]) / sd
    severity = Severity.WARNING if upper < params["confident_sd"] else Severity.INFO
    planned = run.facts.max_steps
    if planned and steps[-1] < params["warn_after_fraction"] * planned:
        severity = Severity.INFO  # a live run early on: GRPO rewards often start rising late
    causes: list[str] = []
    lr = run.facts.learning_rate
    if run.facts.is_peft and lr is not None and lr <= 2e-6:
        causes.append(f"a LoRA run at a full-fine-tuning learning rate ({lr:g}); GRPO LoRA runs use ~1e-5 (TRL) / 5e-6 (Unsloth)")
    clipped = train(run, "completions/clipped_ratio")
    if clipped is not None:
        _, cv = finite_points(clipped)
        if cv and median(cv) >= 0.5:
            causes.append("most completions are cut at max_completion_length, so the reward scores unfinished answers")
    ev = {
        "start": round(start, 4),
        "end": round(end, 4),
        "gain_sd": round(gain, 2),
        "upper_gain_sd": round(upper, 2),
        "sd": round(sd, 4),
        "count": n,
        "steps": f"{steps[0]}-{steps[-1]}",
        "reward_std": None if rstd_med is None else round(rstd_med, 4),
    }
    return [Detection(steps[0], steps[-1], ev, severity, (), tuple(causes))]


@detector(
    "policy-instability",
    params={
        "min_points": Param("int", "logged points of kl / entropy needed", min=6),
        "smooth_fraction": Param("float", "rolling-median window as a share of the points", min=0, max=0.5),
        "sustain_fraction": Param("float", "the last share of the run that must all stay past a threshold", min=0.05, max=1),
        "kl_at_least": Param("float", "KL (smoothed, sustained) that counts as blown up", min=0),
        "kl_rise": Param("float", "... and at least this many times its early level", min=1),
        "kl_floor": Param("float", "early KL below this counts as this (KL starts at 0)", min=0),
        "entropy_collapse_ratio": Param("float", "entropy below this fraction of its start is a collapse", min=0, max=1),
        "entropy_explode_above": Param("float", "entropy above this ...", min=0),
        "entropy_explode_ratio": Param("float", "... and this many times its start, still rising, is an explosion", min=1),
    },
    evidence=("what", "details", "kl_start", "kl_end", "entropy_start", "entropy_end"),
)
def policy_instability(run: Run, params: Mapping[str, Any]) -> list[Detection]:
    """Find the GRPO policy running away from the reference or collapsing (KL or entropy instability).

    * KL blow-up: the smoothed ``kl`` stays at least ``kl_at_least`` over the last
      ``sustain_fraction`` of the run and at least ``kl_rise`` times its early level (the minimum
      of the first 10% of points, floored at ``kl_floor``). Isolated KL spikes do not count.
    * Entropy collapse: smoothed ``entropy`` stays below ``entropy_collapse_ratio`` x its starting
      median (first 10% of points).
    * Entropy explosion: smoothed entropy stays above ``entropy_explode_above`` and
      ``entropy_explode_ratio`` x its start and is still rising over the sustained tail.

    Severity: warning for one signal, error for a KL blow-up together with an entropy collapse or
    explosion (the policy has left the reference *and* degenerated).

    >>> from tuneterm.logs.model import Run
    >>> run = Run("x", "test")
    >>> for s in range(1, 41):
    ...     run.add_train("kl", s, 0.01 if s < 5 else 5.0); run.add_train("entropy", s, 6.0 if s < 5 else 0.05)
    >>> p = dict(min_points=20, smooth_fraction=0.1, sustain_fraction=0.25, kl_at_least=1.0, kl_rise=10,
    ...          kl_floor=0.01, entropy_collapse_ratio=0.2, entropy_explode_above=1.0, entropy_explode_ratio=1.5)
    >>> d = policy_instability(run, p)[0]
    >>> d.evidence["what"], d.severity.value
    ('KL blow-up and entropy collapse', 'error')
    """
    found: list[str] = []
    details: list[str] = []
    first_steps: list[int] = []
    last_step: int | None = None
    ev: dict[str, Any] = {"kl_start": None, "kl_end": None, "entropy_start": None, "entropy_end": None}
    kl = train(run, "kl")
    if kl is not None:
        steps, values = finite_points(kl)
        if len(values) >= params["min_points"]:
            head = values[: _head_count(len(values), 0.1)]
            early = max(params["kl_floor"], min(head))
            b_steps, sm = _smoothed(kl, params["smooth_fraction"])
            sustain = max(3, round(len(sm) * params["sustain_fraction"]))
            tail = sm[-sustain:]
            low = min(tail)
            if low >= params["kl_at_least"] and low >= params["kl_rise"] * early:
                found.append("KL blow-up")
                details.append(f"kl rose from {early:.3g} to {median(tail):.3g} and stayed there")
                first_steps.append(b_steps[len(sm) - sustain])
                last_step = steps[-1]
                ev["kl_start"], ev["kl_end"] = round(early, 4), round(median(tail), 4)
    ent = train(run, "entropy")
    if ent is not None:
        steps, values = finite_points(ent)
        if len(values) >= params["min_points"]:
            start = median(values[: _head_count(len(values), 0.1)])
            b_steps, sm = _smoothed(ent, params["smooth_fraction"])
            sustain = max(3, round(len(sm) * params["sustain_fraction"]))
            tail = sm[-sustain:]
            what = None
            if start > 0 and max(tail) < params["entropy_collapse_ratio"] * start:
                what = "entropy collapse"
            elif (
                min(tail) > params["entropy_explode_above"]
                and min(tail) > params["entropy_explode_ratio"] * start
                and tail[-1] > tail[0]
            ):
                what = "entropy explosion"
            if what:
                found.append(what)
                details.append(f"entropy went from {start:.3g} to {median(tail):.3g}")
                first_steps.append(b_steps[len(sm) - sustain])
                last_step = max(last_step or 0, steps[-1])
                ev["entropy_start"], ev["entropy_end"] = round(start, 4), round(median(tail), 4)
    if not found:
        return []
    severity = Severity.ERROR if len(found) > 1 else Severity.WARNING
    fixes: list[Fix] = []
    if "KL blow-up" in found:
        beta = run.facts.beta
        if beta is not None and beta < 0.04:
            fixes.append(Fix(key="beta", value=0.04, why=f"beta {beta:g} lets the policy drift; 0.04 (TRL's old default) to 0.1 keeps it near the reference"))
    lr = run.facts.learning_rate
    if lr is not None and lr > 1e-5:
        fixes.append(Fix(key="learning_rate", value=1.0e-6 if not run.facts.is_peft else 1.0e-5, why=f"{lr:g} is far above the GRPO range (full 1e-6, LoRA 1e-5)"))
    ev.update({"what": " and ".join(found), "details": "; ".join(details)})
    return [Detection(min(first_steps), last_step, ev, severity, tuple(fixes))]


@detector(
    "preference-saturation",
    params={
        "max_loss": Param("float", "a log is saturated when the loss is below this ...", min=0),
        "min_accuracy": Param("float", "... and rewards/accuracies at least this (when logged)", min=0, max=1),
        "margin_at_least": Param("float", "... or rewards/margins above this", min=0),
        "min_consecutive": Param("int", "saturated logs in a row needed", min=1),
        "min_share_after": Param("float", "share of logs from the onset on that must be saturated", min=0, max=1),
        "early_fraction": Param("float", "onset must come before this share of the run", min=0, max=1),
        "error_first_logs": Param("int", "onset within this many first logs is an error", min=1),
        "skip_algorithms": Param("str_list", "preference losses not centred on ln 2", ["orpo", "kto", "cpo", "simpo"]),
        "late_margin": Param("float", "a later onset still counts when the saturated logs' median margin is above this ...", 50.0, min=0),
        "late_grad_norm": Param("float", "... or their median grad_norm is below this (the gradient has vanished)", 1e-6, min=0),
        "late_min_share": Param("float", "... and the saturated stretch is at least this share of the logs", 0.2, min=0, max=1),
    },
    evidence=("onset_step", "onset_pct", "loss", "accuracy", "margin", "share", "total_steps", "grad_norm", "when"),
)
def preference_saturation(run: Run, params: Mapping[str, Any]) -> list[Detection]:
    """Find a DPO loss at ~0 with accuracies ~1.0 early in the run (fast preference saturation).

    A log is saturated when ``loss < max_loss`` and, if logged, ``rewards/accuracies >=
    min_accuracy`` -- or when ``rewards/margins > margin_at_least``. It fires when
    ``min_consecutive`` saturated logs in a row start before ``early_fraction`` of the run
    (``max_steps`` when known, else the last logged step) and at least ``min_share_after`` of the
    logs from there on are saturated. Error when the onset is within the first
    ``error_first_logs`` logs (reference mismatch or leaked pairs), else warning.

    A later onset is the same failure when the saturation is extreme -- the saturated logs'
    median margin above ``late_margin`` (the log-ratio has run away) or their median grad_norm
    below ``late_grad_norm`` (nothing left to learn from) -- and it covers at least
    ``late_min_share`` of the logs: the rest of the run trained on nothing (a warning).

    >>> from tuneterm.logs.model import Run
    >>> run = Run("x", "test")
    >>> for s in range(1, 41):
    ...     run.add_train("loss", s, 0.69 if s < 5 else 0.001); run.add_train("rewards/accuracies", s, 1.0)
    >>> p = dict(max_loss=0.05, min_accuracy=0.98, margin_at_least=10.0, min_consecutive=3, min_share_after=0.8,
    ...          early_fraction=0.2, error_first_logs=3, skip_algorithms=["orpo"], late_margin=50.0,
    ...          late_grad_norm=1e-6, late_min_share=0.2)
    >>> d = preference_saturation(run, p)[0]
    >>> d.evidence["onset_step"], d.severity.value
    (5, 'warning')
    """
    if run.facts.algorithm in params["skip_algorithms"]:
        return []
    loss = train(run, "loss")
    if loss is None:
        return []
    steps, values = finite_points(loss)
    n = len(values)
    if n < params["min_consecutive"]:
        return []
    acc = train(run, "rewards/accuracies")
    mar = train(run, "rewards/margins")
    atab = dict(zip(acc.steps, acc.values)) if acc is not None else {}
    mtab = dict(zip(mar.steps, mar.values)) if mar is not None else {}
    flags: list[bool] = []
    for st, v in zip(steps, values):
        a = atab.get(st)
        m = mtab.get(st)
        ok_acc = a is not None and a >= params["min_accuracy"] if acc is not None else True
        sat = (v < params["max_loss"] and ok_acc) or (m is not None and m > params["margin_at_least"])
        flags.append(sat)
    need = params["min_consecutive"]
    onset = next((i for i in range(n - need + 1) if all(flags[i : i + need])), None)
    if onset is None:
        return []
    total = run.facts.max_steps or steps[-1]
    if total <= 0:
        return []
    share = sum(flags[onset:]) / (n - onset)
    if share < params["min_share_after"]:
        return []
    tail_acc = [atab[st] for st in steps[onset:] if st in atab]
    tail_mar = [mtab[st] for st in steps[onset:] if st in mtab]
    gn = train(run, "grad_norm")
    gtab = dict(zip(gn.steps, gn.values)) if gn is not None else {}
    tail_gn = [g for st in steps[onset:] if (g := gtab.get(st)) is not None and math.isfinite(g)]
    early = steps[onset] <= params["early_fraction"] * total
    if not early:
        extreme = (tail_mar and median(tail_mar) > params["late_margin"]) or (
            tail_gn and median(tail_gn) < params["late_grad_norm"]
        )
        if not extreme or (n - onset) / n < params["late_min_share"]:
            return []
    severity = Severity.ERROR if onset < params["error_first_logs"] else Severity.WARNING
    ev = {
        "onset_step": steps[onset],
        "onset_pct": pct(steps[onset] / total),
        "loss": median(values[onset:]),
        "accuracy": median(tail_acc) if tail_acc else None,
        "margin": round(median(tail_mar), 3) if tail_mar else None,
        "share": pct(share),
        "total_steps": total,
        "grad_norm": median(tail_gn) if tail_gn else None,
        "when": "early" if early else "and stayed saturated",
    }
    fixes: list[Fix] = []
    beta = run.facts.beta
    if beta is not None and beta > 0.5:
        fixes.append(Fix(key="beta", value=0.1, why=f"beta {beta:g} multiplies the log-ratio margin, so the loss saturates within steps; 0.1 is TRL's default"))
    return [Detection(steps[onset], steps[-1], ev, severity, tuple(fixes))]
