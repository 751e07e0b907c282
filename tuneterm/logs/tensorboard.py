"""TensorBoard event files (``events.out.tfevents.*``), via the optional ``tensorboard`` package.

HF's ``TensorBoardCallback`` writes scalars tagged ``train/loss``, ``train/learning_rate``,
``eval/loss`` ...; the tags go through the same name normalisation as every other format. The
``tensorboard`` package is imported lazily, only when such a file is read.
"""

from __future__ import annotations

from pathlib import Path

from tuneterm.errors import InputError
from tuneterm.logs.entries import EntrySink
from tuneterm.logs.model import Run
from tuneterm.logs.textio import show

_MAX_FILES = 200


def event_files(path: Path) -> list[Path]:
    """Event files at ``path`` (a file) or below it (a directory, depth <= 3)."""
    if path.is_file():
        return [path]
    found: list[Path] = []
    for depth_glob in ("events.out.tfevents*", "*/events.out.tfevents*", "*/*/events.out.tfevents*"):
        found.extend(p for p in sorted(path.glob(depth_glob)) if p.is_file())
        if len(found) >= _MAX_FILES:
            break
    return found[:_MAX_FILES]


def read_tensorboard(run: Run, path: Path) -> None:
    """Fill ``run`` with every scalar of the event file(s) at ``path``.

    Raises:
        InputError: the ``tensorboard`` package is missing, or a file is not an event file.
    """
    try:
        from tensorboard.backend.event_processing import event_accumulator
    except ImportError:
        raise InputError("install tuneterm[tensorboard] to read TensorBoard event files") from None
    run.format = "tensorboard"
    files = event_files(path)
    sink = EntrySink(run)
    scalars: list[tuple[int, float, str, float]] = []  # (step, wall_time, tag, value)
    for ef in files:
        try:
            acc = event_accumulator.EventAccumulator(
                str(ef), size_guidance={event_accumulator.SCALARS: 0}
            )
            acc.Reload()
            tags = acc.Tags().get("scalars", [])
            for tag in tags:
                for ev in acc.Scalars(tag):
                    scalars.append((int(ev.step), float(ev.wall_time), tag, float(ev.value)))
        except Exception as e:  # noqa: BLE001 - corrupt protobuf, truncated record: one clear line
            raise InputError(f"{show(ef)}: not a readable TensorBoard event file ({type(e).__name__})") from None
    scalars.sort(key=lambda t: (t[0], t[1]))
    for step, _, tag, value in scalars:
        sink.add({tag: value}, step)
    sink.finish()
    if scalars:
        run.facts.global_step = scalars[-1][0]
    if len(files) > 1:
        run.notes.append(f"read {len(files)} TensorBoard event files")
    if not scalars:
        run.notes.append("TensorBoard event file(s) hold no scalars")
