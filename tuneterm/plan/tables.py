"""Re-export of :func:`tuneterm.engine.tables.load_yaml_table` (the reader moved below the advisor,
which reads the learning-rate table too)."""

from __future__ import annotations

from tuneterm.engine.tables import load_yaml_table

__all__ = ["load_yaml_table"]
