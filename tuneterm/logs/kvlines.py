"""Metric lines of hand-written training loops: ``key=value`` pairs, or ``Key: value`` / ``key
value`` beside a step marker.

Shapes met in public logs::

    step 10/611  loss=12.1181  lr=1.97e-04                      (a loop on Unsloth)
    [train] step=78290 tokens=1282.7M loss=2.0442 lr=1.97e-04   (a pre-training script)
    [44/411 10.7%] loss= 1.8358  lr=1.97e-04  grad= 0.4367       (a progress printer)
    epoch=3 train_loss=0.3031 val_loss=0.4119 lr=1.98e-04        (an epoch-level loop)
    INFO:__main__:Epoch 0 | Step   10/6501 | Loss: 8.2445 | LR: 5.97e-05 | Grad: 25.399
    iter 10: loss 4.5735 BPC, time 267.36ms                      (nanoGPT)
    step 250: train loss 2.5833 BPC, val loss 2.7931 BPC         (nanoGPT's evaluation)

``=`` pairs are read for any key; the looser ``:`` and space separators only for a short
vocabulary of metric names and only on a line with a step marker (prose says "loss" too). A line
counts when it holds a known metric name and a step or epoch marker, or two metric names; a line
of mostly settings (``Namespace(...)``, ``TrainingArguments(...)``, an argument dump) does not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from tuneterm.logs.names import classify, is_metric_name

_KV_PAIR: Final = re.compile(
    r"(?:^|(?<=[\s,;|\[(]))([A-Za-z_][\w/.-]{0,40})\s*=\s*"
    r"([-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+)|nan|NaN|-?inf)(?![\w.%])"
)
# Looser separators (`Loss: 8.93`, `loss 4.57`, `train loss 6.06, val loss 6.05`) only for a short
# vocabulary of metric names, and only on a line with a step marker (prose says "loss" too).
_LOOSE_PAIR: Final = re.compile(
    r"(?i)(?:^|(?<=[\s,;|\[(]))((?:train|training|val|valid|validation|eval|test)[ _/])?"
    r"(loss|lr|learning[ _]rate|grad(?:[ _]?norm)?|ppl|perplexity|acc|accuracy)\s*[:=]?\s*"
    r"([-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+)|nan|NaN|-?inf)(?![\w.%/])"
)
# `Namespace(config=...`, `TrainingArguments(output_dir=...`: a config repr, not metrics.
_CONFIG_REPR: Final = re.compile(r"\b[A-Za-z_]\w{0,60}\(\s*[A-Za-z_]\w{0,60}=")
_LOOSE_HINT: Final = re.compile(r"(?i)\b(?:step|iter)\b[^\n]{0,400}?\b(?:loss|lr)\b")
_KV_STEP: Final = re.compile(
    r"(?i)(?:^|[\s\[(|,])(?:global_)?(?:step|iter|iteration)\s*[=:]?\s*(\d{1,12})(?:\s*/\s*(\d{1,12}))?(?![\w.])"
)
_KV_BRACKET_STEP: Final = re.compile(r"^\s*\[\s*(\d{1,12})\s*/\s*(\d{1,12})[\s\]]")
_KV_EPOCH: Final = re.compile(r"(?i)(?:^|[\s\[(|,:])epoch\s*[=:]?\s*(\d{1,7})(?:\s*/\s*(\d{1,7}))?(?![\w.])")
_STEP_WORDS: Final = frozenset({"step", "global_step", "iter", "iteration"})


@dataclass(frozen=True, slots=True)
class KvLine:
    """One metric line: raw key -> value text, and where it sits (``step`` with the ``total``
    of ``step N/M``, else ``epoch``; neither when the line has no marker)."""

    entry: dict[str, str]
    step: int | None
    total: int | None
    epoch: int | None


def may_be_kv_line(seg: str) -> bool:
    """Cheap test before :func:`read_kv_line`: an ``=``, or a step marker near "loss"/"lr"."""
    return "=" in seg or (("oss" in seg or "lr" in seg or "LR" in seg) and _LOOSE_HINT.search(seg) is not None)


def _loose_pairs(s: str) -> list[tuple[str, str]]:
    """``(key, value)`` pairs of :data:`_LOOSE_PAIR` with normalised keys: ``Loss`` -> ``loss``,
    ``val loss`` -> ``val_loss``, ``Grad`` -> ``grad_norm`` (a console's bare "grad" is its norm).

    >>> _loose_pairs("step 250: train loss 2.5833 BPC, val loss 2.7931 BPC")
    [('train_loss', '2.5833'), ('val_loss', '2.7931')]
    """
    out: list[tuple[str, str]] = []
    for prefix, name, value in _LOOSE_PAIR.findall(s):
        pre = prefix.strip(" _/").lower()
        pre = {"training": "train", "valid": "val", "validation": "val"}.get(pre, pre)
        key = name.lower().replace(" ", "_")
        key = "grad_norm" if key in ("grad", "gradnorm", "grad norm") else key
        out.append((f"{pre}_{key}" if pre else key, value))
    return out


def read_kv_line(s: str) -> KvLine | None:
    """The metric line in ``s``, or ``None`` when it is not one (see the module docstring).

    >>> line = read_kv_line("  step 10/611  loss=12.1181  lr=1.97e-04")
    >>> line.entry, line.step, line.total
    ({'loss': '12.1181', 'lr': '1.97e-04'}, 10, 611)
    >>> read_kv_line("Namespace(learning_rate=2e-05, lr_end=1e-06, logging_steps=10)") is None
    True
    """
    pairs = _KV_PAIR.findall(s)
    step_m = _KV_STEP.search(s) or _KV_BRACKET_STEP.search(s)
    loose = _loose_pairs(s) if step_m is not None else []
    if not (pairs or loose):
        return None
    entry: dict[str, str] = {}
    metric = 0
    for key, value in [*pairs, *loose]:
        if key in entry or key.lower() in _STEP_WORDS:
            continue
        dest, _, name = classify(key)
        if dest in ("eval", "summary") or (dest == "train" and is_metric_name(name)):
            metric += 1
        entry[key] = value
    epoch_m = _KV_EPOCH.search(s) if step_m is None else None
    if metric == 0 or (metric < 2 and step_m is None and epoch_m is None):
        return None
    if step_m is None and (2 * metric < len(entry) or _CONFIG_REPR.search(s)):
        return None  # mostly settings (a config repr, an argument dump), not a metric line
    if step_m is not None:
        total = int(step_m.group(2)) if step_m.group(2) else None
        return KvLine(entry, int(step_m.group(1)), total, None)
    return KvLine(entry, None, None, int(epoch_m.group(1)) if epoch_m is not None else None)
