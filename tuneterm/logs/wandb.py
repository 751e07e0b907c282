"""Weights & Biases run directories (``wandb/run-*`` synced, ``wandb/offline-run-*`` offline).

The metrics live in the run's ``.wandb`` transaction log, a binary record stream. It is read with
the wandb package's own reader: ``wandb-core leet inspect --json`` (the binary shipped inside the
``wandb`` package, the reader behind ``wandb leet inspect``), which prints one JSON object per
record. tuneterm never parses the binary format itself. The ``wandb`` package is an optional extra
(``pip install 'tuneterm[wandb]'``); without it a ``.wandb`` file is refused with one line naming
the extra.

What is read:

* ``history`` records: the logged metrics. HF's ``WandbCallback`` logs ``train/global_step`` with
  every row and W&B's own ``_step`` counts ``wandb.log`` calls, so the step of a row is
  ``train/global_step`` when present, else ``_step``; ``train/loss``, ``eval/loss`` ... go through
  the same name normalisation as TensorBoard tags.
* ``run`` and ``config`` records, and ``files/config.yaml`` (``{key: {value: ...}}``): the config
  (TrainingArguments and the model config, as HF logs them) for facts;
* ``files/wandb-summary.json``: the final values (``train/global_step``, ``train_runtime``);
* ``files/output.log`` (synced runs) or the ``output_raw`` records (offline runs): the console
  output, for tracebacks, OOMs and signals;
* the ``exit`` record: the exit code (a nonzero exit is a crash).

A run directory that is still being written can be followed: :func:`wandb_signature` changes
whenever the transaction log grows (see :class:`tuneterm.logs.tail.Follower`).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from tuneterm.errors import InputError
from tuneterm.logs.console import ConsoleParser
from tuneterm.logs.entries import EntrySink
from tuneterm.logs.facts import apply_config, load_mapping
from tuneterm.logs.model import LogEvent, Run, RunStatus
from tuneterm.logs.textio import show

EXTRA_HINT = "install tuneterm[wandb] (pip install 'tuneterm[wandb]') to read W&B .wandb run files"
_READ_TIMEOUT_S = 120.0
_STEP_KEYS = ("train/global_step", "global_step", "trainer/global_step")


def wandb_run_file(path: Path) -> Path | None:
    """The ``run-*.wandb`` file of ``path``: the file itself, the one in a run directory, or the
    latest run's in a ``wandb/`` directory (``latest-run``, else the newest run directory)."""
    if path.is_file():
        return path if path.suffix == ".wandb" else None
    if not path.is_dir():
        return None
    found = sorted(path.glob("run-*.wandb"))
    if found:
        return found[-1]
    latest = path / "latest-run"
    if latest.is_dir():
        found = sorted(latest.glob("run-*.wandb"))
        if found:
            return found[-1]
    runs = sorted(
        (d for d in path.glob("*run-*") if d.is_dir() and any(d.glob("run-*.wandb"))),
        key=lambda d: d.name.split("-", 2)[-1] if d.name.startswith("offline-") else d.name.split("-", 1)[-1],
    )
    return sorted(runs[-1].glob("run-*.wandb"))[-1] if runs else None


def wandb_signature(path: Path) -> tuple[int, float] | None:
    """(size, mtime) of the run's transaction log, or None when ``path`` is not a W&B run."""
    f = wandb_run_file(path)
    if f is None:
        return None
    try:
        st = f.stat()
    except OSError:
        return None
    return (st.st_size, st.st_mtime)


def core_binary() -> str:
    """The path of the ``wandb-core`` binary of the installed wandb package.

    Found from the package's location without importing it (``import wandb`` costs over a second).

    Raises:
        InputError: wandb is not installed (the message names the extra).
    """
    spec = importlib.util.find_spec("wandb")
    if spec is None or not spec.submodule_search_locations:
        raise InputError(EXTRA_HINT)
    for loc in spec.submodule_search_locations:
        exe = Path(loc) / "bin" / "wandb-core"
        if exe.is_file() and os.access(exe, os.X_OK):
            return str(exe)
    try:
        from wandb.util import get_core_path

        return str(get_core_path())
    except Exception:  # noqa: BLE001 - any failure here means: no usable reader
        raise InputError(f"the installed wandb package has no wandb-core reader; {EXTRA_HINT}") from None


def records(run_file: Path) -> Iterator[dict[str, Any]]:
    """The records of a ``.wandb`` file as dicts (``{"num", "type", <type>: {...}}``).

    Raises:
        InputError: no reader (wandb missing), or the reader failed on the file.
    """
    exe = core_binary()
    cmd = [exe, "leet", "inspect", "--no-observability", "--json", "--run-file", str(run_file), str(run_file.parent)]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=_READ_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InputError(f"{show(run_file)}: the wandb reader failed ({type(exc).__name__})") from None
    if proc.returncode != 0 and not proc.stdout:
        err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise InputError(f"{show(run_file)}: not a readable W&B run file ({err[-1][:200] if err else 'no output'})")
    for line in proc.stdout.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            yield rec


