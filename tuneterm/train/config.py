"""Training configs: read, override (``--set``), infer the trainer, validate with TRL's own classes.

A config is a flat YAML mapping in TRL's field names: exactly what ``trl sft|dpo|grpo --config FILE``
accepts (``ScriptArguments`` or ``GRPOScriptArguments`` + ``SFTConfig``/``DPOConfig``/``GRPOConfig``
+ ``ModelConfig`` + ``DatasetMixtureConfig``), plus TRL's ``env:`` mapping of environment
variables. TRL rejects unknown keys, so tuneterm's own choices (trainer, GPUs) come from the command
line, never from extra keys, or from a comment directive in the YAML (TRL ignores comments)::

    # tuneterm: trainer=dpo

The trainer is chosen by ``--trainer``, else that directive, else the keys (:func:`infer_trainer`),
else the built-in dataset's kind (``tuneterm:tiny-dpo`` -> dpo), else ``sft``.

Validation happens in the launcher, before any process starts, and refuses with one line naming
the key (:class:`~tuneterm.errors.ConfigError`, exit 2):

* unknown keys (with a "did you mean" suggestion),
* wrong types (checked against the dataclass annotations; strings that argparse would convert, such
  as YAML's ``2e-5`` which YAML 1.1 reads as a *string*, are converted the same way TRL's CLI does),
* a missing model or dataset, ``load_in_4bit`` without ``use_peft``,
* whatever TRL's and transformers' own ``__post_init__`` checks reject (the dataclasses are really
  instantiated with the values).

Only :func:`validate` imports the training stack (trl, hence transformers and torch).
"""

from __future__ import annotations

import difflib
import enum
import math
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from tuneterm.errors import ConfigError, InputError

Trainer = Literal["sft", "dpo", "grpo"]
Method = Literal["full", "lora", "qlora", "dora"]
TRAINERS: tuple[Trainer, ...] = ("sft", "dpo", "grpo")

# Keys whose presence alone says "GRPO" (GRPOScriptArguments and GRPO-only generation knobs).
_GRPO_KEYS = frozenset({"reward_funcs", "reward_model_name_or_path", "num_generations", "reward_weights"})

# Defaults tuneterm applies to every run it launches, unless the config sets the key itself.
# logging_nan_inf_filter: the Trainer otherwise replaces a NaN/Inf loss by the running average when
# logging, hiding the single most important symptom a log can show.
TUNETERM_DEFAULTS: dict[str, Any] = {"logging_nan_inf_filter": False}


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """A resolved, validated training config.

    Attributes:
        values: the flat TRL mapping after ``--set`` overrides and tuneterm defaults.
        trainer: ``sft``, ``dpo`` or ``grpo``.
        method: ``full``, ``lora``, ``qlora`` or ``dora`` (derived from use_peft / load_in_4bit /
            use_dora).
        source: the config path the user gave (``"<built-in>"`` style names kept as given).
        env: environment variables from the config's ``env:`` mapping (TRL semantics).
        applied_defaults: keys whose value came from :data:`TUNETERM_DEFAULTS` or the run
            directory (``output_dir``), for the comment at the top of the run's config.yaml.
    """

    values: dict[str, Any]
    trainer: Trainer
    method: Method
    source: str
    env: dict[str, str] = field(default_factory=dict)
    applied_defaults: tuple[str, ...] = ()


_DIRECTIVE = re.compile(r"^\s*#\s*tuneterm:\s*trainer\s*[=:]\s*([A-Za-z]+)\s*$", re.MULTILINE)


def trainer_directive(path: str | Path) -> str | None:
    """The trainer named by a ``# tuneterm: trainer=NAME`` comment in the file, if any.

    Raises:
        ConfigError: the directive names an unknown trainer.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    m = _DIRECTIVE.search(text)
    if m is None:
        return None
    name = m.group(1).lower()
    if name not in TRAINERS:
        raise ConfigError(f"{path}: '# tuneterm: trainer={name}': expected one of {', '.join(TRAINERS)}")
    return name


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML config with ``yaml.safe_load``; it must be a mapping with string keys.

    Raises:
        InputError: the file is missing or unreadable.
        ConfigError: not YAML, or not a mapping.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: no such config file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, expected a YAML config file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (invalid UTF-8)") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ConfigError(f"{path}:{where} invalid YAML: {problem}") from None
    if data is None:
        raise ConfigError(f"{path}: empty config (expected a mapping of TRL fields)")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of TRL fields, got a {type(data).__name__}")
    bad = [k for k in data if not isinstance(k, str)]
    if bad:
        raise ConfigError(f"{path}: keys must be strings, got {bad[0]!r}")
    return data


def parse_set(items: list[str]) -> dict[str, Any]:
    """Parse ``--set key=value`` items; values are YAML scalars (``1e-4`` -> float, ``true`` -> bool).

    >>> parse_set(["learning_rate=0", "use_peft=true", "lora_target_modules=[q_proj, v_proj]"])
    {'learning_rate': 0, 'use_peft': True, 'lora_target_modules': ['q_proj', 'v_proj']}

    Raises:
        ConfigError: an item without ``=`` or with an empty key.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        # YAML 1.1 reads "2e-5" as a string; --set users mean the number.
        if isinstance(value, str):
            try:
                value = float(value) if any(c in value.lower() for c in ".e") and value.strip() else value
            except ValueError:
                pass
        out[key] = value
    return out


