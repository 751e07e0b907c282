"""Read dataset rows from JSONL, JSON, CSV, Parquet files, directories of them, or hub ids.

Every row comes out as a :class:`DataRow` carrying where it came from (file, 0-based row index and,
for JSONL, the 1-based line), so a finding can point at ``data.jsonl:17``.

Why JSON/JSONL are read here rather than by ``datasets``: its JSON builder reports neither the line
of a broken record nor the rows whose types disagree (pyarrow fails on the first mixed-type block
with a message about casting), and both are exactly what a pre-flight check must say. CSV, Parquet
and hub ids go through ``datasets`` in streaming mode (no Arrow cache written, rows read as they
are needed); it is imported lazily so ``tuneterm check`` stays fast to import.

Errors are one line (:class:`~tuneterm.errors.InputError`, exit 2); a file with no rows raises
:class:`~tuneterm.errors.NoMetricsError` (exit 3: "nothing to check").
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneterm.errors import InputError, NoMetricsError

#: File suffixes read as datasets, by reader.
DATA_SUFFIXES: dict[str, str] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".tsv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}

# A hub id is ``owner/name`` (letters, digits, ``-``, ``_``, ``.``), optionally with ``:config``.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}(?::[\w.-]+)?$")

# Broken lines are listed up to this many in the one-line error.
_MAX_LISTED = 5
# A JSONL record longer than this is not a training example but junk (or a whole file on one line).
MAX_LINE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class DataRow:
    """One record of the dataset and where it lives.

    Attributes:
        index: 0-based position of the row in the whole dataset (across files of a directory).
        value: the parsed record (normally a dict; anything else is reported as a schema problem).
        source: the file the row was read from (or the hub id).
        line: 1-based line in ``source`` (JSONL only; ``None`` where rows have no stable line).
    """

    index: int
    value: Any
    source: str
    line: int | None = None

    @property
    def where(self) -> str:
        """``file:line`` when the line is known, else ``file row N`` (1-based row)."""
        if self.line is not None:
            return f"{self.source}:{self.line}"
        return f"{self.source} row {self.index + 1}"


def is_hub_id(path: str) -> bool:
    """True when ``path`` is not a local path but has the shape of a hub dataset id (owner/name).

    >>> is_hub_id("trl-lib/Capybara"), is_hub_id("data/train.jsonl")
    (True, False)
    """
    if os.path.exists(path):
        return False
    return bool(_HUB_ID.match(path)) and Path(path).suffix.lower() not in DATA_SUFFIXES


def data_files(path: Path) -> list[Path]:
    """The data files under a directory (sorted, not recursive into hidden folders), by suffix."""
    files = [
        p
        for p in sorted(path.rglob("*"))
        if p.is_file() and p.suffix.lower() in DATA_SUFFIXES and not any(part.startswith(".") for part in p.relative_to(path).parts)
    ]
    return files


def iter_rows(path: str) -> Iterator[DataRow]:
    """Yield every row of ``path`` (a file, a directory of data files, or a hub id), in order.

    Args:
        path: local file or directory, or ``owner/name`` hub id.

    Raises:
        InputError: missing/unreadable path, broken JSON (names the line), invalid UTF-8, binary
            junk, unsupported suffix, hub id not reachable offline.
        NoMetricsError: the source holds no rows at all.
    """
    produced = False
    for row in _iter_any(path):
        produced = True
        yield row
    if not produced:
        raise NoMetricsError(f"{path}: no rows to check (empty dataset)")


def _iter_any(path: str) -> Iterator[DataRow]:
    p = Path(path)
    if p.is_dir():
        files = data_files(p)
        if not files:
            raise InputError(
                f"{path}: directory holds no data files (looked for {', '.join(sorted(DATA_SUFFIXES))})"
            )
        start = 0
        for f in files:
            n = 0
            for row in _iter_file(f, start):
                n += 1
                yield row
            start += n
        return
    if p.exists():
        if not p.is_file():
            raise InputError(f"{path}: not a regular file")
        yield from _iter_file(p, 0)
        return
    if is_hub_id(path):
        yield from _iter_hub(path)
        return
    raise InputError(f"{path}: no such file or directory")


def _iter_file(p: Path, start: int) -> Iterator[DataRow]:
    kind = DATA_SUFFIXES.get(p.suffix.lower())
    if kind is None:
        # Unknown suffix: sniff JSON Lines / JSON, the common case for ``data.txt`` exports.
        kind = "jsonl"
    try:
        if kind == "jsonl":
            yield from _iter_jsonl(p, start)
        elif kind == "json":
            yield from _iter_json(p, start)
        else:
            yield from _iter_datasets(p, kind, start)
    except OSError as exc:
        raise InputError(f"{p}: cannot read ({exc.strerror or exc})") from None


def _check_binary(p: Path, head: bytes) -> None:
    if b"\x00" in head[:8192]:
        raise InputError(f"{p}: binary file, not JSON Lines/JSON/CSV/Parquet text")


def _iter_jsonl(p: Path, start: int) -> Iterator[DataRow]:
    broken: list[tuple[int, str]] = []
    n_broken = 0
    index = start
    with p.open("rb") as fh:
        first = True
        for lineno, raw in enumerate(fh, 1):
            if first:
                _check_binary(p, raw)
                if raw.startswith(b"\xef\xbb\xbf"):
                    raw = raw[3:]
                first = False
            if len(raw) > MAX_LINE_BYTES:
                raise InputError(f"{p}:{lineno}: line of {len(raw) // (1024 * 1024)} MiB is too long for a record")
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(f"{p}:{lineno}: invalid UTF-8 (byte {exc.start + 1} of the line)") from None
            if not text.strip():
                continue
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                if lineno == 1 and text.lstrip().startswith("["):
                    # A pretty-printed JSON array saved as .jsonl: read it whole.
                    yield from _iter_json(p, start)
                    return
                n_broken += 1
                if len(broken) < _MAX_LISTED:
                    broken.append((lineno, exc.msg))
                continue
            if broken:
                continue  # keep scanning to count broken lines, but yield nothing once the file is bad
            yield DataRow(index, value, str(p), lineno)
            index += 1
    if broken:
        lines = ", ".join(str(n) for n, _ in broken) + (", ..." if n_broken > len(broken) else "")
        first_line, msg = broken[0]
        raise InputError(
            f"{p}:{first_line}: invalid JSON ({msg}); {n_broken} broken line{'s' if n_broken != 1 else ''} "
            f"({lines}); datasets/TRL would refuse the whole file"
        )


def _iter_json(p: Path, start: int) -> Iterator[DataRow]:
    raw = p.read_bytes()
    _check_binary(p, raw)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputError(f"{p}:{line}: invalid UTF-8") from None
    if not text.strip():
        return
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":  # several JSON values: it is JSON Lines with a .json name
            yield from _iter_jsonl(p, start)
            return
        raise InputError(f"{p}:{exc.lineno}: invalid JSON ({exc.msg}, column {exc.colno})") from None
    records: Any = doc
    if isinstance(doc, dict):
        # {"data": [...]} / {"train": [...]}: the one list-valued field holds the rows (datasets' `field=`).
        lists = [v for v in doc.values() if isinstance(v, list) and v and isinstance(v[0], dict)]
        if len(lists) == 1:
            records = lists[0]
        else:
            records = [doc]
    if not isinstance(records, list):
        raise InputError(f"{p}: JSON holds a {type(records).__name__}, not a list of records")
    for i, value in enumerate(records):
        yield DataRow(start + i, value, str(p), None)


def _iter_datasets(p: Path, kind: str, start: int) -> Iterator[DataRow]:
    with p.open("rb") as fh:
        head = fh.read(8192)
    if kind == "csv":
        _check_binary(p, head)
    elif kind == "parquet" and not head.startswith(b"PAR1"):
        raise InputError(f"{p}: not a Parquet file (no PAR1 magic)")
    if p.stat().st_size == 0:
        return
    kwargs: dict[str, Any] = {}
    if p.suffix.lower() == ".tsv":
        kwargs["delimiter"] = "\t"
    yield from _stream_datasets(kind, str(p), start, data_files=str(p), **kwargs)


def hub_offline_reason() -> str | None:
    """Why the Hugging Face Hub cannot be used right now, or ``None`` if it answers.

    ``HF_HUB_OFFLINE=1`` means offline. Otherwise one TCP connection to the endpoint is tried with a
    3-second timeout: huggingface_hub retries an unresolvable host for about 50 seconds, and a
    pre-flight check must fail in one line, not hang.
    """
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return "HF_HUB_OFFLINE is set"
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host = url.hostname or "huggingface.co"
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=3.0):
            return None
    except OSError as exc:
        return f"{host} unreachable: {exc.strerror or exc}"


def _iter_hub(hub_id: str) -> Iterator[DataRow]:
    reason = hub_offline_reason()
    if reason is not None:
        raise InputError(f"{hub_id}: not a local path, and the Hugging Face Hub is not available ({reason})")
    name, _, config = hub_id.partition(":")
    yield from _stream_datasets(name, hub_id, 0, name=config or None, split="train")


def _stream_datasets(builder: str, source: str, start: int, **kwargs: Any) -> Iterator[DataRow]:
    """Stream rows through ``datasets.load_dataset(..., streaming=True)`` with one-line errors."""
    # Offline or firewalled machines must fail fast, not hang on retries.
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "10")
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "10")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    try:
        import datasets  # heavy, lazy by design
    except ImportError:
        raise InputError(
            f"{source}: reading this format needs the 'datasets' package (pip install 'tuneterm[train]')"
        ) from None
    datasets.logging.set_verbosity_error()
    split = kwargs.pop("split", "train")
    try:
        ds = datasets.load_dataset(builder, split=split, streaming=True, **kwargs)
        for i, value in enumerate(ds):
            yield DataRow(start + i, value, source, None)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - datasets/pyarrow/hub raise many types; one line for all
        msg = " ".join(str(exc).split())[:300] or type(exc).__name__
        if builder not in ("csv", "parquet") and ("offline" in msg.lower() or "connect" in msg.lower()
                                                  or type(exc).__name__ in {"ConnectionError", "OfflineModeIsEnabled", "LocalEntryNotFoundError"}):
            raise InputError(f"{source}: cannot reach the Hugging Face Hub to load this dataset ({msg})") from None
        raise InputError(f"{source}: cannot read as {builder} ({type(exc).__name__}: {msg})") from None
