"""Metric-name normalisation: raw log keys -> where a value goes and under which canonical name.

Every parser (trainer_state.json, JSONL, console dicts, CSV, MLflow, TensorBoard) sends its raw keys
through :func:`plan_keys`, so ``lr``, ``train/loss``, ``eval_g0_loss`` and ``val_loss`` mean the same
thing whatever the format. A key has one of these destinations:

``train``    a training series (``loss``, ``grad_norm``, ``rewards/chosen`` ...);
``eval``     a series of an evaluation set (``eval``, ``eval_g0`` ...);
``summary``  an end-of-run scalar (``train_loss`` of the final summary, ``predict_*``, ``test_*``,
             throughput of the summary);
``epoch``    the epoch counter (a training series *and* ``facts.epoch``; not duplicated from eval
             entries);
``step``     a step counter (``step``, ``global_step``, ``current_steps`` ...), used as the x axis;
``skip``     bookkeeping that is not a metric (runtimes, samples/s, ``total_flos``, timestamps).

Unknown keys are kept as-is (they are still data a rule or chart may want).

>>> classify("lr")
('train', None, 'learning_rate')
>>> classify("eval_loss")
('eval', 'eval', 'loss')
>>> plan_keys(("eval_g0_loss", "eval_g0_runtime", "epoch"))[0]
('eval_g0_loss', 'eval', 'eval_g0', 'loss')
"""

from __future__ import annotations

from typing import Final

#: Names rules and charts rely on. Keys outside this set are kept verbatim.
CANONICAL: Final[frozenset[str]] = frozenset(
    {
        "loss",
        "grad_norm",
        "learning_rate",
        "epoch",
        "entropy",
        "mean_token_accuracy",
        "num_tokens",
        "reward",
        "reward_std",
        "frac_reward_zero_std",
        "kl",
        "completions/mean_length",
        "completions/min_length",
        "completions/max_length",
        "completions/clipped_ratio",
        "completions/mean_terminated_length",
        "completions/min_terminated_length",
        "completions/max_terminated_length",
        "rewards/chosen",
        "rewards/rejected",
        "rewards/accuracies",
        "rewards/margins",
        "logps/chosen",
        "logps/rejected",
        "logits/chosen",
        "logits/rejected",
        "accuracy",
        "perplexity",
        "f1",
        "precision",
        "recall",
        "odds_ratio_loss",
        "log_odds_ratio",
        "log_odds_chosen",
        "nll_loss",
        "sft_loss",
        "clip_ratio",
        "policy_loss",
        "value_loss",
        "log_loss",
    }
)

#: Plain renames (applied after stripping ``train/`` style prefixes).
ALIASES: Final[dict[str, str]] = {
    "lr": "learning_rate",
    "learning-rate": "learning_rate",
    "completion_length": "completions/mean_length",
    "ppl": "perplexity",
    "gradient_norm": "grad_norm",
    "grad-norm": "grad_norm",
    "total_norm": "grad_norm",
    "acc": "accuracy",
    "objective/kl": "kl",
    "train_loss": "loss",
}

#: Keys that count steps; the first one present in an entry is its x position.
STEP_KEYS: Final[tuple[str, ...]] = (
    "step",
    "global_step",
    "current_steps",
    "_step",
    "iteration",
    "iter",
    "train/global_step",
    "trainer/global_step",
)

_SKIP_EXACT: Final[frozenset[str]] = frozenset(
    {
        "total_flos",
        "remaining_time",
        "elapsed_time",
        "percentage",
        "throughput",
        "total_tokens",
        "time",
        "timestamp",
        "_timestamp",
        "_runtime",
        "total_steps",
        "step_time",
        "num_input_tokens_seen",
        "train/num_input_tokens_seen",
        "wall_time_sec",
        "samples_per_sec",
        "phase",
    }
)
_SKIP_SUFFIXES: Final[tuple[str, ...]] = (
    "_runtime",
    "_samples_per_second",
    "_steps_per_second",
    "_tokens_per_second",
    "/runtime",
    "/samples_per_second",
    "/steps_per_second",
    "tokens_per_second_per_gpu",
)
_SKIP_PREFIXES: Final[tuple[str, ...]] = ("vram_", "gpu_", "memory/", "sys/", "system/")
_EVAL_PREFIXES: Final[tuple[str, ...]] = (
    "eval_",
    "eval/",
    "val_",
    "val/",
    "validation_",
    "validation/",
    "valid_",
    "valid/",
)
_SUMMARY_PREFIXES: Final[tuple[str, ...]] = ("predict_", "predict/", "test_", "test/")
_TRAIN_PREFIXES: Final[tuple[str, ...]] = ("train/", "training/", "train_")
_SUMMARY_MARKERS: Final[frozenset[str]] = frozenset(
    {"train_runtime", "train_samples_per_second", "train_steps_per_second"}
)

Target = tuple[str, str | None, str]
"""(destination, eval set or None, canonical name)."""

PlanItem = tuple[str, str, str | None, str]
"""(raw key, destination, eval set or None, canonical name)."""


