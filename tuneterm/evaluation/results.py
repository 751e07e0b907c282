"""Scoring and the evaluation report: per-example results, per-model summaries, deltas, probes.

Everything here is pure Python over generated text (no torch): :func:`build_report` turns the
generations of the base and fine-tuned models into an :class:`EvalReport`, whose
:meth:`EvalReport.to_dict` is what ``tuneterm eval --format json`` prints. The findings are added
afterwards by :func:`tuneterm.evaluation.runner.evaluate_report`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict

from tuneterm.version import __version__
from tuneterm.engine.model import Finding, Severity
from tuneterm.evaluation.data import EvalExample, Selection
from tuneterm.engine.detectors.degenerate import DegenerateSummary, GenerationCheck, check_generation, summarize
from tuneterm.evaluation.generate import Generation, Perplexity
from tuneterm.evaluation.metrics import (
    ROUGE_TYPES,
    LengthStats,
    PairedDelta,
    exact_match,
    is_short,
    length_stats,
    paired_bootstrap,
    rouge,
)
from tuneterm.evaluation.probes import Probe, ProbeSet



class EvalTarget(TypedDict, total=False):
    """The fine-tuned model evaluated: :meth:`tuneterm.evaluation.models.Target.to_dict` and the
    base model it was compared with (``base_resolved``, a local path or a Hub id)."""

    spec: str
    kind: str
    model_path: str
    is_adapter: bool
    base: str | None
    run_dir: str | None
    train_data: str | None
    base_resolved: str


class PromptFormats(TypedDict):
    """How each model was prompted (``chat`` template or ``plain`` text)."""

    base: str
    finetuned: str


class EvalSettings(TypedDict, total=False):
    """How the generations were made and compared (``settings`` of the JSON report)."""

    decoding: str
    max_new_tokens: int
    prompt_format: PromptFormats
    runtime: Mapping[str, Any]  # :meth:`tuneterm.evaluation.models.Runtime.to_dict`
    seed: int
    bootstrap_resamples: int
    confidence: float
    probes: str
    trust_remote_code: bool


METRIC_LABELS: Mapping[str, str] = {
    "rouge1": "ROUGE-1",
    "rouge2": "ROUGE-2",
    "rougeL": "ROUGE-L",
    "exact_match": "exact match",
    "degenerate": "degenerate share",
    "words": "length (words)",
}


@dataclass(frozen=True, slots=True)
class ExampleResult:
    """One held-out example answered by both models, with scores (``exact_match`` only when the
    reference is short)."""

    example: EvalExample
    base: Generation
    finetuned: Generation
    base_scores: Mapping[str, float]
    finetuned_scores: Mapping[str, float]
    base_check: GenerationCheck
    finetuned_check: GenerationCheck

    @property
    def delta_rougeL(self) -> float:
        """Fine-tuned minus base ROUGE-L on this example (negative = the fine-tune did worse)."""
        return self.finetuned_scores["rougeL"] - self.base_scores["rougeL"]

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            **self.example.to_dict(),
            "base": {**self.base.to_dict(), "scores": dict(self.base_scores), "check": self.base_check.to_dict()},
            "finetuned": {
                **self.finetuned.to_dict(),
                "scores": dict(self.finetuned_scores),
                "check": self.finetuned_check.to_dict(),
            },
            "delta_rougeL": round(self.delta_rougeL, 6),
        }


@dataclass(frozen=True, slots=True)
class ModelSummary:
    """One model's aggregate numbers on the held-out examples.

    Attributes:
        label: ``base`` or ``finetuned``.
        name: the model as given (path or hub id).
        rouge: mean ROUGE-1/2/L F-measure.
        exact_match: mean exact match over the short-reference examples (``None`` if there are none).
        exact_match_n: how many examples had a short reference.
        lengths: response length statistics.
        degenerate: degenerate-output shares.
    """

    label: str
    name: str
    rouge: Mapping[str, float]
    exact_match: float | None
    exact_match_n: int
    lengths: LengthStats
    degenerate: DegenerateSummary

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "label": self.label,
            "name": self.name,
            **{k: round(v, 6) for k, v in self.rouge.items()},
            "exact_match": None if self.exact_match is None else round(self.exact_match, 6),
            "exact_match_n": self.exact_match_n,
            "lengths": self.lengths.to_dict(),
            "empty_share": round(self.degenerate.empty_share, 4),
            "degenerate_share": round(self.degenerate.degenerate_share, 4),
            "degenerate": self.degenerate.to_dict(),
        }


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One general probe prompt answered by both models."""

    probe: Probe
    base: Generation
    finetuned: Generation
    base_pass: bool
    finetuned_pass: bool
    base_check: GenerationCheck
    finetuned_check: GenerationCheck

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            **self.probe.to_dict(),
            "base": {**self.base.to_dict(), "pass": self.base_pass, "check": self.base_check.to_dict()},
            "finetuned": {**self.finetuned.to_dict(), "pass": self.finetuned_pass, "check": self.finetuned_check.to_dict()},
        }


