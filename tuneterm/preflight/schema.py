"""The TRL config schema cache: field names, types and defaults without importing TRL.

``from trl import SFTConfig`` costs seconds of CPU (transformers pulls in peft, bitsandbytes and
parts of torch), which made ``tuneterm train --detach`` slow only to learn which keys exist and
what type each one has. This module records exactly that, once per installed version set, so the
launcher can refuse unknown keys and wrong types in milliseconds; the full check with TRL's own
dataclasses (their ``__post_init__``) runs in the training process (:mod:`tuneterm.train.worker`).

What is recorded: for each trainer (``sft``, ``dpo``, ``grpo``), the dataclasses ``trl <trainer>``
parses (:func:`dataclass_types`), in that order, and for each of their
``init`` fields the name, a type descriptor and the default. A type descriptor is a small JSON
object (``{"t": KIND, ...}``):

==============  ==========================================================================
``any``         an annotation tuneterm does not model (``Any``, callables ...): not checked
``none``        ``None`` (only inside a ``union``)
``bool``        ``bool``; ``int``, ``float``, ``str`` likewise
``list``        ``list[X]`` / ``tuple[X, ...]``; ``"item"``: the descriptor of ``X``
``dict``        ``dict`` / ``dict[K, V]`` (TRL also accepts a JSON string)
``union``       ``X | Y | None``; ``"of"``: the member descriptors (``Optional`` is a union
                with ``{"t": "none"}``)
``literal``     ``Literal[...]`` or an ``Enum``: ``"choices"``; ``"by_str": true`` for an enum
                (matched on ``str(value)``, as the enum's constructor would)
``dataclass``   a nested dataclass (accepts a mapping); ``"name"``: its class name
==============  ==========================================================================

A default is the field's JSON value (enum members as their value); a default that JSON cannot
hold (or a ``default_factory`` that fails) is left out and the field gets ``"has_default": false``
only when it has none at all.

The cache file is ``<cache_dir>/trl-schema/trl-<v>_transformers-<v>_peft-<v>.f<FORMAT>.json``
(:func:`cache_path`; ``cache_dir`` is :func:`tuneterm.resources.cache_dir`). The versions are
read with :mod:`importlib.metadata` (no import of the packages) and are also stored inside the
file, which is only used when they match the installed ones. It is written through a temporary
file and ``os.replace``, so concurrent launchers never read a half-written file; when the cache
directory is not writable the schema is used from memory.

>>> describe(int | None)
{'t': 'union', 'of': [{'t': 'int'}, {'t': 'none'}]}
"""

from __future__ import annotations

import dataclasses
import enum
import json
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from tuneterm.errors import InputError

if typing.TYPE_CHECKING:
    from tuneterm.advise import KeySchema
from tuneterm.kinds import TRAINERS
from tuneterm.runs.writer import write_json_atomic

FORMAT = 1
"""Bump when the descriptor format or what is recorded changes: older files are then ignored."""

PACKAGES: tuple[str, ...] = ("trl", "transformers", "peft")
"""The packages whose versions key the cache (they define the dataclasses)."""

TRAINER_NAMES: tuple[str, ...] = TRAINERS

Descriptor = dict[str, Any]


@dataclass(frozen=True, slots=True)
class TrainerSchema:
    """The parsed dataclasses of one trainer.

    Attributes:
        trainer: ``sft``, ``dpo`` or ``grpo``.
        classes: the dataclass names in parse order (``ScriptArguments``, ``SFTConfig``, ...).
        fields: every field name -> ``{"type": descriptor, "default": ...}``; when several classes
            have a field, the earliest class's entry wins (as in TRL's parser).
        config_fields: the field names of the trainer's own config class (``SFTConfig``,
            ``DPOConfig`` or ``GRPOConfig``), the second class.
    """

    trainer: str
    classes: tuple[str, ...]
    fields: Mapping[str, Mapping[str, Any]]
    config_fields: frozenset[str]


