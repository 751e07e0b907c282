"""``tuneterm eval``: compare a fine-tuned model with its base on held-out data and general probes.

Modules (torch, transformers, peft, datasets and rouge-score are imported lazily, inside functions):

    metrics      ROUGE-1/2/L (rouge-score), exact match, lengths, paired bootstrap CIs
    data         held-out examples from files / hub ids, split and overlap handling
    probes       the forgetting probe set (bundled ``probes/general.jsonl`` or a file)
    models       resolving run dirs / adapters / merged models; loading with transformers + peft
    generate     greedy batched generation and general-text perplexity
    results      scoring both models into an :class:`EvalReport` (the JSON contract)
    render       Rich terminal report and JSON
    runner       ``run_eval(EvalOptions) -> EvalReport``

The torch-free text analysis of generations (``detect_degenerate``, re-exported here) and the
eval-scope detectors (``eval-catastrophic-forgetting``, ``eval-degenerate-generations``) are rule
engine detectors: ``tuneterm/engine/detectors/degenerate.py`` and ``eval_report.py``.
"""

from __future__ import annotations

from tuneterm.engine.detectors.degenerate import check_generation, check_generations, detect_degenerate, summarize

__all__ = ["check_generation", "check_generations", "detect_degenerate", "summarize"]
