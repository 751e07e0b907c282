"""The prescription's contract over every sample run, corpus log and rule case, in several contexts.

For each run the real parsers and rules produce the findings; the advisor is asked with the run's
own context and with that context varied (full fine-tuning / LoRA / QLoRA / unknown method; a T4,
an A100, the CPU, an unknown GPU), and every prescription must hold: one change per key; no change
equal to the value in effect; no adapter key on a full fine-tune; no bf16 where the GPU has none;
every key accepted by the installed TRL config class of the trainer; every printed tuneterm command
parsed by tuneterm's own CLI; no internal document named in any text.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import replace
from pathlib import Path

import click
import pytest
import typer

from tests.conftest import corpus_files
from tests.engine.fixture_runs import build_run
from tests.engine.test_rule_cases import _cases
from tuneterm.advise import KeySchema, Prescription, prescribe, read_context
from tuneterm.advise.context import RunContext
from tuneterm.advise.hardware import Hardware, from_name
from tuneterm.advise.keys import ADAPTER_KEYS, same_value
from tuneterm.main import app
from tuneterm.preflight.advice_context import key_schema
from tuneterm.engine import RuleSet, evaluate, load_rules
from tuneterm.logs import load_run
from tuneterm.logs.model import Run
from tuneterm.resources import samples_dir

INTERNAL = re.compile(r"\bseeds?\b|seeds/|memory\.md|failure_modes|\bissue \d+|research/", re.IGNORECASE)

METHODS = ("full", "lora", "qlora", "unknown")
GPUS: tuple[Hardware, ...] = (from_name("Tesla T4", "log"), from_name("NVIDIA A100-SXM4-80GB", "gpu.jsonl"),
                              Hardware(source="cpu"), Hardware())


@pytest.fixture(scope="module")
def schema() -> KeySchema:
    s = key_schema(build=True)
    assert s is not None, "the TRL config schema could not be read or built"
    return s


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    return load_rules(scopes=["log"])


def parse_tuneterm(command: str) -> None:
    """Parse a printed ``tuneterm ...`` command with tuneterm's own click command tree (raises
    click.UsageError / BadParameter when it would not run as printed)."""
    words = shlex.split(command.split("  #")[0])
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", words[0]):
        words.pop(0)  # VAR=value prefixes
    assert words and words[0] == "tuneterm", command
    group = typer.main.get_command(app)
    assert isinstance(group, click.Group)
    ctx = group.make_context("tuneterm", list(words[1:]), resilient_parsing=False)
    sub = group.get_command(ctx, words[1])
    assert sub is not None, f"no tuneterm command {words[1]!r}: {command}"
    sub.make_context(words[1], list(words[2:]), parent=ctx)


def check(p: Prescription, ctx: RunContext, schema: KeySchema) -> None:
    """Assert the prescription contract (see the module docstring)."""
    keys = [c.key for c in p.changes]
    assert len(keys) == len(set(keys)), f"two changes for one key: {keys}"
    for c in p.changes:
        now = ctx.value(c.key)
        assert now is None or not same_value(now, c.value), f"{c.key}: {c.value!r} is already in effect"
        if ctx.method == "full" or ctx.method == "unknown":
            assert c.key not in ADAPTER_KEYS, f"adapter key {c.key} on a {ctx.method} run"
        if ctx.hardware.bf16 is False:
            assert not (c.key == "bf16" and c.value is True), f"bf16 on {ctx.hardware.describe()}"
        assert schema.accepts(ctx.trainer, c.key), f"{c.key} is not a field trl {ctx.trainer} accepts"
        assert c.findings and c.why
    if p.changes:
        # `tuneterm train` would take the patch: known keys, values of the right type
        from tuneterm.train.config import validate
        from tuneterm.train.schema import load_schema

        trainer = ctx.trainer if ctx.trainer in ("sft", "dpo", "grpo") else "sft"
        values = {"model_name_or_path": "m", "dataset_name": "d", **p.patch()}
        if trainer == "grpo":
            values["reward_funcs"] = ["length_reward"]
        if values.get("load_in_4bit") or values.get("load_in_8bit"):
            values["use_peft"] = True
        validate(values, trainer, source="patch", schema=load_schema(build=False))  # type: ignore[arg-type]
    for s in p.steps:
        words = s.command.split()
        if "tuneterm" in words:
            parse_tuneterm(s.command)
    text = " ".join([*(c.why for c in p.changes), *(s.command + s.why for s in p.steps), *p.assumptions, *p.blockers])
    assert not INTERNAL.search(text), INTERNAL.search(text)


def check_all_contexts(run: Run, rules: RuleSet, schema: KeySchema) -> None:
    findings = evaluate(run, rules)
    base = read_context(run, schema=schema)
    check(prescribe(run, findings, base), base, schema)
    for method in METHODS:
        for hw in GPUS:
            ctx = replace(base, method=method, hardware=hw)  # type: ignore[arg-type]
            check(prescribe(run, findings, ctx), ctx, schema)


def sample_runs() -> list[Path]:
    return sorted(p for p in samples_dir().iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))


@pytest.mark.parametrize("path", sample_runs(), ids=lambda p: p.name)
def test_sample_runs(path: Path, rules: RuleSet, schema: KeySchema) -> None:
    check_all_contexts(load_run(str(path)), rules, schema)


@pytest.mark.parametrize("path", corpus_files(), ids=lambda p: p.name[:4])
def test_corpus(path: Path, rules: RuleSet, schema: KeySchema) -> None:
    run = load_run(str(path))
    if not run.has_metrics():
        return  # nothing to advise on (exit 3 in the CLI); the corpus holds such files on purpose
    check_all_contexts(run, rules, schema)


@pytest.mark.parametrize(("code", "rule_name", "case"), _cases())
def test_rule_cases(code: str, rule_name: str, case: dict, rules: RuleSet, schema: KeySchema) -> None:
    check_all_contexts(build_run(case), rules, schema)


def test_rule_table_text_names_no_internal_document(rules: RuleSet) -> None:
    for rule in load_rules().rules:
        text = " ".join([rule.summary, rule.message, rule.why, *rule.causes, *rule.references,
                         *(f.why + (f.command or "") for f in rule.fixes)])
        assert not INTERNAL.search(text), f"{rule.code}: {INTERNAL.search(text)}"


def test_every_rule_fix_key_is_a_trl_field_or_fitted(schema: KeySchema) -> None:
    """A static rule fix names a key the installed TRL accepts, or one the advisor maps (warmup)."""
    for rule in load_rules().rules:
        trainer = next((t for t in rule.trainers if t in ("sft", "dpo", "grpo")), "sft")
        for fix in rule.fixes:
            if fix.key is not None:
                assert schema.accepts(trainer, fix.key) or fix.key == "warmup_ratio", f"{rule.code}: {fix.key}"


def _examples() -> list[object]:
    return [pytest.param(r.code, r.example, id=r.code) for r in load_rules(scopes=["log"]).rules if r.example.strip()]


@pytest.mark.parametrize(("code", "example"), _examples())
def test_rule_examples(code: str, example: str, rules: RuleSet, schema: KeySchema, tmp_path: Path) -> None:
    """Each rule's own example log excerpt, parsed as a console log."""
    log = tmp_path / f"{code}.log"
    log.write_text(example)
    run = load_run(str(log))
    if run.has_metrics():
        check_all_contexts(run, rules, schema)


