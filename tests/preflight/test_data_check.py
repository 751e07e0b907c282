"""``check_dataset``: every format passes clean when healthy, every data rule fires on its failure.

Real inputs throughout: datasets written to tmp_path, tokenizers trained locally with
``tokenizers`` and loaded back with ``AutoTokenizer`` (see conftest.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.preflight.conftest import sentence
from tuneterm.engine.model import Severity
from tuneterm.preflight.data import check_dataset


def names(report) -> list[str]:
    return [f.name for f in report.findings]


def finding(report, name: str):
    hits = [f for f in report.findings if f.name == name]
    assert hits, f"{name} not in {names(report)}"
    return hits[0]


def chat(i: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": sentence(i)}, {"role": "assistant", "content": sentence(i + 500)}]


HEALTHY = {
    "text": lambda i: {"text": sentence(i, 20)},
    "messages": lambda i: {"messages": chat(i)},
    "sharegpt": lambda i: {"conversations": [{"from": "user", "value": sentence(i)},
                                             {"from": "assistant", "value": sentence(i + 500)}]},
    "prompt_completion": lambda i: {"prompt": sentence(i), "completion": " " + sentence(i + 500)},
    "alpaca": lambda i: {"instruction": sentence(i), "input": "" if i % 2 else sentence(i + 90, 5),
                         "output": sentence(i + 500)},
    "prompt_output": lambda i: {"prompt": sentence(i), "output": sentence(i + 500)},
    "preference": lambda i: {"prompt": sentence(i), "chosen": " " + sentence(i + 500), "rejected": " " + sentence(i + 900)},
    "prompt_only": lambda i: {"prompt": [{"role": "user", "content": sentence(i)}]},
}


@pytest.mark.parametrize("fmt", sorted(HEALTHY))
def test_healthy_formats_pass_clean(fmt: str, jsonl, tokenizers_dir) -> None:
    path = jsonl([HEALTHY[fmt](i) for i in range(40)])
    report = check_dataset(str(path), model=str(tokenizers_dir["chatml"]))
    assert report.format == fmt
    assert report.findings == [], [f.message for f in report.findings]
    assert report.facts["rows"] == 40 and report.facts["rows_checked"] == 40
    assert report.facts["trainer"] == {"preference": "dpo", "prompt_only": "grpo"}.get(fmt, "sft")
    assert len(report.lengths) == 40 and min(report.lengths) > 5
    key = "prompt_tokens_per_epoch" if fmt == "prompt_only" else "tokens_per_epoch"
    assert report.facts[key] == pytest.approx(sum(report.lengths), rel=1.0)  # dpo counts 2 sequences
    assert report.facts[key] > 0


def test_healthy_llama3_conversation_and_text_with_bos(jsonl, tokenizers_dir) -> None:
    path = jsonl([{"messages": chat(i)} for i in range(20)])
    report = check_dataset(str(path), model=str(tokenizers_dir["llama3"]))
    assert report.findings == []
    text = jsonl([{"text": sentence(i, 20)} for i in range(20)], "text.jsonl")
    assert check_dataset(str(text), model=str(tokenizers_dir["llama3"])).findings == []


def test_tokens_per_epoch_matches_lengths_and_excludes_nothing_when_short(jsonl, tokenizers_dir) -> None:
    path = jsonl([{"text": sentence(i, 10)} for i in range(10)])
    report = check_dataset(str(path), model=str(tokenizers_dir["chatml"]))
    assert report.facts["tokens_per_epoch"] == sum(report.lengths)
    assert report.facts["trainable_tokens_per_epoch"] == sum(report.lengths)
    assert report.facts["share_truncated"] == 0


# --- sequences-truncated ---------------------------------------------------------------------
def test_sequences_truncated_fires_with_computed_max_length(jsonl, tokenizers_dir) -> None:
    rows = [{"messages": chat(i)} for i in range(30)]
    path = jsonl(rows)
    tok = str(tokenizers_dir["chatml"])
    report = check_dataset(str(path), model=tok, max_length=20)
    f = finding(report, "sequences-truncated")
    assert f.severity is Severity.WARNING
    assert f.evidence["n_truncated"] == 30 and f.evidence["max_length"] == 20
    fix = f.fixes[0]
    assert fix.key == "max_length" and fix.value % 64 == 0 and fix.value >= max(report.lengths)
    assert f.line is not None  # points at the longest row
    # The suggested value really keeps them whole.
    assert "sequences-truncated" not in names(check_dataset(str(path), model=tok, max_length=fix.value))


def test_default_max_length_is_trl_1024(jsonl, tokenizers_dir) -> None:
    long_text = " ".join(sentence(i, 40) for i in range(40))  # well over 1024 tokens
    path = jsonl([{"text": long_text}] + [{"text": sentence(i)} for i in range(10)])
    report = check_dataset(str(path), model=str(tokenizers_dir["chatml"]))
    assert report.facts["max_length"] == 1024 and report.facts["max_length_is_trl_default"]
    assert finding(report, "sequences-truncated").evidence["n_truncated"] == 1


# --- labels-fully-masked ---------------------------------------------------------------------
def test_labels_fully_masked_when_prompt_fills_max_length(jsonl, tokenizers_dir) -> None:
    long_prompt = " ".join(sentence(i, 30) for i in range(4))
    rows = [{"prompt": long_prompt, "completion": " yes"}] + [
        {"prompt": sentence(i, 4), "completion": " " + sentence(i + 1, 4)} for i in range(20)
    ]
    report = check_dataset(str(jsonl(rows)), model=str(tokenizers_dir["chatml"]), max_length=64)
    f = finding(report, "labels-fully-masked")
    assert f.evidence["n_masked"] == 1 and f.line == 1
    assert f.severity is Severity.ERROR  # 1 of 21 is above the 1% error share
    assert any(fx.key == "max_length" and fx.value > 64 for fx in f.fixes)
    assert report.facts["fully_masked"] == 1
    # TRL drops the masked row: it does not count toward the tokens per epoch.
    assert report.facts["tokens_per_epoch"] < sum(min(n, 64) for n in report.lengths)


def test_labels_fully_masked_dpo_prompt_too_long(jsonl, tokenizers_dir) -> None:
    rows = [{"prompt": " ".join(sentence(i, 30) for i in range(4)), "chosen": " a", "rejected": " b"}] + [
        HEALTHY["preference"](i) for i in range(10)
    ]
    report = check_dataset(str(jsonl(rows)), model=str(tokenizers_dir["chatml"]), max_length=48)
    assert finding(report, "labels-fully-masked").evidence["n_masked"] == 1


def test_labels_fully_masked_by_assistant_only_loss_without_generation_markers(jsonl, tokenizers_dir) -> None:
    path = jsonl([{"messages": chat(i)} for i in range(10)])
    report = check_dataset(str(path), model=str(tokenizers_dir["chatml_plain"]), assistant_only_loss=True)
    f = finding(report, "labels-fully-masked")
    assert f.evidence["n_masked"] == 10 and "generation" in f.message
    assert any(fx.key == "assistant_only_loss" and fx.value is False for fx in f.fixes)
    # The same data with a template that has {% generation %} markers trains the assistant turns.
    ok = check_dataset(str(path), model=str(tokenizers_dir["chatml"]), assistant_only_loss=True)
    assert ok.findings == []
    assert ok.facts["trainable_tokens_per_epoch"] < ok.facts["tokens_per_epoch"]


# --- eos-masked-or-missing -------------------------------------------------------------------
def test_pad_equal_to_eos_is_a_warning(jsonl, tokenizers_dir) -> None:
    path = jsonl([{"text": sentence(i)} for i in range(10)])
    report = check_dataset(str(path), model=str(tokenizers_dir["pad_eos"]))
    f = finding(report, "eos-masked-or-missing")
    assert f.severity is Severity.WARNING and "pad token" in f.message
    assert f.fixes[0].key == "pad_token" and f.fixes[0].value != "</s>"
    assert names(check_dataset(str(path), model=str(tokenizers_dir["base"]))) == []


def test_targets_without_eos_are_an_error(jsonl, tokenizers_dir) -> None:
    path = jsonl([{"messages": chat(i)} for i in range(10)])
    f = finding(check_dataset(str(path), model=str(tokenizers_dir["no_eos"])), "eos-masked-or-missing")
    assert f.severity is Severity.ERROR and "do not end with EOS" in f.message


def test_end_of_turn_token_differs_from_eos(jsonl, tokenizers_dir) -> None:
    # Qwen base: template ends turns with <|im_end|>, EOS is <|endoftext|> (FM-22).
    path = jsonl([{"messages": chat(i)} for i in range(10)])
    f = finding(check_dataset(str(path), model=str(tokenizers_dir["qwen_base"])), "eos-masked-or-missing")
    assert f.severity is Severity.ERROR and "<|im_end|>" in f.message
    assert f.fixes[0].key == "eos_token" and f.fixes[0].value == "<|im_end|>"


# --- chat-template-mismatch ------------------------------------------------------------------
def test_base_model_without_template_on_chat_data(jsonl, tokenizers_dir) -> None:
    path = jsonl([{"messages": chat(i)} for i in range(10)])
    report = check_dataset(str(path), model=str(tokenizers_dir["base"]))
    f = finding(report, "chat-template-mismatch")
    assert f.severity is Severity.ERROR and "no chat template" in f.message
    assert report.lengths and any("plain" in n for n in report.facts["notes"])


def test_chatml_template_on_llama3_tokenizer(jsonl, tokenizers_dir) -> None:
    path = jsonl([{"messages": chat(i)} for i in range(10)])
    f = finding(check_dataset(str(path), model=str(tokenizers_dir["chatml_on_llama3"])), "chat-template-mismatch")
    assert f.severity is Severity.ERROR and "<|im_start|>" in f.message and "llama3" in f.message


def test_text_prerendered_in_another_family(jsonl, tokenizers_dir) -> None:
    rows = [{"text": f"<|im_start|>user\n{sentence(i)}<|im_end|>\n<|im_start|>assistant\n{sentence(i + 3)}<|im_end|>"}
            for i in range(10)]
    path = jsonl(rows)
    f = finding(check_dataset(str(path), model=str(tokenizers_dir["llama3"])), "chat-template-mismatch")
    assert "pre-rendered in the chatml" in f.message
    assert "chat-template-mismatch" not in names(check_dataset(str(path), model=str(tokenizers_dir["chatml"])))


def test_double_bos(jsonl, tokenizers_dir) -> None:
    path = jsonl([{"text": "<|begin_of_text|>" + sentence(i)} for i in range(10)])
    f = finding(check_dataset(str(path), model=str(tokenizers_dir["llama3"])), "chat-template-mismatch")
    assert "two BOS" in f.message and f.severity is Severity.WARNING


def test_sharegpt_human_gpt_roles_reach_the_template(jsonl, tokenizers_dir) -> None:
    rows = [{"conversations": [{"from": "human", "value": sentence(i)}, {"from": "gpt", "value": sentence(i + 1)}]}
            for i in range(10)]
    report = check_dataset(str(jsonl(rows)), model=str(tokenizers_dir["chatml"]))
    assert report.format == "sharegpt"
    f = finding(report, "chat-template-mismatch")
    assert "human" in f.message and "gpt" in f.message and f.fixes[0].command


# --- duplicate-examples ----------------------------------------------------------------------
def test_exact_and_near_duplicates(jsonl, tokenizers_dir) -> None:
    base = [{"prompt": sentence(i, 20), "completion": " " + sentence(i + 300, 20)} for i in range(30)]
    near = dict(base[5])
    near["completion"] = base[5]["completion"].replace("number", "num")  # one word of 42 differs
    rows = base + [base[2], {"prompt": base[7]["prompt"].upper() + "  ", "completion": base[7]["completion"]}, near]
    report = check_dataset(str(jsonl(rows)), model=str(tokenizers_dir["chatml"]))
    f = finding(report, "duplicate-examples")
    assert f.evidence["n_exact"] == 2  # byte-identical, and identical after case/whitespace folding
    assert f.evidence["n_near"] == 1
    assert f.severity is Severity.WARNING and f.line == 31
    assert f.fixes[0].command.startswith("awk")


def test_distinct_rows_have_no_duplicates(jsonl) -> None:
    rows = [{"prompt": sentence(i, 20), "completion": " " + sentence(i + 300, 20)} for i in range(200)]
    assert "duplicate-examples" not in names(check_dataset(str(jsonl(rows)), model=None))


# --- empty-responses / identical-preference-pair ---------------------------------------------
def test_empty_responses(jsonl, tokenizers_dir) -> None:
    rows = [HEALTHY["prompt_completion"](i) for i in range(20)]
    rows[4] = {"prompt": "Summarise the report.", "completion": "   "}
    rows[9] = {"prompt": "Explain.", "completion": ""}
    f = finding(check_dataset(str(jsonl(rows)), model=str(tokenizers_dir["chatml"])), "empty-responses")
    assert f.evidence["n_empty"] == 2 and f.line == 5 and f.severity is Severity.ERROR  # 10% >= 5%


def test_conversation_without_assistant_turn(jsonl, tokenizers_dir) -> None:
    rows = [{"messages": chat(i)} for i in range(30)] + [{"messages": [{"role": "user", "content": "hi"}]}]
    f = finding(check_dataset(str(jsonl(rows)), model=str(tokenizers_dir["chatml"])), "empty-responses")
    assert f.evidence["reason"] == "no assistant turn" and f.severity is Severity.WARNING


def test_identical_preference_pairs(jsonl, tokenizers_dir) -> None:
    rows = [HEALTHY["preference"](i) for i in range(10)]
    rows.append({"prompt": "Capital of France?", "chosen": " Paris.", "rejected": " paris. "})
    f = finding(check_dataset(str(jsonl(rows)), model=str(tokenizers_dir["chatml"])), "identical-preference-pair")
    assert f.evidence["n_identical"] == 1 and f.line == 11 and f.severity is Severity.ERROR


def test_implicit_prompt_preference_conversations(jsonl, tokenizers_dir) -> None:
    rows = [{"chosen": chat(i), "rejected": chat(i)[:1] + [{"role": "assistant", "content": sentence(i + 77)}]}
            for i in range(10)]
    report = check_dataset(str(jsonl(rows)), model=str(tokenizers_dir["chatml"]))
    assert report.format == "preference" and report.facts["trainer"] == "dpo" and report.findings == []


# --- inconsistent-schema ---------------------------------------------------------------------
def test_mixed_formats_and_wrong_types(jsonl, tokenizers_dir) -> None:
    rows = [{"messages": chat(i)} for i in range(20)]
    rows += [{"instruction": "x", "output": "y"}, {"messages": [{"role": "user", "content": 5}]}, [1, 2]]
    report = check_dataset(str(jsonl(rows)), model=str(tokenizers_dir["chatml"]))
    f = finding(report, "inconsistent-schema")
    assert f.evidence["n_bad"] == 3 and f.line == 21 and f.severity is Severity.ERROR
    assert "alpaca" in f.evidence["formats"]
    assert report.facts["rows_checked"] == 20


def test_number_where_text_expected_is_a_finding(jsonl) -> None:
    rows = [{"text": sentence(i)} for i in range(5)] + [{"text": 42}]
    f = finding(check_dataset(str(jsonl(rows)), model=None), "inconsistent-schema")
    assert "'text' is int" in f.message and f.line == 6


# --- sampling, trainers ----------------------------------------------------------------------
def test_sample_renders_a_subset_and_scales_tokens(jsonl, tokenizers_dir) -> None:
    path = jsonl([{"text": sentence(i, 15)} for i in range(200)])
    full = check_dataset(str(path), model=str(tokenizers_dir["chatml"]))
    part = check_dataset(str(path), model=str(tokenizers_dir["chatml"]), sample=50)
    assert part.facts["rows"] == 200 and part.facts["rows_checked"] == 50 and part.facts["sampled"]
    assert part.facts["tokens_per_epoch"] == pytest.approx(full.facts["tokens_per_epoch"], rel=0.1)
    assert any("sample" in n for n in part.facts["notes"])


def test_grpo_prompts_and_trainer_override(jsonl, tokenizers_dir) -> None:
    path = jsonl([{"prompt": sentence(i, 40)} for i in range(10)])
    report = check_dataset(str(path), model=str(tokenizers_dir["chatml"]), max_length=20)
    assert report.facts["trainer"] == "grpo"
    assert finding(report, "sequences-truncated").fixes[0].key == "vllm_max_model_length"
    pc = jsonl([HEALTHY["prompt_completion"](i) for i in range(5)], "pc.jsonl")
    assert check_dataset(str(pc), model=str(tokenizers_dir["chatml"]), trainer="grpo").facts["trainer"] == "grpo"


def test_without_model_runs_tokenizer_free_checks(jsonl) -> None:
    rows = [HEALTHY["messages"](i) for i in range(5)] + [HEALTHY["messages"](0)]
    report = check_dataset(str(jsonl(rows)), model=None)
    assert names(report) == ["duplicate-examples"]
    assert report.lengths == [] and any("no --model" in n for n in report.facts["notes"])


def test_report_json_contract(jsonl, tokenizers_dir) -> None:
    import json

    rows = [HEALTHY["prompt_completion"](i) for i in range(10)] + [{"prompt": "x", "completion": ""}]
    report = check_dataset(str(jsonl(rows)), model=str(tokenizers_dir["chatml"]))
    doc = json.loads(json.dumps(report.to_dict()))
    f = doc["findings"][0]
    assert {"code", "name", "severity", "message", "fixes", "evidence", "line"} <= f.keys()
    assert f["code"].startswith("D") and doc["format"] == "prompt_completion"
    assert doc["worst"] and all("row" in w for w in doc["worst"])


def test_other_file_types(tmp_path: Path, tokenizers_dir) -> None:
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [HEALTHY["prompt_completion"](i) for i in range(12)]
    (tmp_path / "a.json").write_text(json.dumps(rows), encoding="utf-8")
    (tmp_path / "b.csv").write_text("prompt,completion\n" + "\n".join(f'"{r["prompt"]}","{r["completion"]}"' for r in rows),
                                    encoding="utf-8")
    pq.write_table(pa.Table.from_pylist([HEALTHY["messages"](i) for i in range(12)]), tmp_path / "c.parquet")
    tok = str(tokenizers_dir["chatml"])
    for name, fmt in (("a.json", "prompt_completion"), ("b.csv", "prompt_completion"), ("c.parquet", "messages")):
        report = check_dataset(str(tmp_path / name), model=tok)
        assert (report.format, report.facts["rows"], report.findings) == (fmt, 12, []), name
    d = tmp_path / "dir"
    d.mkdir()
    for part in range(2):
        (d / f"part{part}.jsonl").write_text(
            "\n".join(json.dumps(HEALTHY["text"](part * 10 + i)) for i in range(10)), encoding="utf-8")
    report = check_dataset(str(d), model=tok)
    assert report.facts["rows"] == 20 and report.findings == []