def _unwrap(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """W&B's stored config ``{key: {"value": v, "desc": ...}}`` -> ``{key: v}``; ``_wandb`` dropped."""
    out: dict[str, Any] = {}
    for k, v in cfg.items():
        if not isinstance(k, str) or k.startswith("_wandb"):
            continue
        out[k] = v["value"] if isinstance(v, Mapping) and "value" in v and len(v) <= 2 else v
    return out


def _step_of(item: Mapping[str, Any], rec: Mapping[str, Any]) -> int | None:
    for key in _STEP_KEYS:
        v = item.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return int(v)
    num = (rec.get("step") or {}).get("num") if isinstance(rec.get("step"), Mapping) else None
    if isinstance(num, (int, str)) and str(num).isdigit():
        return int(num)
    v = item.get("_step")
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


class _Console:
    """Console output arriving in chunks (``output_raw`` records) -> complete lines -> parser."""

    def __init__(self, run: Run) -> None:
        self.parser = ConsoleParser(run, metrics=False)
        self.buf = ""
        self.lineno = 0

    def feed(self, text: str) -> None:
        self.buf += text
        *lines, self.buf = self.buf.split("\n")
        for line in lines:
            self.lineno += 1
            self.parser.feed(self.lineno, line.rstrip("\r"))

    def finish(self) -> None:
        if self.buf:
            self.feed("\n")
        self.parser.finish()


def read_wandb(run: Run, path: Path) -> None:
    """Fill ``run`` from the W&B run at ``path`` (a run directory, a ``wandb/`` directory or a
    ``.wandb`` file).

    Raises:
        InputError: no ``.wandb`` file there, wandb missing (naming the extra), unreadable file.
    """
    run_file = wandb_run_file(path)
    if run_file is None:
        raise InputError(f"no W&B run file (run-*.wandb) in {show(path)}")
    run_dir = run_file.parent
    run.format = "wandb"
    run.source = str(run_dir)
    files = run_dir / "files"
    cfg = load_mapping(files / "config.yaml")
    if isinstance(cfg, Mapping):
        apply_config(run.facts, _unwrap(cfg))
    sink = EntrySink(run)
    output_log = files / "output.log"
    console = None if output_log.is_file() else _Console(run)
    exit_code: int | None = None
    rows = 0
    for rec in records(run_file):
        kind = rec.get("type")
        body = rec.get(kind) if isinstance(kind, str) else None
        if not isinstance(body, Mapping):
            continue
        if kind in ("run", "config"):
            update = body.get("config", body).get("update") if kind == "run" else body.get("update")
            if isinstance(update, Mapping):
                apply_config(run.facts, _unwrap(update))
        elif kind == "history":
            item = body.get("item")
            if not isinstance(item, Mapping):
                continue
            step = _step_of(item, body)
            values = {k: v for k, v in item.items() if isinstance(k, str) and not k.startswith("_") and k not in _STEP_KEYS}
            if step is not None and values:
                sink.add(values, step)
                rows += 1
        elif kind in ("output_raw", "output") and console is not None:
            line = body.get("line")
            if isinstance(line, str):
                console.feed(line)
        elif kind == "exit":
            code = body.get("exit_code")
            exit_code = int(code) if isinstance(code, (int, float)) and not isinstance(code, bool) else 0
    sink.finish()
    if console is not None:
        console.finish()
    elif output_log.is_file():
        from tuneterm.logs.load import read_console

        read_console(run, output_log, metrics=False)
    _summary_facts(run, load_mapping(files / "wandb-summary.json"))
    _exit_facts(run, exit_code)
    if not rows:
        run.notes.append(f"the W&B run {show(run_dir.name)} holds no logged metrics")


def _summary_facts(run: Run, summary: Any) -> None:
    if not isinstance(summary, Mapping):
        return
    for key in _STEP_KEYS:
        v = summary.get(key)
        if isinstance(v, int) and not isinstance(v, bool) and run.facts.global_step is None:
            run.facts.global_step = v


def _exit_facts(run: Run, exit_code: int | None) -> None:
    """The exit record: 0 finishes the run; nonzero is a crash unless the console showed one.
    Either way it is the run's status (``finished``/``failed`` with the exit code)."""
    if exit_code is None:
        return
    run.status = RunStatus(state="finished" if exit_code == 0 else "failed", exit_code=exit_code)
    if exit_code == 0:
        run.facts.finished = True
        return
    if not any(e.kind in ("exception", "oom", "signal") for e in run.events):
        run.events.append(
            LogEvent(kind="exception", text=f"the W&B run exited with code {exit_code}", step=run.last_step, code=f"exit-{exit_code}")
        )
