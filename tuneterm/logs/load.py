"""``load_run(path)``: detect the format of a file or directory and parse it into a :class:`Run`.

Detection is by content first, name second:

* a file whose text starts with ``{"`` / ``[``: JSON (trainer_state, bare log_history, ``metrics``
  list), or JSON Lines when its first line is a complete object and more objects follow;
* ``events.out.tfevents.*``: TensorBoard; a ``.csv`` name or a CSV-looking header: CSV;
* anything else that is text: a console log;
* a directory: a tuneterm run directory (``metrics.jsonl``/``status.json``), an HF output or
  checkpoint directory (top-level or latest ``checkpoint-N/trainer_state.json``, by step number),
  a W&B run (``run-*.wandb``, offline or synced, or the ``wandb/`` directory: its latest run),
  a LLaMA-Factory output (``trainer_log.jsonl``), an MLflow store, TensorBoard logs, or a single
  recognisable log file. Side files (``adapter_config.json``, ``config.json``, YAML/JSON training
  configs) add facts. ``training_args.bin`` is a pickle and is never opened.

Errors are :class:`~tuneterm.errors.InputError` with one line naming the path. A run that was read
but holds no metrics is returned as is, with ``run.notes`` saying why (the CLI exits 3).
"""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path
from typing import Any

from tuneterm.errors import InputError
from tuneterm.logs.console import ConsoleParser
from tuneterm.logs.csvfmt import read_csv
from tuneterm.logs.facts import apply_adapter_config, apply_config, apply_model_config, load_mapping
from tuneterm.logs.infer import infer_facts
from tuneterm.logs.jsonfmt import NotJsonError, decode_json, read_json_doc, read_json_file
from tuneterm.logs.jsonl import JsonlParser
from tuneterm.logs.model import LogEvent, Run
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
    if size == 0:
        raise InputError(f"{show(p)} is empty")
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
    if (d / "metrics.jsonl").is_file() or (d / "status.json").is_file():
        _load_run_dir(d, run)
        return run
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
            run.facts.extra["checkpoints"] = [n for n, _ in ckpts][-50:]
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


# ------------------------------------------------------------------------------ tuneterm run dirs
def _load_run_dir(d: Path, run: Run) -> None:
    """A tuneterm run directory (DESIGN.md "A run directory")."""
    run.format = "run_dir"
    for name in ("config.yaml", "config.yml", "config.json"):
        cfg = load_mapping(d / name)
        if cfg is not None:
            apply_config(run.facts, cfg)
            break
    status = load_mapping(d / "status.json")
    mpath = d / "metrics.jsonl"
    if mpath.is_file():
        parser = JsonlParser(run)
        sp = LineSplitter()
        for lineno, seg in iter_segments(mpath, sp):
            parser.feed(lineno, seg)
        parser.finish()
        run.format = "run_dir"
    elif not is_command_run(d):
        run.notes.append("run directory has no metrics.jsonl yet")
    command = is_command_run(d)
    for name in ("stderr.log", "stdout.log"):
        lp = d / name
        if lp.is_file() and lp.stat().st_size > 0 and not looks_binary(read_head(lp, 8192)):
            # A `tuneterm watch -- COMMAND` run has no metrics.jsonl: its metrics are the
            # command's console output (stdout and stderr both go to stdout.log).
            read_console(run, lp, metrics=command and name == "stdout.log")
    read_samples(run, d / "samples.jsonl")
    if status is not None:
        apply_status(run, status)
    read_memory_record(run, d)


