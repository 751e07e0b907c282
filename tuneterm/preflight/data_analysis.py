"""Stream a dataset once and collect everything the data rules look at: a
:class:`~tuneterm.engine.data_subject.DataAnalysis`.

One pass over the rows (:func:`~tuneterm.preflight.data_load.iter_rows`): each row's format is
detected and its types validated (cheap, every row), exact-duplicate digests, empty responses and
identical preference pairs are recorded (cheap, every row), and rows are rendered with the model's
tokenizer the way TRL trains them (the expensive part) in batches of :data:`BATCH` rows, or on a
seeded reservoir sample of ``sample`` rows. Row objects are dropped after their batch, so memory is
bounded by the per-row numbers kept (a few ints each) rather than by the text.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np

from tuneterm.engine.data_subject import DataAnalysis, RowRef, TokenizerFacts
from tuneterm.errors import InputError, NoMetricsError
from tuneterm.preflight.data_dedup import exact_key, minhash_signatures, near_duplicate_pairs
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
from tuneterm.preflight.data_render import Rendered, Renderer

BATCH = 512
FORMAT_PROBE_ROWS = 1000  # rows looked at to decide the dataset's format (majority)
TRL_DEFAULT_MAX_LENGTH = 1024  # SFTConfig/DPOConfig.max_length default in TRL 1.16
# Markers of a pre-rendered chat format inside plain text rows.
_TEXT_MARKERS = {
    "chatml": "<|im_start|>",
    "llama3": "<|start_header_id|>",
    "gemma": "<start_of_turn>",
    "phi3": "<|assistant|>",
}
_KEEP_LISTED = 50  # rows remembered per problem (evidence and the worst-examples table)
_T = TypeVar("_T")


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
    renderer_factory: Callable[[int | None], Renderer] | None,
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
    rows, fmt, kind = _open_rows(path, trainer)
    eff_len = max_length if max_length is not None else (None if kind == "grpo" else TRL_DEFAULT_MAX_LENGTH)
    an = DataAnalysis(
        source=path,
        format=fmt,
        trainer=kind,
        conversational=False,
        tokenizer=facts,
        max_length=eff_len,
        max_length_is_default=max_length is None,
        assistant_only_loss=assistant_only_loss,
        sampled=sample is not None,
    )
    sink = _RenderSink(an, renderer_factory(eff_len) if renderer_factory is not None else None)
    picker = _RowPicker(sink, sample, seed)
    tally = _RowTally(an, near_sample)
    chat = facts.has_template if facts is not None else False
    for row in rows:
        item = _example(an, row, fmt, chat)
        if item is not None:
            tally.add(*item)
            picker.add(*item)
    picker.finish()
    sink.finish()
    tally.finish()
    # Every near-duplicate candidate with its similarity: the duplicates rule applies its threshold.
    an.near_pairs = near_duplicate_pairs(an.near_signatures, 0.0)
    _add_notes(an, fmt, chat, sample)
    return an


def _open_rows(path: str, trainer: str | None) -> tuple[Iterator[DataRow], str, str]:
    """The rows of ``path`` (the probed ones first), the dataset's format (the majority of the
    first :data:`FORMAT_PROBE_ROWS` rows) and the trainer kind, checked against each other."""
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
    return itertools.chain(probe, rows_iter), fmt, kind


def _example(an: DataAnalysis, row: DataRow, fmt: str, chat: bool) -> tuple[RowRef, Example] | None:
    """Count ``row`` and return it as an :class:`Example` of the dataset's format, or ``None``
    (recorded as a schema problem) when it has another format or invalid fields."""
    an.rows += 1
    ref = RowRef(row.index, row.source, row.line)
    value = row.value
    if isinstance(value, dict):
        an.keysets[tuple(sorted(map(str, value.keys())))] += 1
    row_fmt = detect_row_format(value)
    an.format_counts[row_fmt or "unknown"] += 1
    if row_fmt != fmt:
        why = (f"'{row_fmt}' row in a '{fmt}' dataset" if row_fmt else
               ("record is not an object" if not isinstance(value, dict) else
                f"no known format (columns: {', '.join(sorted(map(str, value)))[:80]})"))
        an.n_schema_problems += 1
        _keep(an.schema_problems, (ref, why))
        return None
    try:
        ex = to_example(value, fmt, chat_template=chat)
    except RowError as exc:
        an.n_schema_problems += 1
        _keep(an.schema_problems, (ref, str(exc)))
        return None
    return ref, ex


def _keep(listed: list[_T], item: _T) -> None:
    """Remember ``item`` among the first :data:`_KEEP_LISTED` of its kind."""
    if len(listed) < _KEEP_LISTED:
        listed.append(item)
class _RowTally:
    """The cheap per-row checks, on every row: roles, exact and near duplicates, empty responses,
    identical preference pairs, pre-rendered chat text."""

    def __init__(self, an: DataAnalysis, near_sample: int) -> None:
        self.an = an
        self.near_sample = near_sample
        self.seen: dict[bytes, RowRef] = {}
        self.near_texts: list[str] = []
        self.conversational = Counter[bool]()

    def add(self, ref: RowRef, ex: Example) -> None:
        an = self.an
        self.conversational[ex.conversational] += 1
        for role in ex.roles:
            an.roles[role] += 1
        self._duplicates(ref, ex)
        empty_why = _empty_response(ex)
        if empty_why:
            an.n_empty_responses += 1
            _keep(an.empty_responses, (ref, empty_why))
        pair = pair_text(ex)
        if pair is not None:
            an.n_pairs += 1
            if pair[0] == pair[1]:
                an.n_identical_pairs += 1
                _keep(an.identical_pairs, ref)
        if ex.kind == "lm" and not ex.conversational and ex.text:
            for fam, marker in _TEXT_MARKERS.items():
                if marker in ex.text:
                    an.preformatted[fam] += 1

    def _duplicates(self, ref: RowRef, ex: Example) -> None:
        an = self.an
        key = exact_key(ex.canonical)
        first = self.seen.get(key)
        if first is None:
            self.seen[key] = ref
        else:
            an.n_exact_dups += 1
            _keep(an.exact_dups, (ref, first))
        if len(self.near_texts) < self.near_sample:
            self.near_texts.append(ex.canonical)
            an.near_refs.append(ref)
            an.near_exact_keys.append(key)

    def finish(self) -> None:
        """The dataset's majority conversational flag and the near-duplicate signatures."""
        an = self.an
        an.conversational = self.conversational.most_common(1)[0][0] if self.conversational else False
        positions, sigs = minhash_signatures(self.near_texts)
        an.near_refs = [an.near_refs[i] for i in positions]
        an.near_exact_keys = [an.near_exact_keys[i] for i in positions]
        an.near_signatures = sigs


