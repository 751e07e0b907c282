"""The TRL config schema cache lives in :mod:`tuneterm.preflight.schema` (the pre-flight check and
the launcher read the same fields); this module keeps the names importable from ``train``."""

from __future__ import annotations

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