def read_memory_record(run: Run, d: Path) -> None:
    """The planner's estimate (launch.json ``memory_estimate``, written by ``tuneterm train``) and
    the measured peak (``gpu.jsonl``: the largest ``peak_allocated_mib`` and ``peak_reserved_mib``
    of a CUDA run) into ``run.facts.extra``: ``memory_estimate`` (the recorded dict),
    ``measured_peak_allocated_gib``, ``measured_peak_reserved_gib`` and ``gpu_name``.

    Either side may be missing (a CPU run has no CUDA peaks; a run launched before 0.2, or of a
    model the planner does not know, has no estimate). Malformed rows are skipped.
    """
    extra = run.facts.extra
    launch = load_mapping(d / "launch.json")
    est = launch.get("memory_estimate") if isinstance(launch, dict) else None
    if isinstance(est, dict) and isinstance(est.get("peak_gib"), (int, float)):
        extra["memory_estimate"] = est
    alloc = reserved = None
    name = None
    try:
        with open(d / "gpu.jsonl", "rb") as fh:
            for raw in fh:
                try:
                    row = json.loads(raw)
                except ValueError:
                    continue
                if not isinstance(row, dict):
                    continue
                for key in ("peak_allocated_mib", "mem_allocated_mib"):
                    v = row.get(key)
                    if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v:
                        alloc = v if alloc is None else max(alloc, v)
                for key in ("peak_reserved_mib", "mem_reserved_mib"):
                    v = row.get(key)
                    if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v:
                        reserved = v if reserved is None else max(reserved, v)
                if name is None and isinstance(row.get("name"), str):
                    name = row["name"][:100]
    except OSError:
        pass
    if alloc is not None:
        extra["measured_peak_allocated_gib"] = round(alloc / 1024, 3)
    if reserved is not None:
        extra["measured_peak_reserved_gib"] = round(reserved / 1024, 3)
    if name is not None:
        extra["gpu_name"] = name


def memory_line(extra: dict[str, Any]) -> str | None:
    """``memory per GPU: estimated 18.6 GiB, measured 17.9 GiB (+4%; reserved 19.1)`` from
    :func:`read_memory_record`'s facts, or None when no CUDA peak was measured (a CPU run, or a run
    that has not logged yet: an estimate "per GPU" alone would mislead there). The planner's peak
    is a reserved-memory figure, so it is compared with the measured reserved peak when there is one.

    >>> memory_line({"memory_estimate": {"peak_gib": 10.0}, "measured_peak_allocated_gib": 9.0, "measured_peak_reserved_gib": 11.0})
    'memory per GPU: estimated 10.0 GiB, measured 11.0 GiB reserved (estimate -9%; allocated 9.0)'
    """
    est = extra.get("memory_estimate")
    peak = float(est["peak_gib"]) if isinstance(est, dict) and isinstance(est.get("peak_gib"), (int, float)) else None
    alloc, reserved = extra.get("measured_peak_allocated_gib"), extra.get("measured_peak_reserved_gib")
    measured = reserved if isinstance(reserved, (int, float)) else alloc
    if not isinstance(measured, (int, float)):
        return None
    parts = []
    if peak is not None:
        parts.append(f"estimated {peak:.1f} GiB")
    if isinstance(measured, (int, float)):
        what = "reserved" if measured is reserved else "allocated"
        m = f"measured {measured:.1f} GiB {what}"
        extras = []
        if peak is not None and measured > 0:
            extras.append(f"estimate {(peak - measured) / measured:+.0%}")
        if what == "reserved" and isinstance(alloc, (int, float)):
            extras.append(f"allocated {alloc:.1f}")
        parts.append(m + (f" ({'; '.join(extras)})" if extras else ""))
    return "memory per GPU: " + ", ".join(parts)


def is_command_run(d: Path) -> bool:
    """True for a run directory made by ``tuneterm watch -- COMMAND`` (launch.json ``kind``)."""
    try:
        with open(d / "launch.json", encoding="utf-8") as fh:
            launch = json.load(fh)
    except (OSError, ValueError):
        return False
    return isinstance(launch, dict) and launch.get("kind") == "command"


_MAX_SAMPLES = 2000
_MAX_SAMPLE_TEXT = 4000


