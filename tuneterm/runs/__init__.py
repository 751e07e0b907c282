"""The run directory: its layout and writer, status, progress and the readers every face shares."""

from __future__ import annotations
