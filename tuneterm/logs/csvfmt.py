"""CSV metric logs: Keras ``CSVLogger`` (``epoch,loss,val_loss,...``) and generic metric tables.

The x axis is a ``step``/``global_step``/``iteration`` column when there is one; otherwise (Keras:
one row per epoch, numbered from 0) it is ``epoch + 1`` for whole-number epochs, else the 1-based
row number. A ``phase``/``split`` column with ``val``/``eval``/``validation`` rows sends that row's
metrics to the ``eval`` set; ``test`` rows go to the summary. A malformed cell (``2.02.0000``) is
skipped and counted; the rest of its row is kept.
"""

from __future__ import annotations

import csv
from pathlib import Path

from tuneterm.errors import InputError
from tuneterm.logs.entries import EntrySink, to_float
from tuneterm.logs.model import Run
from tuneterm.logs.names import STEP_KEYS
from tuneterm.logs.textio import show

_PHASE_COLS = ("phase", "split", "stage", "mode")
_EVAL_PHASES = {"val", "valid", "validation", "eval", "evaluation", "dev"}
_TEST_PHASES = {"test", "predict"}
_MAX_FIELD = 1 << 16


def read_csv(run: Run, path: Path) -> None:
    """Fill ``run`` from a CSV file with a header row."""
    run.format = "csv"
    csv.field_size_limit(_MAX_FIELD)
    sink = EntrySink(run, track_lines=True)
    bad_cells = 0
    bad_rows = 0
    try:
        with path.open("r", encoding="utf-8", errors="replace", newline="") as fh:
            reader = csv.reader(fh)
            try:
                header = next(reader)
            except StopIteration:
                run.notes.append("CSV file is empty")
                return
            header = [h.strip().lstrip("\ufeff") for h in header]
            lower = [h.lower() for h in header]
            step_col = next((lower.index(k) for k in STEP_KEYS if k in lower), None)
            epoch_col = lower.index("epoch") if "epoch" in lower else None
            phase_col = next((lower.index(k) for k in _PHASE_COLS if k in lower), None)
            for rowno, row in enumerate(reader, 1):
                if not row:
                    continue
                if len(row) != len(header):
                    bad_rows += 1
                    continue
                phase = row[phase_col].strip().lower() if phase_col is not None else "train"
                step: int | None = None
                if step_col is not None:
                    v = to_float(row[step_col])
                    step = int(v) if v is not None and v == v and abs(v) < 2**62 else None
                if step is None and epoch_col is not None:
                    v = to_float(row[epoch_col])
                    if v is not None and v == v and v == int(v) and step_col is None:
                        step = int(v) + 1
                if step is None:
                    step = rowno
                entry: dict[str, object] = {}
                for i, (name, cell) in enumerate(zip(header, row, strict=True)):
                    if i in (step_col, phase_col) or not name:
                        continue
                    cell = cell.strip()
                    if not cell:
                        continue
                    if to_float(cell) is None:
                        bad_cells += 1
                        continue
                    if phase in _EVAL_PHASES and name.lower() != "epoch":
                        name = name if name.lower().startswith(("val", "eval")) else f"eval_{name}"
                    elif phase in _TEST_PHASES and name.lower() != "epoch":
                        name = f"test_{name}"
                    entry[name] = cell
                sink.add(entry, step, rowno + 1)
    except (OSError, csv.Error) as e:
        raise InputError(f"cannot read {show(path)} as CSV: {e}") from None
    sink.finish()
    if sink.last_step is not None:
        run.facts.global_step = sink.last_step
    if bad_cells:
        run.notes.append(f"skipped {bad_cells} malformed CSV cell(s)")
    if bad_rows:
        run.notes.append(f"skipped {bad_rows} CSV row(s) with the wrong number of fields")
    if not run.has_metrics():
        run.notes.append("CSV has no numeric metric columns")
