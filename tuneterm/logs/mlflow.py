"""MLflow file store: ``mlruns/<experiment>/<run>/metrics/<name>`` files of ``timestamp value step``.

The path may be the ``mlruns`` directory, an experiment directory or one run directory. When it
holds several runs, the run whose metric files were written last is read and the others are named
in ``run.notes``. Metric names may contain ``/`` (nested files under ``metrics/``).
"""

from __future__ import annotations

from pathlib import Path

from tuneterm.logs.entries import EntrySink, to_float
from tuneterm.logs.model import Run
from tuneterm.logs.textio import show

_MAX_RUN_DIRS = 10_000
_MAX_METRIC_FILES = 2_000


def find_mlflow_runs(path: Path) -> list[Path]:
    """Run directories (those with a ``metrics/`` folder) at or below ``path`` (depth <= 2)."""
    if (path / "metrics").is_dir() and (path / "meta.yaml").is_file() or path.name != "mlruns" and (
        path / "metrics"
    ).is_dir() and ((path / "params").is_dir() or (path / "tags").is_dir()):
        return [path]
    runs: list[Path] = []
    try:
        for child in sorted(path.iterdir())[:_MAX_RUN_DIRS]:
            if not child.is_dir():
                continue
            if (child / "metrics").is_dir():
                runs.append(child)
                continue
            for grand in sorted(child.iterdir())[:_MAX_RUN_DIRS]:
                if grand.is_dir() and (grand / "metrics").is_dir():
                    runs.append(grand)
    except OSError:
        return runs
    return runs


def _latest(runs: list[Path]) -> Path:
    def mtime(r: Path) -> float:
        try:
            return max((p.stat().st_mtime for p in (r / "metrics").rglob("*") if p.is_file()), default=0.0)
        except OSError:
            return 0.0

    return max(runs, key=mtime)


def read_mlflow(run: Run, path: Path) -> None:
    """Fill ``run`` from an MLflow file store at ``path`` (mlruns, experiment or run directory)."""
    run.format = "mlflow"
    runs = find_mlflow_runs(path)
    if not runs:
        run.notes.append(f"{show(path)}: no MLflow run with a metrics/ folder")
        return
    chosen = _latest(runs) if len(runs) > 1 else runs[0]
    if len(runs) > 1:
        run.notes.append(f"{len(runs)} MLflow runs found; read the latest: {show(chosen.name)}")
    run.source = str(chosen)
    metrics_dir = chosen / "metrics"
    files = [p for p in sorted(metrics_dir.rglob("*")) if p.is_file()][:_MAX_METRIC_FILES]
    sink = EntrySink(run)
    bad = 0
    for mf in files:
        name = mf.relative_to(metrics_dir).as_posix()
        points: list[tuple[int, str]] = []
        try:
            with mf.open("r", encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    parts = line.split()
                    if len(parts) < 2:
                        continue
                    st = to_float(parts[2]) if len(parts) > 2 else None
                    step = int(st) if st is not None and st == st and abs(st) < 2**62 else len(points)
                    points.append((step, parts[1]))
        except OSError:
            bad += 1
            continue
        points.sort(key=lambda p: p[0])
        for step, value in points:
            sink.add({name: value}, step)
    sink.finish()
    params = chosen / "params"
    if params.is_dir():
        from tuneterm.logs.facts import apply_config

        cfg: dict[str, str] = {}
        for p in sorted(params.iterdir())[:2000]:
            if p.is_file():
                try:
                    cfg[p.name] = p.read_text("utf-8", "replace")[:300].strip()
                except OSError:
                    continue
        apply_config(run.facts, cfg)
    if sink.last_step is not None:
        run.facts.global_step = max(
            (s.steps[-1] for s in run.train.values() if len(s)), default=sink.last_step
        )
    if bad:
        run.notes.append(f"{bad} MLflow metric file(s) could not be read")
