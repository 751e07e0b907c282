"""``tuneterm eval``: did the fine-tune help on held-out data, and did it break anything?

Light at import (typer only): torch, transformers, peft, datasets and rouge-score are imported
inside the command, through :mod:`tuneterm.evaluation.runner`.

Exit codes: 0 no finding at or above ``--fail-on`` (default ``error``), 1 such a finding
(``catastrophic-forgetting``, ``degenerate-generations``), 2 bad input (one line on stderr).
"""

from __future__ import annotations

import sys
from enum import Enum

import typer

from tuneterm.cli import app


class _Format(str, Enum):
    text = "text"
    json = "json"


class _FailOn(str, Enum):
    error = "error"
    warning = "warning"
    never = "never"


def _progress(message: str) -> None:
    from tuneterm.textsafe import inert_line

    print(f"tuneterm: {inert_line(message, 300)}", file=sys.stderr, flush=True)


@app.command("eval")
def eval_cmd(
    target: str = typer.Argument(..., metavar="RUN|ADAPTER|MODEL",
                                 help="The fine-tuned model: a tuneterm run (name or directory), an adapter directory, a merged model directory or a hub id."),
    base: str | None = typer.Option(None, "--base", metavar="MODEL",
                                    help="The base model (path or hub id). Default: the one the adapter or run names."),
    data: str | None = typer.Option(None, "--data", metavar="FILE|HUB_ID",
                                    help="Held-out data: JSONL/JSON/CSV/Parquet file, directory or hub id. Default: the run's own dataset."),
    split: str = typer.Option("test", "--split", help="Split to evaluate on; held out from the data (fixed seed) when absent."),
    n: int = typer.Option(100, "--n", min=1, help="Number of held-out examples."),
    max_new_tokens: int = typer.Option(256, "--max-new-tokens", min=1, help="Generation limit per answer (greedy decoding)."),
    probes: str = typer.Option("general", "--probes", metavar="general|none|FILE",
                               help="Forgetting probe: the bundled general set, none, or a JSONL file."),
    fmt: _Format = typer.Option(_Format.text, "--format", "-f", help="text or json."),
    fail_on: _FailOn = typer.Option(_FailOn.error, "--fail-on", help="Exit 1 on findings at or above this severity."),
    examples: int = typer.Option(5, "--examples", min=0, help="Side-by-side examples to show (worst first)."),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1, help="Prompts per generate call (default 16 on GPU, 8 on CPU)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    dtype: str = typer.Option("auto", "--dtype", help="auto (bf16 where supported, fp16 on older GPUs, fp32 on CPU), bf16, fp16 or fp32."),
    seed: int = typer.Option(0, "--seed", help="Seed of the held-out split and of the bootstrap."),
    holdout: float = typer.Option(0.1, "--holdout", min=0.0, max=1.0, help="Fraction held out when the data has no such split."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Allow model repositories to run their own code (off by default)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress lines on stderr."),
    width: int | None = typer.Option(None, "--width", min=40, max=400, help="Render at this many columns."),
) -> int:
    """Compare a fine-tuned model with its base on held-out data and general probes.

    Reports ROUGE-1/2/L, exact match, response lengths and degenerate outputs for both models,
    the differences with 95% bootstrap confidence intervals, general-text perplexity and general
    probe answers (catastrophic forgetting), and side-by-side examples worst first.
    """
    from tuneterm.engine.model import Severity
    from tuneterm.evaluation.runner import EvalOptions, run_eval

    from tuneterm.runs.info import run_or_path

    opts = EvalOptions(
        target=run_or_path(target), base=base, data=data, split=split, n=n, max_new_tokens=max_new_tokens,
        probes=probes, batch_size=batch_size, device=device, dtype=dtype, seed=seed, holdout=holdout,
        trust_remote_code=trust_remote_code,
    )
    report = run_eval(opts, progress=None if quiet else _progress)
    if fmt is _Format.json:
        from tuneterm.evaluation.render import to_json

        sys.stdout.write(to_json(report))
        sys.stdout.flush()
    else:
        from rich.console import Console

        from tuneterm.evaluation.render import render

        if hasattr(sys.stdout, "reconfigure"):
            sys.stdout.reconfigure(errors="replace")  # a non-UTF-8 terminal degrades characters only
        console = Console(width=width, markup=False, emoji=False, highlight=False, soft_wrap=False)
        render(report, console, examples=examples)
    if fail_on is _FailOn.never:
        return 0
    threshold = Severity(fail_on.value).rank
    return 1 if any(f.severity.rank >= threshold for f in report.findings) else 0
