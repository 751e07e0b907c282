"""tuneterm: a terminal diagnostic assistant for people who fine-tune large language models."""

from __future__ import annotations

__version__ = "0.1.0"
