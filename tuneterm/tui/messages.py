"""Messages the TUI's workers post to their screens.

Workers run in threads and never touch widgets: they compute (through :mod:`tuneterm.tui.render`)
and ``post_message`` one of these, which is thread-safe. High-rate updates (GPU samples, run
snapshots, run lists) implement ``can_replace`` so a burst collapses to the newest one, as in
toolong.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from textual.message import Message

if TYPE_CHECKING:
    from rich.text import Text

    from rich.console import RenderableType

    from tuneterm.plan.gpu import SystemProfile
    from tuneterm.plan.recommend import Plan
    from tuneterm.plan.verdict import FitVerdict
    from tuneterm.watch.home import HomeRun
    from tuneterm.tui.render import RunSnapshot


@dataclass
class GpuSampled(Message):
    """A fresh NVML profile (possibly with no GPU)."""

    profile: SystemProfile

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, GpuSampled)


@dataclass
class RunsListed(Message):
    """The rows of the Runs screen: ``tuneterm.runs.info.RunInfo`` records, or why none."""

    infos: list[Any]
    error: str | None = None

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, RunsListed)


@dataclass
class RunSnapshotReady(Message):
    """A new :class:`~tuneterm.tui.render.RunSnapshot` for the run view, or a one-line error."""

    snapshot: RunSnapshot | None
    error: str | None = None

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, RunSnapshotReady)


@dataclass
class DoctorReady(Message):
    """The doctor report of ``path`` rendered at some width, or a one-line error."""

    path: str
    report: Text | None
    error: str | None = None


@dataclass
class PlanReady(Message):
    """Renderables of a plan (and the plan itself, for writing a config, and its
    :class:`~tuneterm.plan.verdict.FitVerdict`), or a one-line error."""

    plan: Plan | None
    renderables: list[RenderableType]
    error: str | None = None
    verdict: FitVerdict | None = None


@dataclass
class RunLaunched(Message):
    """A run started from the TUI (its directory), or why it could not start; ``notes``: one-line
    pre-flight warnings to show (they never block a launch)."""

    path: str | None
    error: str | None = None
    notes: tuple[str, ...] = ()


@dataclass
class PreflightRefused(Message):
    """The pre-flight check found errors in a config the user asked to start: ``config`` is the
    resolved ``TrainConfig`` (launched as is on "Start anyway"), ``result`` its
    ``PreflightResult``."""

    config: Any
    result: Any


@dataclass
class RunStopped(Message):
    """A stop request finished: the run's final state."""

    name: str
    state: str


@dataclass
class HomeListed(Message):
    """The home screen's runs: live and recent ``tuneterm.watch.home.HomeRun`` records, or why none."""

    live: list[HomeRun]
    recent: list[HomeRun]
    error: str | None = None

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, HomeListed)
