"""Which GPU memory a plan is fitted to, and the verdict: one definition for ``tuneterm plan`` and
the TUI's Plan screen, so both say FITS / DOES NOT FIT for the same inputs.

The verdict is against the GPUs' **total** memory (the memory a run gets once the GPU is free):
the smallest GPU present, because every data-parallel rank needs its share. Memory that other
processes hold *right now* does not change the verdict; :func:`fit_verdict` reports it beside the
verdict (:attr:`FitVerdict.note`) when the plan fits the total but not what is free at the moment.

Nothing here imports torch; GPUs come from :func:`tuneterm.plan.gpu.probe` (NVML).

>>> from tuneterm.plan.facts import table_facts
>>> from tuneterm.plan.recommend import recommend
>>> plan = recommend(table_facts("Qwen/Qwen2.5-0.5B"), method="lora", gpu_memory_gib=80.0)
>>> fit_verdict(plan).label
'FITS'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tuneterm.plan.gpu import GIB

if TYPE_CHECKING:
    from tuneterm.plan.gpu import GpuInfo, SystemProfile
    from tuneterm.plan.recommend import Plan


@dataclass(frozen=True, slots=True)
class GpuTarget:
    """The GPU memory a plan is fitted to, chosen from the GPUs found.

    Attributes:
        capacity_gib: total memory of the smallest GPU present; None without a GPU.
        gpus: how many GPUs were found (0 without one).
        compute_capability: of that GPU as ``major + minor / 10`` (bf16 vs fp16), or None.
        source: one line saying where the capacity came from (``1 x NVIDIA H100 (80.0 GiB)``), or
            why there is none and how to give one. Contains the GPU's name: untrusted text.
        gpu: the GPU the capacity comes from, or None.
    """

    capacity_gib: float | None
    gpus: int
    compute_capability: float | None
    source: str
    gpu: GpuInfo | None = None


def gpu_target(profile: SystemProfile) -> GpuTarget:
    """The capacity to fit a plan to: the total memory of the smallest GPU in ``profile``.

    Args:
        profile: what :func:`tuneterm.plan.gpu.probe` found.

    Returns:
        A :class:`GpuTarget`; without a GPU its ``capacity_gib`` is None and ``source`` says why
        and to pass ``--gpu-memory``.
    """
    if not profile.gpus:
        return GpuTarget(None, 0, None, f"no GPU found ({profile.gpu_error}); pass --gpu-memory to check the fit")
    g = min(profile.gpus, key=lambda x: x.total_bytes)
    cap = g.total_gib
    cc = None if g.compute_capability is None else g.compute_capability[0] + g.compute_capability[1] / 10
    return GpuTarget(cap, len(profile.gpus), cc, f"{len(profile.gpus)} x {g.name} ({cap:.1f} GiB)", g)


def headroom() -> float:
    """The fraction of GPU memory kept free on top of the estimated peak
    (``rules/recommend/memory.yaml#headroom``; :func:`~tuneterm.plan.recommend.recommend` fits with it)."""
    from tuneterm.plan.tables import load_yaml_table

    for row in load_yaml_table("recommend/memory.yaml", "rows"):
        if row.get("id") == "headroom":
            return float(row["headroom"])
    from tuneterm.errors import ConfigError

    raise ConfigError("rules/recommend/memory.yaml: row 'headroom' missing")


@dataclass(frozen=True, slots=True)
class GpuMemory:
    """One GPU's memory right now, against the plan's peak.

    Attributes:
        index: NVML index.
        name: board name (untrusted text).
        total_gib: total memory.
        free_gib: memory free at the moment of the probe.
        fits_free: the plan's peak plus headroom fits in what is free right now.
    """

    index: int
    name: str
    total_gib: float
    free_gib: float
    fits_free: bool

    @property
    def held_gib(self) -> float:
        """Memory held right now by other processes (and the driver): total minus free."""
        return max(0.0, self.total_gib - self.free_gib)


@dataclass(frozen=True, slots=True)
class FitVerdict:
    """Whether a plan fits, and what other processes hold right now.

    Attributes:
        fits: the plan's peak plus headroom fits the capacity (the smallest GPU's total memory,
            or a typed size); None when no capacity is known.
        peak_gib: the plan's estimated peak per GPU.
        capacity_gib: the capacity it was fitted to, or None.
        headroom: the fraction kept free on top of the peak.
        gpus: every GPU of the profile with its free memory now (empty when the capacity was
            typed, or no GPU was found).
    """

    fits: bool | None
    peak_gib: float
    capacity_gib: float | None
    headroom: float
    gpus: tuple[GpuMemory, ...] = ()

    @property
    def label(self) -> str | None:
        """``FITS``, ``DOES NOT FIT``, or None when no capacity is known."""
        return None if self.fits is None else "FITS" if self.fits else "DOES NOT FIT"

    @property
    def busy(self) -> tuple[GpuMemory, ...]:
        """GPUs where the plan fits the total but not the memory free right now (only when it fits)."""
        if not self.fits:
            return ()
        return tuple(g for g in self.gpus if not g.fits_free)

    @property
    def note(self) -> str | None:
        """One line when the plan fits the total memory but not what is free right now, naming
        how much other processes hold on each such GPU; else None. Contains GPU names (untrusted).

        >>> FitVerdict(True, 16.9, 80.0, 0.1, (GpuMemory(0, "H100", 80.0, 20.0, False),)).note
        'fits the total memory but not the memory free right now: other processes hold 60.0 GiB of GPU 0 (H100), 20.0 GiB free of 80.0 GiB; the plan needs 18.6 GiB with 10% headroom'
        """
        busy = self.busy
        if not busy:
            return None
        parts = [f"{g.held_gib:.1f} GiB of GPU {g.index} ({g.name}), {g.free_gib:.1f} GiB free of {g.total_gib:.1f} GiB"
                 for g in busy]
        return ("fits the total memory but not the memory free right now: other processes hold "
                + "; ".join(parts)
                + f"; the plan needs {self.peak_gib * (1 + self.headroom):.1f} GiB with {self.headroom:.0%} headroom")


def fit_verdict(plan: Plan, profile: SystemProfile | None = None) -> FitVerdict:
    """The verdict of ``plan`` (as fitted by :func:`~tuneterm.plan.recommend.recommend` to
    ``plan.capacity_gib``) and, given the ``profile`` the capacity came from, each GPU's free
    memory now.

    Args:
        plan: a plan made with ``gpu_memory_gib`` = :attr:`GpuTarget.capacity_gib` (or a typed size).
        profile: the GPUs probed when the capacity came from them; None when the user typed the
            capacity (the GPUs present are then not the ones being planned for).

    Returns:
        A :class:`FitVerdict`; ``fits`` is ``plan.fits``, so the CLI and the TUI cannot disagree.
    """
    room = headroom()
    peak = plan.estimate.peak_gib
    gpus: tuple[GpuMemory, ...] = ()
    if profile is not None:
        gpus = tuple(GpuMemory(g.index, g.name, g.total_bytes / GIB, g.free_bytes / GIB,
                               plan.estimate.fits(g.free_bytes / GIB, room)) for g in profile.gpus)
    return FitVerdict(fits=plan.fits, peak_gib=peak, capacity_gib=plan.capacity_gib, headroom=room, gpus=gpus)
