"""Locate the data that ships with tuneterm: rule tables, training presets, samples.

In a wheel the top-level ``rules/`` and ``configs/`` directories are copied to
``tuneterm/_data/`` (see pyproject's force-include). In a source checkout or editable install they
are found at the repository root, next to the package. Both layouts resolve through this module.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


@cache
def data_dir(name: str) -> Path:
    """Return the directory holding shipped data ``name`` ("rules" or "configs").

    Raises:
        FileNotFoundError: neither the wheel location nor the checkout location exists.
    """
    for candidate in (_PACKAGE_DIR / "_data" / name, _PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"tuneterm data directory {name!r} not found (broken install?)")


def rules_dir() -> Path:
    """Directory of the rule tables (``rules/``)."""
    return data_dir("rules")


def configs_dir() -> Path:
    """Directory of the training presets (``configs/``)."""
    return data_dir("configs")


def samples_dir() -> Path:
    """Directory of the sample runs shipped inside the package (used by ``--demo``)."""
    return _PACKAGE_DIR / "samples"


def cache_dir() -> Path:
    """Where tuneterm keeps what it builds (the built-in tiny models, the TRL schema cache):
    ``$TUNETERM_CACHE_DIR``, else ``$XDG_CACHE_HOME/tuneterm``, else ``~/.cache/tuneterm``."""
    env = os.environ.get("TUNETERM_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "tuneterm"


#: tuneterm's built-in datasets (``dataset_name: tuneterm:...``): JSONL files in tuneterm/assets/data/.
BUILTIN_DATASETS: dict[str, str] = {
    "tuneterm:tiny-sft": "tiny_sft.jsonl",
    "tuneterm:tiny-dpo": "tiny_dpo.jsonl",
    "tuneterm:tiny-prompts": "tiny_prompts.jsonl",
    "tuneterm:tiny-prompt-output": "tiny_prompt_output.jsonl",
    "tuneterm:tiny-instructions": "tiny_instructions.jsonl",
    "tuneterm:tiny-sharegpt": "tiny_sharegpt.jsonl",
}


def builtin_data_file(name: str) -> Path | None:
    """The JSONL file behind built-in dataset ``name``, or None when ``name`` is not one."""
    fname = BUILTIN_DATASETS.get(name)
    return None if fname is None else _PACKAGE_DIR / "assets" / "data" / fname
