"""The run directory: everything a tuneterm-launched run leaves behind, and how it is written.

A run lives in ``<runs-dir>/<name>/``; ``<runs-dir>`` is ``--runs-dir``, else ``$TUNETERM_RUNS_DIR``,
else ``./runs`` (:func:`runs_root`). Nothing about a run lives only in memory: the watcher, ``tuneterm
runs``, ``stop`` and ``doctor`` read these files and nothing else. Files and their schemas:

``config.yaml``
    The resolved training config as launched: the user's file after ``--set`` overrides, plus the
    defaults tuneterm applied (``output_dir`` -> ``<run>/output``, ``logging_nan_inf_filter: false``),
    which are listed in a comment at the top. TRL's own flat field names (SFTConfig / DPOConfig /
    GRPOConfig + ModelConfig + ScriptArguments); load it with ``yaml.safe_load``.

``launch.json``
    tuneterm's own launch choices (they are not TRL fields, so they are kept out of config.yaml):
    ``{"trainer": "sft"|"dpo"|"grpo", "method": "full"|"lora"|"qlora"|"dora", "gpus": int,
    "accelerate_config": str|null, "sample_every": int, "stop_on": "error"|"never",
    "config_source": str, "cwd": str, "argv": [str], "tuneterm_version": str}``. A run written by
    ``TunetermCallback`` inside the user's own trainer has ``"kind": "callback"`` (and no
    ``config_source``/``gpus``); one started by ``tuneterm watch -- COMMAND`` has ``"kind":
    "command"``.

``status.json``
    Kept current, always replaced atomically (temp file + ``os.replace``), so a reader never sees a
    half-written file. Keys (any may be ``null`` while unknown)::

        state       "starting" | "running" | "finished" | "failed" | "stopped"
        pid         pid of the supervisor (``python -m tuneterm.train.child``), a session
                    leader; SIGTERM to it stops the run gracefully. The accelerate/torch launcher
                    starts the ranks of a ``--gpus N`` run in sessions of their own, so a forced
                    stop finds every process of the run by ``TUNETERM_RUN_DIR`` in its environment
                    (:func:`tuneterm.runs.control.run_processes`), not by process group alone
        pgid        process group id (== pid: the supervisor is a session leader)
        worker_pid  pid of the training process (rank 0's when ``--gpus`` > 1)
        step, max_steps, epoch   progress, updated at most every 2 s and at train end
        started, ended           ISO-8601 UTC times
        exit_code   the training process's exit status; negative = killed by that signal
        signal      signal name when killed by a signal (e.g. "SIGKILL"), else null
        error       one line: the exception (``"OutOfMemoryError: CUDA out of memory ..."``), the
                    signal, or ``"stopped on request"``
        error_kind  ``"config"`` when TRL's own dataclasses rejected the config in the worker (the
                    launcher then exits 2, as for a refusal before launch); absent otherwise
        stop_reason the finding that made ``tuneterm watch --stop-on error`` stop the run
        host, command (argv of the training process), trainer, method, name, run_dir
        stop_requested  true once a stop (SIGTERM) was received
        samples     "on" | "off: <why>"
        pid_start   the supervisor's start time (clock ticks since boot): with ``pid`` it pins
                    the process, so a reused pid is never taken for it
        supervisor_lost  ISO time at which the training process found the supervisor gone
                    (killed); from then on the training process records the run's end itself
        write_errors     ``{"error", "first_step", "last_step", "lines"}`` when metrics/samples/
                    gpu lines could not be written (disk full) and were dropped; training went on

``worker-<rank>.json``
    Each training process's own record (:mod:`tuneterm.runs.workers`; written by :mod:`tuneterm.train.workers`): pid, start time, boot id,
    host, state, step, end, ``supervisor_lost``. A run's shown state is derived from these and the
    supervisor (docs/fault-matrix.md).

``metrics.jsonl``
    One JSON object per Trainer ``on_log`` event, flushed as written: the ``logs`` dict exactly as
    the Trainer gave it (``loss``, ``grad_norm``, ``learning_rate``, ``eval_loss``, ``rewards/...``,
    ``train_runtime`` ...) plus ``"step"`` (int, global step), ``"epoch"`` (float or null) and
    ``"time"`` (unix seconds). Numbers are JSON numbers; NaN and infinities are written as the
    literals ``NaN``, ``Infinity``, ``-Infinity`` (Python's ``json`` default); other values are
    written as strings. tuneterm sets ``logging_nan_inf_filter: false`` so a NaN loss is logged as
    NaN instead of being averaged away.

``samples.jsonl``
    Greedy generations for a few fixed prompts every N steps (``--sample-every``; ``0`` = about 4
    times per run), so collapse shows as text. One object per prompt and sampling point:
    ``{"step", "time", "prompt", "completion", "n_tokens", "hit_max_tokens", "max_new_tokens"}``.

``gpu.jsonl``
    One object per logging window (written with each metrics line): ``{"step", "time", "device"}``
    plus, on CUDA, ``"mem_allocated_mib"``, ``"mem_reserved_mib"``, ``"peak_allocated_mib"`` and
    ``"peak_reserved_mib"`` (peaks since the previous line), ``"mem_total_mib"``, ``"name"`` (the
    GPU), ``"utilization"`` (percent, NVML; null when NVML is absent); on CPU ``"device": "cpu"`` with ``"rss_mib"`` and ``"peak_rss_mib"`` of the process.

``stdout.log``, ``stderr.log``
    The training process's own streams (all ranks, unbuffered). An exception that ends the run is
    printed there as a full traceback.

``findings.json``
    Written by whoever evaluates the run (``tuneterm train --headless``, the watcher, ``doctor``):
    the findings JSON contract of DESIGN.md. Absent until then; never a placeholder.

``output/``
    The default ``output_dir``: checkpoints and the final model.

``notify.log``, ``.notified/``
    Notifications (:mod:`tuneterm.report.notify`): one line per message that could not be
    delivered, and one empty marker file per event already sent (so the supervisor, a watcher and
    the callback send each event once).

Writers: the launcher creates the directory, config.yaml, launch.json and the first status.json;
the supervisor (``tuneterm.train.child``) records pid, the exit status and signal deaths; the
training process (rank 0 only) writes metrics/samples/gpu and the running/finished/failed states.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneterm.errors import InputError
from tuneterm.runs.writer import locked, now_iso, write_json_atomic

CONFIG = "config.yaml"
LAUNCH = "launch.json"
STATUS = "status.json"
METRICS = "metrics.jsonl"
SAMPLES = "samples.jsonl"
GPU = "gpu.jsonl"
STDOUT = "stdout.log"
STDERR = "stderr.log"
FINDINGS = "findings.json"
OUTPUT = "output"
CONFIG_NAMES = (CONFIG, "config.yml", "config.json")
"""Where a run directory's config may be (tuneterm writes config.yaml; the others are read)."""
MARKERS = (STATUS, METRICS, LAUNCH)
"""A directory holding any of these is a run directory (:func:`is_run_dir`)."""
PROGRESS_FILES = (METRICS, STATUS, STDERR, STDOUT, SAMPLES)
"""Files whose changes make an earlier findings.json stale."""