@dataclass(frozen=True, slots=True)
class ProbeReport:
    """The forgetting probe: pass rates (overall and per category), degenerate shares, perplexity."""

    name: str
    results: tuple[ProbeResult, ...]
    base_perplexity: Perplexity | None
    finetuned_perplexity: Perplexity | None
    base_degenerate: DegenerateSummary
    finetuned_degenerate: DegenerateSummary

    def pass_rate(self, which: str, category: str | None = None) -> float | None:
        """Share of probes passed by ``which`` (``base``/``finetuned``), optionally in one category."""
        rs = [r for r in self.results if category is None or r.probe.category == category]
        if not rs:
            return None
        return sum(r.base_pass if which == "base" else r.finetuned_pass for r in rs) / len(rs)

    def consistency(self, which: str) -> float | None:
        """Paraphrase robustness: share of probe ``group``s whose variants all pass or all fail
        for ``which`` (``None`` without groups)."""
        groups: dict[str, list[bool]] = {}
        for r in self.results:
            if r.probe.group:
                groups.setdefault(r.probe.group, []).append(r.base_pass if which == "base" else r.finetuned_pass)
        if not groups:
            return None
        return sum(len(set(v)) == 1 for v in groups.values()) / len(groups)

    @property
    def categories(self) -> list[str]:
        """Categories in file order."""
        return list(dict.fromkeys(r.probe.category for r in self.results))

    @property
    def perplexity_ratio(self) -> float | None:
        """Fine-tuned over base perplexity (``inf`` when the fine-tuned one overflowed)."""
        b = self.base_perplexity.value if self.base_perplexity else None
        f = self.finetuned_perplexity.value if self.finetuned_perplexity else None
        if b is None or f is None or b <= 0 or not math.isfinite(b):
            return None
        return f / b

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        ratio = self.perplexity_ratio
        return {
            "name": self.name,
            "n": len(self.results),
            "pass_rate": {"base": self.pass_rate("base"), "finetuned": self.pass_rate("finetuned")},
            "categories": {
                c: {"n": sum(r.probe.category == c for r in self.results), "base": self.pass_rate("base", c),
                    "finetuned": self.pass_rate("finetuned", c)}
                for c in self.categories
            },
            "paraphrase_consistency": {"base": self.consistency("base"), "finetuned": self.consistency("finetuned")},
            "degenerate": {"base": self.base_degenerate.to_dict(), "finetuned": self.finetuned_degenerate.to_dict()},
            "perplexity": {
                "base": self.base_perplexity.to_dict() if self.base_perplexity else None,
                "finetuned": self.finetuned_perplexity.to_dict() if self.finetuned_perplexity else None,
                "ratio": None if ratio is None else (round(ratio, 4) if math.isfinite(ratio) else "inf"),
            },
            "results": [r.to_dict() for r in self.results],
        }


