"""Stream a dataset once and collect everything the data rules look at: :class:`DataAnalysis`.

One pass over the rows (:func:`~tuneterm.preflight.data_load.iter_rows`): each row's format is
detected and its types validated (cheap, every row), exact-duplicate digests, empty responses and
identical preference pairs are recorded (cheap, every row), and rows are rendered with the model's
tokenizer the way TRL trains them (the expensive part) in batches of :data:`BATCH` rows, or on a
seeded reservoir sample of ``sample`` rows. Row objects are dropped after their batch, so memory is
bounded by the per-row numbers kept (a few ints each) rather than by the text.
"""

from __future__ import annotations

import heapq
import random
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tuneterm.errors import InputError, NoMetricsError
from tuneterm.preflight.data_dedup import exact_key, minhash_signatures
from tuneterm.preflight.data_formats import (
    DEFAULT_TRAINER,
    FORMAT_COLUMNS,
    TRAINER_FORMATS,
    Example,
    RowError,
    detect_row_format,
    pair_text,
    to_example,
)
from tuneterm.preflight.data_load import DataRow, iter_rows
from tuneterm.preflight.data_templates import describe_rendering
from tuneterm.preflight.data_render import FAMILIES, Rendered, Renderer, TokenizerFacts

BATCH = 512
FORMAT_PROBE_ROWS = 1000  # rows looked at to decide the dataset's format (majority)
TRL_DEFAULT_MAX_LENGTH = 1024  # SFTConfig/DPOConfig.max_length default in TRL 1.16
STANDARD_ROLES = frozenset({"system", "user", "assistant", "tool", "developer", "function", "ipython"})
# Markers of a pre-rendered chat format inside plain text rows.
_TEXT_MARKERS = {
    "chatml": "<|im_start|>",
    "llama3": "<|start_header_id|>",
    "gemma": "<start_of_turn>",
    "phi3": "<|assistant|>",
}
_KEEP_LISTED = 50  # rows remembered per problem (evidence and the worst-examples table)


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


