"""Training configs: read, override (``--set``), infer the trainer, validate against TRL's schema.

A config is a flat YAML mapping in TRL's field names: exactly what ``trl sft|dpo|grpo --config FILE``
accepts (``ScriptArguments`` or ``GRPOScriptArguments`` + ``SFTConfig``/``DPOConfig``/``GRPOConfig``
+ ``ModelConfig`` + ``DatasetMixtureConfig``), plus TRL's ``env:`` mapping of environment
variables. TRL rejects unknown keys, so tuneterm's own choices (trainer, GPUs) come from the command
line, never from extra keys, or from a comment directive in the YAML (TRL ignores comments)::

    # tuneterm: trainer=dpo

The trainer is chosen by ``--trainer``, else that directive, else the keys (:func:`infer_trainer`),
else the built-in dataset's kind (``tuneterm:tiny-dpo`` -> dpo), else ``sft``.

Validation happens in two places and refuses with one line naming the key
(:class:`~tuneterm.errors.ConfigError`, exit 2):

1. In the launcher, before any process starts (:func:`validate`), from the schema cache
   (:mod:`tuneterm.preflight.schema`: TRL's field names, types and defaults recorded once per installed
   trl/transformers/peft versions), so it costs milliseconds and imports neither TRL nor torch:

   * unknown keys (with a "did you mean" suggestion),
   * wrong types (checked against the dataclass annotations; strings that argparse would convert,
     such as YAML's ``2e-5`` which YAML 1.1 reads as a *string*, are converted the same way TRL's
     CLI does),
   * a missing model or dataset, ``load_in_4bit`` without ``use_peft``, unknown reward names.

2. In the training process, before the model or data is loaded (:func:`instantiate`, the first
   step of :func:`tuneterm.train.runner.build_trainer`): TRL's dataclasses are really instantiated
   with the values, so whatever TRL's and transformers' own ``__post_init__`` checks reject
   (``bf16`` on a machine without a bf16 GPU, ``fp16`` with ``bf16`` ...) fails the run with that
   one line before any training; :mod:`tuneterm.train.worker` records it as a config error, and
   ``tuneterm train --headless`` and the live view exit 2 with it, as a refusal by the launcher
   would. ``validate(..., full=True)`` runs both in one process.

Only :func:`instantiate`, :func:`dataclass_types` and a schema build (the first launch for a set of
versions) import the training stack (trl, hence transformers and torch).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tuneterm.errors import ConfigError, InputError
from tuneterm.keynames import patched, respell
from tuneterm.kinds import TRAINERS, Method, Trainer
from tuneterm.preflight.config_read import TRAINER_DIRECTIVE
from tuneterm.preflight.schema import Descriptor, Schema, dataclass_types, load_schema


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


_DIRECTIVE = TRAINER_DIRECTIVE  # the same directive pipeline stages' config files may carry


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


def infer_trainer(values: Mapping[str, Any], explicit: str | None = None, *, schema: Schema | None = None) -> Trainer:
    """Choose the trainer: ``explicit`` (``--trainer``) if given, else from the keys.

    ``reward_funcs`` (or another GRPO-only key) -> ``grpo``; a key that only DPOConfig has ->
    ``dpo``; otherwise ``sft``. The DPO key set comes from ``schema`` (default: the schema cache,
    :func:`tuneterm.preflight.schema.load_schema`), read only when the cheap checks do not decide.

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
    if keys & dpo_only_keys(schema):
        return "dpo"
    if values.get("dataset_name") == "tuneterm:tiny-dpo":
        return "dpo"
    if values.get("dataset_name") == "tuneterm:tiny-prompts":
        return "grpo"
    return "sft"


def dpo_only_keys(schema: Schema | None = None) -> frozenset[str]:
    """Fields of DPOConfig that neither SFTConfig nor GRPOConfig has (``beta`` is shared with GRPO).

    From ``schema``, else the schema cache (which imports TRL only when it must be built).
    """
    return (schema or load_schema()).dpo_only_keys()


def method_of(values: Mapping[str, Any]) -> Method:
    """``full``, ``lora``, ``qlora`` (use_peft + load_in_4bit) or ``dora`` (use_peft + use_dora).

    >>> method_of({"use_peft": True, "load_in_4bit": True}), method_of({})
    ('qlora', 'full')
    """
    from tuneterm.preflight.config_read import (
        infer_method,  # the one definition, shared with check
    )

    return infer_method(values)  # type: ignore[return-value]