@dataclass(frozen=True, slots=True)
class EvalReport:
    """Everything ``tuneterm eval`` found: the JSON contract of ``--format json``."""

    target: EvalTarget
    base_name: str
    selection: Selection
    settings: EvalSettings
    examples: tuple[ExampleResult, ...]
    base: ModelSummary
    finetuned: ModelSummary
    deltas: tuple[PairedDelta, ...]
    probes: ProbeReport | None
    findings: tuple[Finding, ...] = ()
    run_config: Mapping[str, Any] = field(default_factory=dict)

    def with_findings(self, findings: Sequence[Finding]) -> EvalReport:
        """A copy with ``findings``."""
        return dataclasses.replace(self, findings=tuple(findings))

    def delta(self, metric: str) -> PairedDelta | None:
        """The paired delta for ``metric`` (``rouge1`` ... ``exact_match``), if computed."""
        return next((d for d in self.deltas if d.metric == metric), None)

    def worst_examples(self, k: int | None = None) -> list[ExampleResult]:
        """Examples ordered worst first: fine-tuned degenerate, then largest ROUGE-L loss vs base,
        then lowest fine-tuned ROUGE-L."""
        ordered = sorted(
            self.examples,
            key=lambda e: (not e.finetuned_check.degenerate, e.delta_rougeL, e.finetuned_scores["rougeL"]),
        )
        return ordered if k is None else ordered[:k]

    def summary(self) -> dict[str, int | str]:
        """Counts of findings by severity and the headline verdict."""
        counts = {s.value: sum(f.severity == s for f in self.findings) for s in Severity}
        rl = self.delta("rougeL")
        return {**counts, "n": len(self.examples), "rougeL_verdict": rl.verdict if rl else "unclear"}

    def to_dict(self) -> dict[str, Any]:
        """The full JSON report."""
        return {
            "tool": "tuneterm",
            "version": __version__,
            "command": "eval",
            "source": self.target.get("spec"),
            "target": dict(self.target),
            "base": self.base_name,
            "data": self.selection.to_dict(),
            "settings": dict(self.settings),
            "metrics": {
                "base": self.base.to_dict(),
                "finetuned": self.finetuned.to_dict(),
                "deltas": {d.metric: d.to_dict() for d in self.deltas},
            },
            "probes": self.probes.to_dict() if self.probes else None,
            "findings": [f.to_dict() for f in self.findings],
            "summary": self.summary(),
            "examples": [e.to_dict() for e in self.worst_examples()],
        }


def score(gen: Generation, reference: str, *, em_max_words: int) -> dict[str, float]:
    """ROUGE-1/2/L (and exact match when the reference is short) of one generation."""
    s = rouge(gen.text, reference)
    if is_short(reference, em_max_words):
        s["exact_match"] = 1.0 if exact_match(gen.text, reference) else 0.0
    return s


def _summary(label: str, name: str, gens: Sequence[Generation], scores: Sequence[Mapping[str, float]],
             checks: Sequence[GenerationCheck]) -> ModelSummary:
    n = len(gens)
    em = [s["exact_match"] for s in scores if "exact_match" in s]
    return ModelSummary(
        label=label,
        name=name,
        rouge={k: (sum(s[k] for s in scores) / n if n else 0.0) for k in ROUGE_TYPES},
        exact_match=(sum(em) / len(em)) if em else None,
        exact_match_n=len(em),
        lengths=length_stats([c.n_words for c in checks], [g.n_tokens for g in gens], [g.hit_max_tokens for g in gens]),
        degenerate=summarize(checks),
    )


