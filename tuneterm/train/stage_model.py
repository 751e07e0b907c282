"""Hand a pipeline stage's trained model to the next stage: merge an adapter, or continue it.

Two operations on PEFT adapters saved by a stage (``output/adapter_config.json``):

* :func:`merge_adapter` (``from: previous`` + ``merge: true``): load the adapter's base, apply the
  adapter, ``merge_and_unload()`` it and ``save_pretrained`` the full model (with the stage's
  tokenizer) into ``merged/``. Runs in the pipeline driver, on CPU, in the base's own dtype.
* :func:`load_adapter_model` (``merge: false``): in the next stage's training process, load the
  base and the adapter *as trainable* (``PeftModel.from_pretrained(..., is_trainable=True)``), and
  hand that model to the TRL trainer instead of a model name, so the same adapter keeps training.

Imports torch, transformers and peft, lazily, inside the functions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ADAPTER_CONFIG = "adapter_config.json"


def is_adapter_dir(path: Path) -> bool:
    """True when ``path`` holds a PEFT adapter (``adapter_config.json``)."""
    return (path / ADAPTER_CONFIG).is_file()


def adapter_base(path: Path) -> str | None:
    """The base model an adapter was trained on (``base_model_name_or_path``), if recorded."""
    try:
        data = json.loads((path / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    base = data.get("base_model_name_or_path") if isinstance(data, dict) else None
    return base if isinstance(base, str) and base else None


def merge_adapter(adapter: Path, out: Path, base: str | None = None) -> Path:
    """Merge the adapter in ``adapter`` into its base and save the full model to ``out``.

    Args:
        adapter: the adapter directory (a stage's ``output/``).
        out: where the merged model goes (created; replaced if it exists from an earlier attempt).
        base: the base model; default: the adapter's ``base_model_name_or_path``.

    Returns:
        ``out``.
    """
    import shutil

    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base_path = base or adapter_base(adapter)
    if base_path is None:
        raise ValueError(f"{adapter}: the adapter does not say which base model it was trained on")
    model = AutoModelForCausalLM.from_pretrained(base_path, dtype="auto")
    model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    if out.exists():
        shutil.rmtree(out)
    tmp = out.with_name(out.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(tmp)
    tok_src = adapter if (adapter / "tokenizer_config.json").is_file() else Path(base_path)
    AutoTokenizer.from_pretrained(str(tok_src)).save_pretrained(tmp)
    tmp.rename(out)  # a half-written merge is never taken for a model
    return out


def load_adapter_model(base: str, adapter: str, init_kwargs: dict[str, Any], quantization_config: Any = None) -> Any:
    """Load ``base`` with ``init_kwargs`` (TRL's ``model_init_kwargs``) and attach ``adapter`` as a
    trainable PEFT adapter; the result is passed to the trainer as its model (no new adapter)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    import torch

    kwargs = {k: v for k, v in init_kwargs.items() if v is not None}
    dtype = kwargs.get("dtype")
    if isinstance(dtype, str) and dtype != "auto":
        kwargs["dtype"] = getattr(torch, dtype)
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
    model = AutoModelForCausalLM.from_pretrained(base, **kwargs)
    return PeftModel.from_pretrained(model, adapter, is_trainable=True)