def _empty_response(ex: Example) -> str | None:
    """Why ``ex`` has nothing to train on (an empty prompt, no assistant turn, a blank response),
    or ``None``."""
    if ex.kind == "prompt":
        return "empty prompt" if not ex.canonical.strip() else None
    if ex.kind == "lm" and ex.conversational and not ex.responses:
        return "no assistant turn"
    if any(not t.strip() for t in ex.responses):
        return "empty text" if ex.kind == "lm" and not ex.conversational else "empty or whitespace response"
    return None


class _RowPicker:
    """Which rows are rendered: every row in batches of :data:`BATCH`, or a seeded reservoir
    sample of ``sample`` rows rendered in row order at the end."""

    def __init__(self, sink: _RenderSink, sample: int | None, seed: int) -> None:
        self.sink = sink
        self.sample = sample
        self.rng = random.Random(seed)
        self.pending: list[tuple[RowRef, Example]] = []
        self.seen = 0

    def add(self, ref: RowRef, ex: Example) -> None:
        if self.sample is None:
            self.pending.append((ref, ex))
            if len(self.pending) >= BATCH:
                self.sink.render(self.pending)
                self.pending = []
            return
        self.seen += 1
        if len(self.pending) < self.sample:
            self.pending.append((ref, ex))
        else:
            j = self.rng.randrange(self.seen)
            if j < self.sample:
                self.pending[j] = (ref, ex)

    def finish(self) -> None:
        if self.sample is None:
            if self.pending:
                self.sink.render(self.pending)
            return
        self.pending.sort(key=lambda it: it[0].index)
        for start in range(0, len(self.pending), BATCH):
            self.sink.render(self.pending[start : start + BATCH])


_RENDER_COLUMNS = ("len", "kept", "train", "prompt", "trunc", "last", "bos")


class _RenderSink:
    """Renders rows with the model's tokenizer the way TRL trains them and keeps a few numbers per
    row (the text is dropped after its batch); without a renderer (no ``--model``) it keeps none."""

    def __init__(self, an: DataAnalysis, renderer: Renderer | None) -> None:
        self.an = an
        self.renderer = renderer
        self.columns: dict[str, list[Any]] = {k: [] for k in _RENDER_COLUMNS}

    def render(self, batch: list[tuple[RowRef, Example]]) -> None:
        if self.renderer is None:
            return
        # Rows of one batch may differ in kind/conversational (mixed schema): render per group.
        groups: dict[tuple[str, bool], list[tuple[RowRef, Example]]] = {}
        for item in batch:
            groups.setdefault((item[1].kind, item[1].conversational), []).append(item)
        for items in groups.values():
            outs: list[Rendered] = self.renderer.render([e for _, e in items])
            for (ref, ex), r in zip(items, outs, strict=True):
                self._record(ref, ex, r)

    def _record(self, ref: RowRef, ex: Example, r: Rendered) -> None:
        an = self.an
        an.refs.append(ref)
        if r.error:
            an.n_render_errors += 1
            _keep(an.render_errors, (ref, r.error))
            vals: tuple[Any, ...] = (-1, 0, 0, 0, False, -1, False)
        else:
            vals = (r.length, r.kept, r.trainable, r.prompt_tokens, r.truncated,
                    -1 if r.last_target is None else r.last_target, r.double_bos)
            item = (r.length, -ref.index, ref, _preview(ex))
            if len(an.longest) < 5:
                heapq.heappush(an.longest, item)
            elif item[:2] > an.longest[0][:2]:
                heapq.heapreplace(an.longest, item)
        for key, v in zip(_RENDER_COLUMNS, vals, strict=True):
            self.columns[key].append(v)

    def finish(self) -> None:
        """The per-row numbers as arrays aligned with ``an.refs``; the longest rows, longest first."""
        an, c = self.an, self.columns
        an.lengths = np.asarray(c["len"], dtype=np.int64)
        an.kept = np.asarray(c["kept"], dtype=np.int64)
        an.trainable = np.asarray(c["train"], dtype=np.int64)
        an.prompt_tokens = np.asarray(c["prompt"], dtype=np.int64)
        an.truncated = np.asarray(c["trunc"], dtype=bool)
        an.last_target = np.asarray(c["last"], dtype=np.int64)
        an.double_bos = np.asarray(c["bos"], dtype=bool)
        an.longest.sort(reverse=True)


def _add_notes(an: DataAnalysis, fmt: str, chat: bool, sample: int | None) -> None:
    """What the reader should know about how the data was read."""
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
    if an.tokenizer is None:
        an.notes.append("no --model: token lengths, truncation, label masking, EOS and chat template not checked")
    elif not an.tokenizer.has_template and an.conversational:
        an.notes.append("lengths measured with a plain 'role: content' layout: the tokenizer has no chat template")
