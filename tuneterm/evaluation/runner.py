"""Run an evaluation end to end: resolve models and data, generate with both, score, find problems.

:func:`run_eval` is what ``tuneterm eval`` calls. Memory: at most one model is resident at a time;
when the fine-tuned model is an adapter, the already-loaded base is reused and the adapter is
attached to it after the base has answered, so a 7B base is loaded once.
"""

from __future__ import annotations

import contextlib

import gc
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneterm.engine.model import Finding, Rule
from tuneterm.engine.subjects import Subject, by_severity_code
from tuneterm.errors import InputError
from tuneterm.runs.layout import CONFIG
from tuneterm.evaluation.data import select_examples, training_prompts
from tuneterm.evaluation.models import (
    Target,
    attach_adapter,
    has_tokenizer,
    load_model,
    load_tokenizer,
    pick_runtime,
    resolve_name,
    resolve_target,
)
from tuneterm.evaluation.probes import load_probes
from tuneterm.evaluation.results import EvalReport, EvalSettings, build_report

if TYPE_CHECKING:
    from tuneterm.engine.rules import RuleSet

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class EvalOptions:
    """Options of ``tuneterm eval`` (see ``docs/commands-eval.md``)."""

    target: str
    base: str | None = None
    data: str | None = None
    split: str = "test"
    n: int = 100
    max_new_tokens: int = 256
    probes: str = "general"
    batch_size: int | None = None
    device: str = "auto"
    dtype: str = "auto"
    seed: int = 0
    holdout: float = 0.1
    resamples: int = 1000
    trust_remote_code: bool = False


