"""Learning-rate schedule and data-coverage detectors."""

from __future__ import annotations

import math
from statistics import median
from collections.abc import Mapping
from typing import Any

from tuneterm.engine.detectors._common import nice_ceil, pct, train
from tuneterm.engine.model import Detection, Fix, Severity
from tuneterm.engine.registry import Param, detector
from tuneterm.engine.stats import (
    finite_points,
    head_tail,
    index_runs,
    peak_point,
    relative_change,
    within,
)
from tuneterm.logs.model import Run


@detector(
    "zero-learning-rate",
    params={
        "zero_below": Param("float", "a learning rate at or below this counts as 0", min=0),
        "min_consecutive": Param("int", "zero points in a row after the peak needed", min=1),
        "end_allowance": Param("float", "a zero run closing the log this short (share of points) is a decay's end", min=0, max=0.5),
        "min_leading": Param("int", "points an unfinished log needs before 'learning rate 0 throughout' is judged", 5, min=1),
    },
    evidence=("peak_lr", "count", "total", "steps_text", "configured"),
)
def zero_learning_rate(run: Run, params: Mapping[str, Any]) -> list[Detection]:
    """Find a learning rate of 0 after warmup (or throughout): those steps train nothing.

    Zeros before the peak (warmup starting at 0, DeepSpeed's "returning lr=0" before the first
    optimizer step) and a single 0 at the very last step (linear decay reaching 0) are normal.
    Before the peak a live run cannot tell warmup from "0 throughout": a run still being written
    (``facts.finished`` not true) whose every logged rate is 0 is reported from ``min_leading``
    points on (fp16 loss-scaler skips keep the scheduler at 0 for the first steps; --stop-on error
    must not kill the run on them).

    >>> from tuneterm.logs.model import Run
    >>> run = Run("x", "test")
    >>> for s in range(1, 6):
    ...     run.add_train("learning_rate", s, 0.0)
    >>> p = {"zero_below": 1e-12, "min_consecutive": 2, "end_allowance": 0.02, "min_leading": 5}
    >>> zero_learning_rate(run, p)[0].evidence["peak_lr"]
    0.0
    >>> zero_learning_rate(run.prefix(2), p)  # the first 2 steps of a live run: maybe warmup
    []
    """
    eps = params["zero_below"]
    s = train(run, "learning_rate")
    configured = run.facts.learning_rate
    if s is None:
        if configured is not None and configured <= eps:
            ev = {"peak_lr": configured, "count": 0, "total": 0, "steps_text": "all", "configured": configured}
            return [Detection(None, None, ev)]
        return []
    steps, values = finite_points(s)
    if not values:
        return []
    ipeak, peak = peak_point(s)  # = values.index(max(values)), max(values); from cached blocks
    if peak <= eps:
        need = params["min_consecutive"] if run.facts.finished else max(params["min_consecutive"], params["min_leading"])
        if len(values) < need:
            return []  # a live run's first zeros are warmup starting at 0 or skipped steps, not yet a problem
        ev = {"peak_lr": peak, "count": len(values), "total": len(values), "steps_text": f"{steps[0]}-{steps[-1]}", "configured": configured}
        return [Detection(steps[0], steps[-1], ev)]
    n = len(values)
    allowance = max(1, int(params["end_allowance"] * n))
    bad = [
        (b, e)
        for b, e in index_runs(within(s, -math.inf, eps, start=ipeak + 1))
        # A short run of zeros closing the log is a decay reaching 0 at its last steps: normal.
        if e - b + 1 >= params["min_consecutive"] and not (e == n - 1 and e - b + 1 <= allowance)
    ]
    if not bad:
        return []
    count = sum(e - b + 1 for b, e in bad)
    ev = {
        "peak_lr": peak,
        "count": count,
        "total": len(values),
        "steps_text": f"{steps[bad[0][0]]}-{steps[bad[-1][1]]}",
        "configured": configured,
    }
    return [Detection(steps[bad[0][0]], steps[bad[-1][1]], ev)]


