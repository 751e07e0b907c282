"""Where the parts of upper layers plug into the lower ones: the composition root.

The rule engine evaluates detectors that live with the code that builds their subject (a config's
facts in ``preflight``), and ``tuneterm check`` routes a path to subject handlers that live there
too. Lower layers must not name upper modules, so this module, outside the layers and importing
nothing, names them once; the engine (:func:`tuneterm.engine.registry.ensure_loaded`) and the
subject dispatcher (:func:`tuneterm.report.subjects.handlers`) import them lazily, the first time a
scope's rules or a subject kind are needed (so ``tuneterm check LOG`` never imports numpy).
"""

from __future__ import annotations

DETECTOR_MODULES: dict[str, tuple[str, ...]] = {
    "log": ("tuneterm.engine.detectors",),
    "config": ("tuneterm.preflight.detectors",),
    "data": ("tuneterm.preflight.data_detectors",),
    "samples": (),
    "eval": ("tuneterm.engine.detectors.eval_report",),
}
"""Per rule scope, the modules that register its detectors when imported."""

SUBJECT_MODULES: tuple[str, ...] = ("tuneterm.preflight.subjects",)
"""Modules that register ``tuneterm check`` subject handlers (configs, datasets) when imported."""