@dataclass(frozen=True, slots=True)
class Schema:
    """The schema of every trainer for one set of installed versions.

    Attributes:
        versions: ``{"trl": ..., "transformers": ..., "peft": ...}`` it was built from.
        trainers: trainer name -> :class:`TrainerSchema`.
        path: the cache file it was read from or written to (None: held in memory only).
        built: True when this call built it (imported TRL), False when it came from the cache.
    """

    versions: Mapping[str, str]
    trainers: Mapping[str, TrainerSchema]
    path: Path | None = None
    built: bool = False

    def dpo_only_keys(self) -> frozenset[str]:
        """Fields of DPOConfig that neither SFTConfig nor GRPOConfig has."""
        t = self.trainers
        return t["dpo"].config_fields - t["sft"].config_fields - t["grpo"].config_fields


def installed_versions() -> dict[str, str]:
    """The installed versions of :data:`PACKAGES` (``"none"`` for one that is not installed).

    Reads package metadata only; nothing is imported.
    """
    out: dict[str, str] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "none"
    return out


def cache_path(versions: Mapping[str, str] | None = None) -> Path:
    """The cache file for ``versions`` (default: the installed ones)."""
    from tuneterm.resources import cache_dir

    v = dict(versions or installed_versions())
    key = "_".join(f"{name}-{re.sub(r'[^A-Za-z0-9.+-]', '_', str(v.get(name, 'none')))}" for name in PACKAGES)
    return cache_dir() / "trl-schema" / f"{key}.f{FORMAT}.json"


def load_schema(*, build: bool = True) -> Schema:
    """The schema for the installed versions: from the cache, else built (and cached).

    Args:
        build: when False, return the cache or raise ``LookupError`` instead of importing TRL.

    Raises:
        InputError: TRL is not installed (the training extra is missing).
        LookupError: no usable cache and ``build`` is False.
    """
    versions = installed_versions()
    path = cache_path(versions)
    doc = read_cache(path, versions)
    if doc is not None:
        return _from_doc(doc, path, built=False)
    if not build:
        raise LookupError(f"no TRL schema cache for {versions}")
    if versions["trl"] == "none":
        raise InputError("the training stack is not installed (no trl): pip install 'tuneterm[train]'")
    doc = build_doc(versions)
    written = write_cache(path, doc)
    return _from_doc(doc, path if written else None, built=True)


def read_cache(path: Path, versions: Mapping[str, str]) -> dict[str, Any] | None:
    """The cache document at ``path`` if it is well formed and was built for ``versions``, else
    None (missing, unreadable, another format, other versions: all mean "build it again")."""
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("versions") != dict(versions):
        return None
    trainers = doc.get("trainers")
    if not isinstance(trainers, dict) or set(trainers) != set(TRAINER_NAMES):
        return None
    for entry in trainers.values():
        classes = entry.get("classes") if isinstance(entry, dict) else None
        if not isinstance(classes, list) or len(classes) < 2:
            return None
        for cls in classes:
            if not isinstance(cls, dict) or not isinstance(cls.get("name"), str) or not isinstance(cls.get("fields"), dict):
                return None
            if not all(isinstance(f, dict) and isinstance(f.get("type"), dict) for f in cls["fields"].values()):
                return None
    return doc


def write_cache(path: Path, doc: Mapping[str, Any]) -> bool:
    """Write ``doc`` to ``path`` atomically (temp file in the same directory + ``os.replace``).

    Returns False (and leaves nothing behind) when the directory cannot be written.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, doc, compact=True)
    except OSError:
        return False
    return True


def build_doc(versions: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Import TRL and describe the dataclasses of every trainer (the cache document)."""

    trainers: dict[str, Any] = {}
    for trainer in TRAINER_NAMES:
        classes = []
        for cls in dataclass_types(typing.cast(Any, trainer)):
            classes.append({"name": cls.__name__, "module": cls.__module__, "fields": describe_fields(cls)})
        trainers[trainer] = {"classes": classes}
    return {"format": FORMAT, "versions": dict(versions or installed_versions()), "trainers": trainers}


def describe_fields(cls: type) -> dict[str, Any]:
    """``{name: {"type": descriptor, "default": value}}`` for the ``init`` fields of ``cls``."""
    hints = typing.get_type_hints(cls)
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        entry: dict[str, Any] = {"type": describe(hints.get(f.name, Any))}
        has, default = _default(f)
        if has:
            ok, value = _jsonable(default)
            if ok:
                entry["default"] = value
        else:
            entry["has_default"] = False
        out[f.name] = entry
    return out