def _run_config(target: Target) -> dict[str, Any]:
    if not target.run_dir:
        return {}
    import yaml

    try:
        cfg = yaml.safe_load((Path(target.run_dir) / CONFIG).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    return cfg if isinstance(cfg, dict) else {}


def _quiet_transformers() -> None:
    # Progress bars and advisory warnings from transformers would interleave with our output.
    with contextlib.suppress(Exception):  # cosmetics only
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()


def _free(model: Any) -> None:
    del model
    gc.collect()
    with contextlib.suppress(Exception):  # cosmetics only
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def eval_rules() -> RuleSet:
    """The ``eval``-scope rules, validated by the engine's loader (only that scope's detectors are
    imported).

    Raises:
        RuleFileError: ``rules/diagnostics/generalization.yaml`` is broken (exit 2).
    """
    from tuneterm.engine import load_rules

    return load_rules(scopes=["eval"]).for_scope("eval")


def report_subject(report: EvalReport) -> Subject:
    """``report`` as the subject of the ``eval`` rule scope: findings are about the evaluated
    target, errors first, then by code."""
    return Subject(scope="eval", value=report, source=str(report.target.get("spec", "")), order=by_severity_code)


def evaluate_report(report: EvalReport, rules: Iterable[Rule]) -> list[Finding]:
    """Judge ``report`` by the ``eval``-scope rules through :func:`tuneterm.runs.diagnose.diagnose`;
    errors first. A detector that raises becomes an info finding ("detector crashed"), never an
    exception."""
    from tuneterm.runs.diagnose import diagnose

    return list(diagnose(report_subject(report), rules, scopes=("eval",)).findings)


def run_eval(opts: EvalOptions, progress: Progress | None = None) -> EvalReport:
    """Evaluate ``opts.target`` against ``opts.base`` and return the report (with findings).

    Raises:
        InputError: unknown models, unreadable data, no usable examples, bad options.
    """
    with warnings.catch_warnings():
        # Library deprecation notices (transformers/peft) say nothing about the user's models.
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        return _run_eval(opts, progress)


def _run_eval(opts: EvalOptions, progress: Progress | None) -> EvalReport:
    from tuneterm.evaluation.generate import generate, perplexity

    say = progress or (lambda _msg: None)
    if opts.n < 1:
        raise InputError("--n must be at least 1")
    if opts.max_new_tokens < 1:
        raise InputError("--max-new-tokens must be at least 1")
    if not 0 < opts.holdout < 1:
        raise InputError("--holdout must be between 0 and 1")
    target = resolve_target(opts.target)
    base_spec = opts.base or target.base
    if not base_spec:
        raise InputError(f"{opts.target}: name the base model with --base (it does not say which base it was trained from)")
    base_path = resolve_name(base_spec)
    run_config = _run_config(target)

    data_spec = opts.data or target.train_data
    if not data_spec:
        raise InputError("name the evaluation data with --data FILE|HUB_ID")
    split = opts.split
    if opts.data is None and target.test_split:
        split = target.test_split
    exclude: set[str] | None = None
    if target.train_data:
        say(f"reading the run's training data ({target.train_data}) to exclude it")
        exclude = training_prompts(target.train_data, target.train_split)
    examples, selection = select_examples(
        data_spec, split=split, n=opts.n, seed=opts.seed, holdout=opts.holdout,
        exclude_prompts=exclude, training_data=target.train_data,
    )
    probes = load_probes(opts.probes)
    rules = eval_rules()  # fail on a broken rule table before hours of generation

    _quiet_transformers()
    runtime = pick_runtime(opts.device, opts.dtype, opts.batch_size)
    trc = opts.trust_remote_code
    prompts = [(e.prompt, e.messages) for e in examples]
    probe_prompts = [(p.prompt, ({"role": "user", "content": p.prompt},)) for p in probes.prompts]
    passages = [t for _, t in probes.passages]

    def answer(model: Any, tok: Any, label: str) -> tuple[list[Any], str, list[Any], Any]:
        say(f"{label}: generating {len(prompts)} answers (greedy, max {opts.max_new_tokens} new tokens)")
        gens, style = generate(model, tok, prompts, max_new_tokens=opts.max_new_tokens,
                               batch_size=runtime.batch_size, device=runtime.device)
        pgens: list[Any] = []
        ppl = None
        if probe_prompts:
            say(f"{label}: answering {len(probe_prompts)} general probes")
            pgens, _ = generate(model, tok, probe_prompts, max_new_tokens=opts.max_new_tokens,
                                batch_size=runtime.batch_size, device=runtime.device)
        if passages:
            ppl = perplexity(model, tok, passages, device=runtime.device)
        return gens, style, pgens, ppl

    say(f"loading base model {base_spec} ({runtime.device}, {runtime.dtype})")
    base_tok = load_tokenizer(base_path, trust_remote_code=trc)
    model = load_model(base_path, runtime, trust_remote_code=trc)
    base_gens, base_style, base_pgens, base_ppl = answer(model, base_tok, "base")

    ft_tok = base_tok
    if has_tokenizer(target.model_path):
        ft_tok = load_tokenizer(target.model_path, trust_remote_code=trc)
    if target.is_adapter:
        say(f"applying adapter {target.model_path}")
        model = attach_adapter(model, target.model_path, ft_tok)
    else:
        _free(model)
        say(f"loading fine-tuned model {target.model_path}")
        model = load_model(target.model_path, runtime, trust_remote_code=trc)
    ft_gens, ft_style, ft_pgens, ft_ppl = answer(model, ft_tok, "fine-tuned")
    _free(model)

    settings: EvalSettings = {
        "decoding": "greedy",
        "max_new_tokens": opts.max_new_tokens,
        "prompt_format": {"base": base_style, "finetuned": ft_style},
        "runtime": runtime.to_dict(),
        "seed": opts.seed,
        "bootstrap_resamples": opts.resamples,
        "confidence": 0.95,
        "probes": probes.name,
        "trust_remote_code": trc,
    }
    deg_params = dict(rules.get("degenerate-generations").params) if rules.get("degenerate-generations") else None
    report = build_report(
        target={**target.to_dict(), "base_resolved": base_path},
        base_name=base_spec,
        finetuned_name=target.spec,
        selection=selection,
        settings=settings,
        examples=examples,
        base_gens=base_gens,
        finetuned_gens=ft_gens,
        probes=probes,
        base_probe_gens=base_pgens,
        finetuned_probe_gens=ft_pgens,
        base_ppl=base_ppl,
        finetuned_ppl=ft_ppl,
        degenerate_params=deg_params,
        resamples=opts.resamples,
        seed=opts.seed,
        run_config=run_config,
    )
    return report.with_findings(evaluate_report(report, rules))
