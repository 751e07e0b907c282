"""Held-out evaluation examples: read a dataset, pick the split, never overlap the training data.

Accepted row formats (the common SFT shapes, seeds 002-004):

==============================  ===========================================  =================
row keys                        prompt given to the model                    reference
==============================  ===========================================  =================
``messages`` / ``conversations`` every turn before the last assistant turn     last assistant turn
(``role/content`` or ShareGPT    (chat template)
``from/value``)
``prompt`` + ``completion``     ``prompt`` as is (TRL's standard format; a   ``completion``
                                list of messages is conversational)
``instruction`` [+ ``input``]   one user turn (chat template when the model  ``output``
+ ``output`` (Alpaca)           has one, else the plain text)
``question`` + ``answer``       one user turn                                ``answer``
``prompt`` + ``response`` /     ``prompt`` as is                             the response
``output``
==============================  ===========================================  =================

Sources: a local ``.jsonl``/``.json``/``.csv``/``.parquet`` file, a directory holding
``<split>.<ext>`` files, a Hugging Face hub id (through ``datasets``, imported lazily), or a
tuneterm built-in dataset (``tuneterm:tiny-sft``).

Split selection (:func:`select_examples`): the requested split (default ``test``) when the source
has it; a local file whose name says it is held out (``test``, ``eval``, ``valid``, ``dev``,
``heldout``) is used whole; otherwise a fixed-seed shuffle holds out ``holdout`` (10%) of the rows.
When the run directory names its training data, every example whose normalised prompt occurs in it
is dropped, so a held-out score can never be a memorised one.
"""

from __future__ import annotations

import csv
import json
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneterm.errors import InputError
from tuneterm.textsafe import inert_line

DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
_HELDOUT_NAME = re.compile(r"(^|[^a-z])(test|eval|evaluation|valid|validation|dev|heldout|held_out)([^a-z]|$)")
_ROLE = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "model": "assistant",
         "bot": "assistant", "system": "system", "tool": "tool"}


@dataclass(frozen=True, slots=True)
class EvalExample:
    """One held-out example.

    Attributes:
        id: stable identifier (``<split>:<row index>``).
        prompt: the prompt as plain text (what is shown; fed as is when ``messages`` is ``None``).
        messages: the conversation up to the reference turn, for the chat template; ``None`` for
            plain-text prompts.
        reference: the expected answer.
    """

    id: str
    prompt: str
    reference: str
    messages: tuple[Mapping[str, str], ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        d: dict[str, Any] = {"id": self.id, "prompt": self.prompt, "reference": self.reference}
        if self.messages is not None:
            d["messages"] = [dict(m) for m in self.messages]
        return d


@dataclass(frozen=True, slots=True)
class Selection:
    """How the examples were chosen (reported so a person can trust the numbers).

    Attributes:
        source: the dataset as given.
        split: the split read (``None`` for a plain file used whole).
        how: ``split`` (the named split), ``file`` (a held-out file used whole) or ``holdout``
            (``holdout_fraction`` of the rows, shuffled with ``seed``).
        rows: usable rows in the split/file before selection.
        skipped_rows: rows in no known format (or with an empty reference).
        overlap_removed: examples dropped because their prompt is in the run's training data.
        n: examples used.
    """

    source: str
    split: str | None
    how: str
    rows: int
    skipped_rows: int
    overlap_removed: int
    n: int
    seed: int
    holdout_fraction: float | None = None
    training_data: str | None = None
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "source": self.source,
            "split": self.split,
            "how": self.how,
            "rows": self.rows,
            "skipped_rows": self.skipped_rows,
            "overlap_removed": self.overlap_removed,
            "n": self.n,
            "seed": self.seed,
            "holdout_fraction": self.holdout_fraction,
            "training_data": self.training_data,
            "notes": list(self.notes),
        }


def normalize_prompt(text: str) -> str:
    """Prompt key for overlap checks: lower case, whitespace collapsed.

    >>> normalize_prompt("  What is\\n2+2? ")
    'what is 2+2?'
    """
    return " ".join(text.lower().split())


def _messages(turns: Any) -> list[dict[str, str]] | None:
    if not isinstance(turns, list) or not turns:
        return None
    out: list[dict[str, str]] = []
    for t in turns:
        if not isinstance(t, Mapping):
            return None
        role = t.get("role", t.get("from"))
        content = t.get("content", t.get("value"))
        if not isinstance(role, str) or not isinstance(content, str):
            return None
        out.append({"role": _ROLE.get(role.lower(), role.lower()), "content": content})
    return out


def _plain(messages: Sequence[Mapping[str, str]]) -> str:
    if len(messages) == 1:
        return messages[0]["content"]
    return "\n".join(f"{m['role']}: {m['content']}" for m in messages)


