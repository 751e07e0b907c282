"""Render instruction, prompt/output and ShareGPT rows into what TRL reads, in the training process.

:func:`prepare` is applied by the runner to every split after loading: rows of a format TRL does
not read as is (:data:`tuneterm.preflight.data_templates.RENDERED_FORMATS`) become
``prompt``/``completion`` or ``messages`` rows with :func:`tuneterm.preflight.data_templates.to_trl_row`
(template randomisation included, per ``launch.json``'s ``data`` options); every other dataset is
returned untouched, so plain TRL configs train exactly as ``trl sft|dpo|grpo`` would.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tuneterm.preflight.data_formats import detect_row_format
from tuneterm.preflight.data_templates import RENDERED_FORMATS, resolve_templates, to_trl_row


def has_chat_template(model_path: str) -> bool:
    """Whether the tokenizer of ``model_path`` has a chat template (decides the fixed rendering)."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(model_path)
    except (OSError, ValueError):
        return False
    return bool(getattr(tok, "chat_template", None))


def prepare(data: Any, options: Mapping[str, Any] | None, model_path: str) -> Any:
    """Render every split of the ``DatasetDict`` ``data`` whose rows TRL would not read.

    Args:
        data: the loaded ``DatasetDict``.
        options: ``launch.json``'s ``data`` mapping (``templates``, ``template_seed``), or None.
        model_path: the resolved model (its tokenizer's chat template decides the fixed rendering).
    """
    opts = dict(options or {})
    templates = resolve_templates(opts.get("templates") or ())
    seed = int(opts.get("template_seed") or 0)
    chat: bool | None = None
    out = {}
    for split, ds in data.items():
        try:
            first = ds[0] if len(ds) else None
        except TypeError:  # streaming: rendered lazily is not supported; leave it to TRL
            out[split] = ds
            continue
        fmt = detect_row_format(first)
        if fmt not in RENDERED_FORMATS:
            out[split] = ds
            continue
        if chat is None:
            chat = has_chat_template(model_path)
        kw = {"templates": templates, "seed": seed, "chat": chat}
        out[split] = ds.map(
            lambda row, idx, fmt=fmt: to_trl_row(row, fmt, index=idx, **kw),
            with_indices=True,
            remove_columns=ds.column_names,
        )
    return type(data)(out)
