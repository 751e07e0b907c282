"""Gradient-norm detectors: exactly/practically zero gradients."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from tuneterm.engine.detectors._common import pairs, pct, steps_text, train
from tuneterm.engine.model import Detection, Fix, Severity
from tuneterm.engine.registry import Param, detector
from tuneterm.engine.stats import finite_points, index_runs, value_at, within
from tuneterm.logs.model import Run


def _expected_grpo_zero(run: Run, i: int, steps: Sequence[int]) -> bool:
    """A zero norm at a GRPO run's first logged step whose groups all got identical rewards.

    There the gradient is 0 by construction: every advantage is 0 (reward_std 0, or
    frac_reward_zero_std 1) and the KL term's gradient is 0 too, because the policy still equals
    the reference model. Later zero-advantage steps stay reported (the KL term, when used, has a
    gradient by then).
    """
    if i != 0 or run.facts.trainer_kind != "grpo":
        return False
    std = train(run, "reward_std")
    if std is not None:
        v = value_at(std, steps[0])
        if v is not None and v == 0.0:
            return True
    frac = train(run, "frac_reward_zero_std")
    v = value_at(frac, steps[0]) if frac is not None else None
    return v is not None and v >= 1.0


@detector(
    "zero-gradient",
    params={
        "metric": Param("str", "the gradient-norm series", "grad_norm"),
        "zero_below": Param("float", "a norm at or below this counts as zero", min=0),
        "min_count": Param("int", "fire when at least this many logged norms are zero", min=1),
        "error_fraction": Param(
            "float", "zero share of logged norms (or a final zero run this long) that means no learning: error", min=0, max=1
        ),
        "error_min_count": Param(
            "int", "zero norms an unfinished run needs before they are called persistent (error)", 5, min=1
        ),
    },
    evidence=("count", "total", "percent", "steps", "steps_text", "pattern", "longest_run"),
)
def zero_gradient(run: Run, params: Mapping[str, Any]) -> list[Detection]:
    """Find logged gradient norms that are exactly or practically zero.

    *Persistent* zeros (at least ``error_fraction`` of the points, or the whole run since some
    step) mean nothing is trained: an error, with causes ranked from the run's facts (frozen
    adapter, gradient checkpointing without input grads, all labels masked). *Intermittent* zeros
    (skipped fp16 steps, GRPO groups with no advantage, batches whose labels are all masked) are a
    warning at most.

    A zero norm at a GRPO run's first logged step where every group got identical rewards is
    expected there and not counted (see :func:`_expected_grpo_zero`).

    A run still being written (``facts.finished`` not true) needs ``error_min_count`` zero norms
    before they are called persistent: at a live run's first logged steps a zero or two is 100% of
    the log (GRPO's first groups without reward variance, an fp16 scaler skip), and ``--stop-on
    error`` would kill a healthy run on it. Until then the zeros are a warning.

    >>> from tuneterm.logs.model import Run
    >>> run = Run("x", "test")
    >>> for s in range(1, 11):
    ...     run.add_train("grad_norm", s, 0.0); run.add_train("loss", s, 2.7)
    >>> p = {"metric": "grad_norm", "zero_below": 1e-9, "min_count": 1, "error_fraction": 0.5, "error_min_count": 5}
    >>> d = zero_gradient(run, p)[0]
    >>> d.severity.value, d.evidence["pattern"]
    ('error', 'persistent')
    >>> zero_gradient(run.prefix(2), p)[0].severity.value  # 2 zeros of a live run: not yet persistent
    'warning'
    """
    s = train(run, params["metric"])
    if s is None:
        return []
    steps, values = finite_points(s)
    if not values:
        return []
    eps = params["zero_below"]
    zero_idx = [i for i in within(s, -eps, eps) if not _expected_grpo_zero(run, i, steps)]
    if len(zero_idx) < params["min_count"]:
        return []
    zruns = index_runs(zero_idx)
    longest = max(e - b + 1 for b, e in zruns)
    fraction = len(zero_idx) / len(values)
    tail_run = zruns[-1][1] == len(values) - 1 and (zruns[-1][1] - zruns[-1][0] + 1) >= params["error_fraction"] * len(values)
    enough = bool(run.facts.finished) or len(zero_idx) >= params["error_min_count"]
    persistent = enough and (fraction >= params["error_fraction"] or tail_run)
    zsteps = [steps[i] for i in zero_idx]
    causes: list[str] = []
    fixes: list[Fix] = []
    facts = run.facts
    codes = {e.code for e in run.events if e.code}
    # GRPO trains on rewards, not labels, and its loss is ~0 by construction: label masking is
    # never the explanation there, and a zero loss says nothing.
    is_grpo = facts.trainer_kind == "grpo"
    if is_grpo and (train(run, "reward_std") or train(run, "frac_reward_zero_std")) is not None:
        causes.append("GRPO steps where every group got identical rewards (reward_std 0): no advantage, so no gradient")
    if persistent:
        severity = Severity.ERROR
        pattern = "persistent"
        if "no-trainable-params" in codes or facts.trainable_params == 0:
            causes.append("the model has 0 trainable parameters (the log says 'trainable params: 0')")
        if "no-input-requires-grad" in codes:
            causes.append(
                "gradient checkpointing with frozen inputs: the log warns 'None of the inputs have requires_grad=True'"
            )
        if facts.is_peft:
            causes.append(
                "LoRA adapter frozen: prepare_model_for_kbit_training applied after get_peft_model, or the adapter "
                "reloaded without is_trainable=True"
            )
        if facts.gradient_checkpointing and facts.is_peft:
            fixes.append(
                Fix(
                    key="gradient_checkpointing_kwargs",
                    value={"use_reentrant": False},
                    why="reentrant checkpointing needs an input that requires grad; with frozen embeddings no gradient reaches the adapter",
                )
            )
    else:
        severity = Severity.WARNING
        early = not enough and (fraction >= params["error_fraction"] or tail_run)
        pattern = "so far; too few logged steps to call it persistent" if early else "intermittent"
        if facts.fp16:
            causes.append("steps skipped by the fp16 loss scaler after an overflow")
        if not is_grpo:
            causes.append("batches in which every label is masked (-100), e.g. prompts longer than max_length")
    loss = train(run, "loss")
    if loss is not None and persistent and not is_grpo:
        first_loss = value_at(loss, steps[zero_idx[0]])
        if first_loss is not None and math.isfinite(first_loss) and first_loss == 0.0:
            causes.insert(0, "every label is masked (-100): the loss is 0.0 as well, so there is nothing to learn")
    evidence = {
        "count": len(zero_idx),
        "total": len(values),
        "percent": pct(fraction),
        "steps": pairs(zsteps, [values[i] for i in zero_idx]),
        "steps_text": steps_text(zsteps),
        "pattern": pattern,
        "longest_run": longest,
    }
    return [Detection(zsteps[0], zsteps[-1], evidence, severity, tuple(fixes), tuple(causes))]