def parse_row(row: Any, ident: str) -> EvalExample | None:
    """Turn one dataset row into an :class:`EvalExample`; ``None`` if it has no known format.

    >>> parse_row({"question": "2+2?", "answer": "4"}, "t:0").reference
    '4'
    >>> parse_row({"messages": [{"role": "user", "content": "hi"},
    ...                         {"role": "assistant", "content": "hello"}]}, "t:1").prompt
    'hi'
    """
    if not isinstance(row, Mapping):
        return None
    for key in ("messages", "conversations"):
        msgs = _messages(row.get(key))
        if msgs:
            last = max((i for i, m in enumerate(msgs) if m["role"] == "assistant"), default=-1)
            if last <= 0:
                return None
            ctx = msgs[:last]
            return EvalExample(ident, _plain(ctx), msgs[last]["content"], tuple(ctx))
    prompt, completion = row.get("prompt"), row.get("completion")
    if isinstance(prompt, list) and isinstance(completion, list):
        ctx, ans = _messages(prompt), _messages(completion)
        if ctx and ans:
            return EvalExample(ident, _plain(ctx), ans[-1]["content"], tuple(ctx))
        return None
    if isinstance(prompt, str):
        for key in ("completion", "response", "output", "answer"):
            if isinstance(row.get(key), str):
                return EvalExample(ident, prompt, row[key])
        return None
    instruction, output = row.get("instruction"), row.get("output", row.get("response"))
    if isinstance(instruction, str) and isinstance(output, str):
        extra = row.get("input")
        text = f"{instruction}\n\n{extra}" if isinstance(extra, str) and extra.strip() else instruction
        return EvalExample(ident, text, output, ({"role": "user", "content": text},))
    question, answer = row.get("question"), row.get("answer")
    if isinstance(question, str) and isinstance(answer, (str, int, float)) and not isinstance(answer, bool):
        return EvalExample(ident, question, str(answer), ({"role": "user", "content": question},))
    return None


def read_records(path: Path) -> list[Any]:
    """Read the rows of a local JSONL/JSON/CSV/Parquet file.

    Raises:
        InputError: unreadable file, invalid UTF-8, malformed JSON (with the line), unknown type.
    """
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            try:
                import pyarrow.parquet as pq
            except ImportError as exc:
                raise InputError(f"{path}: reading Parquet needs pyarrow (pip install 'tuneterm[train]')") from exc
            try:
                return pq.read_table(path).to_pylist()
            except Exception as exc:  # pyarrow raises many types for bad files
                raise InputError(f"{path}: not a readable Parquet file ({inert_line(exc, 120)})") from exc
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text (byte {exc.start}); is it a binary file?") from exc
    if "\x00" in text:
        raise InputError(f"{path}: contains NUL bytes; is it a binary file?")
    if suffix == ".csv":
        return list(csv.DictReader(text.splitlines()))
    if suffix == ".json" or (suffix != ".jsonl" and text.lstrip().startswith("[")):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{exc.lineno}: malformed JSON ({exc.msg})") from exc
        if isinstance(data, Mapping):
            # {"train": [...], "test": [...]} or {"data": [...]}
            return [data]
        if not isinstance(data, list):
            raise InputError(f"{path}: expected a JSON list of rows, got {type(data).__name__}")
        return data
    if suffix != ".jsonl":
        raise InputError(f"{path}: unknown data file type {suffix or '(none)'}; use {', '.join(DATA_SUFFIXES)}")
    rows: list[Any] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{lineno}: malformed JSON line ({exc.msg})") from exc
    return rows


def _split_dict(rows: list[Any]) -> dict[str, list[Any]] | None:
    # A single JSON object whose values are lists of rows: {"train": [...], "test": [...]}.
    if len(rows) == 1 and isinstance(rows[0], Mapping) and rows[0] and all(
        isinstance(v, list) for v in rows[0].values()
    ):
        return {str(k): list(v) for k, v in rows[0].items()}
    return None


