"""Prompt templates for instruction data, and template randomisation.

TRL's trainers read ``text``, ``messages``, ``prompt``/``completion`` and preference rows; three
other common shapes are rendered into those before training (by :func:`to_trl_row`, which the
training process applies to every row, and which ``tuneterm check DATA`` reports):

* ``instruction`` [+ ``input``] + ``output`` or ``response`` (Alpaca-style): one prompt template
  renders instruction and input into a text ``prompt``; the answer becomes the ``completion``
  (the loss is on the completion only). Without templates the rendering is fixed: chat turns when
  the tokenizer has a chat template, else the classic Alpaca prompt.
* ``prompt`` + ``output``: renamed ``prompt``/``completion`` (chat turns with a chat template).
* ShareGPT ``conversations`` [{``from``, ``value``}]: ``messages`` [{``role``, ``content``}] with
  the roles mapped (``human`` -> ``user``, ``gpt`` -> ``assistant``), so any chat template applies.

**Template randomisation** (a pipeline stage's ``data: {templates: random, template_seed: 0}``, or
a list of your own templates): every instruction row is rendered with one of several templates,
picked per row by a seeded RNG (the same row always gets the same template for a given seed), so
the model learns to follow the instruction rather than one prompt format. A template is text with
``{instruction}`` and optionally ``{input}``; a paragraph (text between blank lines) that holds
``{input}`` is left out for rows without an input.

Pure Python: nothing here imports transformers or datasets.

>>> render_prompt("### Instruction:\\n{instruction}\\n\\n### Input:\\n{input}\\n\\n### Response:\\n", "Add", "")
'### Instruction:\\nAdd\\n\\n### Response:\\n'
>>> pick_template(7, 3, seed=0) == pick_template(7, 3, seed=0)
True
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from tuneterm.preflight.data_formats import ALPACA_PROMPT, detect_row_format

#: The built-in set behind ``templates: random``: widely used instruction formats.
BUILTIN_TEMPLATES: tuple[str, ...] = (
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n",
    "Instruction: {instruction}\n\nInput: {input}\n\nResponse: ",
    "{instruction}\n\n{input}\n\nAnswer:\n",
    "Task: {instruction}\n\nContext: {input}\n\nOutput:\n",
)

#: Formats TRL does not read as they are, which :func:`to_trl_row` renders.
RENDERED_FORMATS = frozenset({"alpaca", "prompt_output", "sharegpt"})

_SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                   "bot": "assistant", "model": "assistant", "chatgpt": "assistant", "system": "system"}


def resolve_templates(templates: Sequence[str]) -> tuple[str, ...]:
    """``("random",)`` -> :data:`BUILTIN_TEMPLATES`; a list of templates as given; ``()`` stays."""
    if tuple(templates) == ("random",):
        return BUILTIN_TEMPLATES
    return tuple(templates)


def pick_template(index: int, count: int, *, seed: int) -> int:
    """Which of ``count`` templates row ``index`` is rendered with: seeded, per row, independent of
    the order rows are visited in (so shuffling or sharding the data does not change the choice)."""
    return random.Random(seed * 1_000_003 + index).randrange(count)


def render_prompt(template: str, instruction: str, inp: str | None) -> str:
    """Fill ``template``; paragraphs holding ``{input}`` are dropped when ``inp`` is empty."""
    has_input = bool(inp and inp.strip())
    paragraphs = template.split("\n\n")
    kept = [p for p in paragraphs if has_input or "{input}" not in p]
    text = "\n\n".join(kept)
    if not has_input and not text.endswith(("\n", " ")) and template.endswith(("\n", " ")):
        text += template[len(template.rstrip()):]
    return text.replace("{instruction}", instruction).replace("{input}", inp or "")


def _answer(row: Mapping[str, Any]) -> str:
    out = row.get("output")
    return out if isinstance(out, str) else str(row.get("response") or "")


def to_trl_row(
    row: Mapping[str, Any], fmt: str, *, index: int, templates: Sequence[str] = (), seed: int = 0, chat: bool = False
) -> dict[str, Any]:
    """Render one row of a format TRL does not read as is (:data:`RENDERED_FORMATS`) into one it
    does: ``prompt``/``completion`` or ``messages``. Other formats are returned unchanged.

    Args:
        row: the record; fmt: its format id (:func:`tuneterm.preflight.data_formats.detect_row_format`).
        index: the row's position (the template choice is seeded per row).
        templates: prompt templates (:func:`resolve_templates` applied already); two or more
            randomise, one is used for every row, none uses the fixed rendering.
        seed: the template seed; chat: the tokenizer has a chat template (fixed rendering only).

    >>> to_trl_row({"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]},
    ...            "sharegpt", index=0)["messages"][1]
    {'role': 'assistant', 'content': 'yo'}
    >>> to_trl_row({"instruction": "Add", "input": "1 2", "response": "3"}, "alpaca", index=0,
    ...            templates=["Q: {instruction} {input}\\nA: "])
    {'prompt': 'Q: Add 1 2\\nA: ', 'completion': '3'}
    """
    if fmt == "sharegpt":
        turns = row.get("conversations") or []
        msgs = [{"role": _SHAREGPT_ROLES.get(str(t.get("from", "")).lower(), str(t.get("from", ""))),
                 "content": str(t.get("value", ""))} for t in turns if isinstance(t, Mapping)]
        return {"messages": msgs}
    if fmt == "prompt_output":
        prompt, out = str(row.get("prompt", "")), str(row.get("output", ""))
        if chat:
            return {"prompt": [{"role": "user", "content": prompt}], "completion": [{"role": "assistant", "content": out}]}
        return {"prompt": prompt, "completion": out}
    if fmt == "alpaca":
        instruction = str(row.get("instruction", ""))
        inp = row.get("input") if isinstance(row.get("input"), str) else ""
        answer = _answer(row)
        if templates:
            t = templates[pick_template(index, len(templates), seed=seed)] if len(templates) > 1 else templates[0]
            return {"prompt": render_prompt(t, instruction, inp), "completion": answer}
        if chat:
            user = instruction + (f"\n\n{inp}" if inp and inp.strip() else "")
            return {"prompt": [{"role": "user", "content": user}], "completion": [{"role": "assistant", "content": answer}]}
        fixed = ALPACA_PROMPT + BUILTIN_TEMPLATES[0]
        return {"prompt": render_prompt(fixed, instruction, inp), "completion": answer}
    return dict(row)


def describe_rendering(fmt: str | None, templates: Sequence[str] = (), seed: int = 0, *, chat: bool | None = None) -> str:
    """One line saying which template rows of ``fmt`` are trained on (for ``tuneterm check`` and
    the pipeline's report).

    >>> describe_rendering("alpaca", ("random",), 3)
    'instruction rows: 4 prompt templates, one picked per row (template_seed 3)'
    >>> describe_rendering("messages")
    "messages: the tokenizer's chat template"
    """
    ts = resolve_templates(templates)
    if fmt == "alpaca":
        if len(ts) > 1:
            return f"instruction rows: {len(ts)} prompt templates, one picked per row (template_seed {seed})"
        if ts:
            return f"instruction rows: one prompt template: {ts[0]!r}"
        if chat is None:
            return "instruction rows: the chat template (user/assistant turns), else the Alpaca prompt"
        return "instruction rows: the chat template (user/assistant turns)" if chat else "instruction rows: the Alpaca prompt"
    if fmt == "prompt_output":
        return "prompt/output rows: prompt -> completion" + (" as chat turns" if chat else "")
    if fmt == "sharegpt":
        return "ShareGPT rows: messages with human->user, gpt->assistant, through the tokenizer's chat template"
    if fmt in ("messages",):
        return "messages: the tokenizer's chat template"
    if fmt in ("prompt_completion", "preference", "prompt_only"):
        return f"{fmt}: as TRL reads it (chat template for conversational rows)"
    if fmt == "text":
        return "text: as is (language modelling)"
    return "unknown format"


def dataset_format(rows: Sequence[Any]) -> str | None:
    """The format id of the first row that has one (``None`` for an empty or unknown dataset)."""
    for row in rows:
        fmt = detect_row_format(row)
        if fmt is not None:
            return fmt
    return None
