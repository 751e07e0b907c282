"""Deterministic batched generation and general-text perplexity (torch, imported lazily).

Generation is greedy (``do_sample=False``, one beam), so two runs of ``tuneterm eval`` on the same
models print the same numbers (greedy decoding, 256 new tokens by default). Prompts are rendered
the way the model was trained: a conversation goes through the tokenizer's chat template (with the
generation prompt) when it has one; a plain prompt is fed as is. Batches are built from prompts
sorted by length and padded on the left, so the generated tokens of every row start at the same
position; prompts longer than the context minus ``max_new_tokens`` keep their end.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Generation:
    """One generated answer.

    Attributes:
        text: decoded completion (special tokens removed; up to, not including, EOS).
        n_tokens: tokens generated before EOS (or until the limit).
        hit_max_tokens: stopped by ``max_new_tokens`` without emitting EOS.
    """

    text: str
    n_tokens: int
    hit_max_tokens: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"text": self.text, "n_tokens": self.n_tokens, "hit_max_tokens": self.hit_max_tokens}


@dataclass(frozen=True, slots=True)
class Perplexity:
    """Perplexity over a set of passages: ``exp(nll / tokens)`` (``None`` when nothing scored)."""

    nll: float
    tokens: int

    @property
    def value(self) -> float | None:
        """The perplexity, or ``None`` when no token was scored; ``inf`` on overflow."""
        if self.tokens == 0:
            return None
        mean = self.nll / self.tokens
        return math.exp(mean) if mean < 700 else math.inf

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        v = self.value
        return {"perplexity": None if v is None or not math.isfinite(v) else round(v, 4),
                "nll": round(self.nll, 4), "tokens": self.tokens}


def render_prompt(tokenizer: Any, prompt: str, messages: Sequence[Mapping[str, str]] | None) -> tuple[list[int], str]:
    """Token ids of the model input for one prompt, and whether the chat template was used.

    Returns:
        ``(ids, "chat"|"plain")``.
    """
    if messages is not None and getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template([dict(m) for m in messages], tokenize=False, add_generation_prompt=True)
        return list(tokenizer(text, add_special_tokens=False)["input_ids"]), "chat"
    return list(tokenizer(prompt)["input_ids"]), "plain"


def _eos_ids(model: Any, tokenizer: Any) -> list[int]:
    ids: set[int] = set()
    cfg_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(cfg_eos, int):
        ids.add(cfg_eos)
    elif isinstance(cfg_eos, (list, tuple)):
        ids.update(int(i) for i in cfg_eos)
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return sorted(ids)


def _context_length(model: Any, tokenizer: Any) -> int:
    cfg = getattr(model, "config", None)
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        v = getattr(cfg, key, None)
        if isinstance(v, int) and v > 0:
            return v
    tml = getattr(tokenizer, "model_max_length", None)
    return tml if isinstance(tml, int) and 0 < tml < 1_000_000 else 2048


def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[tuple[str, Sequence[Mapping[str, str]] | None]],
    *,
    max_new_tokens: int,
    batch_size: int,
    device: str,
) -> tuple[list[Generation], str]:
    """Greedy-generate an answer for every ``(prompt, messages)`` pair, in the given order.

    Args:
        model: a causal LM (or PeftModel) already on ``device``, in eval mode.
        tokenizer: its tokenizer.
        prompts: plain prompt text and, for conversations, the messages for the chat template.
        max_new_tokens: generation limit per answer.
        batch_size: prompts per ``generate`` call.
        device: ``cpu`` or ``cuda[:n]``.

    Returns:
        ``(generations, style)`` where style says how prompts were rendered (``chat``, ``plain``
        or ``mixed``).
    """
    import torch
    from transformers import GenerationConfig

    eos = _eos_ids(model, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos[0] if eos else 0)
    limit = max(8, _context_length(model, tokenizer) - max_new_tokens)
    encoded: list[list[int]] = []
    styles: set[str] = set()
    for text, messages in prompts:
        ids, style = render_prompt(tokenizer, text, messages)
        styles.add(style)
        encoded.append(ids[-limit:] if len(ids) > limit else ids)
    gen_cfg = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=False,
        num_beams=1,
        pad_token_id=pad,
        eos_token_id=eos or None,
        bos_token_id=getattr(tokenizer, "bos_token_id", None),
    )
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    results: dict[int, Generation] = {}
    eos_set = set(eos)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            width = max(1, max(len(encoded[i]) for i in idx))
            input_ids = torch.full((len(idx), width), pad, dtype=torch.long)
            attention = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):
                ids = encoded[i]
                if ids:
                    input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
                    attention[row, width - len(ids) :] = 1
            out = model.generate(
                input_ids=input_ids.to(device),
                attention_mask=attention.to(device),
                generation_config=gen_cfg,
            )
            new = out[:, width:].tolist()
            for row, i in enumerate(idx):
                toks = new[row]
                stop = next((k for k, t in enumerate(toks) if t in eos_set), None)
                kept = toks if stop is None else toks[:stop]
                hit = stop is None and len(toks) >= max_new_tokens
                text = tokenizer.decode(kept, skip_special_tokens=True)
                results[i] = Generation(text=text.strip(), n_tokens=len(kept), hit_max_tokens=hit)
    style = styles.pop() if len(styles) == 1 else ("mixed" if styles else "plain")
    return [results[i] for i in range(len(encoded))], style


def perplexity(model: Any, tokenizer: Any, passages: Sequence[str], *, device: str, max_tokens: int = 1024) -> Perplexity:
    """Token-level perplexity of ``model`` over ``passages`` (each scored on its own).

    Sums the next-token negative log-likelihood over every passage (truncated to ``max_tokens``)
    and divides by the number of predicted tokens. Non-finite losses (a collapsed model in fp16)
    count as infinite perplexity.
    """
    import torch

    nll = 0.0
    tokens = 0
    limit = min(max_tokens, _context_length(model, tokenizer))
    with torch.inference_mode():
        for text in passages:
            ids = list(tokenizer(text)["input_ids"])[:limit]
            if len(ids) < 2:
                continue
            t = torch.tensor([ids], dtype=torch.long, device=device)
            logits = model(input_ids=t).logits.float()
            loss = torch.nn.functional.cross_entropy(logits[0, :-1], t[0, 1:], reduction="sum").item()
            nll += loss if math.isfinite(loss) else math.inf
            tokens += len(ids) - 1
    return Perplexity(nll=nll, tokens=tokens)
