"""``load_run(path)``: detect the format of a file or directory and parse it into a :class:`Run`.

Detection is by content first, name second:

* a file whose text starts with ``{"`` / ``[``: JSON (trainer_state, bare log_history, ``metrics``
  list), or JSON Lines when its first line is a complete object and more objects follow;
* ``events.out.tfevents.*``: TensorBoard; a ``.csv`` name or a CSV-looking header: CSV;
* anything else that is text: a console log;
* a directory: an HF output or checkpoint directory (top-level or latest ``checkpoint-N/trainer_state.json``, by step number),
  a W&B run (``run-*.wandb``, offline or synced, or the ``wandb/`` directory: its latest run),
  a LLaMA-Factory output (``trainer_log.jsonl``), an MLflow store, TensorBoard logs, or a single
  recognisable log file. Side files (``adapter_config.json``, ``config.json``, YAML/JSON training
  configs) add facts. ``training_args.bin`` is a pickle and is never opened.

A tuneterm run directory is read by :func:`tuneterm.runs.load_source`, which calls this for any
other source. Errors are :class:`~tuneterm.errors.InputError` with one line naming the path. A run that was read
but holds no metrics is returned as is, with ``run.notes`` saying why (the CLI exits 3).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from tuneterm.errors import InputError, NoMetricsError
from tuneterm.logs.console import ConsoleParser
from tuneterm.logs.csvfmt import read_csv
from tuneterm.logs.facts import apply_adapter_config, apply_config, apply_model_config, load_mapping
from tuneterm.logs.infer import infer_facts
from tuneterm.logs.jsonfmt import NotJsonError, read_json_file
from tuneterm.logs.jsonl import JsonlParser
from tuneterm.logs.model import Run
from tuneterm.logs.textio import LineSplitter, iter_segments, looks_binary, read_head, show

_CKPT = re.compile(r"^checkpoint-(\d{1,12})$")
_CSV_HEADER = re.compile(r"^[\ufeff]?[A-Za-z_][\w/ .-]*(,[A-Za-z_][\w/ .()-]*)+\s*$")
_NOT_CONFIG_JSON = {
    "adapter_config.json",
    "config.json",
    "tokenizer_config.json",
    "tokenizer.json",
    "generation_config.json",
    "special_tokens_map.json",
    "preprocessor_config.json",
    "trainer_state.json",
    "added_tokens.json",
    "vocab.json",
    "status.json",
    "all_results.json",
    "train_results.json",
    "eval_results.json",
    "model.safetensors.index.json",
}
_LOG_SUFFIXES = (".log", ".txt", ".out", ".jsonl", ".csv", ".json")


def load_run(path: str | os.PathLike[str]) -> Run:
    """Detect the format of ``path`` and parse it.

    Args:
        path: a log file or a directory (output/checkpoint dir, run dir, mlruns, tensorboard dir).

    Returns:
        The parsed :class:`Run`, with facts inferred (:func:`~tuneterm.logs.infer.infer_facts`).
        It may hold no metrics; ``run.notes`` then says why.

    Raises:
        InputError: missing path, unreadable file, empty file, binary junk, deeply nested JSON,
            a directory with nothing recognisable, TensorBoard files without ``tensorboard``.
    """
    p = Path(path)
    try:
        exists = p.exists()
    except (OSError, ValueError):
        exists = False
    if not exists:
        raise InputError(f"no such file or directory: {show(p)}")
    if p.is_dir():
        run = _load_dir(p)
    else:
        run = Run(source=str(p), format="unknown")
        load_file(p, run)
    return infer_facts(run)


# ------------------------------------------------------------------------------------------ files
def sniff(path: Path, head: bytes) -> str:
    """The format id of a file from its name and first bytes (``json``, ``jsonl``, ``csv``,
    ``tensorboard``, ``console``)."""
    if "tfevents" in path.name:
        return "tensorboard"
    text = head.decode("utf-8", "replace").lstrip("\ufeff \t\r\n")
    if text.startswith(("{\"", "{\n", "{\r", "{ ", "{}")) or (
        text.startswith("[") and text[1:].lstrip(" \t\r\n")[:1] in ("{", "[", "]", '"', "")
    ) or path.suffix.lower() == ".json":
        first, _, rest = text.partition("\n")
        if first.strip().startswith("{") and rest.strip().startswith("{"):
            try:
                json.loads(first)
                return "jsonl"
            except (ValueError, RecursionError):
                pass
        return "json"
    if path.suffix.lower() == ".jsonl":
        return "jsonl"
    first_line = text.split("\n", 1)[0]
    if path.suffix.lower() in (".csv", ".tsv") or (
        _CSV_HEADER.match(first_line)
        and any(k in first_line.lower() for k in ("loss", "epoch", "step", "accuracy"))
    ):
        return "csv"
    return "console"


def load_file(p: Path, run: Run, *, hint: str | None = None) -> None:
    """Parse one file into ``run`` (format detected unless ``hint`` is given)."""
    if p.suffix == ".wandb" and p.is_file():
        from tuneterm.logs.wandb import read_wandb

        read_wandb(run, p)
        return
    if "tfevents" in p.name:
        from tuneterm.logs.tensorboard import read_tensorboard

        read_tensorboard(run, p)
        return
    try:
        size = p.stat().st_size
    except OSError as e:
        raise InputError(f"cannot read {show(p)}: {e.strerror or e}") from None
    if not p.is_file():
        raise InputError(f"{show(p)} is not a regular file")
    if size == 0:  # nothing to check (exit 3), not unreadable input
        raise NoMetricsError(f"{show(p)} is empty: no training metrics")
    head = read_head(p)
    if looks_binary(head[:8192]):
        raise InputError(f"{show(p)} is binary data, not a training log")
    fmt = hint or sniff(p, head)
    if fmt == "json":
        try:
            data = p.read_bytes()
        except OSError as e:
            raise InputError(f"cannot read {show(p)}: {e.strerror or e}") from None
        try:
            read_json_file(run, p, data)
        except NotJsonError:
            if hint == "json":
                raise
            # Not JSON after all and nothing salvageable: read it as text.
            run.format = "console"
            read_console(run, p)
    elif fmt == "jsonl":
        run.format = "llamafactory_jsonl"
        parser = JsonlParser(run)
        sp = LineSplitter()
        for lineno, seg in iter_segments(p, sp):
            parser.feed(lineno, seg)
        parser.finish()
        if not parser.llamafactory:
            run.format = "jsonl"
        _note_dropped(run, sp)
    elif fmt == "csv":
        read_csv(run, p)
    else:
        run.format = "console"
        read_console(run, p)
        if not run.has_metrics():
            run.notes.append("no metric lines found in the console log")


def read_console(run: Run, p: Path, *, metrics: bool = True) -> ConsoleParser:
    """Stream a console log through a :class:`ConsoleParser`."""
    parser = ConsoleParser(run, metrics=metrics)
    sp = LineSplitter()
    for lineno, seg in iter_segments(p, sp):
        parser.feed(lineno, seg)
    parser.finish()
    _note_dropped(run, sp)
    return parser


def _note_dropped(run: Run, sp: LineSplitter) -> None:
    if sp.dropped:
        run.notes.append(f"skipped {sp.dropped} line segment(s) longer than 1 MiB")


# ------------------------------------------------------------------------------------ directories
def _checkpoints(d: Path) -> list[tuple[int, Path]]:
    out = []
    try:
        for c in d.iterdir():
            m = _CKPT.match(c.name)
            if m and c.is_dir():
                out.append((int(m.group(1)), c))
    except OSError:
        return []
    return sorted(out)


def _side_facts(run: Run, dirs: list[Path]) -> None:
    """Facts from adapter_config.json, config.json and training configs in ``dirs`` (first wins)."""
    for d in dirs:
        ac = load_mapping(d / "adapter_config.json")
        if ac is not None:
            apply_adapter_config(run.facts, ac)
        mc = load_mapping(d / "config.json")
        if mc is not None:
            apply_model_config(run.facts, mc)
    for d in dirs:
        try:
            files = sorted(d.iterdir())[:500]
        except OSError:
            continue
        n = 0
        for f in files:
            name = f.name.lower()
            if n >= 20:
                break
            if name.endswith((".yaml", ".yml")) or (
                name.endswith(".json") and name not in _NOT_CONFIG_JSON and ("arg" in name or "config" in name)
            ):
                cfg = load_mapping(f)
                if cfg is not None and "log_history" not in cfg:
                    apply_config(run.facts, cfg)
                    n += 1


def _load_dir(d: Path) -> Run:
    run = Run(source=str(d), format="unknown")
    ckpts = _checkpoints(d)
    top_state = d / "trainer_state.json"
    chosen_state: Path | None = None
    if top_state.is_file():
        chosen_state = top_state
    if ckpts and (ckpts[-1][1] / "trainer_state.json").is_file():
        latest = ckpts[-1][1] / "trainer_state.json"
        if chosen_state is None or _global_step(chosen_state) < ckpts[-1][0]:
            chosen_state = latest
    if chosen_state is not None:
        run.source = str(chosen_state)
        _side_facts(run, [chosen_state.parent, d] if chosen_state.parent != d else [d])
        load_file(chosen_state, run, hint="json")
        if ckpts:
            run.facts.checkpoints = tuple(n for n, _ in ckpts)[-50:]
        return run
    from tuneterm.logs.wandb import read_wandb, wandb_run_file

    if wandb_run_file(d) is not None:  # a W&B run directory, or the wandb/ directory above runs
        read_wandb(run, d)
        return run
    for name in ("trainer_log.jsonl",):
        if (d / name).is_file():
            _side_facts(run, [d])
            run.source = str(d / name)
            load_file(d / name, run, hint="jsonl")
            return run
    from tuneterm.logs.mlflow import find_mlflow_runs, read_mlflow

    ml = d / "mlruns" if (d / "mlruns").is_dir() else d
    if find_mlflow_runs(ml):
        read_mlflow(run, ml)
        return run
    from tuneterm.logs.tensorboard import event_files, read_tensorboard

    if event_files(d):
        read_tensorboard(run, d)
        return run
    candidates = _log_candidates(d)
    if not candidates:
        raise InputError(
            f"no training log found in {show(d)} (looked for trainer_state.json, checkpoint-*/, "
            "trainer_log.jsonl, metrics.jsonl, run-*.wandb, *.log, *.csv, mlruns, tfevents)"
        )
    _side_facts(run, [d])
    last_err: InputError | None = None
    for c in candidates:
        trial = Run(source=str(c), format="unknown", facts=run.facts)
        try:
            load_file(c, trial)
        except InputError as e:
            last_err = e
            continue
        if trial.has_metrics():
            if len(candidates) > 1:
                trial.notes.append(f"read {show(c.name)} ({len(candidates)} candidate log files)")
            return trial
    if last_err is not None and len(candidates) == 1:
        raise last_err
    run.notes.append(f"none of {len(candidates)} candidate file(s) in {show(d)} holds metrics")
    return run


def _global_step(p: Path) -> int:
    m = re.search(rb'"global_step"\s*:\s*(\d{1,12})', read_head(p, 1 << 20))
    if m:
        return int(m.group(1))
    try:
        doc = json.loads(p.read_bytes())
    except (ValueError, RecursionError, OSError):
        return -1
    gs = doc.get("global_step") if isinstance(doc, dict) else None
    return gs if isinstance(gs, int) else -1


def _log_candidates(d: Path) -> list[Path]:
    try:
        files = [f for f in sorted(d.iterdir()) if f.is_file()]
    except OSError as e:
        raise InputError(f"cannot list {show(d)}: {e.strerror or e}") from None
    out = []
    for f in files:
        name = f.name.lower()
        if not name.endswith(_LOG_SUFFIXES) or name in _NOT_CONFIG_JSON:
            continue
        if name.endswith(".json") and ("config" in name or "tokenizer" in name):
            continue
        out.append(f)
    # likely metric files first
    def rank(f: Path) -> int:
        n = f.name.lower()
        for i, key in enumerate(("log_history", "trainer_log", "metrics", "train", "log")):
            if key in n:
                return i
        return 9

    return sorted(out, key=rank)
