"""Loading the data tables of ``rules/`` that are not diagnostic rules: model facts and
recommendation tables. YAML is read with ``safe_load`` only; a malformed table is a
:class:`~tuneterm.errors.RuleFileError` naming the file.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from tuneterm.errors import RuleFileError
from tuneterm.resources import rules_dir


@cache
def load_yaml_table(relpath: str, key: str) -> tuple[dict[str, Any], ...]:
    """Rows under the top-level ``key`` of ``rules/<relpath>``.

    Args:
        relpath: path below ``rules/`` (``models.yaml``, ``recommend/learning_rate.yaml``).
        key: the top-level list key (``models``, ``rows``).

    Returns:
        The rows, each a mapping.

    Raises:
        RuleFileError: missing file, YAML error, or the key is not a list of mappings.
    """
    import yaml  # light; imported here so `tuneterm --help` does not pay for it

    path = rules_dir() / relpath
    try:
        # libyaml's safe loader when present: the same safe subset, ~10x faster on the model table
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506
    except OSError as exc:
        raise RuleFileError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise RuleFileError(f"{path}: invalid YAML ({str(exc).splitlines()[0]})") from None
    rows = data.get(key) if isinstance(data, dict) else None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise RuleFileError(f"{path}: expected a top-level '{key}:' list of mappings")
    return tuple(rows)
