"""What the ``data`` rules read: :class:`DataAnalysis`, one dataset read and rendered.

The dataset check (:mod:`tuneterm.preflight.data`) streams a dataset once, renders every example
with the model's tokenizer the way TRL trains it, and collects per-row numbers and problem rows
into a :class:`DataAnalysis` (:func:`tuneterm.preflight.data_analysis.analyse`); the detectors in
:mod:`tuneterm.engine.detectors.data` only compare it with their rule's thresholds. The records live
here, below the pre-flight code, so that the engine can type its detectors without importing the
tokenizer or dataset machinery. Per-row numbers are numpy arrays; numpy is imported only when an
analysis is built (it is not a core dependency: the engine loads without it).

>>> RowRef(index=4, source="data.jsonl", line=5).where
'data.jsonl:5'
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

STANDARD_ROLES = frozenset({"system", "user", "assistant", "tool", "developer", "function", "ipython"})
"""Chat roles chat templates know; other role names reach the template unchanged."""

FAMILIES: dict[str, tuple[tuple[str, ...], str | None]] = {
    "chatml": (("<|im_start|>", "<|im_end|>"), "<|im_end|>"),
    "llama3": (("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"), "<|eot_id|>"),
    "gemma": (("<start_of_turn>", "<end_of_turn>"), "<end_of_turn>"),
    "phi3": (("<|user|>", "<|assistant|>", "<|end|>"), "<|end|>"),
    "mistral": (("[INST]", "[/INST]"), None),
}
"""Chat-template families: the special markers that identify them, and their end-of-turn token."""


def _int_array() -> np.ndarray:
    import numpy as np

    return np.empty(0, dtype=np.int64)


def _bool_array() -> np.ndarray:
    import numpy as np

    return np.empty(0, dtype=bool)


def _signature_array() -> np.ndarray:
    import numpy as np

    return np.empty((0, 0), dtype=np.uint64)


@dataclass(frozen=True, slots=True)
class RowRef:
    """Where a row lives: file, 0-based index, 1-based line (JSONL)."""

    index: int
    source: str
    line: int | None

    @property
    def where(self) -> str:
        """``file:line`` or ``file row N``."""
        return f"{self.source}:{self.line}" if self.line is not None else f"{self.source} row {self.index + 1}"

    def to_dict(self) -> dict[str, Any]:
        """``{"row": N, "line": L}`` (1-based row; line only when known)."""
        d: dict[str, Any] = {"row": self.index + 1}
        if self.line is not None:
            d["line"] = self.line
        return d


@dataclass(frozen=True, slots=True)
class TokenizerFacts:
    """What the checks need to know about the tokenizer and the model config (no weights).

    Attributes:
        name: the ``--model`` argument.
        eos_token / eos_id, pad_token / pad_id, bos_token / bos_id: special tokens (``None`` if unset).
        pad_is_eos: pad equals EOS, or no pad is set (TRL then pads with EOS).
        has_template: the tokenizer has a chat template.
        template_family: family whose markers the template uses (``chatml``, ``llama3``, ...), or
            ``custom``/``None``.
        vocab_families: families whose markers are single tokens of this vocabulary.
        model_type: ``model_type`` from the model's config.json, when the path has one.
        config_family: the family that ``model_type`` implies.
        split_markers: special markers the template emits that this vocabulary splits into pieces.
        stop_ids: token ids that end generation (EOS, the config/generation-config EOS ids).
        end_of_turn: the template's end-of-turn token, if its family has one.
        generation_markers: the template has ``{% generation %}`` blocks.
    """

    name: str
    eos_token: str | None
    eos_id: int | None
    pad_token: str | None
    pad_id: int | None
    bos_token: str | None
    bos_id: int | None
    pad_is_eos: bool
    has_template: bool
    template_family: str | None
    vocab_families: tuple[str, ...]
    model_type: str | None
    config_family: str | None
    split_markers: tuple[str, ...]
    stop_ids: frozenset[int]
    end_of_turn: str | None
    end_of_turn_id: int | None
    generation_markers: bool
    vocab_size: int
    pad_candidate: str | None = None  # a token of this vocabulary that could pad instead of EOS

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly summary for the report facts."""
        return {
            "name": self.name,
            "eos_token": self.eos_token,
            "pad_token": self.pad_token,
            "bos_token": self.bos_token,
            "chat_template": self.template_family if self.has_template else None,
            "model_type": self.model_type,
            "vocab_size": self.vocab_size,
        }


@dataclass
class DataAnalysis:
    """Everything the ``data`` rules read about one dataset (built by :func:`analyse`).

    Per-row numbers (``lengths``, ``trainable``, ...) are aligned with ``refs`` (the rendered rows:
    all rows, or the sample). Lists of problem rows keep the first entries (50); the matching
    ``n_*`` counters hold the full counts. ``near_pairs`` holds, for each of the first rows
    (``near_refs``) that has an earlier near-duplicate candidate (MinHash LSH), ``(later,
    earlier, estimated Jaccard similarity)`` with its most similar one; the duplicates rule keeps
    the pairs at or above its threshold.
    """

    source: str
    format: str
    trainer: str
    conversational: bool
    tokenizer: TokenizerFacts | None
    max_length: int | None
    max_length_is_default: bool
    assistant_only_loss: bool
    rows: int = 0
    sampled: bool = False
    refs: list[RowRef] = field(default_factory=list)
    lengths: np.ndarray = field(default_factory=_int_array)
    kept: np.ndarray = field(default_factory=_int_array)
    trainable: np.ndarray = field(default_factory=_int_array)
    prompt_tokens: np.ndarray = field(default_factory=_int_array)
    truncated: np.ndarray = field(default_factory=_bool_array)
    last_target: np.ndarray = field(default_factory=_int_array)
    double_bos: np.ndarray = field(default_factory=_bool_array)
    render_errors: list[tuple[RowRef, str]] = field(default_factory=list)
    n_render_errors: int = 0
    schema_problems: list[tuple[RowRef, str]] = field(default_factory=list)
    n_schema_problems: int = 0
    format_counts: Counter[str] = field(default_factory=Counter)
    keysets: Counter[tuple[str, ...]] = field(default_factory=Counter)
    empty_responses: list[tuple[RowRef, str]] = field(default_factory=list)
    n_empty_responses: int = 0
    identical_pairs: list[RowRef] = field(default_factory=list)
    n_identical_pairs: int = 0
    n_pairs: int = 0
    exact_dups: list[tuple[RowRef, RowRef]] = field(default_factory=list)
    n_exact_dups: int = 0
    near_refs: list[RowRef] = field(default_factory=list)
    near_signatures: np.ndarray = field(default_factory=_signature_array)
    near_exact_keys: list[bytes] = field(default_factory=list)
    near_pairs: list[tuple[int, int, float]] = field(default_factory=list)
    roles: Counter[str] = field(default_factory=Counter)
    preformatted: Counter[str] = field(default_factory=Counter)
    longest: list[tuple[int, int, RowRef, str]] = field(default_factory=list)  # (tokens, -index, ref, preview)
    notes: list[str] = field(default_factory=list)

    def ok_mask(self) -> np.ndarray:
        """Rows that rendered (no template error)."""
        return self.lengths >= 0
