"""Find and load the models to compare: base, adapter, merged model, or a tuneterm run directory.

:func:`resolve_target` works out, without importing torch, what the fine-tuned argument of
``tuneterm eval`` is:

``run``
    a tuneterm run directory (``config.yaml`` with ``status.json``/``launch.json``, see
    :mod:`tuneterm.runs.layout`). The model is the final save in its ``output_dir`` (an adapter
    or a full model at the top of ``output/``), else its newest ``checkpoint-N``; the base is the
    config's ``model_name_or_path``; its training data is ``dataset_name`` /
    ``dataset_train_split`` (held-out examples overlapping it are dropped).
``adapter``
    a PEFT adapter directory (``adapter_config.json``): loaded as a ``PeftModel`` over the base
    (``--base``, else the adapter's ``base_model_name_or_path``).
``merged``
    a full model directory (``config.json``).
``hub``
    a hub id (loaded by ``from_pretrained``; offline machines fail with a clear error).

:func:`load_model` and :func:`attach_adapter` import torch/transformers/peft lazily. Models load
with ``trust_remote_code=False`` unless the user asks, in bf16 on GPUs that support it (fp16 on
older GPUs, fp32 on CPU), and tokenizers pad on the left for batched generation.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneterm.errors import InputError
from tuneterm.runs import layout
from tuneterm.textsafe import inert_line

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


@dataclass(frozen=True, slots=True)
class Target:
    """What the fine-tuned argument resolved to.

    Attributes:
        spec: the argument as given.
        kind: ``run``, ``adapter``, ``merged`` or ``hub``.
        model_path: what to load: the adapter dir, the model dir, or the hub id.
        is_adapter: the model is a PEFT adapter (needs a base).
        base: the base named by the adapter/run (``None`` when unknown).
        run_dir: the run directory, for ``run``.
        train_data: the run's training dataset (``dataset_name``), if named.
        train_split: the split it trained on.
        test_split: the run's own held-out split name (``dataset_test_split``), if set.
    """

    spec: str
    kind: str
    model_path: str
    is_adapter: bool
    base: str | None = None
    run_dir: str | None = None
    train_data: str | None = None
    train_split: str = "train"
    test_split: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "spec": self.spec,
            "kind": self.kind,
            "model_path": self.model_path,
            "is_adapter": self.is_adapter,
            "base": self.base,
            "run_dir": self.run_dir,
            "train_data": self.train_data,
        }


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: unreadable ({inert_line(exc, 120)})") from exc
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object")
    return data


def _model_dir_kind(path: Path) -> str | None:
    if (path / "adapter_config.json").is_file():
        return "adapter"
    if (path / "config.json").is_file() and any((path / w).is_file() for w in _WEIGHTS):
        return "merged"
    return None


def is_run_dir(path: Path) -> bool:
    """Whether ``path`` is a tuneterm run directory with its config recorded (the base model and
    the output directory are read from it)."""
    return layout.is_run_dir(path) and (path / layout.CONFIG).is_file()


def _final_model(output: Path) -> tuple[Path, str] | None:
    kind = _model_dir_kind(output)
    if kind:
        return output, kind
    checkpoints = sorted(
        (int(m.group(1)), p) for p in output.glob("checkpoint-*") if (m := _CHECKPOINT.match(p.name)) and p.is_dir()
    )
    for _, p in reversed(checkpoints):
        kind = _model_dir_kind(p)
        if kind:
            return p, kind
    return None


def _resolve_run(path: Path, spec: str) -> Target:
    import yaml

    try:
        config = yaml.safe_load((path / layout.CONFIG).read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InputError(f"{path / 'config.yaml'}: unreadable ({inert_line(exc, 120)})") from exc
    if not isinstance(config, dict):
        raise InputError(f"{path / 'config.yaml'}: expected a mapping")
    out = config.get("output_dir")
    output = Path(out) if isinstance(out, str) and out else path / "output"
    if not output.is_absolute() and not output.is_dir():
        output = path / output if (path / output).is_dir() else path / "output"
    found = _final_model(output) if output.is_dir() else None
    if found is None:
        raise InputError(
            f"{spec}: run directory has no saved model in {output} (no adapter_config.json or "
            "config.json + weights, nor a checkpoint-N); did the run finish?"
        )
    model_dir, kind = found
    base = config.get("model_name_or_path")
    data = config.get("dataset_name")
    return Target(
        spec=spec,
        kind="run",
        model_path=str(model_dir),
        is_adapter=kind == "adapter",
        base=base if isinstance(base, str) else None,
        run_dir=str(path),
        train_data=data if isinstance(data, str) else None,
        train_split=str(config.get("dataset_train_split") or "train"),
        test_split=str(config["dataset_test_split"]) if config.get("dataset_test_split") else None,
    )


def resolve_target(spec: str) -> Target:
    """Work out what ``spec`` (the fine-tuned model argument) is.

    Raises:
        InputError: a path that is none of run dir / adapter / model dir, or that does not exist
            and is not shaped like a hub id.
    """
    path = Path(spec).expanduser()
    if path.is_dir():
        if is_run_dir(path):
            return _resolve_run(path, spec)
        kind = _model_dir_kind(path)
        if kind == "adapter":
            cfg = _read_json(path / "adapter_config.json")
            base = cfg.get("base_model_name_or_path")
            return Target(spec, "adapter", str(path), True, base if isinstance(base, str) else None)
        if kind == "merged":
            return Target(spec, "merged", str(path), False)
        found = _final_model(path)
        if found:
            return Target(spec, found[1] if found[1] == "merged" else "adapter", str(found[0]), found[1] == "adapter",
                          _read_json(found[0] / "adapter_config.json").get("base_model_name_or_path")
                          if found[1] == "adapter" else None)
        raise InputError(
            f"{spec}: not a run directory, adapter (adapter_config.json) or model directory (config.json + weights)"
        )
    if path.exists():
        raise InputError(f"{spec}: is a file; expected a run directory, adapter directory, model directory or hub id")
    return Target(spec, "hub", resolve_name(spec), False)


def resolve_name(name: str) -> str:
    """Map a model name to what ``from_pretrained`` loads: built-ins (``tuneterm:tiny-llama``) to
    their cached path; local paths must exist; anything else must look like a hub id.

    Raises:
        InputError: a missing local path or a malformed name.
    """
    if name.startswith("tuneterm:"):
        try:
            from tuneterm.assets.builtin import resolve_model
        except ImportError as exc:  # pragma: no cover - the train package is part of tuneterm
            raise InputError(f"{name}: built-in models need tuneterm.train") from exc
        try:
            return resolve_model(name)
        except Exception as exc:  # ConfigError or a build failure: one line
            raise InputError(f"{name}: {inert_line(exc, 160)}") from exc
    path = Path(name).expanduser()
    if path.exists():
        return str(path)
    if name.startswith((".", "/", "~")) or not re.fullmatch(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?", name):
        raise InputError(f"{name}: no such model directory")
    return name


@dataclass(frozen=True, slots=True)
class Runtime:
    """Where and how models run: device (``cpu``/``cuda``), dtype name and batch size."""

    device: str
    dtype: str
    batch_size: int

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"device": self.device, "dtype": self.dtype, "batch_size": self.batch_size}


def pick_runtime(device: str = "auto", dtype: str = "auto", batch_size: int | None = None) -> Runtime:
    """Choose device, dtype and batch size: bf16 on GPUs that support it, fp16 on older ones,
    fp32 on CPU; batch 16 on GPU and 8 on CPU unless given.

    Raises:
        InputError: ``--device cuda`` without a GPU, or an unknown dtype.
    """
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA GPU is available")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise InputError(f"--device {device}: expected auto, cpu or cuda")
    if dtype == "auto":
        if device.startswith("cuda"):
            dtype = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            dtype = "fp32"
    if dtype not in ("bf16", "fp16", "fp32"):
        raise InputError(f"--dtype {dtype}: expected auto, bf16, fp16 or fp32")
    bs = batch_size if batch_size and batch_size > 0 else (16 if device.startswith("cuda") else 8)
    return Runtime(device, dtype, bs)


def _torch_dtype(name: str) -> Any:
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[name]


def load_tokenizer(path: str, *, trust_remote_code: bool = False) -> Any:
    """Load a tokenizer for batched generation: left padding, a pad token (eos when missing)."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except Exception as exc:  # OSError, ValueError, HF hub errors ...
        raise InputError(f"{path}: cannot load tokenizer ({inert_line(exc, 200)})") from exc
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(path: str, runtime: Runtime, *, trust_remote_code: bool = False) -> Any:
    """Load a causal LM for inference on ``runtime``'s device and dtype, in eval mode.

    Raises:
        InputError: the model cannot be loaded (missing files, offline hub id, unsupported arch).
    """
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"dtype": _torch_dtype(runtime.dtype), "trust_remote_code": trust_remote_code}
    if runtime.device.startswith("cuda"):
        # Load straight onto the GPU (accelerate), not into CPU RAM first: a 7B model in bf16
        # would otherwise need 15 GB of host memory and a slow copy.
        kwargs["device_map"] = runtime.device
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except Exception as exc:  # one clear line for every loader failure
        raise InputError(f"{path}: cannot load model ({inert_line(exc, 200)})") from exc
    if not runtime.device.startswith("cuda"):
        model.to(runtime.device)
    model.eval()
    return model


def attach_adapter(model: Any, adapter_dir: str, tokenizer: Any | None = None) -> Any:
    """Wrap a loaded base model with the PEFT adapter in ``adapter_dir`` (inference mode).

    When the adapter's tokenizer has more tokens than the base's embeddings (tokens added during
    fine-tuning), the embeddings are resized first, as PEFT requires.

    Raises:
        InputError: the adapter does not fit the base (wrong base model, corrupt files).
    """
    from peft import PeftModel

    try:
        if tokenizer is not None and len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
            model.resize_token_embeddings(len(tokenizer))
        peft_model = PeftModel.from_pretrained(model, adapter_dir, is_trainable=False)
    except Exception as exc:  # size mismatch, missing weights ...
        raise InputError(f"{adapter_dir}: cannot apply adapter to the base ({inert_line(exc, 200)})") from exc
    peft_model.eval()
    return peft_model


def has_tokenizer(path: str) -> bool:
    """Whether a local directory carries its own tokenizer files."""
    p = Path(path)
    return p.is_dir() and any((p / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model"))
