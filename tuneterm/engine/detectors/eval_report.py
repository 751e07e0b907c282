"""Eval-scope detectors (``catastrophic-forgetting``, ``degenerate-generations``) and findings.

Both read an :class:`~tuneterm.evaluation.results.EvalReport` (generations already scored; no
torch) or a run's sample generations (a :class:`~tuneterm.engine.detectors.samples.RunSamples`)
and return :class:`~tuneterm.engine.model.Detection` records; thresholds come from the rule
records in ``rules/diagnostics/generalization.yaml``. ``tuneterm eval`` judges a report through
:func:`tuneterm.runs.diagnose.diagnose` (:func:`tuneterm.evaluation.runner.evaluate_report`), and
``diagnose`` judges a run's ``samples.jsonl`` the same way (the same text analysis,
:func:`tuneterm.engine.detectors.degenerate.detect_degenerate`, with the run's first sampling point
as the baseline: :func:`tuneterm.engine.detectors.samples.detect_samples`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from tuneterm.engine.model import Detection, Fix, Severity
from tuneterm.engine.registry import Param, detector
from tuneterm.engine.detectors.degenerate import detect_degenerate
from tuneterm.engine.detectors.samples import RunSamples, detect_samples
from tuneterm.textsafe import inert_line

_DEGENERATE_EVIDENCE = (
    "label", "n", "count", "degenerate_share", "degenerate_pct", "empty_share", "loop_share",
    "repetitive_share", "never_ending_share", "never_ending_pct", "baseline_share", "examples", "detail",
)


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.0f}%"


@detector(
    "eval-degenerate-generations",
    scope="eval",
    params={
        "warn_share": Param("float", "share of degenerate outputs that is a warning", min=0, max=1),
        "error_share": Param("float", "share of degenerate outputs that is an error", min=0, max=1),
        "never_ending_share": Param("float", "share hitting the token limit without EOS that is a warning",
                                    min=0, max=1),
        "min_increase": Param("float", "how much the fine-tuned share must exceed the base model's", min=0, max=1),
        "min_generations": Param("int", "fewest generations to judge", default=3, min=1),
        "min_repeats": Param("int", "back-to-back repeats of a 2+ word unit that make a loop", default=3, min=2),
        "min_repeats_single": Param("int", "back-to-back repeats of one word that make a loop", default=5, min=2),
        "min_loop_share": Param("float", "share of the words a loop must cover", default=0.3, min=0, max=1),
        "max_repeated_ngram_share": Param("float", "share of repeated word 3-grams that is repetitive",
                                          default=0.5, min=0, max=1),
    },
    evidence=_DEGENERATE_EVIDENCE,
)
def eval_degenerate_generations(report: Any, params: Mapping[str, Any]) -> list[Detection]:
    """Degenerate fine-tuned outputs (loops, repetition, empty, never-ending) vs the base model.

    Judges the held-out answers and the probe answers separately (each against the base model's
    answers to the same prompts) and reports the worse of the two. A run's samples are judged
    against the run's first sampling point (:func:`~tuneterm.engine.detectors.samples.detect_samples`).

    >>> eval_degenerate_generations.__name__
    'eval_degenerate_generations'
    """
    if isinstance(report, RunSamples):
        return detect_samples(report, params)
    sets: list[tuple[str, list[dict[str, Any]], list[dict[str, Any]]]] = []
    if report.examples:
        sets.append((
            "held-out answers",
            [{"completion": e.finetuned.text, "hit_max_tokens": e.finetuned.hit_max_tokens} for e in report.examples],
            [{"completion": e.base.text, "hit_max_tokens": e.base.hit_max_tokens} for e in report.examples],
        ))
    if report.probes is not None and report.probes.results:
        rs = report.probes.results
        sets.append((
            "general-probe answers",
            [{"completion": r.finetuned.text, "hit_max_tokens": r.finetuned.hit_max_tokens} for r in rs],
            [{"completion": r.base.text, "hit_max_tokens": r.base.hit_max_tokens} for r in rs],
        ))
    found: list[Detection] = []
    for label, ft, base in sets:
        found += detect_degenerate(ft, params, baseline=base, label=label)
    if not found:
        return []
    worst = max(found, key=lambda d: ((d.severity or Severity.WARNING).rank, d.evidence["degenerate_share"]))
    return [worst]


@detector(
    "eval-catastrophic-forgetting",
    scope="eval",
    params={
        "ppl_ratio_warning": Param("float", "fine-tuned/base general-text perplexity ratio that is a warning", min=1),
        "ppl_ratio_error": Param("float", "perplexity ratio that is an error", min=1),
        "pass_drop_warning": Param("float", "absolute drop of the probe pass rate that is a warning", min=0, max=1),
        "pass_drop_error": Param("float", "absolute drop of the probe pass rate that is an error", min=0, max=1),
        "degenerate_increase_error": Param("float", "rise of the degenerate share on probes that is an error",
                                           min=0, max=1),
        "min_probes": Param("int", "fewest probe prompts for the pass-rate signals", default=5, min=1),
    },
    evidence=(
        "signals", "perplexity_base", "perplexity_finetuned", "perplexity_ratio", "pass_rate_base",
        "pass_rate_finetuned", "pass_drop", "degenerate_base", "degenerate_finetuned", "categories", "lost",
    ),
)
def eval_catastrophic_forgetting(report: Any, params: Mapping[str, Any]) -> list[Detection]:
    """General ability lost by the fine-tune: general-text perplexity up, probe answers wrong or
    degenerate, compared with the base model on the same probes.

    Severity is the worst signal: perplexity ratio >= ``ppl_ratio_error``, pass-rate drop >=
    ``pass_drop_error`` or degenerate share up by ``degenerate_increase_error`` is an error; the
    ``*_warning`` thresholds give a warning. Computed fixes use the run's own config when the
    fine-tuned model came from a tuneterm run directory (learning rate / 3, half the epochs, LoRA
    when it was full fine-tuning). A run's samples have no base model to compare with: nothing to
    judge there.
    """
    if isinstance(report, RunSamples):
        return []
    pr = report.probes
    if pr is None:
        return []
    signals: list[str] = []
    rank = -1
    ratio = pr.perplexity_ratio
    b_ppl = pr.base_perplexity.value if pr.base_perplexity else None
    f_ppl = pr.finetuned_perplexity.value if pr.finetuned_perplexity else None
    if ratio is not None:
        if ratio >= params["ppl_ratio_error"]:
            rank = max(rank, 2)
        elif ratio >= params["ppl_ratio_warning"]:
            rank = max(rank, 1)
        if ratio >= params["ppl_ratio_warning"]:
            shown = (f"x{ratio:.1f}" if ratio < 1e6 else f"x{ratio:.3g}") if math.isfinite(ratio) else "overflowed"
            f_shown = f"{f_ppl:.3g}" if f_ppl is not None and math.isfinite(f_ppl) else "inf"
            signals.append(f"general-text perplexity {b_ppl:.3g} -> {f_shown} ({shown})")
    pb, pf = pr.pass_rate("base"), pr.pass_rate("finetuned")
    drop = None
    cats: dict[str, list[float | None]] = {}
    lost: list[str] = []
    if pb is not None and pf is not None and len(pr.results) >= params["min_probes"]:
        drop = pb - pf
        if drop >= params["pass_drop_error"]:
            rank = max(rank, 2)
        elif drop >= params["pass_drop_warning"]:
            rank = max(rank, 1)
        if drop >= params["pass_drop_warning"]:
            signals.append(f"general probes passed {_pct(pb)} -> {_pct(pf)}")
            for c in pr.categories:
                cb, cf = pr.pass_rate("base", c), pr.pass_rate("finetuned", c)
                if cb is not None and cf is not None and cb - cf > 0:
                    cats[c] = [round(cb, 3), round(cf, 3)]
            lost = [f"{r.probe.id}: {inert_line(r.finetuned.text, 80)}" for r in pr.results
                    if r.base_pass and not r.finetuned_pass][:5]
    db, df = pr.base_degenerate.degenerate_share, pr.finetuned_degenerate.degenerate_share
    if pr.results and df - db >= params["degenerate_increase_error"]:
        rank = max(rank, 2)
        signals.append(f"degenerate probe answers {_pct(db)} -> {_pct(df)}")
    if rank < 0:
        return []
    fixes = _computed_fixes(report.run_config)
    evidence = {
        "signals": "; ".join(signals),
        "perplexity_base": None if b_ppl is None else round(b_ppl, 4),
        "perplexity_finetuned": None if f_ppl is None or not math.isfinite(f_ppl) else round(f_ppl, 4),
        "perplexity_ratio": None if ratio is None else (round(ratio, 3) if math.isfinite(ratio) else "inf"),
        "pass_rate_base": pb,
        "pass_rate_finetuned": pf,
        "pass_drop": None if drop is None else round(drop, 3),
        "degenerate_base": round(db, 3),
        "degenerate_finetuned": round(df, 3),
        "categories": cats,
        "lost": lost,
    }
    return [Detection(None, None, evidence, Severity.ERROR if rank == 2 else Severity.WARNING, tuple(fixes))]


def _computed_fixes(config: Mapping[str, Any]) -> list[Fix]:
    fixes: list[Fix] = []
    lr = config.get("learning_rate")
    if isinstance(lr, (int, float)) and not isinstance(lr, bool) and lr > 0:
        new = float(f"{lr / 3:.1g}")
        fixes.append(Fix(key="learning_rate", value=new,
                         why=f"this run used {lr:g}; a third of it moves the weights less far from the base"))
    ep = config.get("num_train_epochs")
    if isinstance(ep, (int, float)) and not isinstance(ep, bool) and ep > 1:
        fixes.append(Fix(key="num_train_epochs", value=max(1, round(ep / 2)),
                         why=f"this run trained {ep:g} epochs; fewer passes over narrow data forget less"))
    if config and not config.get("use_peft") and not config.get("peft_config"):
        fixes.append(Fix(key="use_peft", value=True,
                         why="this run was a full fine-tune; a LoRA adapter leaves the base weights untouched"))
    return fixes
