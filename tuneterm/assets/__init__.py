"""tuneterm's built-in assets (``tuneterm:tiny-llama``, ``tuneterm:tiny-sft`` ...): names, shipped
data and the tiny model's build, shared by the planner, ``train`` and ``eval``; see :mod:`.builtin`."""

from __future__ import annotations
