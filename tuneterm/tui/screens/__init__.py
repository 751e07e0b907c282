"""The app's screens: GPUs, Plan, Runs (and the run view), Doctor, and the modals."""

from __future__ import annotations