def build_report(
    *,
    target: EvalTarget,
    base_name: str,
    finetuned_name: str,
    selection: Selection,
    settings: EvalSettings,
    examples: Sequence[EvalExample],
    base_gens: Sequence[Generation],
    finetuned_gens: Sequence[Generation],
    probes: ProbeSet | None = None,
    base_probe_gens: Sequence[Generation] = (),
    finetuned_probe_gens: Sequence[Generation] = (),
    base_ppl: Perplexity | None = None,
    finetuned_ppl: Perplexity | None = None,
    degenerate_params: Mapping[str, Any] | None = None,
    em_max_words: int = 5,
    resamples: int = 1000,
    seed: int = 0,
    run_config: Mapping[str, Any] | None = None,
) -> EvalReport:
    """Score both models' generations and compare them (no findings yet).

    Deltas are paired bootstraps (``resamples``, ``seed``) of ROUGE-1/2/L over all examples, of
    exact match over the short-reference examples, and of the degenerate indicator.
    """
    results: list[ExampleResult] = []
    for ex, bg, fg in zip(examples, base_gens, finetuned_gens, strict=True):
        results.append(
            ExampleResult(
                example=ex,
                base=bg,
                finetuned=fg,
                base_scores=score(bg, ex.reference, em_max_words=em_max_words),
                finetuned_scores=score(fg, ex.reference, em_max_words=em_max_words),
                base_check=check_generation(bg.text, hit_max_tokens=bg.hit_max_tokens, params=degenerate_params),
                finetuned_check=check_generation(fg.text, hit_max_tokens=fg.hit_max_tokens, params=degenerate_params),
            )
        )
    base_sum = _summary("base", base_name, base_gens, [r.base_scores for r in results], [r.base_check for r in results])
    ft_sum = _summary("finetuned", finetuned_name, finetuned_gens, [r.finetuned_scores for r in results],
                      [r.finetuned_check for r in results])
    deltas = [
        paired_bootstrap([r.base_scores[k] for r in results], [r.finetuned_scores[k] for r in results],
                         metric=k, resamples=resamples, seed=seed)
        for k in ROUGE_TYPES
    ]
    em_rows = [r for r in results if "exact_match" in r.base_scores]
    if em_rows:
        deltas.append(paired_bootstrap([r.base_scores["exact_match"] for r in em_rows],
                                       [r.finetuned_scores["exact_match"] for r in em_rows],
                                       metric="exact_match", resamples=resamples, seed=seed))
    deltas.append(paired_bootstrap([float(r.base_check.degenerate) for r in results],
                                   [float(r.finetuned_check.degenerate) for r in results],
                                   metric="degenerate", resamples=resamples, seed=seed))
    deltas.append(paired_bootstrap([float(r.base_check.n_words) for r in results],
                                   [float(r.finetuned_check.n_words) for r in results],
                                   metric="words", resamples=resamples, seed=seed))
    probe_report: ProbeReport | None = None
    if probes is not None and not probes.empty:
        presults: list[ProbeResult] = []
        for p, bg, fg in zip(probes.prompts, base_probe_gens, finetuned_probe_gens, strict=True):
            bc = check_generation(bg.text, hit_max_tokens=bg.hit_max_tokens, params=degenerate_params)
            fc = check_generation(fg.text, hit_max_tokens=fg.hit_max_tokens, params=degenerate_params)
            presults.append(ProbeResult(p, bg, fg, p.passes(bg.text, bc), p.passes(fg.text, fc), bc, fc))
        probe_report = ProbeReport(
            name=probes.name,
            results=tuple(presults),
            base_perplexity=base_ppl,
            finetuned_perplexity=finetuned_ppl,
            base_degenerate=summarize([r.base_check for r in presults]),
            finetuned_degenerate=summarize([r.finetuned_check for r in presults]),
        )
    return EvalReport(
        target=EvalTarget(**target),
        base_name=base_name,
        selection=selection,
        settings=EvalSettings(**settings),
        examples=tuple(results),
        base=base_sum,
        finetuned=ft_sum,
        deltas=tuple(deltas),
        probes=probe_report,
        run_config=dict(run_config or {}),
    )
