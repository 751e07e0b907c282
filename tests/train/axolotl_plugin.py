"""The Axolotl plugin of docs/callback.md, verbatim: Axolotl loads it by import path from the
``plugins:`` list of its YAML config and adds the callbacks it returns to the trainer it built."""

from __future__ import annotations

from typing import Any

from axolotl.integrations.base import BasePlugin

from tuneterm import TunetermCallback


class TunetermPlugin(BasePlugin):
    """Adds TunetermCallback to every trainer Axolotl creates."""

    def add_callbacks_post_trainer(self, cfg: Any, trainer: Any) -> list[Any]:
        runs_dir = cfg.get("output_dir") and f"{cfg['output_dir']}/runs"
        return [TunetermCallback(runs_dir=runs_dir or "runs", name=cfg.get("tuneterm_name"), stop_on="error")]
