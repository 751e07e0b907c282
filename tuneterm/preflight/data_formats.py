"""Dataset formats: detect which one a row is in, validate its types, normalise it the way TRL does.

Format ids (what ``tuneterm check`` reports, and how TRL 1.16 consumes each):

================== ============================================ =====================================
id                 columns                                      TRL trainer / how it is rendered
================== ============================================ =====================================
text               ``text``                                     SFT language modelling (+EOS)
messages           ``messages`` [{role, content}]               SFT conversational (chat template)
sharegpt           ``conversations`` [{from, value}]            SFT; TRL renames keys to role/content
                                                                but keeps the role *values* (human/gpt)
prompt_completion  ``prompt`` + ``completion`` (str or chat)    SFT, loss on the completion only
alpaca             ``instruction`` [+ ``input``] + ``output``   not read by TRL as is: rendered as a
                   (or ``response``)
                                                                user/assistant prompt-completion pair
prompt_output      ``prompt`` + ``output``                      not read by TRL as is: rendered as
                                                                prompt/completion
preference         [``prompt``] + ``chosen`` + ``rejected``     DPO (implicit prompt extracted)
prompt_only        ``prompt``                                   GRPO (prompt rendered with the
                                                                generation prompt)
================== ============================================ =====================================

Nothing here imports transformers or datasets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

FORMATS: tuple[str, ...] = (
    "text",
    "messages",
    "sharegpt",
    "prompt_completion",
    "alpaca",
    "prompt_output",
    "preference",
    "prompt_only",
)

#: What each format needs, for messages that name the formats tuneterm looked for.
FORMAT_COLUMNS: dict[str, str] = {
    "text": "text",
    "messages": "messages",
    "sharegpt": "conversations",
    "prompt_completion": "prompt+completion",
    "alpaca": "instruction+output (or response)",
    "prompt_output": "prompt+output",
    "preference": "chosen+rejected",
    "prompt_only": "prompt",
}

#: The trainer each format feeds by default.
DEFAULT_TRAINER: dict[str, str] = {"preference": "dpo", "prompt_only": "grpo"}

#: Formats each trainer accepts.
TRAINER_FORMATS: dict[str, frozenset[str]] = {
    "sft": frozenset({"text", "messages", "sharegpt", "prompt_completion", "alpaca", "prompt_output"}),
    "dpo": frozenset({"preference"}),
    "grpo": frozenset({"prompt_only", "prompt_completion", "messages", "alpaca", "prompt_output"}),
}

ASSISTANT_ROLES = frozenset({"assistant", "gpt", "bot", "model", "chatgpt"})
_SHAREGPT_ROLES = {"human": "user", "gpt": "assistant", "system": "system", "user": "user", "assistant": "assistant"}

ALPACA_PROMPT = "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"


def detect_row_format(row: Any) -> str | None:
    """Return the format id of one record, or ``None`` if it matches none.

    Detection is by column names, most specific first (a preference row with a ``prompt`` column is
    ``preference``, not ``prompt_only``).

    >>> detect_row_format({"instruction": "Sum", "input": "1 2", "output": "3"})
    'alpaca'
    >>> detect_row_format({"prompt": "Hi"}), detect_row_format({"foo": 1})
    ('prompt_only', None)
    """
    if not isinstance(row, Mapping):
        return None
    keys = row.keys()
    if "chosen" in keys and "rejected" in keys:
        return "preference"
    if "prompt" in keys and "completion" in keys:
        return "prompt_completion"
    if "messages" in keys:
        return "messages"
    if "conversations" in keys:
        return "sharegpt"
    if "instruction" in keys and ("output" in keys or "response" in keys):
        return "alpaca"
    if "prompt" in keys and "output" in keys:
        return "prompt_output"
    if "text" in keys:
        return "text"
    if "prompt" in keys:
        return "prompt_only"
    return None


def content_text(content: Any) -> str | None:
    """The text of a message ``content`` (a string, or a list of ``{"type": "text", "text"}`` parts).

    Returns ``None`` when the content is of a type a chat template cannot render as text.
    """
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts: list[str] = []
        for part in content:
            if isinstance(part, Mapping):
                if isinstance(part.get("text"), str):
                    parts.append(part["text"])
                elif part.get("type") not in ("image", "audio", "video", "image_url"):
                    return None
            else:
                return None
        return "".join(parts)
    return None


def normalise(text: str) -> str:
    """Lower-case and collapse whitespace: the key for exact-duplicate detection."""
    return " ".join(text.split()).lower()


@dataclass(frozen=True, slots=True)
class Example:
    """One row, normalised into what the TRL trainer consumes.

    Attributes:
        kind: ``lm`` (language modelling: text or messages), ``pc`` (prompt-completion),
            ``pref`` (prompt/chosen/rejected), ``prompt`` (prompt only, GRPO).
        conversational: fields are message lists rendered with the chat template.
        text: the ``lm`` text (standard).
        messages: the ``lm`` conversation (conversational).
        prompt, completion: the ``pc``/``prompt`` fields (str or message list).
        chosen, rejected: the ``pref`` completions (str or message list), prompt extracted.
        responses: the target texts the model is trained to produce (empty-response check).
        canonical: normalised text of the whole example (duplicate detection).
        roles: the roles used by the conversation (template/role checks).
    """

    kind: str
    conversational: bool
    text: str | None = None
    messages: list[dict[str, Any]] | None = None
    prompt: Any = None
    completion: Any = None
    chosen: Any = None
    rejected: Any = None
    responses: tuple[str, ...] = ()
    canonical: str = ""
    roles: tuple[str, ...] = ()


class RowError(ValueError):
    """A row whose fields have the wrong types for its format (reported, never raised to the user)."""


def _require_str(row: Mapping[str, Any], key: str) -> str:
    v = row.get(key)
    if isinstance(v, str):
        return v
    if v is None:
        raise RowError(f"'{key}' is null")
    raise RowError(f"'{key}' is {type(v).__name__}, expected a string")


def _check_messages(value: Any, key: str, role_key: str = "role", content_key: str = "content") -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise RowError(f"'{key}' is {type(value).__name__}, expected a list of messages")
    if not value:
        raise RowError(f"'{key}' is an empty list")
    out: list[dict[str, Any]] = []
    for i, m in enumerate(value, 1):
        if not isinstance(m, Mapping):
            raise RowError(f"'{key}' item {i} is {type(m).__name__}, expected an object with {role_key}/{content_key}")
        if not isinstance(m.get(role_key), str):
            raise RowError(f"'{key}' item {i} has no string '{role_key}'")
        if content_text(m.get(content_key)) is None and not m.get("tool_calls"):
            got = type(m.get(content_key)).__name__ if content_key in m else "nothing"
            raise RowError(f"'{key}' item {i} '{content_key}' is {got}, expected text")
        out.append(dict(m))
    return out


def _conv_or_str(row: Mapping[str, Any], key: str) -> Any:
    v = row.get(key)
    if isinstance(v, str):
        return v
    if isinstance(v, list):
        return _check_messages(v, key)
    if v is None:
        raise RowError(f"'{key}' is null")
    raise RowError(f"'{key}' is {type(v).__name__}, expected a string or a list of messages")


def _msgs_text(messages: Sequence[Mapping[str, Any]]) -> str:
    return "\n".join(f"{m.get('role')}: {content_text(m.get('content')) or ''}" for m in messages)


def _field_text(v: Any) -> str:
    return _msgs_text(v) if isinstance(v, list) else str(v)


def _assistant_texts(messages: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    return tuple(
        content_text(m.get("content")) or "" for m in messages if str(m.get("role", "")).lower() in ASSISTANT_ROLES
    )


def _target_texts(v: Any) -> tuple[str, ...]:
    """Target texts of a completion field: the string, or the assistant turns of a message list."""
    if isinstance(v, list):
        texts = _assistant_texts(v)
        return texts if texts else tuple(content_text(m.get("content")) or "" for m in v)
    return (v,)


def _common_prefix(a: Sequence[Any], b: Sequence[Any]) -> int:
    """TRL's ``extract_prompt`` split point between chosen and rejected (implicit prompt)."""
    idx = 0
    n = min(len(a), len(b))
    for idx in range(n):  # the loop variable is the result, as in TRL
        if a[idx] != b[idx]:
            if idx > 0 and a[idx - 1] == " ":
                idx -= 1
            break
    else:
        idx = n
    return idx


