"""Inferring what kind of run a log is, and the facts derivable from its metrics.

:func:`infer_facts` sets ``facts.trainer_kind`` (and ``facts.algorithm`` where the metrics say it)
from which series exist, then fills ``finished``, ``epoch``, ``global_step`` and
``total_train_batch_size`` where they can be derived. It never overrides a fact a parser read from
the log itself, except ``trainer_kind`` when that is still ``"unknown"``.

Signatures (the metric names TRL's trainers log):

* ``rewards/chosen`` or ``logps/*`` -> ``dpo`` (``orpo`` with ``odds_ratio_loss``/``log_odds_*``;
  ``kto`` with ``kl`` and chosen rewards but no ``rewards/margins``);
* ``reward``/``reward_std``/``frac_reward_zero_std``/``completions/*``/``rewards/<f>/mean`` ->
  ``grpo``;
* classification: ``eval_accuracy``/``eval_f1`` without LM keys, a ``*ForSequenceClassification`` /
  ``*ForImageClassification`` architecture, or an encoder model_type;
* otherwise a run with a loss -> ``sft``.
"""

from __future__ import annotations

import math

from tuneterm.logs.model import Run

ENCODER_TYPES = frozenset(
    {
        "bert",
        "roberta",
        "distilbert",
        "deberta",
        "deberta-v2",
        "albert",
        "electra",
        "xlm-roberta",
        "camembert",
        "vit",
        "deit",
        "beit",
        "swin",
        "convnext",
        "resnet",
        "modernbert",
        "mpnet",
    }
)
_LM_KEYS = ("mean_token_accuracy", "num_tokens", "entropy", "perplexity")
_CLS_METRICS = ("accuracy", "f1", "f1_macro", "f1_weighted", "precision", "recall", "matthews_correlation", "auc", "roc_auc")


def _names(run: Run) -> set[str]:
    names = {k for k, s in run.train.items() if len(s)}
    for bucket in run.evals.values():
        names.update(f"eval:{k}" for k, s in bucket.items() if len(s))
    return names


def infer_kind(run: Run) -> tuple[str, str | None]:
    """Return ``(trainer_kind, algorithm or None)`` from the run's series and model facts."""
    names = _names(run)
    plain = {n.split(":", 1)[-1] for n in names}
    f = run.facts
    if any(n.startswith(("rewards/chosen", "logps/", "logits/chosen")) for n in plain) or (
        "rewards/accuracies" in plain and f.llamafactory_accuracy
    ):
        if "odds_ratio_loss" in plain or any(n.startswith("log_odds") for n in plain):
            return "dpo", "orpo"
        if "kl" in plain and "rewards/chosen" in plain and "rewards/margins" not in plain:
            return "dpo", "kto"
        algo = f.algorithm if f.algorithm in ("dpo", "orpo", "kto", "simpo", "cpo") else "dpo"
        return "dpo", algo
    if (
        {"reward", "reward_std", "frac_reward_zero_std"} & plain
        or any(n.startswith("completions/") for n in plain)
        or any(n.startswith("rewards/") and n.endswith("/mean") for n in plain)
    ):
        algo = f.algorithm if f.algorithm in ("grpo", "ppo", "rloo", "online_dpo") else "grpo"
        return "grpo", algo
    arch = f.architectures or ()
    if any(isinstance(a, str) and a.endswith(("ForSequenceClassification", "ForImageClassification", "ForTokenClassification")) for a in arch):
        return "classification", None
    if f.model_type and f.model_type.lower() in ENCODER_TYPES:
        return "classification", None
    eval_metric_names = {n.split(":", 1)[1] for n in names if n.startswith("eval:")}
    has_lm = any(k in plain for k in _LM_KEYS)
    if not has_lm and any(m in eval_metric_names or m in plain for m in _CLS_METRICS) and not any(
        n.startswith(("rouge", "bleu")) for n in eval_metric_names
    ):
        return "classification", None
    if "loss" in plain or any(n.startswith("eval:") for n in names):
        return "sft", f.algorithm if f.algorithm in ("sft", "pt") else None
    return "unknown", None


def infer_facts(run: Run) -> Run:
    """Fill derivable facts of ``run`` in place (and return it, for chaining)."""
    f = run.facts
    if f.trainer_kind == "unknown":
        kind, algo = infer_kind(run)
        f.trainer_kind = kind  # type: ignore[assignment]
        if algo and f.algorithm is None:
            f.algorithm = algo
    ep = run.train.get("epoch")
    if f.epoch is None and ep is not None and len(ep):
        last = ep.values[-1]
        if math.isfinite(last):
            f.epoch = last
    last = run.last_step
    if f.global_step is None and last is not None:
        f.global_step = last
    if f.finished is None:
        if "train_runtime" in run.summary or "train_loss" in run.summary:
            f.finished = True
        elif f.global_step is not None and f.max_steps:
            f.finished = f.global_step >= f.max_steps
    if (
        f.total_train_batch_size is None
        and f.train_batch_size
        and f.gradient_accumulation_steps
    ):
        f.total_train_batch_size = f.train_batch_size * f.gradient_accumulation_steps * (f.world_size or 1)
    if f.gradient_accumulation_steps is None and f.total_train_batch_size and f.train_batch_size and f.world_size:
        ga = f.total_train_batch_size / (f.train_batch_size * f.world_size)
        if ga == int(ga) and ga >= 1:
            f.gradient_accumulation_steps = int(ga)
    if f.lora_r is not None and f.peft_type is None:
        f.peft_type = "LORA"
    return run
