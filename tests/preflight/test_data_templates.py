"""Template randomisation and the rendering of instruction, prompt/output and ShareGPT rows into
what TRL reads (pure functions; the training process applies the same ones, see
tests/train/test_pipeline.py for a real run)."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from tuneterm.preflight.data_formats import detect_row_format
from tuneterm.preflight.data_templates import (
    BUILTIN_TEMPLATES,
    describe_rendering,
    pick_template,
    render_prompt,
    resolve_templates,
    to_trl_row,
)
from tuneterm.resources import builtin_data_file


def _rows(name: str) -> list[dict]:
    path = builtin_data_file(name)
    assert path is not None
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("name", "fmt"),
    [("tuneterm:tiny-instructions", "alpaca"), ("tuneterm:tiny-prompt-output", "prompt_output"),
     ("tuneterm:tiny-sharegpt", "sharegpt"), ("tuneterm:tiny-sft", "messages")],
)
def test_the_three_recipe_shapes_are_recognised(name: str, fmt: str) -> None:
    assert {detect_row_format(r) for r in _rows(name)} == {fmt}


def test_instruction_rows_with_response_instead_of_output_are_instruction_rows() -> None:
    assert detect_row_format({"instruction": "Add", "input": "1 2", "response": "3"}) == "alpaca"
    assert detect_row_format({"instruction": "Add"}) is None


def test_the_input_paragraph_is_dropped_for_rows_without_input() -> None:
    t = BUILTIN_TEMPLATES[0]
    assert render_prompt(t, "Add", "1 2") == "### Instruction:\nAdd\n\n### Input:\n1 2\n\n### Response:\n"
    assert render_prompt(t, "Add", "") == "### Instruction:\nAdd\n\n### Response:\n"
    assert render_prompt(BUILTIN_TEMPLATES[1], "Add", None) == "Instruction: Add\n\nResponse: "


def test_random_templates_are_seeded_per_row_and_cover_every_template() -> None:
    rows = _rows("tuneterm:tiny-instructions")
    ts = resolve_templates(["random"])
    first = [to_trl_row(r, "alpaca", index=i, templates=ts, seed=0) for i, r in enumerate(rows)]
    again = [to_trl_row(r, "alpaca", index=i, templates=ts, seed=0) for i, r in enumerate(rows)]
    other = [to_trl_row(r, "alpaca", index=i, templates=ts, seed=1) for i, r in enumerate(rows)]
    assert first == again  # deterministic for a seed
    assert first != other  # another seed, other choices
    used = Counter(pick_template(i, len(ts), seed=0) for i in range(len(rows)))
    assert set(used) == set(range(len(ts)))  # all four templates occur in 84 rows
    assert all(row["completion"] == src["response"] for row, src in zip(first, rows))
    # the choice depends on the row's index, not on the order rows are rendered in
    assert to_trl_row(rows[7], "alpaca", index=7, templates=ts, seed=0) == first[7]


def test_fixed_rendering_without_templates() -> None:
    row = {"instruction": "Add the numbers.", "input": "1 2", "response": "3"}
    chat = to_trl_row(row, "alpaca", index=0, chat=True)
    assert chat == {"prompt": [{"role": "user", "content": "Add the numbers.\n\n1 2"}],
                    "completion": [{"role": "assistant", "content": "3"}]}
    text = to_trl_row(row, "alpaca", index=0, chat=False)
    assert text["prompt"].startswith("Below is an instruction") and text["prompt"].endswith("### Response:\n")


def test_prompt_output_and_sharegpt_rows() -> None:
    assert to_trl_row({"prompt": "Hi", "output": "Yo"}, "prompt_output", index=0) == {"prompt": "Hi", "completion": "Yo"}
    conv = {"conversations": [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "Hi"},
                              {"from": "gpt", "value": "Yo"}]}
    assert [m["role"] for m in to_trl_row(conv, "sharegpt", index=0)["messages"]] == ["system", "user", "assistant"]
    assert to_trl_row({"messages": []}, "messages", index=0) == {"messages": []}  # TRL's own formats unchanged


def test_describe_rendering_names_the_template() -> None:
    assert describe_rendering("alpaca", ["Q: {instruction}\nA: "]) == "instruction rows: one prompt template: 'Q: {instruction}\\nA: '"
    assert "4 prompt templates" in describe_rendering("alpaca", ["random"], 0)
    assert describe_rendering("sharegpt").startswith("ShareGPT rows: messages with human->user")