def to_example(row: Any, fmt: str, *, chat_template: bool) -> Example:
    """Normalise one record of format ``fmt`` into an :class:`Example` (TRL's view of it).

    Args:
        row: the record.
        fmt: its format id (see :data:`FORMATS`).
        chat_template: the tokenizer has a chat template (decides how ``alpaca``/``prompt_output``
            rows are rendered: as chat turns, or with the classic Alpaca text prompt).

    Raises:
        RowError: a field has the wrong type (a number where text is expected, a message without
            content, an empty message list ...).
    """
    if not isinstance(row, Mapping):
        raise RowError(f"record is a JSON {type(row).__name__}, not an object")
    if fmt == "text":
        text = _require_str(row, "text")
        return Example("lm", False, text=text, responses=(text,), canonical=normalise(text))
    if fmt in ("messages", "sharegpt"):
        if fmt == "sharegpt":
            raw = _check_messages(row.get("conversations"), "conversations", "from", "value")
            # TRL's maybe_convert_to_chatml renames the keys but keeps the role values as they are.
            msgs = [
                {**{k: v for k, v in m.items() if k not in ("from", "value")}, "role": m["from"], "content": m["value"]}
                for m in raw
            ]
        else:
            msgs = _check_messages(row.get("messages"), "messages")
        return Example(
            "lm",
            True,
            messages=msgs,
            responses=_assistant_texts(msgs),
            canonical=normalise(_msgs_text(msgs)),
            roles=tuple(str(m["role"]) for m in msgs),
        )
    if fmt in ("prompt_completion", "prompt_output", "alpaca"):
        if fmt == "alpaca":
            instruction = _require_str(row, "instruction")
            inp = row.get("input")
            if inp is not None and not isinstance(inp, str):
                raise RowError(f"'input' is {type(inp).__name__}, expected a string")
            output = _require_str(row, "output" if "output" in row else "response")
            user = instruction + (f"\n\n{inp}" if inp and inp.strip() else "")
            if chat_template:
                prompt: Any = [{"role": "user", "content": user}]
                completion: Any = [{"role": "assistant", "content": output}]
            else:
                body = f"### Instruction:\n{instruction}\n\n" + (f"### Input:\n{inp}\n\n" if inp and inp.strip() else "")
                prompt, completion = ALPACA_PROMPT + body + "### Response:\n", output
        elif fmt == "prompt_output":
            p, o = _require_str(row, "prompt"), _require_str(row, "output")
            if chat_template:
                prompt, completion = [{"role": "user", "content": p}], [{"role": "assistant", "content": o}]
            else:
                prompt, completion = p, o
        else:
            prompt, completion = _conv_or_str(row, "prompt"), _conv_or_str(row, "completion")
            if isinstance(prompt, list) != isinstance(completion, list):
                raise RowError("'prompt' and 'completion' mix a string and a message list")
        conv = isinstance(prompt, list)
        roles = tuple(str(m["role"]) for m in prompt + completion) if conv else ()
        return Example(
            "pc",
            conv,
            prompt=prompt,
            completion=completion,
            responses=_target_texts(completion),
            canonical=normalise(_field_text(prompt) + "\n" + _field_text(completion)),
            roles=roles,
        )
    if fmt == "preference":
        chosen, rejected = _conv_or_str(row, "chosen"), _conv_or_str(row, "rejected")
        if isinstance(chosen, list) != isinstance(rejected, list):
            raise RowError("'chosen' and 'rejected' mix a string and a message list")
        prompt = _conv_or_str(row, "prompt") if "prompt" in row else None
        if prompt is None or isinstance(prompt, list) != isinstance(chosen, list):
            # TRL's maybe_extract_prompt: the prompt is the common prefix of chosen and rejected.
            k = _common_prefix(chosen, rejected)
            prompt, chosen, rejected = chosen[:k], chosen[k:], rejected[k:]
        conv = isinstance(chosen, list)
        roles = tuple(str(m["role"]) for m in (prompt or []) + chosen) if conv else ()
        return Example(
            "pref",
            conv,
            prompt=prompt,
            chosen=chosen,
            rejected=rejected,
            responses=_target_texts(chosen) + _target_texts(rejected),
            canonical=normalise(_field_text(prompt) + "\n" + _field_text(chosen) + "\n" + _field_text(rejected)),
            roles=roles,
        )
    if fmt == "prompt_only":
        prompt = _conv_or_str(row, "prompt")
        conv = isinstance(prompt, list)
        return Example(
            "prompt",
            conv,
            prompt=prompt,
            canonical=normalise(_field_text(prompt)),
            roles=tuple(str(m["role"]) for m in prompt) if conv else (),
        )
    raise RowError(f"no known format (looked for {', '.join(FORMAT_COLUMNS.values())})")


def pair_text(example: Example) -> tuple[str, str] | None:
    """Normalised (chosen, rejected) of a preference example, for the identical-pair check."""
    if example.kind != "pref":
        return None
    return normalise(_field_text(example.chosen)), normalise(_field_text(example.rejected))
