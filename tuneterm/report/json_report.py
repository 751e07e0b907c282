"""The ``json`` format of ``tuneterm check`` (the contract in DESIGN.md, "A finding").

One path gives one object::

    {"tool": "tuneterm", "version": "0.1.0", "source": "runs/a/trainer_state.json",
     "findings": [Finding.to_dict(), ...],
     "summary": {"errors": 1, "warnings": 0, "infos": 0, "trainer": "sft", "steps": 500,
                 "format": "trainer_state", "notes": []}}

Several paths on the command line give a JSON array of such objects, one per readable path, in
command-line order (decided by the number of paths given, not by how many could be read, so a
script sees one shape per invocation). The output is strict JSON: non-finite numbers in evidence
are written as the strings ``"nan"``, ``"inf"`` and ``"-inf"``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from tuneterm.version import __version__
from tuneterm.report.result import CheckResult, json_safe


def result_document(result: CheckResult) -> dict[str, Any]:
    """The JSON object of one result (already passed through :func:`json_safe`).

    A log subject the advisor saw carries its top-level ``"prescription"`` (DESIGN.md): one
    change per key and the steps, beside the per-finding fixes SARIF and annotations use.
    """
    doc: dict[str, Any] = {
        "tool": "tuneterm",
        "version": __version__,
        "source": result.source,
        "findings": [f.to_dict() for f in result.findings],
    }
    if result.prescription is not None:
        doc["prescription"] = result.prescription.to_dict()
    doc["summary"] = result.summary()
    return json_safe(doc)


def render_json(results: Sequence[CheckResult], *, as_array: bool | None = None) -> str:
    """Serialise ``results``: an object for one result, an array for several.

    Args:
        results: what to write.
        as_array: force the array (True) or object (False) form; by default an array is written
            when there is not exactly one result.
    """
    docs = [result_document(r) for r in results]
    array = as_array if as_array is not None else len(docs) != 1
    payload: Any = docs if array else docs[0]
    return json.dumps(payload, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
