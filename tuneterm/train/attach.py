"""A run directory for a trainer tuneterm did not launch: what :class:`TunetermCallback` writes
when it is added to the user's own HF Trainer, TRL trainer, Unsloth, Axolotl or LLaMA-Factory run.

The directory has the layout of a ``tuneterm train`` run (see :mod:`tuneterm.runs.layout`):

* ``config.yaml``: the TrainingArguments fields that differ from their class defaults (plus the
  few every diagnosis reads: learning rate, batch geometry, steps, schedule), under the names of
  the arguments class in use (TRL's SFTConfig/DPOConfig/GRPOConfig or transformers'
  TrainingArguments), and the model in TRL ModelConfig names (``model_name_or_path``, ``dtype``,
  ``use_peft``, ``lora_r``, ``lora_alpha``, ``lora_dropout``, ``lora_target_modules``,
  ``use_dora``, ``use_rslora``, ``load_in_4bit``/``load_in_8bit``);
* ``launch.json``: ``{"kind": "callback", "trainer", "method", "stop_on", "sample_every", "cwd",
  "argv", "tuneterm_version"}``;
* ``status.json``: ``pid`` and ``worker_pid`` are the training process itself, so ``tuneterm
  runs`` shows ``died`` once it is gone without recording an end.

SIGTERM (``tuneterm stop RUN``, ``tuneterm watch RUN --stop-on error``) becomes a graceful stop at
the next step end (:func:`install_stop_signal`). An exception that escapes ``trainer.train()``
never reaches a callback; :func:`install_crash_hooks`
records it (``state: failed``, the one-line error, the traceback appended to ``stderr.log``) from
``sys.excepthook``, and an interpreter exit while the run is still ``running`` from ``atexit``.
"""

from __future__ import annotations

import atexit
import dataclasses
import enum
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from tuneterm.runs.layout import RunDir, create_run_dir, initial_status, runs_root
from tuneterm.runs.writer import now_iso, write_json_atomic

log = logging.getLogger("tuneterm.callback")

# Read by the facts and the rules whatever their value, so written even when they are defaults.
_ALWAYS = (
    "learning_rate",
    "num_train_epochs",
    "max_steps",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "logging_steps",
    "lr_scheduler_type",
    "warmup_steps",
    "weight_decay",
    "max_grad_norm",
    "bf16",
    "fp16",
    "seed",
)
# Never written: secrets and values that only make sense inside the process.
_SKIP = frozenset({"hub_token", "push_to_hub_token", "hub_private_repo", "deepspeed_plugin", "local_rank"})