@dataclass
class DataAnalysis:
    """Everything the ``data`` rules read about one dataset (built by :func:`analyse`).

    Per-row numbers (``lengths``, ``trainable``, ...) are aligned with ``refs`` (the rendered rows:
    all rows, or the sample). Lists of problem rows keep the first :data:`_KEEP_LISTED` entries;
    the matching ``n_*`` counters hold the full counts.
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
    lengths: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    kept: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    trainable: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    prompt_tokens: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    truncated: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=bool))
    last_target: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    double_bos: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=bool))
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
    near_signatures: np.ndarray = field(default_factory=lambda: np.empty((0, 0), dtype=np.uint64))
    near_exact_keys: list[bytes] = field(default_factory=list)
    roles: Counter[str] = field(default_factory=Counter)
    preformatted: Counter[str] = field(default_factory=Counter)
    longest: list[tuple[int, int, RowRef, str]] = field(default_factory=list)  # (tokens, -index, ref, preview)
    notes: list[str] = field(default_factory=list)

    @property
    def rows_checked(self) -> int:
        """Rows rendered with the tokenizer (all rows, or the sample)."""
        return len(self.refs)

    def ok_mask(self) -> np.ndarray:
        """Rows that rendered (no template error)."""
        return self.lengths >= 0


def _preview(example: Example, limit: int = 160) -> str:
    if example.kind == "lm":
        text = example.text if example.text is not None else " | ".join(
            f"{m.get('role')}: {m.get('content')}" for m in example.messages or []
        )
    elif example.kind == "pref":
        text = f"{example.prompt!s} -> {example.chosen!s}"
    else:
        text = f"{example.prompt!s} -> {example.completion!s}" if example.kind == "pc" else str(example.prompt)
    text = " ".join(str(text).split())
    return text[:limit]


def _probe_format(rows: Sequence[DataRow], path: str) -> str:
    counts = Counter(f for f in (detect_row_format(r.value) for r in rows) if f is not None)
    if not counts:
        first = rows[0].value
        keys = ", ".join(sorted(map(str, first.keys())))[:120] if isinstance(first, dict) else type(first).__name__
        looked = "; ".join(f"{k} ({v})" for k, v in FORMAT_COLUMNS.items())
        raise InputError(f"{path}: no known dataset format (columns: {keys}); looked for {looked}")
    return counts.most_common(1)[0][0]


def analyse(
    path: str,
    *,
    renderer_factory: Any,
    facts: TokenizerFacts | None,
    trainer: str | None,
    max_length: int | None,
    sample: int | None,
    assistant_only_loss: bool = False,
    near_sample: int = 10000,
    seed: int = 0,
) -> DataAnalysis:
    """Read ``path`` once and build its :class:`DataAnalysis`.

    Args:
        path: dataset file, directory or hub id.
        renderer_factory: ``callable(max_length) -> Renderer`` (a loaded tokenizer bound in), or
            ``None`` to skip every token-level measurement (no ``--model``).
        facts: the tokenizer's facts (``None`` without a tokenizer).
        trainer: ``sft``/``dpo``/``grpo``, or ``None`` to infer from the format.
        max_length: TRL ``max_length``; ``None`` means TRL's default (1024 for SFT/DPO, no limit
            on GRPO prompts).
        sample: render only this many rows (seeded reservoir sample); ``None`` renders all.
        assistant_only_loss: mirror TRL's ``assistant_only_loss=True``.
        near_sample: rows kept for near-duplicate MinHash (the first ones).
        seed: reservoir-sampling seed.

    Raises:
        InputError: unreadable data, unknown format, trainer/format mismatch.
        NoMetricsError: no rows.
    """
    rows_iter: Iterator[DataRow] = iter_rows(path)
    probe: list[DataRow] = []
    for row in rows_iter:
        probe.append(row)
        if len(probe) >= FORMAT_PROBE_ROWS:
            break
    if not probe:  # pragma: no cover - iter_rows raises first
        raise NoMetricsError(f"{path}: no rows to check")
    fmt = _probe_format(probe, path)
    kind = trainer or DEFAULT_TRAINER.get(fmt, "sft")
    if kind not in TRAINER_FORMATS:
        raise InputError(f"--trainer {kind}: unknown trainer (sft, dpo, grpo)")
    if fmt not in TRAINER_FORMATS[kind]:
        wanted = ", ".join(sorted(TRAINER_FORMATS[kind]))
        raise InputError(f"{path}: --trainer {kind} cannot train on '{fmt}' data (it takes: {wanted})")
    default_len = max_length is None
    eff_len = max_length if max_length is not None else (None if kind == "grpo" else TRL_DEFAULT_MAX_LENGTH)
    renderer: Renderer | None = renderer_factory(eff_len) if renderer_factory is not None else None
    an = DataAnalysis(
        source=path,
        format=fmt,
        trainer=kind,
        conversational=False,
        tokenizer=facts,
        max_length=eff_len,
        max_length_is_default=default_len,
        assistant_only_loss=assistant_only_loss,
        sampled=sample is not None,
    )

    seen: dict[bytes, RowRef] = {}
    near_texts: list[str] = []
    reservoir: list[tuple[RowRef, Example]] = []
    pending: list[tuple[RowRef, Example]] = []
    rng = random.Random(seed)
    n_eligible = 0
    rendered: dict[str, list[Any]] = {k: [] for k in ("refs", "len", "kept", "train", "prompt", "trunc", "last", "bos")}
    conv_votes = Counter[bool]()

    def flush(batch: list[tuple[RowRef, Example]]) -> None:
        if renderer is None:
            return
        # Rows of one batch may differ in kind/conversational (mixed schema): render per group.
        groups: dict[tuple[str, bool], list[tuple[RowRef, Example]]] = {}
        for item in batch:
            groups.setdefault((item[1].kind, item[1].conversational), []).append(item)
        for items in groups.values():
            outs: list[Rendered] = renderer.render([e for _, e in items])
            for (ref, ex), r in zip(items, outs, strict=True):
                rendered["refs"].append(ref)
                if r.error:
                    an.n_render_errors += 1
                    if len(an.render_errors) < _KEEP_LISTED:
                        an.render_errors.append((ref, r.error))
                    vals = (-1, 0, 0, 0, False, -1, False)
                else:
                    vals = (r.length, r.kept, r.trainable, r.prompt_tokens, r.truncated,
                            -1 if r.last_target is None else r.last_target, r.double_bos)
                    item = (r.length, -ref.index, ref, _preview(ex))
                    if len(an.longest) < 5:
                        heapq.heappush(an.longest, item)
                    elif item[:2] > an.longest[0][:2]:
                        heapq.heapreplace(an.longest, item)
                for key, v in zip(("len", "kept", "train", "prompt", "trunc", "last", "bos"), vals, strict=True):
                    rendered[key].append(v)

    def rows_all() -> Iterator[DataRow]:
        yield from probe
        yield from rows_iter

    chat = facts.has_template if facts is not None else False
    for row in rows_all():
        an.rows += 1
        ref = RowRef(row.index, row.source, row.line)
        value = row.value
        if isinstance(value, dict):
            an.keysets[tuple(sorted(map(str, value.keys())))] += 1
        row_fmt = detect_row_format(value)
        an.format_counts[row_fmt or "unknown"] += 1
        if row_fmt != fmt:
            an.n_schema_problems += 1
            if len(an.schema_problems) < _KEEP_LISTED:
                why = (f"'{row_fmt}' row in a '{fmt}' dataset" if row_fmt else
                       ("record is not an object" if not isinstance(value, dict) else
                        f"no known format (columns: {', '.join(sorted(map(str, value)))[:80]})"))
                an.schema_problems.append((ref, why))
            continue
        try:
            ex = to_example(value, fmt, chat_template=chat)
        except RowError as exc:
            an.n_schema_problems += 1
            if len(an.schema_problems) < _KEEP_LISTED:
                an.schema_problems.append((ref, str(exc)))
            continue
        conv_votes[ex.conversational] += 1
        for role in ex.roles:
            an.roles[role] += 1
        # duplicates
        key = exact_key(ex.canonical)
        first = seen.get(key)
        if first is None:
            seen[key] = ref
        else:
            an.n_exact_dups += 1
            if len(an.exact_dups) < _KEEP_LISTED:
                an.exact_dups.append((ref, first))
        if len(near_texts) < near_sample:
            near_texts.append(ex.canonical)
            an.near_refs.append(ref)
            an.near_exact_keys.append(key)
        # empty responses / identical pairs
        if ex.kind == "prompt":
            empty_why = "empty prompt" if not ex.canonical.strip() else None
        elif ex.kind == "lm" and ex.conversational and not ex.responses:
            empty_why = "no assistant turn"
        else:
            blanks = [t for t in ex.responses if not t.strip()]
            empty_why = None
            if blanks:
                empty_why = "empty text" if ex.kind == "lm" and not ex.conversational else "empty or whitespace response"
        if empty_why:
            an.n_empty_responses += 1
            if len(an.empty_responses) < _KEEP_LISTED:
                an.empty_responses.append((ref, empty_why))
        pair = pair_text(ex)
        if pair is not None:
            an.n_pairs += 1
            if pair[0] == pair[1]:
                an.n_identical_pairs += 1
                if len(an.identical_pairs) < _KEEP_LISTED:
                    an.identical_pairs.append(ref)
        if ex.kind == "lm" and not ex.conversational and ex.text:
            for fam, marker in _TEXT_MARKERS.items():
                if marker in ex.text:
                    an.preformatted[fam] += 1
        # rendering: everything, or a reservoir sample
        if sample is None:
            pending.append((ref, ex))
            if len(pending) >= BATCH:
                flush(pending)
                pending = []
        else:
            n_eligible += 1
            if len(reservoir) < sample:
                reservoir.append((ref, ex))
            else:
                j = rng.randrange(n_eligible)
                if j < sample:
                    reservoir[j] = (ref, ex)
    if sample is not None:
        reservoir.sort(key=lambda it: it[0].index)
        for start in range(0, len(reservoir), BATCH):
            flush(reservoir[start : start + BATCH])
    elif pending:
        flush(pending)

    an.conversational = conv_votes.most_common(1)[0][0] if conv_votes else False
    an.refs = rendered["refs"]
    an.lengths = np.asarray(rendered["len"], dtype=np.int64)
    an.kept = np.asarray(rendered["kept"], dtype=np.int64)
    an.trainable = np.asarray(rendered["train"], dtype=np.int64)
    an.prompt_tokens = np.asarray(rendered["prompt"], dtype=np.int64)
    an.truncated = np.asarray(rendered["trunc"], dtype=bool)
    an.last_target = np.asarray(rendered["last"], dtype=np.int64)
    an.double_bos = np.asarray(rendered["bos"], dtype=bool)
    an.longest.sort(reverse=True)
    positions, sigs = minhash_signatures(near_texts)
    an.near_refs = [an.near_refs[i] for i in positions]
    an.near_exact_keys = [an.near_exact_keys[i] for i in positions]
    an.near_signatures = sigs
    if fmt in ("alpaca", "prompt_output"):
        target = "a user/assistant prompt-completion pair" if chat else "an Alpaca-style text prompt and completion"
        an.notes.append(
            f"TRL does not read '{fmt}' columns as is; tuneterm train renders them as {target} (with "
            "`trl` itself, convert the columns to prompt/completion or messages first)"
        )
        if fmt == "alpaca":
            an.notes.append(
                "template randomisation: a pipeline stage's data: {templates: random} renders each row with "
                "one of 4 prompt templates, picked per row by template_seed (see docs/commands-train.md)"
            )
    if fmt == "sharegpt":
        an.notes.append(f"template: {describe_rendering('sharegpt')} (tuneterm train)")
    if sample is not None and an.rows > sample:
        an.notes.append(f"token statistics from a random sample of {len(an.refs)} of {an.rows} rows (--sample)")
    if facts is None:
        an.notes.append("no --model: token lengths, truncation, label masking, EOS and chat template not checked")
    elif not facts.has_template and an.conversational:
        an.notes.append("lengths measured with a plain 'role: content' layout: the tokenizer has no chat template")
    return an


def family_markers_missing(facts: TokenizerFacts, family: str) -> bool:
    """True when ``family``'s special markers are not single tokens of this tokenizer."""
    return family not in facts.vocab_families and family in FAMILIES