def resolve(
    source: str | Path,
    *,
    overrides: Mapping[str, Any] | None = None,
    trainer: str | None = None,
    full: bool = False,
) -> TrainConfig:
    """Read ``source``, apply ``overrides``, infer the trainer and validate. See :func:`validate`."""
    values = read_config_file(source)
    env = values.pop("env", None) or {}
    if not isinstance(env, dict):
        raise ConfigError(f"{source}: 'env' must be a mapping of environment variables")
    values = patched(values, overrides or {})  # --set under either name of a renamed key wins
    schema = load_schema()
    tr = infer_trainer(values, trainer or trainer_directive(source), schema=schema)
    return validate(
        values, tr, source=str(source), env={str(k): str(v) for k, v in env.items()}, full=full, schema=schema
    )


def validate(
    values: dict[str, Any],
    trainer: Trainer,
    *,
    source: str,
    env: dict[str, str] | None = None,
    full: bool = False,
    schema: Schema | None = None,
) -> TrainConfig:
    """Check ``values`` against TRL's schema for ``trainer`` and return a :class:`TrainConfig`.

    Values are converted the way TRL's CLI converts them (numeric strings to numbers, ``"true"`` to
    True), so the resolved mapping written to the run directory is typed. A renamed key
    (``gradient_checkpointing``) is written once, under the name the installed transformers
    prefers, with the value transformers would have used (:func:`tuneterm.keynames.respell`).

    Args:
        values: the flat config (after ``--set``), without ``env``.
        trainer: ``sft``, ``dpo`` or ``grpo``.
        source: the name used in messages (the config path).
        env: the config's ``env:`` mapping.
        full: also instantiate TRL's dataclasses here (their ``__post_init__`` checks); imports
            TRL. The launcher leaves this to the training process (see the module docstring).
        schema: the schema to check against (default: :func:`tuneterm.preflight.schema.load_schema`,
            which reads the cache and imports TRL only to build a missing one).

    Raises:
        ConfigError: one line naming the offending key.
    """
    from tuneterm.preflight.config_validate import schema_problems

    fields = (schema or load_schema()).trainers[trainer].fields
    # A renamed key (gradient_checkpointing) under the installed transformers' name, once: the old
    # spelling would warn that it goes away in v6, or be ignored beside the new one.
    values = respell(values, fields.__contains__)
    # The same checks `tuneterm check CONFIG` reports (tuneterm.preflight.config_validate): the
    # unknown keys first (before any value is converted), then missing and conflicting keys.
    unknown = [p for p in schema_problems(values, trainer, "trl", fields=fields) if p.kind == "unknown-key"]
    if unknown:
        more = f"; {len(unknown) - 1} more unknown key(s)" if len(unknown) > 1 else ""
        raise ConfigError(f"{source}: {unknown[0].message}{more}")
    resolved: dict[str, Any] = {}
    for key, value in values.items():
        resolved[key] = _coerce(value, fields[key]["type"], key, source)

    problems = schema_problems(resolved, trainer, "trl", fields=fields)
    if problems:
        raise ConfigError(f"{source}: {problems[0].message}")
    if trainer == "grpo":
        from tuneterm.train.rewards import check_reward_names

        check_reward_names(resolved.get("reward_funcs") or [], source)

    if full:
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
    import warnings

    from trl.scripts._hf_argparser import HfArgumentParser

    from tuneterm.textsafe import inert_line

    parser = HfArgumentParser(dataclass_types(trainer))
    try:
        with warnings.catch_warnings():
            # transformers' own deprecation notices about fields the user did not set
            warnings.simplefilter("ignore", FutureWarning)
            return parser.parse_dict(dict(values))
    except (ValueError, TypeError, ImportError) as exc:
        raise ConfigError(f"{source}: rejected by trl {trainer}: {inert_line(exc, 300)}") from None


_TRUE = {"true", "yes", "y", "1", "on"}
_FALSE = {"false", "no", "n", "0", "off"}


class _Mismatch(Exception):
    pass


