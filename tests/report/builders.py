"""Hand-built runs, rules and findings for emitter tests (no parser, no engine involved).

The run's source and an event-derived message carry hostile text: Rich markup, an OSC title
write (``ESC ] 0;pwned BEL``) and a clear-screen CSI, exactly what a log could contain.
"""

from __future__ import annotations

import math

from tuneterm.engine.model import Finding, Fix, Rule, Severity
from tuneterm.logs.model import Run
from tuneterm.report.result import CheckResult
from tuneterm.report.subjects import result_from_run

HOSTILE = "[bold red]x[/]\x1b]0;pwned\x07\x1b[2J"
HOSTILE_SOURCE = f"runs/{HOSTILE}/trainer_state.json"

ZERO_GRAD = Rule(
    code="G101",
    name="zero-grad-norm",
    category="gradients",
    severity=Severity.ERROR,
    trainers=("sft", "dpo", "grpo"),
    detector="threshold_run",
    summary="grad_norm is exactly or practically 0: nothing is being trained.",
    message="grad_norm is {value} at {count} of {total} logged steps",
    why="With zero gradients the optimizer changes nothing; the run burns GPU hours for no effect.",
    params={"max_abs": 1e-8, "min_fraction": 0.5},
    causes=("LoRA adapters frozen", "gradient checkpointing without enable_input_require_grads"),
    fixes=(
        Fix(why="re-enables input grads so LoRA gets a gradient", key="gradient_checkpointing_kwargs", value={"use_reentrant": False}),
        Fix(why="shows which parameters require grad", command="python -c 'model.print_trainable_parameters()'"),
    ),
    references=("huggingface/peft#137",),
    example="{'loss': 2.7335, 'grad_norm': 0.0, 'learning_rate': 5e-05, 'epoch': 0.01}",
)
PLATEAU = Rule(
    code="L104",
    name="loss-plateau",
    category="loss",
    severity=Severity.WARNING,
    trainers=("sft",),
    detector="relative_change",
    summary="The loss barely moved over the run.",
    message="loss improved {pct}% over {steps} steps",
    why="A flat loss means the model is not learning from the data.",
    params={"min_improvement": 0.05},
    causes=("learning rate too low",),
    fixes=(Fix(why="a typical LoRA learning rate", key="learning_rate", value=1e-4),),
)
CRASHED = Rule(
    code="X101",
    name="run-crashed",
    category="runtime",
    severity=Severity.WARNING,
    trainers=("sft", "dpo", "grpo", "classification", "unknown"),
    detector="event",
    summary="The run ended in an exception.",
    message="the run ended in {exception}",
    why="A crashed run left no final checkpoint.",
)
COVERAGE = Rule(
    code="S103",
    name="low-data-coverage",
    category="schedule",
    severity=Severity.INFO,
    trainers=("sft",),
    detector="coverage",
    summary="The run saw a small fraction of one epoch.",
    message="the run saw {fraction:.1%} of one epoch",
    why="Most of the data was never seen.",
)
RULES = (ZERO_GRAD, CRASHED, COVERAGE, PLATEAU)


def make_run(source: str = HOSTILE_SOURCE, steps: int = 500) -> Run:
    """An SFT run: falling then flat loss, eval loss, zero grad_norm (one NaN), cosine LR."""
    run = Run(source=source, format="trainer_state")
    for step in range(10, steps + 1, 10):
        run.add_train("loss", step, 2.7335 - 0.0185 * step / steps)
        run.add_train("grad_norm", step, math.nan if step == 250 else 0.0)
        run.add_train("learning_rate", step, 5e-5 * 0.5 * (1 + math.cos(math.pi * step / steps)))
        if step % 150 == 0:
            run.add_eval("eval", "loss", step, 2.9310)
    run.facts.trainer_kind = "sft"
    run.facts.model_type = "llama"
    run.facts.vocab_size = 32000
    run.facts.max_steps = steps
    run.facts.global_step = steps
    run.facts.epoch = 0.089
    run.facts.num_train_epochs = 1
    run.facts.train_batch_size = 1
    run.facts.gradient_accumulation_steps = 8
    run.facts.total_train_batch_size = 8
    run.facts.lora_r = 16
    run.facts.lora_alpha = 32
    run.notes.append(f"salvaged 50 entries {HOSTILE}")
    return run


def make_findings(source: str = HOSTILE_SOURCE) -> list[Finding]:
    """One error (with NaN and a step list in evidence), one warning from log text, one info."""
    return [
        Finding(
            code="G101",
            name="zero-grad-norm",
            severity=Severity.ERROR,
            category="gradients",
            message="grad_norm is 0.0 at 49 of 50 logged steps",
            first_step=10,
            last_step=500,
            evidence={"count": 49, "total": 50, "worst": math.nan, "peak": math.inf, "zero_steps": [[10, 0.0], [20, 0.0]]},
            causes=ZERO_GRAD.causes,
            fixes=ZERO_GRAD.fixes,
            references=ZERO_GRAD.references,
            source=source,
        ),
        Finding(
            code="X101",
            name="run-crashed",
            severity=Severity.WARNING,
            category="runtime",
            message=f"the run ended in KeyboardInterrupt: {HOSTILE}",
            first_step=490,
            last_step=490,
            evidence={"exception": f"KeyboardInterrupt {HOSTILE}"},
            causes=(),
            fixes=(),
            references=(),
            source=source,
            line=7,
        ),
        Finding(
            code="S103",
            name="low-data-coverage",
            severity=Severity.INFO,
            category="schedule",
            message="the run saw 8.9% of one epoch",
            first_step=500,
            last_step=500,
            evidence={"fraction": 0.089},
            causes=(),
            fixes=(Fix(why="one full epoch", key="max_steps", value=5625),),
            references=(),
            source=source,
        ),
    ]


def make_result(source: str = HOSTILE_SOURCE) -> CheckResult:
    """A CheckResult with the run, three findings and all four rules evaluated."""
    run = make_run(source)
    return result_from_run(run, make_findings(source), RULES)


def clean_result(source: str = "runs/healthy/trainer_state.json") -> CheckResult:
    """A result with no findings (the healthy case)."""
    run = make_run(source)
    run.notes.clear()
    return result_from_run(run, [], RULES)
