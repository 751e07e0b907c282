"""Names of tuneterm's built-in assets (``tuneterm:tiny-llama``, ``tuneterm:tiny-sft`` ...), their
shipped files and where the tiny model is built: nothing here imports the training stack, so the
planner and the pre-flight checks can use it (building and loading are in :mod:`.builtin`)."""

from __future__ import annotations

from pathlib import Path

from tuneterm.errors import ConfigError
from tuneterm.resources import BUILTIN_DATASETS, cache_dir

PREFIX = "tuneterm:"
"""Marks a built-in asset name (``tuneterm:tiny-llama``); never a hub id."""

TINY_MODEL = "tuneterm:tiny-llama"
DATASETS: dict[str, str] = BUILTIN_DATASETS
_BUILD_VERSION = "v1"  # bump when builtin.build_tiny_model changes, so stale caches are rebuilt
DATA_DIR = Path(__file__).resolve().parent / "data"


def is_builtin(name: object) -> bool:
    """True when ``name`` names a built-in asset (``tuneterm:...``).

    >>> is_builtin("tuneterm:tiny-llama"), is_builtin("Qwen/Qwen2.5-0.5B-Instruct")
    (True, False)
    """
    return isinstance(name, str) and name.startswith(PREFIX)


def data_path(name: str) -> Path:
    """Path of the JSONL file behind built-in dataset ``name``.

    Raises:
        ConfigError: ``name`` is not one of :data:`DATASETS`.
    """
    try:
        return DATA_DIR / DATASETS[name]
    except KeyError:
        known = ", ".join(sorted(DATASETS))
        raise ConfigError(f"unknown built-in dataset {name!r} (known: {known})") from None


def built_model_dir(name: str) -> Path | None:
    """The directory of the built-in model ``name`` if it has been built already, else None.

    Builds nothing and imports nothing heavy: the planner and the pre-flight check use it to read
    the tiny model's config.json like any local model's.
    """
    if name != TINY_MODEL:
        return None
    target = model_dir()
    return target if (target / "config.json").is_file() else None


def model_dir() -> Path:
    """Where the built-in tiny model is (or will be) built: a versioned directory in the cache."""
    return cache_dir() / f"tiny-llama-{_BUILD_VERSION}"