LIVE_STATES = ("starting", "running")
TERMINAL_STATES = frozenset({"finished", "failed", "stopped"})

_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def runs_root(runs_dir: str | os.PathLike[str] | None = None) -> Path:
    """The directory that holds runs: ``runs_dir``, else ``$TUNETERM_RUNS_DIR``, else ``./runs``."""
    if runs_dir:
        return Path(runs_dir)
    env = os.environ.get("TUNETERM_RUNS_DIR")
    return Path(env) if env else Path("runs")


def is_run_dir(path: Path) -> bool:
    """True for a tuneterm run directory: a directory with status.json, metrics.jsonl or
    launch.json in it. The one test every reader uses."""
    try:
        return path.is_dir() and any((path / name).is_file() for name in MARKERS)
    except OSError:
        return False


def read_json_object(path: Path) -> dict[str, Any] | None:
    """A JSON file holding an object, or None when it is absent, unreadable or not an object."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def is_command_run(d: Path) -> bool:
    """True for a run directory made by ``tuneterm watch -- COMMAND`` (launch.json ``kind``): its
    metrics are the command's console output in stdout.log, not metrics.jsonl."""
    launch = read_json_object(d / LAUNCH)
    return launch is not None and launch.get("kind") == "command"


def check_name(name: str) -> str:
    """Return ``name`` if it is a safe run name (letters, digits, ``._-``; no path separators).

    Raises:
        InputError: the name could escape the runs directory or is empty/too long.
    """
    if not _NAME_OK.match(name) or name in {".", ".."}:
        raise InputError(f"invalid run name {name!r}: use letters, digits, '.', '_' or '-' (max 100)")
    return name


