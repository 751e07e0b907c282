"""The TRL config schema cache lives in :mod:`tuneterm.preflight.schema` (the pre-flight check and
the launcher read the same fields); this module keeps the names importable from ``train``."""

from __future__ import annotations

from typing import Any

from tuneterm.preflight.schema import (
    FORMAT,
    PACKAGES,
    TRAINER_NAMES,
    Descriptor,
    Schema,
    TrainerSchema,
    build_doc,
    cache_path,
    describe,
    describe_fields,
    installed_versions,
    load_schema,
    read_cache,
    write_cache,
)

__all__ = [
    "FORMAT", "PACKAGES", "TRAINER_NAMES", "Descriptor", "Schema", "TrainerSchema", "build_doc", "cache_path",
    "describe", "describe_fields", "installed_versions", "load_schema", "read_cache", "write_cache",
]


def advisor_keys(*, build: bool = False) -> Any:
    """The advisor's :class:`~tuneterm.advise.KeySchema` (accepted keys, config class and defaults
    per trainer) from this schema cache, or ``None`` when there is no cache and ``build`` is False.

    Shared by ``doctor``/``check`` (:mod:`tuneterm.cli.advice`) and a pipeline's gate.
    """
    from tuneterm.advise import KeySchema
    from tuneterm.errors import InputError

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