@detector(
    "schedule-exhausted",
    params={
        "low_fraction": Param("float", "an LR at or below this fraction of the peak counts as ~0", min=0, max=1),
        "min_improvement": Param("float", "'loss still high': the loss improved less than this fraction", min=0),
        "min_low_share": Param("float", "... or the LR sat at ~0 for at least this share of the logged points", min=0, max=1),
        "head_fraction": Param("float", "share of loss points at each end compared", min=0.01, max=0.5),
        "loss_trainers": Param("str_list", "trainer kinds whose loss improvement is judged (DPO/GRPO losses are not comparable)", ["sft", "classification", "unknown"]),
        "designed_tail": Param(
            "float", "an LR that first reaches ~0 within this last share of the run's steps is the schedule's designed end "
            "(linear decay to 0): not 'decayed early' however the loss did", 0.03, min=0, max=0.5
        ),
    },
    evidence=("peak_lr", "final_lr", "low_from", "low_share_pct", "loss_start", "loss_end", "improvement_pct", "scheduler", "loss_note"),
)
def schedule_exhausted(run: Run, params: Mapping[str, Any]) -> list[Detection]:
    """Find a schedule that reached ~0 while the loss was still high (or sat at ~0 for long).

    A schedule that first reaches ~0 only in the last ``designed_tail`` of the run's steps (a
    linear decay to 0 hits 1% of its peak in the last 1% of the run) ends as designed: whatever
    the loss did, an earlier end of the schedule is not its cause (loss-plateau reports a loss
    that stopped improving). ``loss_note`` words the message for the case that fired: a loss that
    barely improved, or a long stretch spent at ~0 after a loss that did improve.

    >>> from tuneterm.logs.model import Run
    >>> import math
    >>> run = Run("x", "test")
    >>> for i in range(21):
    ...     run.add_train("learning_rate", i * 25, 5e-5 * (1 + math.cos(math.pi * i / 20)) / 2 + 5e-10)
    ...     run.add_train("loss", i * 25, 2.7335 - 0.0009 * i)
    >>> p = dict(low_fraction=0.01, min_improvement=0.05, min_low_share=0.2, head_fraction=0.1, loss_trainers=["sft"],
    ...          designed_tail=0.03)
    >>> run.facts.trainer_kind = "sft"
    >>> schedule_exhausted(run, p)[0].evidence["improvement_pct"] < 1
    True
    """
    s = train(run, "learning_rate")
    if s is None:
        return []
    steps, values = finite_points(s)
    if len(values) < 3:
        return []
    ipeak, peak = peak_point(s)  # = values.index(max(values)), max(values); from cached blocks
    if peak <= 0:
        return []  # lr-zero's case
    limit = params["low_fraction"] * peak
    low_idx = within(s, -math.inf, limit, start=ipeak + 1)
    if not low_idx:
        return []
    low_share = len(low_idx) / len(values)
    final = values[-1]
    loss = train(run, "loss")
    start = end = improvement = None
    if loss is not None:
        _, lv = finite_points(loss)
        if len(lv) >= 4:
            start, end = head_tail(lv, params["head_fraction"], min_count=2)
            improvement = relative_change(start, end)
    ended_low = final <= limit
    still_high = (
        improvement is not None
        and improvement < params["min_improvement"]
        and run.facts.trainer_kind in params["loss_trainers"]
    )
    span = steps[-1] - steps[0]
    designed_end = span > 0 and (steps[-1] - steps[low_idx[0]]) / span <= params["designed_tail"]
    if designed_end or not ((ended_low and still_high) or low_share >= params["min_low_share"]):
        return []
    if still_high and improvement is not None:
        loss_note = f" while the loss only improved {pct(improvement)}%"
    elif improvement is not None:
        loss_note = f"; those steps trained at a negligible rate (the loss improved {pct(improvement)}% over the run)"
    else:
        loss_note = "; those steps trained at a negligible rate"
    ev = {
        "peak_lr": peak,
        "final_lr": final,
        "low_from": steps[low_idx[0]],
        "low_share_pct": pct(low_share),
        "loss_start": start,
        "loss_end": end,
        "improvement_pct": pct(improvement) if improvement is not None else None,
        "scheduler": run.facts.lr_scheduler_type,
        "loss_note": loss_note,
    }
    return [Detection(steps[low_idx[0]], steps[-1], ev)]


