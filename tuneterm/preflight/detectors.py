"""Detectors of the ``config`` rule scope (imported by the engine's registry before config rules
are validated). The checks themselves live in :mod:`tuneterm.preflight.config_detectors`."""

from __future__ import annotations

from tuneterm.preflight import config_detectors as _config_detectors  # noqa: F401 - registers at import