@dataclass(frozen=True, slots=True)
class RunDir:
    """Paths of one run directory, and the helpers that read and update its status.

    >>> rd = RunDir(Path("runs/tiny-1"))
    >>> rd.metrics.name, rd.name
    ('metrics.jsonl', 'tiny-1')
    """

    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config(self) -> Path:
        return self.path / CONFIG

    @property
    def launch(self) -> Path:
        return self.path / LAUNCH

    @property
    def status_file(self) -> Path:
        return self.path / STATUS

    @property
    def metrics(self) -> Path:
        return self.path / METRICS

    @property
    def samples(self) -> Path:
        return self.path / SAMPLES

    @property
    def gpu(self) -> Path:
        return self.path / GPU

    @property
    def stdout(self) -> Path:
        return self.path / STDOUT

    @property
    def stderr(self) -> Path:
        return self.path / STDERR

    @property
    def findings(self) -> Path:
        return self.path / FINDINGS

    @property
    def output(self) -> Path:
        return self.path / OUTPUT

    def read_status(self) -> dict[str, Any]:
        """The current status.json as a dict (``{}`` when absent or unreadable mid-creation)."""
        return read_json_object(self.status_file) or {}

    def update_status(self, **fields: Any) -> dict[str, Any]:
        """Merge ``fields`` into status.json and write it atomically; returns the new status.

        The launcher, the supervisor, the training process, ``stop`` and the watcher all update
        the same file: the read-merge-write holds an exclusive lock on the run directory
        (:func:`locked`), so no writer's fields are lost to another's concurrent update (a
        launcher recording the supervisor's pid must not put back a stale ``state``).

        A status.json that exists but cannot be parsed (written by something else, a disk that
        filled up under a non-atomic writer) is kept as ``status.json.corrupt`` before the new one
        replaces it, so nothing that was written is lost.
        """
        with locked(self.path):
            data = self.read_status()
            if not data:
                self._keep_corrupt()
            data.update(fields)
            write_json_atomic(self.status_file, data)
        return data

    def _keep_corrupt(self) -> None:
        try:
            raw = self.status_file.read_bytes()
        except OSError:
            return
        try:
            json.loads(raw)
            return  # parseable (e.g. an empty object): nothing to keep
        except ValueError:
            pass
        try:
            os.replace(self.status_file, self.path / f"{STATUS}.corrupt")
        except OSError:
            pass

    def read_launch(self) -> dict[str, Any]:
        """launch.json as a dict.

        Raises:
            InputError: missing or malformed (not a tuneterm run directory).
        """
        try:
            with open(self.launch, encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, ValueError) as exc:
            raise InputError(f"{self.launch}: not a readable tuneterm launch file ({exc})") from None
        if not isinstance(data, dict):
            raise InputError(f"{self.launch}: not a JSON object")
        return data


def create_run_dir(root: Path, name: str | None, stem: str) -> RunDir:
    """Create a fresh run directory under ``root``.

    With ``name`` the directory must not exist yet; without it the name is ``<stem>-YYYYmmdd-HHMMSS``
    with ``-2``, ``-3`` ... appended on a collision (``os.mkdir`` is the atomic claim).

    Raises:
        InputError: ``name`` exists already or is unsafe; ``root`` cannot be created.
    """
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create runs directory {root}: {exc.strerror or exc}") from None
    if name is not None:
        path = root / check_name(name)
        try:
            path.mkdir()
        except FileExistsError:
            raise InputError(f"run {name!r} already exists in {root}; choose another --name") from None
        return RunDir(path)
    safe_stem = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-._") or "run"
    base = f"{safe_stem[:60]}-{time.strftime('%Y%m%d-%H%M%S')}"
    for i in range(1, 1000):
        path = root / (base if i == 1 else f"{base}-{i}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return RunDir(path)
    raise InputError(f"cannot find a free run name for {base!r} in {root}")


def initial_status(rd: RunDir, *, trainer: str, method: str, command: list[str]) -> dict[str, Any]:
    """The first status.json, written by the launcher before the supervisor starts."""
    return {
        "state": "starting",
        "name": rd.name,
        "run_dir": str(rd.path.resolve()),
        "pid": None,
        "pgid": None,
        "worker_pid": None,
        "step": 0,
        "max_steps": None,
        "epoch": None,
        "started": now_iso(),
        "ended": None,
        "exit_code": None,
        "signal": None,
        "error": None,
        "host": socket.gethostname(),
        "command": command,
        "trainer": trainer,
        "method": method,
        "stop_requested": False,
    }