@detector(
    "data-coverage",
    params={
        "min_epochs": Param("float", "fire when the run covers (or is scheduled to cover) less than this many epochs", min=0),
        "target_epochs": Param("float", "the suggested max_steps covers at least this many epochs", min=0),
        "target_effective_batch": Param("int", "effective batch the suggestion assumes", min=1),
        "warmup_share": Param("float", "warmup_steps suggested as this share of the new max_steps", min=0, max=0.5),
        "min_points": Param("int", "logged epoch values an unfinished run needs before its coverage is extrapolated", 3, min=2),
        "learned_improvement": Param(
            "float", "info instead of the rule's severity when the loss improved at least this fraction (head vs tail "
            "medians): the run learned from what it saw", 0.2, min=0
        ),
        "capped_improvement": Param(
            "float", "info too when the run stopped at an explicit max_steps and the median loss of its second half is "
            "at least this fraction below that of its first half: a deliberate cap on a run still learning", 0.03, min=0
        ),
        "capped_trainers": Param(
            "str_list", "trainer kinds whose max_steps is the design, not a shortfall (online RL samples prompts from a "
            "pool: a prompt pool is not an epoch); not judged when max_steps is known", ["grpo"]
        ),
    },
    evidence=("epoch", "epochs", "percent", "steps", "max_steps", "num_examples", "effective_batch", "suggested_max_steps"),
)
def data_coverage(run: Run, params: Mapping[str, Any]) -> list[Detection]:
    """Find a finished run (or a schedule) that sees only a small fraction of one epoch.

    Judged only when the run finished (``facts.finished``) or ``max_steps`` is known (so a
    checkpoint of a long run in progress is projected to its scheduled end, not judged early).
    An online-RL run (``capped_trainers``: GRPO) capped by ``max_steps`` is not judged: it samples
    prompts from a pool for as many steps as the reward needs, and a fraction of that pool is
    not under-training. When the loss came down anyway (at least ``learned_improvement``, medians
    of the first and last tenth) the finding is info: the run learned from what it saw (a short
    recipe or demo by design), and only more data would tell whether it generalises. The same holds
    for a run that stopped at its known ``max_steps`` (a cap set on purpose) whose noisy per-step
    loss still falls (second-half median at least ``capped_improvement`` below the first half's):
    the cap is the design, not a shortfall; a flat loss under such a cap keeps the warning.
    The projection of an unfinished run uses the rate of its logged ``epoch`` values, from
    ``min_points`` of them on (see the comment in the code).
    The fixes are computed: ``max_steps`` to cover ``target_epochs`` at the target effective batch
    (rounded up to one significant figure), the batch geometry and a warmup for it.

    >>> from tuneterm.logs.model import Run
    >>> run = Run("x", "test")
    >>> run.add_train("loss", 500, 2.7); run.add_train("epoch", 500, 0.089)
    >>> run.facts.finished = True; run.facts.num_examples = 45000
    >>> run.facts.train_batch_size = 1; run.facts.gradient_accumulation_steps = 8
    >>> p = dict(min_epochs=0.5, target_epochs=1.0, target_effective_batch=32, warmup_share=0.1, min_points=3,
    ...          capped_trainers=["grpo"], learned_improvement=0.2, capped_improvement=0.03)
    >>> data_coverage(run, p)[0].evidence["suggested_max_steps"]
    2000
    """
    facts = run.facts
    if facts.trainer_kind in params.get("capped_trainers", ()) and facts.max_steps:
        return []
    ep_series = train(run, "epoch")
    epoch = facts.epoch
    if ep_series is not None:
        _, ev = finite_points(ep_series)
        if ev:
            epoch = max(epoch or 0.0, ev[-1])
    step = run.last_step
    if epoch is None or not epoch > 0 or not step:
        return []
    max_steps = facts.max_steps
    finished = bool(facts.finished) or (max_steps is not None and step >= max_steps)
    steps_per_epoch = step / epoch
    if finished:
        epochs = epoch
    elif max_steps:
        # Extrapolate the epoch *rate* (a slope over the logged epochs), not epoch / step: a console
        # log's step numbers can be offset from its metric lines (a tqdm bar printed ahead of a
        # buffered dict), and one point of a live run would then predict any coverage at all.
        es, ev = finite_points(ep_series) if ep_series is not None else ((), ())
        if len(ev) < params["min_points"] or es[-1] <= es[0] or ev[-1] <= ev[0]:
            return []
        rate = (ev[-1] - ev[0]) / (es[-1] - es[0])
        epochs = ev[-1] + rate * max(0, max_steps - es[-1])
        steps_per_epoch = 1.0 / rate
    else:
        return []
    if facts.num_train_epochs is not None and facts.num_train_epochs >= params["min_epochs"] and not facts.max_steps:
        return []  # scheduled by epochs: the schedule covers them; an early stop is not coverage
    if epochs >= params["min_epochs"]:
        return []
    eff = facts.total_train_batch_size
    if eff is None and facts.train_batch_size:
        eff = facts.train_batch_size * (facts.gradient_accumulation_steps or 1) * (facts.world_size or 1)
    examples = facts.num_examples
    if examples is None and eff:
        examples = round(steps_per_epoch * eff)
    target_b = params["target_effective_batch"]
    fixes: list[Fix] = []
    if examples and (eff is None or eff < target_b):
        new_steps = nice_ceil(params["target_epochs"] * examples / target_b)
        pd = facts.train_batch_size
        new_pd = min(target_b, 2 * pd) if pd else 2
        ga = max(1, target_b // new_pd)
        fixes.append(Fix(key="per_device_train_batch_size", value=new_pd, why=f"with gradient_accumulation_steps {ga}: effective batch {new_pd * ga} (was {eff or 'unknown'}); less noisy updates (memory permitting, else keep it and raise GA)"))
        fixes.append(Fix(key="gradient_accumulation_steps", value=ga, why=f"effective batch {new_pd * ga} = per_device_train_batch_size {new_pd} x {ga}"))
    else:
        batch = eff or 1
        new_steps = nice_ceil(params["target_epochs"] * (examples / batch if examples else steps_per_epoch))
    covered = new_steps * (target_b if fixes else (eff or 0)) / examples if examples and (fixes or eff) else None
    why = f"covers {covered:.2f} epochs" if covered else f"covers about {new_steps / steps_per_epoch:.2f} epochs"
    if examples:
        why += f" of {examples:,} examples"
    why += f" (the run saw {pct(epochs)}% of one epoch)"
    fixes.insert(0, Fix(key="max_steps", value=new_steps, why=why))
    warm = max(1, round(params["warmup_share"] * new_steps))
    fixes.append(Fix(key="warmup_steps", value=warm, why=f"{params['warmup_share']:.0%} of max_steps {new_steps} as warmup"))
    capped = max_steps is not None and step >= max_steps
    learned = _loss_improvement(run) >= params["learned_improvement"] or (
        capped and _half_improvement(run) >= params.get("capped_improvement", 0.03)
    )
    severity = Severity.INFO if learned else None
    evd = {
        "epoch": round(epoch, 4),
        "epochs": round(epochs, 4),
        "percent": pct(epochs),
        "steps": step,
        "max_steps": max_steps,
        "num_examples": examples,
        "effective_batch": eff,
        "suggested_max_steps": new_steps,
    }
    return [Detection(None if not ep_series else ep_series.steps[0], step, evd, severity, tuple(fixes))]


def _half_improvement(run: Run) -> float:
    """Relative improvement of the training loss, median of the first half vs median of the second
    half: robust to per-step noise and to a fall concentrated in the first few logs; 0.0 when there
    is no loss series of at least 6 finite points."""
    loss = train(run, "loss")
    if loss is None:
        return 0.0
    _, values = finite_points(loss)
    if len(values) < 6:
        return 0.0
    half = len(values) // 2
    start, end = median(values[:half]), median(values[half:])
    return relative_change(start, end) if start > 0 else 0.0


def _loss_improvement(run: Run) -> float:
    """Relative improvement of the training loss, first tenth vs last tenth (medians); 0.0 when
    there is no loss series of at least 4 finite points."""
    loss = train(run, "loss")
    if loss is None:
        return 0.0
    _, values = finite_points(loss)
    if len(values) < 4:
        return 0.0
    start, end = head_tail(values, 0.1, min_count=2)
    return relative_change(start, end) if start > 0 else 0.0
