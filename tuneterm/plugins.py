"""Where the parts of upper layers plug into the lower ones: the composition root.

``tuneterm check`` routes a path to subject handlers that live with the code that reads those
subjects (configs and datasets in ``preflight``). Lower layers must not name upper modules, so this
module, outside the layers and importing nothing, names them once; the subject dispatcher
(:func:`tuneterm.report.subjects.handlers`) imports them lazily, the first time a subject kind is
needed (so ``tuneterm check LOG`` never imports the dataset checks' numpy). Detectors of every rule
scope live in the engine (:data:`tuneterm.engine.registry.DETECTOR_MODULES`).
"""

from __future__ import annotations

SUBJECT_MODULES: tuple[str, ...] = ("tuneterm.preflight.subjects",)
"""Modules that register ``tuneterm check`` subject handlers (configs, datasets) when imported."""
