"""JSON documents: HF ``trainer_state.json``, a bare ``log_history`` list, ``{"metrics": [...]}``,
and other dumps of a history (another key, series by metric: :mod:`tuneterm.logs.jsonshapes`).

The fast path is ``json.loads`` of the whole file followed by one tight loop over the entries
(:meth:`tuneterm.logs.entries.EntrySink.add_many`); only when that raises ``JSONDecodeError`` does
:func:`salvage` walk the text entry by entry with ``raw_decode`` to keep the complete
``log_history`` entries of a truncated file. JSON ``NaN``/``Infinity`` literals are data (Python's
``json`` accepts them). Deep nesting raises ``RecursionError`` inside ``json``; that becomes an
:class:`~tuneterm.errors.InputError`, never a traceback.
"""

from __future__ import annotations

import gc
import json
import math
import re
from pathlib import Path
from typing import Any

from tuneterm.errors import InputError
from tuneterm.logs.entries import EntrySink
from tuneterm.logs.model import Run
from tuneterm.logs.textio import show

#: trainer_state.json top-level keys copied into RunFacts (key -> attribute).
STATE_FACTS: dict[str, str] = {
    "global_step": "global_step",
    "max_steps": "max_steps",
    "num_train_epochs": "num_train_epochs",
    "logging_steps": "logging_steps",
    "eval_steps": "eval_steps",
    "train_batch_size": "train_batch_size",
    "epoch": "epoch",
}
_INT_FACTS = {"global_step", "max_steps", "logging_steps", "eval_steps", "train_batch_size"}
_TOP_NUMBER = re.compile(
    r'"(global_step|max_steps|num_train_epochs|logging_steps|eval_steps|train_batch_size|epoch)"'
    r"\s*:\s*(-?[\d.eE+-]{1,30})"
)


class NotJsonError(InputError):
    """The file is not valid JSON and no complete entry could be salvaged from it."""


def decode_json(data: bytes, path: Path) -> Any:
    """``json.loads`` with the failure modes turned into InputError (JSONDecodeError re-raised)."""
    try:
        return json.loads(data)
    except RecursionError:
        raise InputError(f"{show(path)}: JSON is nested too deeply to be a training log") from None
    except UnicodeDecodeError:
        try:
            return json.loads(data.decode("utf-8", "replace"))
        except RecursionError:
            raise InputError(
                f"{show(path)}: JSON is nested too deeply to be a training log"
            ) from None


def apply_state_facts(run: Run, doc: dict[str, Any]) -> None:
    """Copy trainer_state.json's top-level facts (best_* and ``num_input_tokens_seen`` included)."""
    f = run.facts
    for key, attr in STATE_FACTS.items():
        v = doc.get(key)
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            continue
        if attr in _INT_FACTS:
            if v <= 0 and attr != "global_step":
                continue  # max_steps -1 means "by epochs"; logging_steps 0 is meaningless
            setattr(f, attr, int(v))
        else:
            setattr(f, attr, float(v))
    best = doc.get("best_metric")
    if isinstance(best, (int, float)) and not isinstance(best, bool):
        f.best_metric = float(best)
    if isinstance(doc.get("best_model_checkpoint"), str):
        f.best_model_checkpoint = doc["best_model_checkpoint"]
    for key in ("best_global_step", "num_input_tokens_seen"):
        v = doc.get(key)
        if isinstance(v, int) and not isinstance(v, bool):
            setattr(f, key, v)
    if f.global_step is not None and f.max_steps and f.global_step >= f.max_steps:
        f.finished = True


def read_log_history(run: Run, entries: list[Any]) -> None:
    """Fill ``run`` from a ``log_history`` list (dicts with ``step``)."""
    sink = EntrySink(run)
    epoch_fact = run.facts.epoch
    _, skipped = sink.add_many(entries)
    sink.finish()
    if epoch_fact is not None:
        run.facts.epoch = epoch_fact  # the top-level epoch is exact; entries round it
    if skipped:
        run.notes.append(f"skipped {skipped} log_history element(s) that are not objects")
    if sink.bad_values:
        run.notes.append(f"skipped {sink.bad_values} non-numeric metric value(s)")