def infer_trainer(values: Mapping[str, Any], explicit: str | None = None) -> Trainer:
    """Choose the trainer: ``explicit`` (``--trainer``) if given, else from the keys.

    ``reward_funcs`` (or another GRPO-only key) -> ``grpo``; a key that only DPOConfig has ->
    ``dpo``; otherwise ``sft``. Needs TRL for the DPO key set (imported lazily, only when the cheap
    checks do not decide).

    Raises:
        ConfigError: ``explicit`` is not a known trainer.
    """
    if explicit is not None:
        if explicit not in TRAINERS:
            raise ConfigError(f"--trainer {explicit!r}: expected one of {', '.join(TRAINERS)}")
        return typing.cast(Trainer, explicit)
    keys = set(values)
    if keys & _GRPO_KEYS:
        return "grpo"
    if keys & dpo_only_keys():
        return "dpo"
    if values.get("dataset_name") == "tuneterm:tiny-dpo":
        return "dpo"
    if values.get("dataset_name") == "tuneterm:tiny-prompts":
        return "grpo"
    return "sft"


def dpo_only_keys() -> frozenset[str]:
    """Fields of DPOConfig that neither SFTConfig nor GRPOConfig has (``beta`` is shared with GRPO)."""
    from trl import DPOConfig, GRPOConfig, SFTConfig

    dpo = _field_names(DPOConfig)
    return frozenset(dpo - _field_names(SFTConfig) - _field_names(GRPOConfig))


def dataclass_types(trainer: Trainer) -> tuple[type, ...]:
    """TRL's dataclasses for ``trainer``, in the order ``trl <trainer>`` parses them."""
    from trl import DatasetMixtureConfig, DPOConfig, GRPOConfig, ModelConfig, ScriptArguments, SFTConfig

    if trainer == "grpo":
        from trl.scripts.grpo import GRPOScriptArguments

        return (GRPOScriptArguments, GRPOConfig, ModelConfig, DatasetMixtureConfig)
    cfg = {"sft": SFTConfig, "dpo": DPOConfig}[trainer]
    return (ScriptArguments, cfg, ModelConfig, DatasetMixtureConfig)


def _field_names(cls: type) -> set[str]:
    import dataclasses

    return {f.name for f in dataclasses.fields(cls) if f.init}


def method_of(values: Mapping[str, Any]) -> Method:
    """``full``, ``lora``, ``qlora`` (use_peft + load_in_4bit) or ``dora`` (use_peft + use_dora).

    >>> method_of({"use_peft": True, "load_in_4bit": True}), method_of({})
    ('qlora', 'full')
    """
    if not values.get("use_peft"):
        return "full"
    if values.get("load_in_4bit"):
        return "qlora"
    if values.get("use_dora"):
        return "dora"
    return "lora"


def resolve(
    source: str | Path,
    *,
    overrides: Mapping[str, Any] | None = None,
    trainer: str | None = None,
) -> TrainConfig:
    """Read ``source``, apply ``overrides``, infer the trainer and validate. See :func:`validate`."""
    values = read_config_file(source)
    env = values.pop("env", None) or {}
    if not isinstance(env, dict):
        raise ConfigError(f"{source}: 'env' must be a mapping of environment variables")
    values.update(overrides or {})
    tr = infer_trainer(values, trainer or trainer_directive(source))
    return validate(values, tr, source=str(source), env={str(k): str(v) for k, v in env.items()})


def validate(values: dict[str, Any], trainer: Trainer, *, source: str, env: dict[str, str] | None = None) -> TrainConfig:
    """Check ``values`` against TRL's dataclasses for ``trainer`` and return a :class:`TrainConfig`.

    Values are converted the way TRL's CLI converts them (numeric strings to numbers, ``"true"`` to
    True), so the resolved mapping written to the run directory is typed.

    Raises:
        ConfigError: one line naming the offending key.
    """
    types_ = dataclass_types(trainer)
    hints: dict[str, Any] = {}
    for cls in reversed(types_):  # earlier classes win, as in TRL's parser
        hints.update(_hints(cls))
    unknown = [k for k in values if k not in hints]
    if unknown:
        key = unknown[0]
        near = difflib.get_close_matches(key, list(hints), n=1, cutoff=0.75)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        more = f"; {len(unknown) - 1} more unknown key(s)" if len(unknown) > 1 else ""
        raise ConfigError(f"{source}: unknown key {key!r} for trl {trainer}{hint}{more}")
    resolved: dict[str, Any] = {}
    for key, value in values.items():
        resolved[key] = _coerce(value, hints[key], key, source)

    if not resolved.get("model_name_or_path"):
        raise ConfigError(f"{source}: missing key 'model_name_or_path' (a hub id, a local path or tuneterm:tiny-llama)")
    if not resolved.get("dataset_name") and not resolved.get("datasets"):
        raise ConfigError(f"{source}: missing key 'dataset_name' (or a 'datasets' list)")
    if (resolved.get("load_in_4bit") or resolved.get("load_in_8bit")) and not resolved.get("use_peft"):
        raise ConfigError(
            f"{source}: 'load_in_4bit'/'load_in_8bit' needs 'use_peft: true' (a quantized model can only train adapters)"
        )
    if trainer == "grpo" and not resolved.get("reward_funcs") and not resolved.get("reward_model_name_or_path"):
        raise ConfigError(f"{source}: GRPO needs 'reward_funcs' (or 'reward_model_name_or_path')")
    if trainer == "grpo":
        from tuneterm.train.rewards import check_reward_names

        check_reward_names(resolved.get("reward_funcs") or [], source)

    instantiate(resolved, trainer, source=source)
    return TrainConfig(
        values=resolved, trainer=trainer, method=method_of(resolved), source=source, env=dict(env or {})
    )