_TRAINER_OF_ARGS = {"SFTConfig": "sft", "DPOConfig": "dpo", "GRPOConfig": "grpo", "ORPOConfig": "dpo", "KTOConfig": "dpo"}


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What the config records of the model being trained (TRL ModelConfig names)."""

    fields: dict[str, Any]
    method: str
    name: str | None


class _Opaque:
    """Marks a value config.yaml cannot hold (an object only meaningful in the process)."""


_OPAQUE = _Opaque()


def _plain(value: Any) -> Any:
    """A YAML-safe value: enums by value, tuples/sets as lists, dataclasses as mappings; other
    objects are :data:`_OPAQUE` (left out of config.yaml)."""
    if isinstance(value, enum.Enum):
        return _plain(value.value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [_plain(v) for v in value]
        return _OPAQUE if any(v is _OPAQUE for v in items) else items
    if isinstance(value, Mapping):
        out = {str(k): _plain(v) for k, v in value.items()}
        return _OPAQUE if any(v is _OPAQUE for v in out.values()) else out
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain({f.name: getattr(value, f.name, None) for f in dataclasses.fields(value)})
    return _OPAQUE


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        try:
            return f.default_factory()
        except Exception:  # noqa: BLE001 - a factory that needs context: treat the value as set
            return dataclasses.MISSING
    return dataclasses.MISSING


def args_config(args: Any) -> dict[str, Any]:
    """The arguments' fields that differ from their class defaults, plus :data:`_ALWAYS`.

    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class A:
    ...     learning_rate: float = 5e-5
    ...     seed: int = 42
    ...     output_dir: str = "out"
    >>> args_config(A(output_dir="x"))
    {'learning_rate': 5e-05, 'seed': 42, 'output_dir': 'x'}
    """
    if not dataclasses.is_dataclass(args):
        return {}
    out: dict[str, Any] = {}
    for f in dataclasses.fields(args):
        if f.name in _SKIP or f.name.startswith("_") or not f.init:
            continue
        value = _plain(getattr(args, f.name, None))
        if value is not _OPAQUE and (f.name in _ALWAYS or value != _plain(_default(f))):
            out[f.name] = value
    return out


def _base_model(model: Any) -> Any:
    """The transformers model under a PEFT wrapper (or the model itself)."""
    get_base = getattr(model, "get_base_model", None)
    if callable(get_base):
        try:
            return get_base()
        except Exception:  # noqa: BLE001 - odd wrappers: fall back to the object we have
            return model
    return model


def model_info(model: Any) -> ModelInfo:
    """The model fields of config.yaml and the method (full, lora, qlora, dora)."""
    if model is None:
        return ModelInfo({}, "full", None)
    base = _base_model(model)
    cfg = getattr(base, "config", None)
    name = getattr(base, "name_or_path", None) or getattr(cfg, "_name_or_path", None)
    fields: dict[str, Any] = {}
    if isinstance(name, str) and name:
        fields["model_name_or_path"] = name
    dtype = getattr(base, "dtype", None)
    if dtype is not None:
        fields["dtype"] = str(dtype).removeprefix("torch.")
    four = bool(getattr(base, "is_loaded_in_4bit", False))
    eight = bool(getattr(base, "is_loaded_in_8bit", False))
    if four:
        fields["load_in_4bit"] = True
    if eight:
        fields["load_in_8bit"] = True
    peft = getattr(model, "peft_config", None)
    lora = next(iter(peft.values()), None) if isinstance(peft, Mapping) and peft else None
    method = "full"
    if lora is not None:
        fields["use_peft"] = True
        for key, attr in (("lora_r", "r"), ("lora_alpha", "lora_alpha"), ("lora_dropout", "lora_dropout"),
                          ("lora_target_modules", "target_modules"), ("use_dora", "use_dora"),
                          ("use_rslora", "use_rslora")):
            value = getattr(lora, attr, None)
            value = _plain(value)
            if value is not None and value is not _OPAQUE:
                fields[key] = sorted(value) if isinstance(value, list) else value
        method = "dora" if getattr(lora, "use_dora", False) else ("qlora" if four or eight else "lora")
    return ModelInfo(fields, method, name if isinstance(name, str) and name else None)


def trainer_kind(args: Any, model: Any) -> str | None:
    """``sft``/``dpo``/``grpo`` from TRL's arguments class; a plain Trainer on a causal LM is
    supervised fine-tuning (``sft``), on a classifier ``classification``; else None (unknown)."""
    for cls in type(args).__mro__:
        kind = _TRAINER_OF_ARGS.get(cls.__name__)
        if kind is not None:
            return kind
    arch = type(_base_model(model)).__name__ if model is not None else ""
    if arch.endswith("ForCausalLM"):
        return "sft"
    if arch.endswith("ForSequenceClassification"):
        return "classification"
    return None


def open_run_dir(
    args: Any,
    model: Any,
    *,
    runs_dir: str | os.PathLike[str] | None,
    name: str | None,
    launch: Mapping[str, Any],
) -> RunDir:
    """Create the run directory and write config.yaml, launch.json and the first status.json.

    Raises:
        InputError: the name exists already or is unsafe; the runs directory cannot be created.
    """
    info = model_info(model)
    kind = trainer_kind(args, model)
    stem = (info.name or "run").rstrip("/").rsplit("/", 1)[-1]
    rd = create_run_dir(runs_root(runs_dir), name, f"{kind or 'train'}-{stem}")
    config = {**info.fields, **args_config(args)}
    header = "# written by TunetermCallback from the TrainingArguments and the model in training\n"
    rd.config.write_text(header + yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")
    from tuneterm.version import __version__

    write_json_atomic(
        rd.launch,
        {
            "kind": "callback",
            "trainer": kind,
            "method": info.method,
            **launch,
            "cwd": os.getcwd(),
            "argv": list(sys.argv),
            "tuneterm_version": __version__,
        },
    )
    status = initial_status(rd, trainer=kind or "unknown", method=info.method, command=[sys.executable, *sys.argv])
    status.update(state="running", pid=os.getpid(), pgid=None, worker_pid=os.getpid())
    write_json_atomic(rd.status_file, status)
    return rd


def error_line(exc: BaseException) -> str:
    """``"TypeName: first line of the message"`` (at most 400 characters)."""
    text = str(exc).strip()
    msg = text.splitlines()[0] if text else ""
    return (f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__)[:400]


def install_crash_hooks(rd: RunDir, on_end: Callable[[str, str | None], None]) -> Callable[[], None]:
    """Record a training process that ends without ``on_train_end``: an uncaught exception
    (``sys.excepthook``: traceback to stderr.log, ``failed`` with the error line) or an interpreter
    exit while the run is still live (``atexit``). ``on_end(state, error)`` runs after the record
    (notifications). Returns a function that removes both hooks (called at a normal end).
    """
    previous = sys.excepthook

    def record(state: str, error: str | None, exit_code: int | None) -> None:
        if rd.read_status().get("state") in ("running", "starting"):
            rd.update_status(state=state, error=error, exit_code=exit_code, ended=now_iso())
            on_end(state, error)

    def hook(etype: type[BaseException], value: BaseException, tb: Any) -> None:
        try:
            with open(rd.stderr, "a", encoding="utf-8") as fh:
                fh.write("".join(traceback.format_exception(etype, value, tb)))
            interrupted = issubclass(etype, KeyboardInterrupt)
            record("failed", error_line(value), 130 if interrupted else 1)
        except Exception as exc:  # noqa: BLE001 - the user's own excepthook must still run
            log.warning("could not record the crash in %s: %s", rd.path, exc)
        previous(etype, value, tb)

    def at_exit() -> None:
        try:
            record("failed", "the training process exited before training ended", None)
        except Exception as exc:  # noqa: BLE001 - never turn an exit into a traceback
            log.warning("could not record the end of %s: %s", rd.path, exc)

    sys.excepthook = hook
    atexit.register(at_exit)

    def remove() -> None:
        if sys.excepthook is hook:
            sys.excepthook = previous
        atexit.unregister(at_exit)

    return remove


def install_stop_signal(on_term: Callable[[], None]) -> Callable[[], None]:
    """Turn SIGTERM (``tuneterm stop RUN``, ``watch --stop-on error``) into a graceful stop: the
    first one calls ``on_term`` (the callback then stops training at the next step end, as for
    ``stop_on``); a second one while stopping restores the previous handler and delivers itself
    again (the default ends the process). Only from the main thread (Python's rule for signal
    handlers); elsewhere nothing is installed. Returns a function that restores the previous
    handler."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    received = False

    def handler(signum: int, frame: Any) -> None:
        nonlocal received
        if received:
            signal.signal(signal.SIGTERM, previous)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        received = True
        on_term()

    previous = signal.signal(signal.SIGTERM, handler)

    def remove() -> None:
        if signal.getsignal(signal.SIGTERM) is handler:
            signal.signal(signal.SIGTERM, previous)

    return remove