def _coerce(value: Any, desc: Descriptor, key: str, source: str) -> Any:
    try:
        return _conv(value, desc)
    except _Mismatch:
        shown = repr(value)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        raise ConfigError(f"{source}: key {key!r} expects {_type_name(desc)}, got {shown}") from None


def _conv(value: Any, desc: Descriptor) -> Any:
    """``value`` converted to the type ``desc`` describes, as TRL's CLI would; raises _Mismatch.

    A kind this version does not know (or ``any``) passes the value through: TRL's own checks
    decide.
    """
    convert = _CONVERTERS.get(desc.get("t"))
    return value if convert is None else convert(value, desc)


def _conv_union(value: Any, desc: Descriptor) -> Any:
    args = desc.get("of") or []
    if value is None:
        if any(a.get("t") == "none" for a in args):
            return None
        raise _Mismatch
    for arg in args:  # exact matches first, so "all-linear" stays a str for list[str] | str
        if _exact(value, arg):
            return value
    for arg in args:
        if arg.get("t") == "none":
            continue
        try:
            return _conv(value, arg)
        except _Mismatch:
            continue
    raise _Mismatch


def _conv_none(value: Any, desc: Descriptor) -> None:
    if value is None:
        return None
    raise _Mismatch


def _conv_literal(value: Any, desc: Descriptor) -> Any:
    choices = desc.get("choices") or []
    if desc.get("by_str"):  # an Enum: its constructor matches the value's text
        if str(value) in {str(c) for c in choices}:
            return value
        raise _Mismatch
    if value in choices:
        return value
    raise _Mismatch


def _conv_list(value: Any, desc: Descriptor) -> Any:
    item = desc.get("item") or {"t": "any"}
    if isinstance(value, (list, tuple)):
        return [_conv(v, item) for v in value]
    # TRL's CLI keeps a scalar default for a list field as is (lora_target_modules: all-linear).
    return _conv(value, item)


def _conv_dict(value: Any, desc: Descriptor) -> Any:
    if isinstance(value, (dict, str)):  # transformers accepts JSON strings for dict fields
        return value
    raise _Mismatch


def _conv_bool(value: Any, desc: Descriptor) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise _Mismatch


def _conv_int(value: Any, desc: Descriptor) -> int:
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


def _conv_float(value: Any, desc: Descriptor) -> float:
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


def _conv_str(value: Any, desc: Descriptor) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise _Mismatch


def _conv_dataclass(value: Any, desc: Descriptor) -> Any:
    if isinstance(value, dict) or dataclasses.is_dataclass(value):
        return value
    raise _Mismatch


_CONVERTERS: dict[str | None, Callable[[Any, Descriptor], Any]] = {
    "union": _conv_union,
    "none": _conv_none,
    "literal": _conv_literal,
    "list": _conv_list,
    "dict": _conv_dict,
    "bool": _conv_bool,
    "int": _conv_int,
    "float": _conv_float,
    "str": _conv_str,
    "dataclass": _conv_dataclass,
}
"""One converter per type family of the schema descriptors (:mod:`tuneterm.train.schema`)."""


def _exact(value: Any, desc: Descriptor) -> bool:
    kind = desc.get("t")
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, float)
    if kind == "str":
        return isinstance(value, str)
    return False


_SIMPLE_NAMES = {"bool": "true/false", "int": "an integer", "float": "a number", "str": "a string", "dict": "a mapping"}


def _type_name(desc: Descriptor) -> str:
    """How a message names the type: ``a number``, ``a list of a string``, ``one of 'no', 'steps'``."""
    kind = desc.get("t", "any")
    if kind == "union":
        args = desc.get("of") or []
        names = [_type_name(a) for a in args if a.get("t") != "none"]
        return " or ".join(names) + (" (or null)" if any(a.get("t") == "none" for a in args) else "")
    if kind == "literal":
        return "one of " + ", ".join(repr(c) for c in desc.get("choices") or [])
    if kind == "list":
        item = desc.get("item") or {"t": "any"}
        return f"a list of {_type_name(item)}" if item.get("t") != "any" else "a list"
    if kind == "dataclass":
        return str(desc.get("name") or "a mapping")
    return _SIMPLE_NAMES.get(kind, str(kind))