def instantiate(values: Mapping[str, Any], trainer: Trainer, *, source: str = "config") -> tuple[Any, ...]:
    """Build TRL's dataclasses from ``values`` (their ``__post_init__`` checks run).

    Built-in ``tuneterm:`` model names are kept as given here; the runner maps them to a path.

    Raises:
        ConfigError: a dataclass rejected a value (the message is TRL's, on one line).
    """
    from trl.scripts._hf_argparser import HfArgumentParser

    from tuneterm.textsafe import inert_line

    import warnings

    parser = HfArgumentParser(dataclass_types(trainer))
    try:
        with warnings.catch_warnings():
            # transformers' own deprecation notices about fields the user did not set
            warnings.simplefilter("ignore", FutureWarning)
            return parser.parse_dict(dict(values))
    except (ValueError, TypeError, ImportError) as exc:
        raise ConfigError(f"{source}: rejected by trl {trainer}: {inert_line(exc, 300)}") from None


def _hints(cls: type) -> dict[str, Any]:
    import dataclasses

    resolved = typing.get_type_hints(cls)
    return {f.name: resolved.get(f.name, Any) for f in dataclasses.fields(cls) if f.init}


_TRUE = {"true", "yes", "y", "1", "on"}
_FALSE = {"false", "no", "n", "0", "off"}


class _Mismatch(Exception):
    pass


def _coerce(value: Any, tp: Any, key: str, source: str) -> Any:
    try:
        return _conv(value, tp)
    except _Mismatch:
        shown = repr(value)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        raise ConfigError(f"{source}: key {key!r} expects {_type_name(tp)}, got {shown}") from None


def _conv(value: Any, tp: Any) -> Any:  # noqa: PLR0911, PLR0912 - one branch per type family
    if tp is Any or tp is object:
        return value
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise _Mismatch
        for arg in args:  # exact matches first, so "all-linear" stays a str for list[str] | str
            if arg is not type(None) and _exact(value, arg):
                return value
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _conv(value, arg)
            except _Mismatch:
                continue
        raise _Mismatch
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        raise _Mismatch
    if origin in (list, tuple):
        (item_tp, *_) = typing.get_args(tp) or (Any,)
        if isinstance(value, (list, tuple)):
            return [_conv(v, item_tp) for v in value]
        # TRL's CLI keeps a scalar default for a list field as is (lora_target_modules: all-linear).
        return _conv(value, item_tp)
    if origin is dict or tp is dict:
        if isinstance(value, (dict, str)):  # transformers accepts JSON strings for dict fields
            return value
        raise _Mismatch
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        if isinstance(value, tp):
            return value.value
        allowed = {str(m.value) for m in tp}
        if str(value) in allowed:
            return value
        raise _Mismatch
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise _Mismatch
    if tp is int:
        if isinstance(value, bool):
            raise _Mismatch
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                raise _Mismatch from None
        raise _Mismatch
    if tp is float:
        if isinstance(value, bool):
            raise _Mismatch
        if isinstance(value, (int, float)):
            return value
        if isinstance(value, str):
            try:
                f = float(value.strip())
            except ValueError:
                raise _Mismatch from None
            if math.isnan(f):
                raise _Mismatch
            return f
        raise _Mismatch
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise _Mismatch
    if isinstance(tp, type) and hasattr(tp, "__dataclass_fields__"):
        if isinstance(value, (dict, tp)):
            return value
        raise _Mismatch
    return value  # an annotation we do not model: let TRL's own checks decide


def _exact(value: Any, tp: Any) -> bool:
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, float)
    if tp is str:
        return isinstance(value, str)
    return False


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        names = [_type_name(a) for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(names) + (" (or null)" if type(None) in typing.get_args(tp) else "")
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        args = typing.get_args(tp)
        return f"a list of {_type_name(args[0])}" if args else "a list"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "one of " + ", ".join(repr(m.value) for m in tp)
    if isinstance(tp, type):
        return {"bool": "true/false", "int": "an integer", "float": "a number", "str": "a string", "dict": "a mapping"}.get(
            tp.__name__, tp.__name__
        )
    return str(tp)
