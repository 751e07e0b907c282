"""The eval rule records (rules/diagnostics/generalization.yaml) and their detectors on constructed evaluation results.

Generations are written out here as text (what a healthy and a collapsed model answer), scored by
the real code path (ROUGE, degenerate checks, probe answer checks) and judged by the real rules.
"""

from __future__ import annotations

from typing import Any

import pytest

from tuneterm.evaluation.data import EvalExample, Selection
from tuneterm.engine.evaluate import make_finding
from tuneterm.engine.detectors.degenerate import detect_degenerate
from tuneterm.evaluation.generate import Generation, Perplexity
from tuneterm.evaluation.probes import load_probes
from tuneterm.evaluation.results import build_report
from tuneterm.evaluation.runner import eval_rules, evaluate_report

pytestmark = pytest.mark.train  # needs the train extra; skipped cleanly without it


@pytest.fixture(scope="module")
def rules() -> Any:
    # eval_rules(): the shipped eval rules, validated by the engine's loader, even while another
    # rule table under rules/ is being edited.
    return eval_rules()


def _g(text: str, hit: bool = False) -> Generation:
    return Generation(text=text, n_tokens=len(text.split()), hit_max_tokens=hit)


def _report(ft_task: list[str], ft_probe: str | None, ppl_ratio: float, config: dict[str, Any] | None = None) -> Any:
    examples = [EvalExample(f"t:{i}", f"What colour is object {i}?", f"The object {i} is red.") for i in range(10)]
    probes = load_probes("general")
    # The base answers every probe correctly (its first accepted answer, padded to min_words).
    base_probe = [_g(" ".join([p.answers[0] if p.answers else "a calm", "answer"] + ["word"] * (p.min_words or 0)))
                  for p in probes.prompts]
    ft_probe_gens = base_probe if ft_probe is None else [_g(ft_probe, hit=True) for _ in probes.prompts]
    sel = Selection("constructed", None, "file", 10, 0, 0, 10, 0)
    return build_report(
        target={"spec": "constructed", "kind": "adapter"},
        base_name="base",
        finetuned_name="ft",
        selection=sel,
        settings={},
        examples=examples,
        base_gens=[_g("red.") for _ in examples],
        finetuned_gens=[_g(t) for t in ft_task],
        probes=probes,
        base_probe_gens=base_probe,
        finetuned_probe_gens=ft_probe_gens,
        base_ppl=Perplexity(nll=100.0, tokens=100),
        finetuned_ppl=Perplexity(nll=100.0 + 100 * __import__("math").log(ppl_ratio), tokens=100),
        run_config=config,
    )


def test_eval_rules_are_registered_and_complete(rules: Any) -> None:
    names = {r.name: r for r in rules}
    assert set(names) == {"catastrophic-forgetting", "degenerate-generations"}
    for r in rules:
        assert r.code.startswith("E") and r.scope == "eval" and r.fixes and r.references
        assert all(f.why and (f.command or f.key) for f in r.fixes)
    keys = {f.key for f in names["catastrophic-forgetting"].fixes}
    assert {"learning_rate", "num_train_epochs", "use_peft", "datasets"} <= keys


def test_healthy_fine_tune_passes_both_rules(rules: Any) -> None:
    report = _report([f"The object {i} is red." for i in range(10)], None, 1.05)
    assert report.delta("rougeL").verdict == "better"
    assert evaluate_report(report, rules) == []


def test_collapsed_fine_tune_fails_both_rules(rules: Any) -> None:
    report = _report(["red red red red red red red red red red"] * 10, "blue is is is is is is is is is is", 40.0,
                     config={"learning_rate": 3e-4, "num_train_epochs": 5})
    findings = {f.name: f for f in evaluate_report(report, rules)}
    assert set(findings) == {"catastrophic-forgetting", "degenerate-generations"}
    cf = findings["catastrophic-forgetting"]
    assert cf.severity.value == "error"
    assert "perplexity" in cf.message and "x40.0" in cf.message and "general probes passed" in cf.message
    assert cf.fixes[0].key == "learning_rate" and cf.fixes[0].value == pytest.approx(1e-4)  # 3e-4 / 3
    assert any(f.key == "num_train_epochs" and f.value == 2 for f in cf.fixes)  # computed: 5 -> 2 (rounded half)
    assert [f.key for f in cf.fixes].count("learning_rate") == 1  # the static one is replaced
    dg = findings["degenerate-generations"]
    assert dg.severity.value == "error" and "10 of 10 held-out answers" in dg.message and "{" not in dg.message
    assert cf.to_dict()["evidence"]["pass_rate_finetuned"] == 0.0
    # Every paraphrase variant fails alike: consistent (robustness is about agreeing, not passing).
    assert report.probes.consistency("base") == 1.0 and report.probes.consistency("finetuned") == 1.0


def test_perplexity_rise_alone_is_a_warning(rules: Any) -> None:
    report = _report([f"The object {i} is red." for i in range(10)], None, 2.0)
    findings = evaluate_report(report, rules)
    assert [(f.name, f.severity.value) for f in findings] == [("catastrophic-forgetting", "warning")]
    assert "x2.0" in findings[0].message


def test_samples_jsonl_path_for_the_watcher(rules: Any) -> None:
    rule = rules.get("degenerate-generations")
    samples = [{"step": 200, "prompt": "p", "completion": "It It It It It It It It", "hit_max_tokens": True}] * 4
    dets = detect_degenerate(samples, rule.params, label="samples at step 200", step=200)
    finding = make_finding(rule, dets[0], source="runs/x/samples.jsonl")
    assert finding.first_step == 200 and finding.severity.value == "error"
    assert finding.message.startswith("4 of 4 samples at step 200")
    ok = [{"step": 200, "prompt": "p", "completion": "A fine sentence.", "hit_max_tokens": False}] * 4
    assert detect_degenerate(ok, rule.params) == []


def test_terminal_and_json_reports_render_model_text_inert(rules: Any) -> None:
    import io
    import json

    from rich.console import Console

    from tuneterm.evaluation.render import render, to_json

    hostile = "[bold red]pwned[/] \x1b]52;c;ZXZpbA==\x07\x1b[2J ok"
    report = _report([hostile] * 10, None, 1.0)
    report = report.with_findings(evaluate_report(report, rules))
    buf = io.StringIO()
    render(report, Console(file=buf, width=160, markup=False, emoji=False, highlight=False, color_system=None),
           examples=2)
    out = buf.getvalue()
    assert "[bold red]pwned[/]" in out and "\x1b" not in out and "\x07" not in out
    assert "Held-out task (10 examples)" in out and "ROUGE-L" in out and "95% CI" in out
    assert "Examples, worst first (2 of 10)" in out
    doc = json.loads(to_json(report))
    assert doc["tool"] == "tuneterm" and doc["command"] == "eval" and len(doc["examples"]) == 10
    assert doc["metrics"]["deltas"]["rougeL"]["verdict"] == "worse"
    assert set(doc["metrics"]["base"]) >= {"rouge1", "rouge2", "rougeL", "exact_match", "lengths",
                                           "empty_share", "degenerate_share"}