def read_json_doc(run: Run, doc: Any, path: Path) -> None:
    """Dispatch on the shape of a decoded JSON document."""
    if isinstance(doc, list):
        run.format = "log_history"
        read_log_history(run, doc)
        if not run.has_metrics():
            run.notes.append(f"{show(path)}: JSON list holds no metric entries")
        return
    if not isinstance(doc, dict):
        run.format = "json"
        run.notes.append(f"{show(path)}: JSON {type(doc).__name__} is not a training log")
        return
    if isinstance(doc.get("log_history"), list):
        run.format = "trainer_state"
        apply_state_facts(run, doc)
        history = doc["log_history"]
        read_log_history(run, history)
        if not history:
            f = run.facts
            why = "log_history is empty"
            if f.global_step is not None and f.logging_steps:
                rel = "<" if f.global_step < f.logging_steps else ">="
                why += f": {f.global_step} steps {rel} logging_steps {f.logging_steps}"
            run.notes.append(why)
        elif not run.has_metrics():
            run.notes.append(
                "log_history has no per-step metrics (only an end-of-training summary)"
                if run.summary
                else "log_history entries hold no numeric metrics"
            )
        return
    if isinstance(doc.get("metrics"), list):
        run.format = "json_metrics"
        read_log_history(run, doc["metrics"])
        cfg = doc.get("config")
        if isinstance(cfg, dict):
            from tuneterm.logs.facts import apply_config

            apply_config(run.facts, cfg)
        if isinstance(doc.get("model"), str) and run.facts.model_name is None:
            run.facts.model_name = doc["model"]
        if not run.has_metrics():
            run.notes.append("the metrics list holds no numeric metrics")
        return
    if _read_other_shape(run, doc):
        return
    run.format = "json"
    run.notes.append(f"{show(path)}: JSON object has no log_history or metrics list")


def _read_other_shape(run: Run, doc: dict[str, Any]) -> bool:
    """Read the history under another name, or series by metric; False if ``doc`` holds neither."""
    shape = _other_shape(doc)
    if shape is None:
        return False
    run.format, entries, note = shape
    apply_state_facts(run, doc)
    read_log_history(run, entries)
    run.notes.append(note)
    return run.has_metrics()


def _other_shape(doc: dict[str, Any]) -> tuple[str, list[Any], str] | None:
    """``(format, entries, note)`` of the first shape :mod:`tuneterm.logs.jsonshapes` finds in
    ``doc``: a history list under another name, series by metric, or several entry lists merged."""
    from tuneterm.logs.jsonshapes import find_entry_list, find_series, merged_entry_lists

    found = find_entry_list(doc)
    if found is not None:
        return "log_history", found[1], f"read the history from {found[0]!r}"
    series = find_series(doc)
    if series is not None:
        where, entries = series
        return "json_series", entries, f"read per-metric series from {where!r}" if where else "read per-metric series"
    lists = merged_entry_lists(doc)
    if lists is not None:
        return "log_history", lists[1], "read the history from " + ", ".join(repr(k) for k in lists[0])
    return None


def salvage(run: Run, text: str, path: Path) -> None:
    """Recover the complete ``log_history`` entries of a truncated trainer_state.json."""
    at = text.find('"log_history"')
    head = text if at < 0 else text[:at]
    facts = {k: float(v) for k, v in _TOP_NUMBER.findall(head) if _num(v)}
    apply_state_facts(run, facts)
    if at >= 0:
        entries = _complete_items(text, text.find("[", at))
    else:
        # a truncated bare list: `[{...}, {...}, {...`
        stripped = text.lstrip()
        entries = _complete_items(text, len(text) - len(stripped)) if stripped.startswith("[") else []
    if not entries and not facts:
        raise NotJsonError(f"{show(path)}: not valid JSON and nothing could be salvaged")
    run.format = "trainer_state" if at >= 0 else "log_history"
    read_log_history(run, entries)
    run.notes.append(f"file is truncated; salvaged {len(entries)} complete entries")


def _complete_items(text: str, open_at: int) -> list[Any]:
    """The complete values of the JSON list whose ``[`` stands at ``open_at`` (none if -1), up
    to its end or the first value cut off."""
    decoder = json.JSONDecoder()
    items: list[Any] = []
    pos, n = open_at, len(text)
    while 0 <= pos < n:
        pos += 1
        while pos < n and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= n or text[pos] == "]":
            break
        try:
            obj, end = decoder.raw_decode(text, pos)
        except (json.JSONDecodeError, RecursionError):
            break
        items.append(obj)
        pos = end - 1
    return items


def _num(v: str) -> bool:
    try:
        float(v)
    except ValueError:
        return False
    return True


def read_json_file(run: Run, path: Path, data: bytes) -> None:
    """Read a JSON document (fast path) or salvage a truncated one.

    The cyclic garbage collector is paused while ``json`` builds the document and while its
    entries are copied into ``run``, and the document is freed before it resumes: JSON cannot form
    reference cycles, and on a 300,000-entry file the collector's traversals of the growing object
    graph cost a noticeable share of the decode (and, re-enabled while the document is still
    alive, it would walk all of it again, generation by generation).
    """
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        try:
            doc = decode_json(data, path)
        except json.JSONDecodeError:
            truncated = True
        else:
            truncated = False
            read_json_doc(run, doc, path)
            del doc  # freed while the collector is still off
        if truncated:
            try:
                salvage(run, data.decode("utf-8", "replace"), path)
            except RecursionError:
                raise InputError(f"{show(path)}: JSON is nested too deeply to be a training log") from None
    finally:
        if gc_was_enabled:
            gc.enable()
