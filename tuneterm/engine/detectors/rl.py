"""Online-RL (GRPO/RLOO/PPO) detectors: groups with no reward variance, truncated completions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tuneterm.engine.detectors._common import pct, steps_text, train
from tuneterm.engine.model import Detection, Fix, Severity
from tuneterm.engine.registry import Param, detector
from tuneterm.engine.stats import finite_points, median, runs
from tuneterm.logs.model import Run


def _aligned(run: Run, name: str, steps: list[int]) -> list[float | None]:
    s = train(run, name)
    if s is None:
        return [None] * len(steps)
    table = dict(zip(s.steps, s.values))
    return [table.get(st) for st in steps]


@detector(
    "zero-reward-variance",
    params={
        "frac_at_least": Param("float", "a step is dead when frac_reward_zero_std is at least this", min=0, max=1),
        "std_at_most": Param("float", "... or (no frac_reward_zero_std) reward_std is at most this", min=0),
        "min_consecutive": Param("int", "dead steps in a row that fire (warning)", min=1),
        "warn_share": Param("float", "share of dead steps that fires (warning)", min=0, max=1),
        "error_share": Param("float", "share of dead steps that is an error", min=0, max=1),
        "min_points": Param("int", "logged steps an unfinished run needs before the share tests apply", 10, min=1),
        "mostly_dead": Param(
            "float", "no dead steps to report, but frac_reward_zero_std at least this at at least warn_share of the steps "
            "and as the median: most groups give no signal (warning)", 0.5, min=0, max=1
        ),
    },
    evidence=("count", "total", "percent", "longest_run", "steps_text", "reward_median", "metric", "note"),
)
def zero_reward_variance(run: Run, params: Mapping[str, Any]) -> list[Detection]:
    """Find GRPO steps whose groups all got identical rewards: zero advantage, zero gradient.

    Severity comes from the share of dead steps (``warn_share``, ``error_share``) or a run of
    ``min_consecutive`` of them. Steps where only some groups are dead are still a waste: when the
    median ``frac_reward_zero_std`` is at least ``mostly_dead`` (and that many steps make
    ``warn_share``), most of each batch trains nothing -- a warning. A run still being written (``facts.finished`` not true) with fewer
    than ``min_points`` logged steps is judged by the run length only: its first dead step would
    be 100% of the log, and ``--stop-on error`` would kill a run whose later groups are fine.

    >>> from tuneterm.logs.model import Run
    >>> run = Run("x", "test")
    >>> for s in range(1, 21):
    ...     run.add_train("reward_std", s, 0.0); run.add_train("reward", s, 0.0)
    >>> p = dict(frac_at_least=0.9, std_at_most=1e-9, min_consecutive=5, warn_share=0.3, error_share=0.6, min_points=10,
    ...          mostly_dead=0.5)
    >>> zero_reward_variance(run, p)[0].severity.value
    'error'
    >>> zero_reward_variance(run.prefix(2), p)  # 2 logged steps of a live run: too early to judge
    []
    """
    frac = train(run, "frac_reward_zero_std")
    std = train(run, "reward_std")
    if frac is not None:
        steps, values = finite_points(frac)
        flags = [v >= params["frac_at_least"] for v in values]
        metric = "frac_reward_zero_std"
    elif std is not None:
        steps, values = finite_points(std)
        flags = [abs(v) <= params["std_at_most"] for v in values]
        metric = "reward_std"
    else:
        return []
    if not values:
        return []
    early = not run.facts.finished and len(values) < params["min_points"]
    note = ""
    dead = sum(flags)
    share = 0.0 if early else dead / len(values)  # too few steps for a share to mean anything yet
    longest = max((e - b + 1 for b, e in runs(flags)), default=0)
    if dead and share >= params["error_share"]:
        severity = Severity.ERROR
    elif dead and (share >= params["warn_share"] or longest >= params["min_consecutive"]):
        severity = Severity.WARNING
    elif frac is not None and not early and _mostly_dead(values, params["mostly_dead"], params["warn_share"]):
        severity = Severity.WARNING
        flags = [v >= params["mostly_dead"] for v in values]
        dead, longest = sum(flags), max(e - b + 1 for b, e in runs(flags))
        note = f" (at least {params['mostly_dead']:.0%} of the groups at each)"
    else:
        return []
    dead_steps = [st for st, f in zip(steps, flags) if f]
    rewards = [r for r in _aligned(run, "reward", dead_steps) if r is not None]
    reward_med = median(rewards) if rewards else None
    causes: list[str] = []
    clipped = train(run, "completions/clipped_ratio")
    if clipped is not None and clipped.values and median(list(clipped.values)) >= 0.5:
        causes.append("completions are cut at max_completion_length before the answer, so every one scores the same")
    if reward_med is not None and reward_med == 0.0:
        causes.append("every completion scores 0: the reward function never matches (e.g. a regex without re.DOTALL over multi-line output) or the task is too hard")
    fixes: list[Fix] = []
    g = run.facts.num_generations
    if g is not None and g < 8:
        fixes.append(Fix(key="num_generations", value=8, why=f"with {g} generations per prompt most groups are all-right or all-wrong; 8 (the default) cuts dead groups sharply"))
    ev = {
        "count": dead,
        "total": len(values),
        "percent": pct(dead / len(values)),
        "longest_run": longest,
        "steps_text": steps_text(dead_steps),
        "reward_median": reward_med,
        "metric": metric,
        "note": note,
    }
    return [Detection(dead_steps[0], dead_steps[-1], ev, severity, tuple(fixes), tuple(causes))]


def _mostly_dead(values: list[float], level: float, share: float) -> bool:
    """The median ``frac_reward_zero_std`` is at least ``level`` and at least ``share`` of the
    steps reach it."""
    return median(values) >= level and sum(v >= level for v in values) >= share * len(values)


@detector(
    "completion-truncation",
    params={
        "clipped_at_least": Param("float", "a step is truncated when completions/clipped_ratio is at least this", min=0, max=1),
        "length_fraction": Param("float", "... or mean length is at least this fraction of the cap", min=0, max=1),
        "min_consecutive": Param("int", "truncated steps in a row that fire", min=1),
        "min_share": Param("float", "share of truncated steps that fires", min=0, max=1),
    },
    evidence=("count", "total", "percent", "longest_run", "cap", "mean_length", "clipped_ratio", "steps_text"),
)
def completion_truncation(run: Run, params: Mapping[str, Any]) -> list[Detection]:
    """Find GRPO completions that keep hitting the length cap (``max_completion_length``).

    >>> from tuneterm.logs.model import Run
    >>> run = Run("x", "test")
    >>> for s in range(1, 11):
    ...     run.add_train("completions/clipped_ratio", s, 1.0); run.add_train("completions/mean_length", s, 256.0)
    >>> p = dict(clipped_at_least=0.8, length_fraction=0.95, min_consecutive=5, min_share=0.5)
    >>> completion_truncation(run, p)[0].evidence["count"]
    10
    """
    clipped = train(run, "completions/clipped_ratio")
    mean_len = train(run, "completions/mean_length")
    base = clipped or mean_len
    if base is None:
        return []
    steps, _ = finite_points(base)
    clip_v = _aligned(run, "completions/clipped_ratio", steps)
    len_v = _aligned(run, "completions/mean_length", steps)
    min_v = _aligned(run, "completions/min_length", steps)
    cap = run.facts.max_completion_length
    cap_inferred = False
    if cap is None:
        mx = train(run, "completions/max_length")
        if mx is not None and mx.values:
            cap = int(max(mx.values))
            cap_inferred = True
    flags: list[bool] = []
    for c, m, lo in zip(clip_v, len_v, min_v):
        hit = c is not None and c >= params["clipped_at_least"]
        if not hit and cap and m is not None:
            hit = m >= params["length_fraction"] * cap
            if hit and cap_inferred:  # an inferred cap: every completion must sit at it
                hit = lo is not None and lo >= params["length_fraction"] * cap
        flags.append(hit)
    if not any(flags):
        return []
    longest = max(e - b + 1 for b, e in runs(flags))
    share = sum(flags) / len(flags)
    if longest < params["min_consecutive"] and share < params["min_share"]:
        return []
    hit_steps = [st for st, f in zip(steps, flags) if f]
    clips = [c for c in clip_v if c is not None]
    lens = [m for m in len_v if m is not None]
    fixes: list[Fix] = []
    if cap:
        new_cap = cap * 4 if cap <= 256 else cap * 2
        fixes.append(Fix(key="max_completion_length", value=new_cap, why=f"completions are cut at {cap} tokens; reasoning tasks need 600-1024+ (256 truncated 97-99% of DeepMath solutions)"))
    else:
        fixes.append(Fix(key="max_completion_length", value=1024, why="completions are cut at the cap; reasoning tasks need 600-1024+ tokens"))
    ev = {
        "count": sum(flags),
        "total": len(flags),
        "percent": pct(share),
        "longest_run": longest,
        "cap": cap,
        "mean_length": median(lens) if lens else None,
        "clipped_ratio": median(clips) if clips else None,
        "steps_text": steps_text(hit_steps),
    }
    return [Detection(hit_steps[0], hit_steps[-1], ev, None, tuple(fixes))]