def _default(f: dataclasses.Field[Any]) -> tuple[bool, Any]:
    if f.default is not dataclasses.MISSING:
        return True, f.default
    if f.default_factory is not dataclasses.MISSING:
        try:
            return True, f.default_factory()
        except Exception:  # noqa: BLE001 - a factory we cannot call here: the default is unknown
            return True, _UNKNOWN
    return False, None


_UNKNOWN = object()


def _jsonable(value: Any) -> tuple[bool, Any]:
    if isinstance(value, enum.Enum):
        value = value.value
    if value is _UNKNOWN:
        return False, None
    try:
        json.dumps(value, allow_nan=True)
    except (TypeError, ValueError):
        return False, None
    return True, value


def describe(tp: Any) -> Descriptor:  # one return per type family
    """The JSON type descriptor of annotation ``tp`` (see the module docstring).

    >>> describe(list[str] | str)
    {'t': 'union', 'of': [{'t': 'list', 'item': {'t': 'str'}}, {'t': 'str'}]}
    >>> describe(Literal["no", "steps"])
    {'t': 'literal', 'choices': ['no', 'steps']}
    """
    if tp is Any or tp is object:
        return {"t": "any"}
    if tp is type(None) or tp is None:
        return {"t": "none"}
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return {"t": "union", "of": [describe(a) for a in typing.get_args(tp)]}
    if origin is Literal:
        ok, choices = _jsonable(list(typing.get_args(tp)))
        return {"t": "literal", "choices": choices} if ok else {"t": "any"}
    if origin in (list, tuple) or tp in (list, tuple):
        args = typing.get_args(tp)
        return {"t": "list", "item": describe(args[0]) if args else {"t": "any"}}
    if origin is dict or tp is dict:
        return {"t": "dict"}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        ok, choices = _jsonable([m.value for m in tp])
        return {"t": "literal", "choices": choices, "by_str": True} if ok else {"t": "any"}
    if tp in (bool, int, float, str):
        return {"t": tp.__name__}
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return {"t": "dataclass", "name": tp.__name__}
    return {"t": "any"}  # an annotation tuneterm does not model: TRL's own check decides


def _from_doc(doc: Mapping[str, Any], path: Path | None, *, built: bool) -> Schema:
    trainers: dict[str, TrainerSchema] = {}
    for name, entry in doc["trainers"].items():
        classes = entry["classes"]
        merged: dict[str, Mapping[str, Any]] = {}
        for cls in reversed(classes):  # earlier classes win, as in TRL's parser
            merged.update(cls["fields"])
        trainers[name] = TrainerSchema(
            trainer=name,
            classes=tuple(c["name"] for c in classes),
            fields=merged,
            config_fields=frozenset(classes[1]["fields"]),
        )
    return Schema(versions=dict(doc["versions"]), trainers=trainers, path=path, built=built)


def dataclass_types(trainer: str) -> tuple[type, ...]:
    """TRL's dataclasses for ``trainer``, in the order ``trl <trainer>`` parses them (imports TRL)."""
    from trl import (
        DatasetMixtureConfig,
        DPOConfig,
        GRPOConfig,
        ModelConfig,
        ScriptArguments,
        SFTConfig,
    )

    if trainer == "grpo":
        from trl.scripts.grpo import GRPOScriptArguments

        return (GRPOScriptArguments, GRPOConfig, ModelConfig, DatasetMixtureConfig)
    cfg = {"sft": SFTConfig, "dpo": DPOConfig}[trainer]
    return (ScriptArguments, cfg, ModelConfig, DatasetMixtureConfig)


def key_schema(*, build: bool = False) -> KeySchema | None:
    """The advisor's view of the schema (accepted keys, config class and defaults per trainer).

    Args:
        build: import TRL to build a missing cache; otherwise a missing cache gives ``None``.
    """
    from tuneterm.advise import KeySchema

    try:
        schema = load_schema(build=build)
    except (LookupError, InputError):
        return None
    return KeySchema(
        versions=dict(schema.versions),
        keys={name: frozenset(t.fields) for name, t in schema.trainers.items()},
        config_class={name: t.classes[1] for name, t in schema.trainers.items()},
        defaults={name: {k: f["default"] for k, f in t.fields.items() if "default" in f} for name, t in schema.trainers.items()},
    )