def looks_like_hub_id(spec: str) -> bool:
    """Whether ``spec`` (not an existing path) has the shape of a hub dataset/model id.

    >>> looks_like_hub_id("tatsu-lab/alpaca"), looks_like_hub_id("./nope.jsonl")
    (True, False)
    """
    return bool(re.fullmatch(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?", spec)) and not spec.endswith(DATA_SUFFIXES)


def load_splits(spec: str) -> tuple[dict[str, list[Any]], bool]:
    """Load the rows of every split of a dataset.

    Returns:
        ``(splits, is_file)``: split name -> rows; ``is_file`` is True for a single local file
        (its rows sit under the key ``"file"``).

    Raises:
        InputError: missing path, bad file, or a hub id that cannot be loaded (offline, unknown).
    """
    if spec.startswith("tuneterm:"):
        # tuneterm's built-in datasets (tuneterm:tiny-sft ...), split exactly as training splits them.
        try:
            from tuneterm.assets.builtin import load_builtin_dataset

            dd = load_builtin_dataset(spec)
        except Exception as exc:  # unknown name or missing datasets: one line
            raise InputError(f"{spec}: {inert_line(exc, 160)}") from exc
        return {name: list(ds) for name, ds in dd.items()}, False
    path = Path(spec).expanduser()
    if path.is_file():
        rows = read_records(path)
        split = _split_dict(rows)
        return (split, False) if split else ({"file": rows}, True)
    if path.is_dir():
        splits: dict[str, list[Any]] = {}
        for f in sorted(path.iterdir()):
            if f.is_file() and f.suffix.lower() in DATA_SUFFIXES:
                splits.setdefault(f.stem.split(".")[0].split("-")[0], []).extend(read_records(f))
        if not splits:
            raise InputError(f"{spec}: directory holds no {', '.join(DATA_SUFFIXES)} files")
        return splits, False
    if not looks_like_hub_id(spec):
        raise InputError(f"{spec}: no such file or directory")
    try:
        import datasets
    except ImportError as exc:
        raise InputError(f"{spec}: loading a hub dataset needs the datasets package") from exc
    try:
        dd = datasets.load_dataset(spec)
    except Exception as exc:  # datasets raises many types (offline, not found, ...)
        raise InputError(f"{spec}: cannot load dataset ({inert_line(exc, 160)})") from exc
    return {name: list(ds) for name, ds in dd.items()}, False


def parse_rows(rows: Iterable[Any], prefix: str) -> tuple[list[EvalExample], int]:
    """Parse rows into examples; returns ``(examples, skipped)`` (unknown format / empty reference)."""
    out: list[EvalExample] = []
    skipped = 0
    for i, row in enumerate(rows):
        ex = parse_row(row, f"{prefix}:{i}")
        if ex is None or not ex.reference.strip() or not ex.prompt.strip():
            skipped += 1
            continue
        out.append(ex)
    return out, skipped


def training_prompts(spec: str, split: str = "train") -> set[str]:
    """Normalised prompts of a run's training data (``dataset_name`` + ``dataset_train_split``)."""
    splits, is_file = load_splits(spec)
    rows = splits["file"] if is_file else splits.get(split, [r for v in splits.values() for r in v])
    return {normalize_prompt(ex.prompt) for ex in parse_rows(rows, "train")[0]}


def select_examples(
    spec: str,
    *,
    split: str = "test",
    n: int = 100,
    seed: int = 0,
    holdout: float = 0.1,
    exclude_prompts: set[str] | None = None,
    training_data: str | None = None,
) -> tuple[list[EvalExample], Selection]:
    """Choose up to ``n`` held-out examples from ``spec``.

    Args:
        spec: local file/directory or hub id.
        split: the split to evaluate on; used when the source has it.
        n: maximum number of examples (after overlap removal).
        seed: seed of the hold-out shuffle.
        holdout: fraction held out when the split does not exist.
        exclude_prompts: normalised prompts of the training data (:func:`training_prompts`).
        training_data: name of that training data, for the report.

    Returns:
        ``(examples, selection)``.

    Raises:
        InputError: nothing usable remains (no known format, everything overlaps training data).
    """
    splits, is_file = load_splits(spec)
    notes: list[str] = []
    frac: float | None = None
    if is_file:
        rows = splits["file"]
        name = Path(spec).name.lower()
        if _HELDOUT_NAME.search(name):
            how, used_split = "file", None
            examples, skipped = parse_rows(rows, "file")
            total = len(examples)
        else:
            how, used_split, frac = "holdout", None, holdout
            examples, skipped = parse_rows(rows, "file")
            total = len(examples)
    elif split in splits:
        how, used_split = "split", split
        examples, skipped = parse_rows(splits[split], split)
        total = len(examples)
    else:
        source_split = "train" if "train" in splits else next(iter(splits))
        how, used_split, frac = "holdout", source_split, holdout
        notes.append(f"no {split!r} split (have {', '.join(sorted(splits))}); held out from {source_split!r}")
        examples, skipped = parse_rows(splits[source_split], source_split)
        total = len(examples)
    if not examples:
        raise InputError(
            f"{spec}: no usable examples (need messages, prompt/completion, instruction/output or "
            f"question/answer rows; {skipped} rows skipped)"
        )
    if how == "holdout":
        order = list(range(len(examples)))
        random.Random(seed).shuffle(order)
        k = max(1, round(len(examples) * (frac or 0.1)))
        examples = [examples[i] for i in order[:k]]
    removed = 0
    if exclude_prompts:
        kept = [e for e in examples if normalize_prompt(e.prompt) not in exclude_prompts]
        removed = len(examples) - len(kept)
        examples = kept
        if not examples:
            raise InputError(
                f"{spec}: every held-out example also occurs in the run's training data "
                f"({training_data}); evaluate on a separate file or split"
            )
    examples = examples[:n]
    sel = Selection(
        source=spec,
        split=used_split,
        how=how,
        rows=total,
        skipped_rows=skipped,
        overlap_removed=removed,
        n=len(examples),
        seed=seed,
        holdout_fraction=frac,
        training_data=training_data,
        notes=tuple(notes),
    )
    return examples, sel