def canonical(name: str) -> str:
    """Apply :data:`ALIASES` to a bare metric name (no ``eval_``/``train/`` prefix)."""
    return ALIASES.get(name, name)


def _is_skip(key: str) -> bool:
    return (
        key in _SKIP_EXACT
        or key.endswith(_SKIP_SUFFIXES)
        or key.startswith(_SKIP_PREFIXES)
        or key in STEP_KEYS
    )


def classify(key: str) -> Target:
    """Classify one key in isolation (no knowledge of the other keys of its entry).

    Args:
        key: a raw metric key as logged.

    Returns:
        ``(destination, eval_set, name)``; see the module docstring for destinations.

    >>> classify("train/loss")
    ('train', None, 'loss')
    >>> classify("predict_loss")
    ('summary', None, 'predict_loss')
    >>> classify("eval_runtime")
    ('skip', None, 'eval_runtime')
    """
    if key in STEP_KEYS:
        return ("step", None, key)
    if key == "epoch" or key == "train/epoch":
        return ("epoch", None, "epoch")
    if _is_skip(key):
        return ("skip", None, key)
    if key.startswith(_SUMMARY_PREFIXES):
        return ("summary", None, key)
    for p in _EVAL_PREFIXES:
        if key.startswith(p):
            return ("eval", "eval", canonical(key[len(p) :]))
    for p in _TRAIN_PREFIXES:
        if key.startswith(p) and len(key) > len(p):
            rest = key[len(p) :]
            if p == "train/" and rest.startswith("train_"):
                # TensorBoard's `train/train_loss` is the end-of-training summary, not a step.
                return ("summary", None, rest)
            return ("train", None, canonical(rest))
    return ("train", None, canonical(key))


def _eval_sets(keys: tuple[str, ...]) -> list[str]:
    """Named eval sets evidenced in one entry, longest first.

    HF's Trainer evaluates a dict of datasets with ``metric_key_prefix=f"eval_{name}"``, so a set
    ``g0`` always produces ``eval_g0_runtime`` (and normally ``eval_g0_loss``). Those runtime keys
    are the evidence; without them, ``eval_<name>_loss`` counts when the entry has no plain
    ``eval_loss`` (so ``eval_log_loss`` beside ``eval_loss`` stays a metric named ``log_loss``).
    """
    sets: set[str] = set()
    has_plain_loss = "eval_loss" in keys
    for k in keys:
        if not k.startswith("eval_"):
            continue
        rest = k[5:]
        for suffix in ("_runtime", "_samples_per_second", "_steps_per_second"):
            if rest.endswith(suffix) and len(rest) > len(suffix):
                sets.add(rest[: -len(suffix)])
        if not has_plain_loss and rest.endswith("_loss") and len(rest) > 5:
            head = rest[:-5]
            if head not in ("odds_ratio", "nll", "sft", "policy", "value", "log"):
                sets.add(head)
    return sorted(sets, key=len, reverse=True)


def is_summary_keys(keys: tuple[str, ...] | frozenset[str]) -> bool:
    """True for HF's end-of-training summary entry (``train_runtime``, ``train_samples_per_second``
    ...). A ``train_loss`` *without* those is a per-step loss (custom loops log it that way)."""
    return not _SUMMARY_MARKERS.isdisjoint(keys)


def plan_keys(keys: tuple[str, ...]) -> list[PlanItem]:
    """Classify every key of one entry, using the other keys as context.

    Context matters twice: (1) named eval sets (``eval_g0_loss`` -> set ``eval_g0``, metric
    ``loss``) are recognised from their sibling keys; (2) an end-of-training summary entry
    (one with ``train_runtime``/``train_samples_per_second``) sends its ``train_*`` keys to the
    run summary instead of the training series.

    Callers cache the result per key tuple: log entries repeat the same keys thousands of times.

    Args:
        keys: the entry's keys, in order.

    Returns:
        One :data:`PlanItem` per key, in the same order.
    """
    sets = _eval_sets(keys)
    is_summary = is_summary_keys(keys)
    plan: list[PlanItem] = []
    for k in keys:
        if is_summary and k != "epoch" and k not in STEP_KEYS:
            # The end-of-train summary: scalars, including its throughput, never series.
            plan.append((k, "summary", None, k))
            continue
        dest, eset, name = classify(k)
        if dest == "eval" and k.startswith("eval_") and sets:
            rest = k[5:]
            for s in sets:
                if rest.startswith(s + "_") and len(rest) > len(s) + 1:
                    eset, name = "eval_" + s, canonical(rest[len(s) + 1 :])
                    break
            if name.endswith(("_runtime", "_samples_per_second", "_steps_per_second")):
                dest = "skip"
        plan.append((k, dest, eset, name))
    return plan


def is_metric_name(name: str) -> bool:
    """True when ``name`` (already canonical) is one the rules know, or a known family."""
    return name in CANONICAL or name.startswith(("rewards/", "completions/", "logps/", "logits/"))
