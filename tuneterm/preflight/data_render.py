"""Render examples the way TRL 1.16 trains them, with the model's own tokenizer and chat template.

This mirrors ``SFTTrainer._prepare_dataset`` and ``DPOTrainer._prepare_dataset`` (read from the
installed TRL 1.16 sources) without importing TRL:

* standard (non-conversational) text/completions get the tokenizer's EOS appended when they do not
  already end with it, and are tokenised with the tokenizer's special tokens (BOS);
* conversational fields go through ``tokenizer.apply_chat_template`` (which tokenises the rendered
  string with ``add_special_tokens=False``); prompts are rendered with ``add_generation_prompt=True``;
* the completion starts where the tokenised prompt and prompt+completion diverge
  (``common_prefix_length``); prompt-completion data trains on the completion only by default
  (``completion_only_loss=None`` -> True), ``assistant_only_loss`` additionally uses the template's
  ``{% generation %}`` mask;
* truncation keeps the start (``truncation_mode="keep_start"``) at ``max_length``; SFT then drops
  examples left with no trainable label, DPO drops examples whose prompt alone fills ``max_length``.

The tokenizer is loaded with ``AutoTokenizer.from_pretrained`` (no weights, ``trust_remote_code``
off unless asked). Everything heavy is imported inside functions.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneterm.engine.data_subject import FAMILIES, TokenizerFacts
from tuneterm.errors import InputError
from tuneterm.preflight.data_formats import Example

#: Model types (config.json ``model_type``) and the template family their instruct models use.
MODEL_TYPE_FAMILY: dict[str, str] = {
    "qwen2": "chatml",
    "qwen2_moe": "chatml",
    "qwen3": "chatml",
    "qwen3_moe": "chatml",
    "gemma": "gemma",
    "gemma2": "gemma",
    "gemma3": "gemma",
    "gemma3_text": "gemma",
    "phi3": "phi3",
    "mistral": "mistral",
    "mixtral": "mistral",
}
# Special-looking markers inside a template's string literals: ``<|...|>`` and ``<..._of_turn>``.
_MARKER = re.compile(r"<\|[A-Za-z0-9_.:-]{1,40}\|>|<(?:start|end)_of_turn>")
_GENERATION = re.compile(r"\{%-?\s*generation\s*-?%\}")

# Used only to measure lengths when a conversational dataset meets a tokenizer without a template
# (TRL itself would stop with "tokenizer.chat_template is not set"): roles and contents, one per line.
FALLBACK_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] + ': ' + (message['content'] if message['content'] is string "
    "else '') + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}"
)


def has_generation_markers(template: str | None) -> bool:
    """True when a chat template defines ``{% generation %}`` blocks (assistant-only loss masks)."""
    return bool(template) and _GENERATION.search(template) is not None


def load_tokenizer(model: str, *, trust_remote_code: bool = False) -> Any:
    """Load the tokenizer of ``model`` (a local directory or a hub id), never the weights.

    A hub id is first looked up in the local cache; the network is tried only when the Hub answers
    (see :func:`~tuneterm.preflight.data_load.hub_offline_reason`), so an offline machine gets one
    clear line instead of a minute of retries.

    Raises:
        InputError: no tokenizer at that path/id, or the Hub is unreachable and it is not cached.
    """
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "10")
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "10")
    try:
        import transformers  # heavy, lazy by design
    except ImportError:
        raise InputError("checking a dataset needs transformers (pip install 'tuneterm[train]')") from None
    transformers.logging.set_verbosity_error()
    local = Path(model).expanduser()
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    try:
        if local.exists():
            if not local.is_dir():
                raise InputError(f"--model {model}: not a directory (give a model directory or a hub id)")
            return transformers.AutoTokenizer.from_pretrained(str(local), **kwargs)
        try:
            return transformers.AutoTokenizer.from_pretrained(model, local_files_only=True, **kwargs)
        except (OSError, ValueError):
            pass
        from tuneterm.preflight.data_load import hub_offline_reason

        reason = hub_offline_reason()
        if reason is not None:
            raise InputError(
                f"--model {model}: no such local directory, not in the Hugging Face cache, and the Hub is not "
                f"available ({reason})"
            )
        return transformers.AutoTokenizer.from_pretrained(model, **kwargs)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - transformers raises OSError/ValueError/KeyError/...; one line
        msg = " ".join(str(exc).split())[:240]
        raise InputError(f"--model {model}: cannot load a tokenizer ({type(exc).__name__}: {msg})") from None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _ids(value: Any) -> set[int]:
    if isinstance(value, int):
        return {value}
    if isinstance(value, list):
        return {v for v in value if isinstance(v, int)}
    return set()


def tokenizer_facts(tok: Any, model: str) -> TokenizerFacts:
    """Collect :class:`TokenizerFacts` from a loaded tokenizer (and config.json beside it, if local)."""
    vocab = tok.get_vocab()
    template = tok.chat_template if isinstance(tok.chat_template, str) else None
    if isinstance(tok.chat_template, dict):
        template = tok.chat_template.get("default") or next(iter(tok.chat_template.values()), None)

    def single(token: str) -> bool:
        return token in vocab

    vocab_families = tuple(
        fam for fam, (markers, _) in FAMILIES.items() if fam != "mistral" and all(single(m) for m in markers)
    )
    template_family: str | None = None
    split: list[str] = []
    if template:
        for fam, (markers, _) in FAMILIES.items():
            if all(m in template for m in markers):
                template_family = fam
                break
        else:
            template_family = "custom"
        for m in sorted(set(_MARKER.findall(template))):
            if not single(m):
                split.append(m)
    config: dict[str, Any] = {}
    gen_config: dict[str, Any] = {}
    local = Path(model).expanduser()
    if local.is_dir():
        config = _read_json(local / "config.json")
        gen_config = _read_json(local / "generation_config.json")
    model_type = config.get("model_type") if isinstance(config.get("model_type"), str) else None
    config_family = MODEL_TYPE_FAMILY.get(model_type or "")
    if model_type == "llama" and "llama3" in vocab_families:
        config_family = "llama3"
    eos_id = tok.eos_token_id
    stop = _ids(eos_id) | _ids(config.get("eos_token_id")) | _ids(gen_config.get("eos_token_id"))
    eot = FAMILIES[template_family][1] if template_family in FAMILIES else None
    eot_id = vocab.get(eot) if eot else None
    pad_id = tok.pad_token_id
    return TokenizerFacts(
        name=model,
        eos_token=tok.eos_token,
        eos_id=eos_id,
        pad_token=tok.pad_token,
        pad_id=pad_id,
        bos_token=tok.bos_token,
        bos_id=tok.bos_token_id,
        pad_is_eos=pad_id is None or (eos_id is not None and pad_id == eos_id),
        has_template=template is not None,
        template_family=template_family,
        vocab_families=vocab_families,
        model_type=model_type,
        config_family=config_family,
        split_markers=tuple(split),
        stop_ids=frozenset(stop),
        end_of_turn=eot,
        end_of_turn_id=eot_id,
        generation_markers=has_generation_markers(template),
        vocab_size=len(tok),
        pad_candidate=next(
            (t for t in ("<|finetune_right_pad_id|>", "<|fim_pad|>", "<pad>", "[PAD]", "<unk>")
             if t in vocab and vocab[t] != eos_id),
            None,
        ),
    )


@dataclass(frozen=True, slots=True)
class Rendered:
    """How TRL would see one example after tokenisation, masking and truncation.

    Attributes:
        length: tokens of the longest sequence before truncation (DPO: prompt+chosen or +rejected).
        kept: tokens TRL keeps after truncation, summed over the example's sequences.
        trainable: label positions that are not -100 after truncation (0: fully masked).
        truncated: some sequence is longer than ``max_length``.
        prompt_tokens: tokens of the prompt part (0 for language modelling).
        last_target: id of the last trainable non-whitespace token before truncation (``None`` if
            nothing is trainable or the example has no target).
        double_bos: the sequence starts with two BOS tokens.
        error: why the example could not be rendered (template raised), else ``None``.
    """

    length: int = 0
    kept: int = 0
    trainable: int = 0
    truncated: bool = False
    prompt_tokens: int = 0
    last_target: int | None = None
    double_bos: bool = False
    error: str | None = None


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    """Leading tokens two sequences share (TRL's ``common_prefix_length``)."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


@dataclass
class Renderer:
    """Renders batches of :class:`Example` with one tokenizer and TRL's options.

    Args:
        tok: a loaded (fast) tokenizer.
        facts: its :class:`TokenizerFacts`.
        max_length: TRL ``max_length`` (``None``: no truncation).
        assistant_only_loss: TRL ``assistant_only_loss`` (conversational data only).
        completion_only_loss: TRL ``completion_only_loss`` (``None``: True for prompt-completion).
    """

    tok: Any
    facts: TokenizerFacts
    max_length: int | None
    assistant_only_loss: bool = False
    completion_only_loss: bool | None = None
    chat_template: str | None = None  # override (assistant-only training template / fallback)
    _ws: dict[int, bool] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.facts.has_template:
            self.chat_template = FALLBACK_TEMPLATE
        elif self.assistant_only_loss and not self.facts.generation_markers:
            # TRL swaps in its training template for known families; unknown ones keep an all-zero mask.
            try:
                from trl.chat_template_utils import get_training_chat_template

                self.chat_template = get_training_chat_template(self.tok)
            except Exception:  # noqa: BLE001 - unknown family: TRL raises; the mask stays empty
                self.chat_template = None

    # -- helpers -------------------------------------------------------------------------------
    def _is_ws(self, token_id: int) -> bool:
        hit = self._ws.get(token_id)
        if hit is None:
            hit = self.tok.decode([token_id]).strip() == ""
            self._ws[token_id] = hit
        return hit

    def _last_target(self, ids: Sequence[int], mask: Sequence[int]) -> int | None:
        for i in range(len(ids) - 1, -1, -1):
            if mask[i] and not self._is_ws(ids[i]):
                return ids[i]
        return None

    def _double_bos(self, ids: Sequence[int]) -> bool:
        b = self.facts.bos_id
        return b is not None and len(ids) >= 2 and ids[0] == b and ids[1] == b

    def _text_ids(self, texts: list[str]) -> list[list[int]]:
        return list(self.tok(texts, add_special_tokens=True)["input_ids"])

    def _chat(self, convs: list[list[dict[str, Any]]], *, gen_prompt: bool = False, masks: bool = False):
        """Batched apply_chat_template; returns (ids, masks|None, errors) with per-row fallback."""
        kwargs: dict[str, Any] = {"tokenize": True, "return_dict": True, "chat_template": self.chat_template}
        if gen_prompt:
            kwargs["add_generation_prompt"] = True
        if masks:
            kwargs["return_assistant_tokens_mask"] = True
        errors: list[str | None] = [None] * len(convs)
        try:
            out = self.tok.apply_chat_template(convs, **kwargs)
            return list(out["input_ids"]), (list(out["assistant_masks"]) if masks else None), errors
        except Exception:  # noqa: BLE001 - find the rows the template refuses, render the rest
            ids: list[list[int]] = []
            ms: list[list[int]] = []
            for i, conv in enumerate(convs):
                try:
                    out = self.tok.apply_chat_template([conv], **kwargs)
                    ids.append(list(out["input_ids"][0]))
                    ms.append(list(out["assistant_masks"][0]) if masks else [])
                except Exception as exc:  # noqa: BLE001 - jinja raise_exception, TypeError, ...
                    errors[i] = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
                    ids.append([])
                    ms.append([])
            return ids, (ms if masks else None), errors

    def _truncate(self, n: int) -> int:
        return n if self.max_length is None else min(n, self.max_length)

    # -- per kind ------------------------------------------------------------------------------
    def render(self, examples: list[Example]) -> list[Rendered]:
        """Render a batch of examples of the same ``kind`` and ``conversational`` flag."""
        if not examples:
            return []
        ex0 = examples[0]
        if ex0.kind == "lm":
            return self._render_lm(examples)
        if ex0.kind == "pc":
            return self._render_pc(examples)
        if ex0.kind == "pref":
            return self._render_pref(examples)
        return self._render_prompt(examples)

    def _finish(self, ids: list[int], mask: list[int], prompt_tokens: int = 0) -> Rendered:
        L = self.max_length
        trainable = sum(mask[:L] if L is not None else mask)
        return Rendered(
            length=len(ids),
            kept=self._truncate(len(ids)),
            trainable=trainable,
            truncated=L is not None and len(ids) > L,
            prompt_tokens=prompt_tokens,
            last_target=self._last_target(ids, mask),
            double_bos=self._double_bos(ids),
        )

    def _render_lm(self, examples: list[Example]) -> list[Rendered]:
        out: list[Rendered] = []
        if examples[0].conversational:
            aol = self.assistant_only_loss
            ids, masks, errs = self._chat([e.messages or [] for e in examples], masks=aol)
            for i, seq in enumerate(ids):
                if errs[i]:
                    out.append(Rendered(error=errs[i]))
                    continue
                mask = list(masks[i]) if aol and masks is not None else [1] * len(seq)
                out.append(self._finish(seq, mask))
            return out
        eos = self.facts.eos_token or ""
        texts = [(e.text or "") if (e.text or "").endswith(eos) else (e.text or "") + eos for e in examples]
        for seq in self._text_ids(texts):
            out.append(self._finish(seq, [1] * len(seq)))
        return out

    def _completion_only(self) -> bool:
        return True if self.completion_only_loss is None else self.completion_only_loss

    def _render_pc(self, examples: list[Example]) -> list[Rendered]:
        out: list[Rendered] = []
        if examples[0].conversational:
            aol = self.assistant_only_loss
            p_ids, _, p_err = self._chat([e.prompt for e in examples], gen_prompt=True)
            f_ids, f_masks, f_err = self._chat([e.prompt + e.completion for e in examples], masks=aol)
        else:
            eos = self.facts.eos_token or ""
            p_ids = self._text_ids([e.prompt for e in examples])
            fulls = [e.prompt + (e.completion if e.completion.endswith(eos) else e.completion + eos) for e in examples]
            f_ids = self._text_ids(fulls)
            f_masks, p_err, f_err, aol = None, [None] * len(examples), [None] * len(examples), False
        for i in range(len(examples)):
            err = p_err[i] or f_err[i]
            if err:
                out.append(Rendered(error=err))
                continue
            full = f_ids[i]
            plen = common_prefix_length(p_ids[i], full)
            mask = [0] * plen + [1] * (len(full) - plen) if self._completion_only() else [1] * len(full)
            if aol and f_masks is not None:
                mask = [a & b for a, b in zip(mask, f_masks[i], strict=False)]
            out.append(self._finish(full, mask, plen))
        return out

    def _render_pref(self, examples: list[Example]) -> list[Rendered]:
        out: list[Rendered] = []
        if examples[0].conversational:
            p_ids, _, p_err = self._chat([e.prompt or [] for e in examples], gen_prompt=True)
            c_ids, _, c_err = self._chat([(e.prompt or []) + e.chosen for e in examples])
            r_ids, _, r_err = self._chat([(e.prompt or []) + e.rejected for e in examples])
        else:
            eos = self.facts.eos_token or ""

            def with_eos(s: str) -> str:
                return s if s.endswith(eos) else s + eos

            p_ids = self._text_ids([e.prompt or "" for e in examples])
            c_ids = self._text_ids([(e.prompt or "") + with_eos(e.chosen) for e in examples])
            r_ids = self._text_ids([(e.prompt or "") + with_eos(e.rejected) for e in examples])
            p_err = c_err = r_err = [None] * len(examples)
        L = self.max_length
        for i in range(len(examples)):
            err = p_err[i] or c_err[i] or r_err[i]
            if err:
                out.append(Rendered(error=err))
                continue
            plen = min(common_prefix_length(p_ids[i], c_ids[i]), common_prefix_length(p_ids[i], r_ids[i]))
            seqs = (c_ids[i], r_ids[i])
            trainable = 0
            if L is None or plen < L:  # DPO drops rows whose prompt alone fills max_length
                trainable = sum(max(0, self._truncate(len(s)) - plen) for s in seqs)
            lasts = [self._last_target(s, [0] * plen + [1] * (len(s) - plen)) for s in seqs]
            stop = self.facts.stop_ids
            last = next((t for t in lasts if t is None or t not in stop), lasts[0])
            out.append(
                Rendered(
                    length=max(len(s) for s in seqs),
                    kept=sum(self._truncate(len(s)) for s in seqs),
                    trainable=trainable,
                    truncated=L is not None and any(len(s) > L for s in seqs),
                    prompt_tokens=plen,
                    last_target=last,
                    double_bos=any(self._double_bos(s) for s in seqs),
                )
            )
        return out

    def _render_prompt(self, examples: list[Example]) -> list[Rendered]:
        if examples[0].conversational:
            ids, _, errs = self._chat([e.prompt for e in examples], gen_prompt=True)
        else:
            ids, errs = self._text_ids([e.prompt for e in examples]), [None] * len(examples)
        L = self.max_length
        return [
            Rendered(error=errs[i])
            if errs[i]
            else Rendered(
                length=len(seq),
                kept=len(seq),  # GRPO does not truncate prompts
                trainable=0,
                truncated=L is not None and len(seq) > L,
                prompt_tokens=len(seq),
                double_bos=self._double_bos(seq),
            )
            for i, seq in enumerate(ids)
        ]
