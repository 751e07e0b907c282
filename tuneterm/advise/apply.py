"""``tuneterm doctor RUN --fix -o FILE``: the prescription written as a config to train with.

When the run's own TRL config is known (a tuneterm run directory's ``config.yaml``, a TRL config
beside the logs), the file is that config with the changes applied, ready for ``tuneterm train
FILE`` (a new run) or ``tuneterm check FILE``. Otherwise the file holds the changes alone, as a
TRL config fragment, with a comment saying that it must be merged into the user's config.
A prescription without changes writes nothing: an empty patch would look like a cure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuneterm.advise.context import RunContext
from tuneterm.keynames import patched
from tuneterm.report.prescription import Prescription, show

_DROP_ON_NEW_RUN = ("resume_from_checkpoint",)
"""Keys of the old run that must not carry into the new one (it would resume the broken run)."""


def fixed_config(p: Prescription, ctx: RunContext) -> dict[str, Any] | None:
    """The run's config with ``p``'s changes applied, ``None`` when no applicable config is known.

    The old run's ``output_dir`` is dropped when it lies inside the diagnosed run directory
    (``tuneterm train`` gives the new run its own), and ``warmup_ratio`` when the patch sets a
    float ``warmup_steps`` (transformers 5 reads the ratio from there).
    """
    if ctx.config_kind not in ("tuneterm", "trl") or not ctx.config:
        return None
    cfg = {k: v for k, v in ctx.config.items() if k not in _DROP_ON_NEW_RUN}
    out = cfg.get("output_dir")
    if ctx.run_dir is not None and isinstance(out, str) and _inside(Path(out), ctx.run_dir):
        del cfg["output_dir"]
    patch = p.patch()
    if "warmup_steps" in patch and "warmup_ratio" in cfg:
        del cfg["warmup_ratio"]
    return patched(cfg, patch)  # a renamed key ends up under one name only


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def fix_document(p: Prescription, ctx: RunContext) -> str | None:
    """The YAML text ``doctor --fix`` writes, or ``None`` when there is nothing to apply."""
    import yaml

    if not p.changes:
        return None
    lines = [f"# tuneterm doctor --fix for {ctx.source}"]
    cfg = fixed_config(p, ctx)
    if cfg is not None:
        lines.append(f"# the run's config ({ctx.config_path}) with these changes:")
    else:
        lines.append("# No training config of this run was found, so this is NOT a complete config: it holds")
        lines.append("# the changes alone, as a TRL config fragment; merge them into the config you trained with.")
        cfg = p.patch()
    for c in p.changes:
        lines.append(f"#   {c.key}: {show(c.was)} -> {show(c.value)}  (fixes {', '.join(c.findings)})")
    for s in p.steps:
        lines.append(f"# before training again: {s.command.splitlines()[0][:200]}")
    body = yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True, default_flow_style=False)
    return "\n".join(lines) + "\n" + body