def read_samples(run: Run, path: Path) -> None:
    """Generations from a run directory's ``samples.jsonl`` into ``run.samples`` (bounded).

    Keeps the last :data:`_MAX_SAMPLES` records that have a ``step``, ``prompt`` and
    ``completion``; texts are cut to 4,000 characters and kept raw (render them inert).
    """
    if not path.is_file():
        return
    kept: list[dict[str, Any]] = []
    bad = 0
    for _, seg in iter_segments(path, LineSplitter()):
        s = seg.strip()
        if not s:
            continue
        try:
            rec = json.loads(s)
        except (ValueError, RecursionError):
            bad += 1
            continue
        if not isinstance(rec, dict) or not isinstance(rec.get("completion"), str):
            bad += 1
            continue
        step = rec.get("step")
        if not isinstance(step, int) or isinstance(step, bool):
            bad += 1
            continue
        out: dict[str, Any] = {
            "step": step,
            "prompt": str(rec.get("prompt", ""))[:_MAX_SAMPLE_TEXT],
            "completion": rec["completion"][:_MAX_SAMPLE_TEXT],
        }
        if isinstance(rec.get("n_tokens"), int):
            out["n_tokens"] = rec["n_tokens"]
        if isinstance(rec.get("hit_max_tokens"), bool):
            out["hit_max_tokens"] = rec["hit_max_tokens"]
        kept.append(out)
        if len(kept) > _MAX_SAMPLES:
            del kept[: len(kept) - _MAX_SAMPLES]
    run.samples = kept
    if bad:
        run.notes.append(f"samples.jsonl: skipped {bad} malformed record(s)")


def apply_status(run: Run, status: dict[str, Any] | Any) -> None:
    """Facts and a failure event from a run directory's ``status.json``."""
    f = run.facts
    state = status.get("state")
    code = status.get("exit_code")
    ms = status.get("max_steps")
    if isinstance(ms, int) and not isinstance(ms, bool) and ms > 0 and f.max_steps is None:
        f.max_steps = ms
    for key in ("trainer", "method"):
        v = status.get(key)
        if isinstance(v, str) and v and key == "trainer" and f.algorithm is None:
            f.algorithm = v.lower()
    if isinstance(state, str):
        f.extra["state"] = state
        if state == "finished":
            f.finished = True
    if isinstance(code, int) and not isinstance(code, bool):
        f.extra["exit_code"] = code
    failed = state == "failed" or (isinstance(code, int) and not isinstance(code, bool) and code != 0)
    if failed and not any(e.kind in ("exception", "oom", "signal") for e in run.events):
        err = status.get("error")
        text = err if isinstance(err, str) and err else f"run {state or 'failed'} (exit code {code})"
        sig = None
        if isinstance(code, int) and (code < 0 or code > 128):
            n = -code if code < 0 else code - 128
            try:
                sig = signal.Signals(n).name
            except ValueError:
                sig = f"SIG{n}"
        if sig is not None:
            run.events.append(LogEvent(kind="signal", text=text[:2000], step=run.last_step, code=sig))
        elif status.get("error_kind") == "config":  # TRL rejected the config in the worker
            run.events.append(LogEvent(kind="exception", text=text[:2000], step=run.last_step, code="ConfigError"))
        else:
            m = re.match(r"^([A-Za-z_][\w.]{0,200}?)(?::|$)", text)
            cls = m.group(1).rsplit(".", 1)[-1] if m else None
            kind = "oom" if "out of memory" in text or (cls and "OutOfMemory" in cls) else "exception"
            run.events.append(
                LogEvent(
                    kind=kind,  # type: ignore[arg-type]
                    text=text[:2000],
                    step=run.last_step,
                    code="cuda-oom" if kind == "oom" else (cls or f"exit-{code}"),
                )
            )


def load_json_bytes(data: bytes, source: str = "<bytes>") -> Run:
    """Parse JSON bytes already in memory (tests, stdin); same rules as a JSON file."""
    run = Run(source=source, format="unknown")
    try:
        doc = decode_json(data, Path(source))
    except json.JSONDecodeError:
        read_json_file(run, Path(source), data)
    else:
        read_json_doc(run, doc, Path(source))
    return infer_facts(run)