def test_the_corpus_gets_advice_not_silence(rules: RuleSet, schema: KeySchema, corpus: Path) -> None:
    """The contract above is trivially kept by an advisor that says nothing: most corpus runs with
    findings must get changes or steps, and repeated keys across findings must collapse."""
    advised = with_fixes = repeated = 0
    for path in corpus_files():
        run = load_run(str(path))
        if not run.has_metrics():
            continue
        findings = evaluate(run, rules)
        keys = [x.key for f in findings for x in f.fixes if x.key]
        if not keys:
            continue
        with_fixes += 1
        repeated += len(keys) - len(set(keys))
        p = prescribe(run, findings, read_context(run, schema=schema))
        advised += bool(p.changes or p.steps or p.blockers)
    assert with_fixes >= 20 and advised >= 0.9 * with_fixes, (advised, with_fixes)
    assert repeated > 0  # the corpus does exercise one-value-per-key


def test_no_finding_repeats_a_cause(rules: RuleSet) -> None:
    """A cause computed for the run and the rule's general form of it are not both listed."""
    from tuneterm.engine.causes import same_cause

    runs = [load_run(str(p)) for p in sample_runs()] + [load_run(str(p)) for p in corpus_files()]
    for run in runs:
        if not run.has_metrics():
            continue
        for f in evaluate(run, rules):
            for i, a in enumerate(f.causes):
                for b in f.causes[i + 1:]:
                    assert not same_cause(a, b), (f.code, a, b)
