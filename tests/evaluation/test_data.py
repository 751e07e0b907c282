"""Held-out example selection: row formats, splits, hold-out, overlap with training data, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuneterm.errors import InputError
from tuneterm.evaluation.data import normalize_prompt, parse_row, select_examples, training_prompts
from tuneterm.evaluation.probes import load_probes


def _jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_every_row_format() -> None:
    msgs = parse_row({"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"},
                                   {"role": "assistant", "content": "hello"}, {"role": "user", "content": "bye"},
                                   {"role": "assistant", "content": "goodbye"}]}, "t:0")
    assert msgs is not None and msgs.reference == "goodbye" and msgs.messages is not None
    assert [m["role"] for m in msgs.messages] == ["system", "user", "assistant", "user"]
    share = parse_row({"conversations": [{"from": "human", "value": "2+2?"}, {"from": "gpt", "value": "4"}]}, "t:1")
    assert share is not None and share.prompt == "2+2?" and share.reference == "4"
    pc = parse_row({"prompt": "Translate: cat", "completion": " chat"}, "t:2")
    assert pc is not None and pc.messages is None and pc.reference == " chat"
    conv = parse_row({"prompt": [{"role": "user", "content": "q"}], "completion": [{"role": "assistant", "content": "a"}]}, "t:3")
    assert conv is not None and conv.messages == ({"role": "user", "content": "q"},) and conv.reference == "a"
    alp = parse_row({"instruction": "Add", "input": "2 and 3", "output": "5"}, "t:4")
    assert alp is not None and alp.prompt == "Add\n\n2 and 3" and alp.reference == "5"
    qa = parse_row({"question": "Capital of Peru?", "answer": "Lima"}, "t:5")
    assert qa is not None and qa.messages == ({"role": "user", "content": "Capital of Peru?"},)
    assert parse_row({"text": "just text"}, "t:6") is None
    assert parse_row(["not", "a", "row"], "t:7") is None
    assert parse_row({"messages": [{"role": "user", "content": "no answer"}]}, "t:8") is None


def test_test_named_file_is_used_whole(tmp_path: Path) -> None:
    f = _jsonl(tmp_path / "test.jsonl", [{"question": f"q{i}", "answer": f"a{i}"} for i in range(12)])
    ex, sel = select_examples(str(f), n=100)
    assert sel.how == "file" and len(ex) == 12 and sel.n == 12
    ex, sel = select_examples(str(f), n=5)
    assert [e.prompt for e in ex] == [f"q{i}" for i in range(5)]


def test_plain_file_gets_a_seeded_holdout(tmp_path: Path) -> None:
    f = _jsonl(tmp_path / "mydata.jsonl", [{"question": f"q{i}", "answer": f"a{i}"} for i in range(200)])
    ex1, sel = select_examples(str(f), seed=0)
    ex2, _ = select_examples(str(f), seed=0)
    ex3, _ = select_examples(str(f), seed=1)
    assert sel.how == "holdout" and sel.holdout_fraction == 0.1 and len(ex1) == 20
    assert [e.id for e in ex1] == [e.id for e in ex2]  # reproducible
    assert [e.id for e in ex1] != [e.id for e in ex3]


def test_split_directory_and_missing_split(tmp_path: Path) -> None:
    d = tmp_path / "ds"
    d.mkdir()
    _jsonl(d / "train.jsonl", [{"question": f"t{i}", "answer": "x"} for i in range(50)])
    _jsonl(d / "test.jsonl", [{"question": f"e{i}", "answer": "y"} for i in range(7)])
    ex, sel = select_examples(str(d), split="test")
    assert sel.how == "split" and sel.split == "test" and len(ex) == 7
    ex, sel = select_examples(str(d), split="validation")
    assert sel.how == "holdout" and sel.split == "train" and len(ex) == 5
    assert sel.notes and "no 'validation' split" in sel.notes[0]


def test_overlap_with_training_data_is_removed(tmp_path: Path) -> None:
    train = _jsonl(tmp_path / "train_data.jsonl", [{"question": f"Q {i}", "answer": "x"} for i in range(10)])
    test = _jsonl(tmp_path / "test.jsonl", [{"question": f"q  {i}", "answer": "y"} for i in range(5, 15)])
    prompts = training_prompts(str(train))
    assert normalize_prompt("Q 5") in prompts
    ex, sel = select_examples(str(test), exclude_prompts=prompts, training_data=str(train))
    assert sel.overlap_removed == 5 and [e.prompt for e in ex] == [f"q  {i}" for i in range(10, 15)]
    only = _jsonl(tmp_path / "eval_same.jsonl", [{"question": "Q 1", "answer": "x"}])
    with pytest.raises(InputError, match="also occurs in the run's training data"):
        select_examples(str(only), exclude_prompts=prompts)


def test_builtin_dataset_uses_its_test_split() -> None:
    pytest.importorskip("datasets")
    ex, sel = select_examples("tuneterm:tiny-sft", split="test")
    assert sel.how == "split" and 0 < len(ex) <= 12
    train = training_prompts("tuneterm:tiny-sft", "train")
    kept, sel2 = select_examples("tuneterm:tiny-sft", split="test", exclude_prompts=train)
    assert kept and all(normalize_prompt(e.prompt) not in train for e in kept)
    assert sel2.n + sel2.overlap_removed == sel.n


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"question": "a", "answer": "b"}\n{"question": "tru', "malformed JSON line"),
        (b"\xff\xfe\x00binary\x00junk", "not UTF-8"),
        (b"plain\x00text", "NUL bytes"),
        (b'{"text": "no known format"}\n', "no usable examples"),
    ],
)
def test_bad_data_files_give_one_line_errors(tmp_path: Path, content: bytes, message: str) -> None:
    f = tmp_path / "bad.jsonl"
    f.write_bytes(content)
    with pytest.raises(InputError, match=message) as info:
        select_examples(str(f))
    assert "\n" not in str(info.value)


def test_missing_and_wrong_type_paths(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        select_examples(str(tmp_path / "nope.jsonl"))
    odd = tmp_path / "data.txt"
    odd.write_text("hello")
    with pytest.raises(InputError, match="unknown data file type"):
        select_examples(str(odd))
    j = tmp_path / "x.json"
    j.write_text('{"a": 1')
    with pytest.raises(InputError, match="malformed JSON"):
        select_examples(str(j))


def test_csv_and_json_files(tmp_path: Path) -> None:
    c = tmp_path / "test.csv"
    c.write_text("instruction,output\nSay hi,hi\nSay bye,bye\n", encoding="utf-8")
    ex, _ = select_examples(str(c))
    assert [e.reference for e in ex] == ["hi", "bye"]
    j = tmp_path / "splits.json"
    j.write_text(json.dumps({"train": [{"question": "a", "answer": "b"}], "test": [{"question": "c", "answer": "d"}]}))
    ex, sel = select_examples(str(j))
    assert sel.how == "split" and ex[0].prompt == "c"


def test_bundled_probe_set_covers_the_seed_categories() -> None:
    ps = load_probes("general")
    cats = {p.category for p in ps.prompts}
    assert {"factual", "reasoning", "instruction", "creative", "code", "paraphrase"} <= cats
    assert len(ps.passages) >= 6 and all(len(t.split()) > 20 for _, t in ps.passages)
    groups = [p.group for p in ps.prompts if p.category == "paraphrase"]
    assert all(groups) and len(set(groups)) < len(groups)  # variants share a group
    assert load_probes("none").empty


def test_custom_and_bad_probe_files(tmp_path: Path) -> None:
    good = _jsonl(tmp_path / "p.jsonl", [{"prompt": "2+2?", "answers": ["4"]}, {"type": "passage", "text": "Some text."}])
    ps = load_probes(str(good))
    assert len(ps.prompts) == 1 and len(ps.passages) == 1 and ps.prompts[0].category == "general"
    bad = _jsonl(tmp_path / "b.jsonl", [{"type": "prompt", "prompt": "q", "answers": [1, 2]}])
    with pytest.raises(InputError, match="row 1: 'answers' must be a list of strings"):
        load_probes(str(bad))
    with pytest.raises(InputError, match="no such probe file"):
        load_probes(str(tmp_path / "missing.jsonl"))
