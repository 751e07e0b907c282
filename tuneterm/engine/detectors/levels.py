"""Level detectors: a series pinned at a value (0, ln(vocab)), or starting far above it."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from tuneterm.engine.detectors._common import eval_series, pct, steps_text, train, train_points
from tuneterm.engine.model import Detection, Severity
from tuneterm.engine.registry import Param, detector
from tuneterm.engine.stats import finite_points, head_tail, index_runs, within
from tuneterm.logs.model import Run


@detector(
    "value-run",
    params={
        "metric": Param("str", "the series (train)"),
        "at_most": Param("float", "a point qualifies when |value - target| <= at_most", min=0),
        "target": Param("float", "the value the series is pinned at", 0.0),
        "min_consecutive": Param("int", "qualifying points in a row needed", min=1),
        "skip_nonfinite": Param("str", "ignore steps where this other series is NaN/Inf ('' = none)", ""),
        "error_from_start": Param("bool", "error when the run starts pinned (else the rule's severity)", False),
    },
    evidence=("metric", "count", "total", "percent", "longest_run", "steps_text", "value", "from_start"),
)
def value_run(run: Run, params: Mapping[str, Any]) -> list[Detection]:
    """Find runs of consecutive points at (or within ``at_most`` of) ``target``.

    A series printed rounded (``Series.resolution``, e.g. a tqdm postfix ``loss 0.0000``) is not
    judged when half its rounding unit exceeds ``at_most``: a printed 0.0000 is any loss below
    5e-05, not an exact 0 (the near-zero level itself is ``memorization``'s to report).

    >>> from tuneterm.logs.model import Run
    >>> run = Run("x", "test")
    >>> for s in range(1, 8):
    ...     run.add_train("loss", s, 0.3 if s < 4 else 0.0)
    >>> p = dict(metric="loss", at_most=0.0, target=0.0, min_consecutive=3, skip_nonfinite="", error_from_start=True)
    >>> value_run(run, p)[0].first_step
    4
    """
    s = train(run, params["metric"])
    if s is None:
        return []
    steps, values = finite_points(s)
    if not values:
        return []
    tgt, tol = params["target"], params["at_most"]
    if s.resolution / 2 > tol:
        return []  # printed rounded (tqdm's 0.0000): "at the target" cannot be told from "near it"
    hits = within(s, tgt - tol, tgt + tol)
    other = params["skip_nonfinite"]
    if hits and other and (o := train(run, other)) is not None:
        # Only the hit steps need checking; scanning the whole other series cost 0.2 s at 300k points.
        wanted = {steps[i] for i in hits}
        skip = {st for st, v in zip(o.steps, o.values) if st in wanted and not math.isfinite(v)}
        hits = [i for i in hits if steps[i] not in skip]
    long_runs = [(b, e) for b, e in index_runs(hits) if e - b + 1 >= params["min_consecutive"]]
    if not long_runs:
        return []
    count = sum(e - b + 1 for b, e in long_runs)
    longest = max(e - b + 1 for b, e in long_runs)
    from_start = long_runs[0][0] == 0
    first, last = steps[long_runs[0][0]], steps[long_runs[-1][1]]
    evidence = {
        "metric": params["metric"],
        "count": count,
        "total": len(values),
        "percent": pct(count / len(values)),
        "longest_run": longest,
        "steps_text": f"{first}-{last}",
        "value": values[long_runs[0][0]],
        "from_start": from_start,
    }
    severity = Severity.ERROR if (from_start and params["error_from_start"]) else None
    return [Detection(first, last, evidence, severity)]


@detector(
    "uniform-loss",
    params={
        "metric": Param("str", "the loss series (train)", "loss"),
        "entropy_metric": Param("str", "the entropy series (train), checked the same way", "entropy"),
        "tolerance": Param("float", "|value - ln(vocab)| at most this", min=0),
        "min_consecutive": Param("int", "pinned points in a row needed", min=2),
        "vocab_sizes": Param("int_list", "vocab sizes to try when the run's vocab_size is unknown"),
    },
    evidence=("metric", "value", "ln_vocab", "vocab_size", "vocab_known", "count", "steps_text"),
)
def uniform_loss(run: Run, params: Mapping[str, Any]) -> list[Detection]:
    """Find a loss (or entropy) pinned at ln(vocab): the model predicts a uniform distribution.

    With ``facts.vocab_size`` known only that size is tested; otherwise each of ``vocab_sizes``,
    and the evidence says which one matched. The pinned stretch must run to the end of the log or
    be ``min_consecutive`` points away from the first log (a freshly initialised head starts near
    ln(vocab) legitimately).

    >>> from tuneterm.logs.model import Run
    >>> run = Run("x", "test")
    >>> for s, v in enumerate([1.637, 11.81, 10.9, 10.5, 10.3735, 10.3735, 10.3735, 10.3735], 1):
    ...     run.add_train("loss", s, v)
    >>> p = dict(metric="loss", entropy_metric="entropy", tolerance=0.02, min_consecutive=3,
    ...          vocab_sizes=[32000, 151936])
    >>> uniform_loss(run, p)[0].evidence["vocab_size"]
    32000
    """
    known = run.facts.vocab_size
    sizes = [known] if known else list(params["vocab_sizes"])
    for metric in (params["metric"], params["entropy_metric"]):
        s = train(run, metric)
        if s is None:
            continue
        steps, values = finite_points(s)
        if len(values) < params["min_consecutive"]:
            continue
        for vocab in sizes:
            target = math.log(vocab)
            hits = within(s, target - params["tolerance"], target + params["tolerance"])
            for b, e in index_runs(hits):
                length = e - b + 1
                if length < params["min_consecutive"]:
                    continue
                if b == 0 and e < len(values) - 1:
                    continue  # the usual start of a fresh head, followed by learning
                evidence = {
                    "metric": metric,
                    "value": values[e],
                    "ln_vocab": round(target, 4),
                    "vocab_size": vocab,
                    "vocab_known": bool(known),
                    "count": length,
                    "steps_text": f"{steps[b]}-{steps[e]}",
                }
                return [Detection(steps[b], steps[e], evidence)]
    return []


@detector(
    "initial-loss-scale",
    params={
        "metric": Param("str", "the loss series (train)", "loss"),
        "factor": Param("float", "fire when the first loss exceeds factor x ln(vocab)", min=1),
        "default_vocab": Param("int", "vocab size assumed when unknown (use the largest common one)", min=2),
    },
    evidence=("first", "ln_vocab", "vocab_size", "ratio", "ga", "per_ga"),
)
def initial_loss_scale(run: Run, params: Mapping[str, Any]) -> list[Detection]:
    """Find a first logged loss far above ln(vocab) -- impossible for a mean token cross-entropy.

    A uniform guess scores ln(vocab) (10.4 for 32k, 12.5 for 256k); a first loss several times
    that is a loss-scaling/reporting bug (gradient accumulation in transformers 4.46-4.48) or a
    numerical blow-up, not hard data.

    >>> from tuneterm.logs.model import Run
    >>> run = Run("x", "test")
    >>> run.add_train("loss", 100, 284.87); run.add_train("loss", 200, 12.0)
    >>> initial_loss_scale(run, {"metric": "loss", "factor": 2.0, "default_vocab": 262144})[0].evidence["ratio"]
    22.8
    """
    pts = train_points(run, params["metric"], 1)
    if pts is None:
        return []
    steps, values = pts
    vocab = run.facts.vocab_size or params["default_vocab"]
    ln_v = math.log(vocab)
    first = values[0]
    if first <= params["factor"] * ln_v:
        return []
    ga = run.facts.gradient_accumulation_steps
    evidence = {
        "first": first,
        "ln_vocab": round(ln_v, 3),
        "vocab_size": vocab,
        "ratio": round(first / ln_v, 1),
        "ga": ga,
        "per_ga": round(first / ga, 3) if ga else None,
    }
    causes: list[str] = []
    if ga and ga > 1 and first / ga <= ln_v:
        causes.append(
            f"the loss divided by gradient_accumulation_steps ({ga}) is {first / ga:.3g}, a normal value: "
            "the reported loss is scaled by GA"
        )
    return [Detection(steps[0], steps[0], evidence, None, (), tuple(causes))]


def _without_hidden_nan(run: Run, steps: Sequence[int], values: Sequence[float]) -> tuple[list[int], list[float]]:
    """The loss points minus those logged as 0.0 at a step whose grad_norm is NaN/Inf: there the
    0.0 is transformers' ``logging_nan_inf_filter`` hiding a NaN, not a perfect fit."""
    g = train(run, "grad_norm")
    if g is None:
        return list(steps), list(values)
    bad = {st for st, v in zip(g.steps, g.values) if not math.isfinite(v)}
    if not bad:
        return list(steps), list(values)
    kept = [(st, v) for st, v in zip(steps, values) if not (v == 0.0 and st in bad)]
    return [st for st, _ in kept], [v for _, v in kept]


@detector(
    "negative-values",
    params={
        "metric": Param("str", "the series (train)", "loss"),
        "below": Param("float", "a point counts when it is below this (a small negative margin ignores -0.0 and rounding)", -1e-6, max=0),
        "min_count": Param("int", "negative points needed", 1, min=1),
    },
    evidence=("metric", "count", "total", "percent", "min_value", "min_step", "steps_text", "first_negative"),
)
def negative_values(run: Run, params: Mapping[str, Any]) -> list[Detection]:
    """Find a series logged below zero that cannot be (a token cross-entropy is >= 0).

    ``-log p`` of a probability is never negative, and so is any mean of it (label smoothing as
    transformers implements it included). A negative training loss means the logged number is not
    a cross-entropy: a custom ``compute_loss`` that subtracts a term, soft labels with negative
    weights, a reduction that divides by a wrong (negative or mismatched) count, or a fused loss
    kernel's rounding.

    >>> from tuneterm.logs.model import Run
    >>> run = Run("x", "test")
    >>> for s, v in enumerate([1.6, 0.4, 0.01, -0.0001, 0.0, -0.0003], 1):
    ...     run.add_train("loss", s, v)
    >>> d = negative_values(run, {"metric": "loss", "below": -1e-6, "min_count": 1})[0]
    >>> d.evidence["count"], d.evidence["min_value"], d.first_step
    (2, -0.0003, 4)
    """
    s = train(run, params["metric"])
    if s is None:
        return []
    steps, values = finite_points(s)
    neg = [i for i, v in enumerate(values) if v < params["below"]]
    if len(neg) < params["min_count"]:
        return []
    imin = min(neg, key=values.__getitem__)
    nsteps = [steps[i] for i in neg]
    evidence = {
        "metric": params["metric"],
        "count": len(neg),
        "total": len(values),
        "percent": pct(len(neg) / len(values)),
        "min_value": values[imin],
        "min_step": steps[imin],
        "steps_text": steps_text(nsteps),
        "first_negative": nsteps[0],
    }
    return [Detection(nsteps[0], nsteps[-1], evidence)]


@detector(
    "near-zero-loss",
    params={
        "metric": Param("str", "the loss series (train)", "loss"),
        "tail_fraction": Param("float", "share of the last points whose median is judged", min=0.01, max=0.5),
        "max_loss": Param("float", "fire when the tail median loss is at most this", min=0),
        "max_entropy": Param("float", "... or the tail median entropy is at most this", min=0),
        "min_token_accuracy": Param("float", "... or the tail median mean_token_accuracy is at least this", min=0, max=1),
        "min_points": Param("int", "points needed", min=2),
        "max_evals": Param(
            "int", "not judged when an eval set has more than this many evaluations: held-out loss then says whether "
            "the fit generalises (overfitting's case), the train loss alone is no longer the only signal", 2, min=0
        ),
    },
    evidence=("signal", "value", "loss_start", "loss_end", "epoch"),
)
def near_zero_loss(run: Run, params: Mapping[str, Any]) -> list[Detection]:
    """Find a language-model run that drove its training loss (or entropy) to ~0: memorisation.

    Memorisation from the train loss alone is the signal of a run *without* held-out evaluations:
    with more than ``max_evals`` evaluations of an eval set, the eval loss says whether the fit
    generalises (``overfitting`` reports it when it does not), so this detector stays silent.

    Two look-alikes are left to their own rules: a loss of 0.0 logged at a step whose grad_norm is
    NaN/Inf is a hidden NaN (``nan-or-inf``; those points are dropped here), and a negative loss
    at the end is impossible for a token cross-entropy (``negative-loss``), so more epochs would
    not be the problem.

    >>> from tuneterm.logs.model import Run
    >>> run = Run("x", "test")
    >>> for s in range(1, 21):
    ...     run.add_train("loss", s, 4.0 / s ** 3)
    >>> p = dict(metric="loss", tail_fraction=0.1, max_loss=0.05, max_entropy=0.05,
    ...          min_token_accuracy=0.99, min_points=10, max_evals=2)
    >>> near_zero_loss(run, p)[0].evidence["signal"]
    'loss'
    """
    s = train(run, params["metric"])
    if s is None:
        return []
    if any(len(loss) > params.get("max_evals", 2) for _, loss in eval_series(run, "loss")):
        return []  # held-out evaluations judge generalisation: overfitting / eval rules
    steps, values = _without_hidden_nan(run, *finite_points(s))
    if len(values) < params["min_points"]:
        return []
    k = max(2, int(len(values) * params["tail_fraction"]))
    if min(values[-k:]) < 0:
        return []  # a negative cross-entropy is a loss bug (negative-loss), not memorisation
    start, end = head_tail(values, params["tail_fraction"], min_count=2)
    signal, value = None, math.nan
    if end <= params["max_loss"] and start > end:
        signal, value = "loss", end
    else:
        ent = train(run, "entropy")
        acc = train(run, "mean_token_accuracy")
        if ent is not None and len(finite_points(ent)[1]) >= 2:
            _, ent_end = head_tail(finite_points(ent)[1], params["tail_fraction"], min_count=2)
            if ent_end <= params["max_entropy"]:
                signal, value = "entropy", ent_end
        if signal is None and acc is not None and len(finite_points(acc)[1]) >= 2:
            _, acc_end = head_tail(finite_points(acc)[1], params["tail_fraction"], min_count=2)
            if acc_end >= params["min_token_accuracy"]:
                signal, value = "mean_token_accuracy", acc_end
    if signal is None:
        return []
    evidence = {
        "signal": signal,
        "value": value,
        "loss_start": start,
        "loss_end": end,
        "epoch": run.facts.epoch,
    }
    return [Detection(steps[-k], steps[-1], evidence)]
