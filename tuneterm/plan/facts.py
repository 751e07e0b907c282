"""Model facts: the architecture numbers the memory estimator and the recommender need.

A model is named by a local directory, a Hugging Face id, or a file path to a ``config.json``.
:func:`resolve_model` looks, in order, at:

1. a local directory (or file) holding ``config.json``;
2. the local Hugging Face cache (``$HF_HUB_CACHE``, ``$HF_HOME/hub`` or
   ``~/.cache/huggingface/hub``: ``models--org--name/snapshots/*/config.json``);
3. the Hub, only when ``huggingface_hub`` is importable and the process is not offline
   (``HF_HUB_OFFLINE``/``TUNETERM_OFFLINE``), with a short timeout, failing quietly;
4. the family table ``rules/models.yaml`` (Llama 2/3.x, Qwen 1/2.5/3, Mistral, Gemma 2/3, Phi,
   SmolLM ...);
5. as a last resort, a size parsed from the name (``...-7B...``), mapped to the table entry of the
   nearest size and flagged as a guess.

Parameters are always counted from the architecture (:meth:`ModelFacts.param_counts`), never
taken from the name. Nothing here imports torch or transformers: ``config.json`` is plain JSON.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from tuneterm.errors import ConfigError, InputError

# Architectures whose MLP has two matrices (up, down) and whose layers carry biases everywhere.
_PLAIN_MLP_TYPES = frozenset({"phi", "gpt_neox", "gpt2", "gptj", "gpt_bigcode", "falcon", "bloom", "opt", "starcoder2"})
# HF config classes whose default tie_word_embeddings is True (PretrainedConfig's default); the
# Llama/Qwen2/Mistral/Phi3 classes default to False and say so explicitly in config.json anyway.
_TIED_BY_DEFAULT = ("gemma", "gemma2", "gemma3", "gemma3_text", "smollm3")
_MAX_CONFIG_BYTES = 4 * 1024 * 1024
# MoE classes of transformers 5 whose experts are one fused nn.Parameter per projection
# (modeling_<type>.py: `gate_up_proj = nn.Parameter(torch.empty(num_experts, ...))`).
_FUSED_EXPERT_TYPES = frozenset({"mixtral", "qwen2_moe", "qwen3_moe", "gpt_oss", "deepseek_v2", "deepseek_v3", "olmoe"})  # a config.json is a few KB; refuse to parse a huge file


@dataclass(frozen=True, slots=True)
class LinearModule:
    """One ``nn.Linear`` of a decoder layer, as PEFT names it (``q_proj``), with its shape."""

    name: str
    d_in: int
    d_out: int
    group: str  # "attn" or "mlp": used by target-module defaults and activation accounting

    @property
    def params(self) -> int:
        """Weight elements (biases are counted separately in :class:`ParamCounts`)."""
        return self.d_in * self.d_out


@dataclass(frozen=True, slots=True)
class ParamCounts:
    """Parameter counts by part, from the architecture.

    ``linear`` is every decoder-layer ``nn.Linear`` weight (what bitsandbytes quantizes);
    ``other`` is embeddings, untied head, norms and biases (what stays unquantized).
    """

    embed: int
    head: int
    linear: int
    norms_biases: int

    @property
    def total(self) -> int:
        """All parameters (the tied head counted once)."""
        return self.embed + self.head + self.linear + self.norms_biases

    @property
    def unquantized(self) -> int:
        """Parameters bitsandbytes leaves in 16-bit: embeddings, head, norms, biases."""
        return self.embed + self.head + self.norms_biases


@dataclass(frozen=True, slots=True)
class ModelFacts:
    """Architecture of a decoder-only language model.

    Attributes:
        name: what the user gave (id or path).
        source: where the numbers came from: ``local``, ``cache``, ``hub``, ``table`` or ``guess``.
        source_detail: the file path, the table row id, or the guess explanation.
        model_type: HF ``model_type`` (``llama``, ``qwen2`` ...).
        layers, hidden, heads, kv_heads, head_dim, intermediate, vocab: shapes.
        tied: input embeddings and output head share one matrix.
        dtype: pretraining dtype (``bfloat16``, ``float16``, ``float32``).
        mlp: ``gated`` (SwiGLU/GeGLU, three matrices) or ``plain`` (two).
        bias: ``qkv`` (Qwen2), ``all`` (Phi-1/2, GPT-NeoX) or ``none``.
        max_position: context the model was trained for, if known.
        experts, experts_per_token: MoE shape (1/1 for dense models). For a mixture of experts
            ``intermediate`` is one expert's MLP width; every expert is resident in memory while a
            token runs through ``experts_per_token`` of them.
        shared_intermediate: total MLP width of the always-active shared experts (DeepSeek-MoE,
            Qwen2-MoE), 0 when there are none.
        dense_layers: leading decoder layers with a dense MLP of ``dense_intermediate`` instead of
            experts (DeepSeek ``first_k_dense_replace``).
        local_dir: directory holding config.json (and maybe tokenizer files), if any.
        trust_remote_code: config.json has an ``auto_map`` (custom code would be needed).
        is_guess: numbers come from a size parsed out of the name.
    """

    name: str
    source: str
    source_detail: str
    model_type: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied: bool
    dtype: str = "bfloat16"
    mlp: str = "gated"
    bias: str = "none"
    max_position: int | None = None
    experts: int = 1
    experts_per_token: int = 1
    shared_intermediate: int = 0
    dense_layers: int = 0
    dense_intermediate: int = 0
    local_dir: Path | None = field(default=None, compare=False)
    trust_remote_code: bool = False
    is_guess: bool = False

    # ------------------------------------------------------------------ derived shapes
    @property
    def q_width(self) -> int:
        """Width of the query projection output (heads x head_dim)."""
        return self.heads * self.head_dim

    @property
    def kv_width(self) -> int:
        """Width of one of the key/value projections (kv_heads x head_dim)."""
        return self.kv_heads * self.head_dim

    def linear_modules(self) -> list[LinearModule]:
        """The ``nn.Linear`` modules of one decoder layer, named as PEFT's ``target_modules`` sees them.

        Fused layouts keep their fused names (Phi-3 ``qkv_proj``/``gate_up_proj``, Qwen-1
        ``c_attn``/``w1``/``w2``, GPT-NeoX ``query_key_value``), so target lists can be checked.

        >>> f = table_facts("Qwen/Qwen2.5-0.5B")
        >>> [m.name for m in f.linear_modules()]
        ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']
        """
        h, q, kv, i = self.hidden, self.q_width, self.kv_width, self.intermediate
        e = self.experts
        t = self.model_type
        if t == "phi3":
            mods = [
                LinearModule("qkv_proj", h, q + 2 * kv, "attn"),
                LinearModule("o_proj", q, h, "attn"),
                LinearModule("gate_up_proj", h, 2 * i * e, "mlp"),
                LinearModule("down_proj", i * e, h, "mlp"),
            ]
        elif t == "qwen":
            # Qwen-1 remote code: attn.c_attn (fused qkv), attn.c_proj, mlp.w1, mlp.w2, mlp.c_proj
            mods = [
                LinearModule("c_attn", h, 3 * h, "attn"),
                LinearModule("c_proj", h, h, "attn"),
                LinearModule("w1", h, i, "mlp"),
                LinearModule("w2", h, i, "mlp"),
                LinearModule("c_proj", i, h, "mlp"),
            ]
        elif t == "gpt_neox":
            mods = [
                LinearModule("query_key_value", h, 3 * h, "attn"),
                LinearModule("dense", h, h, "attn"),
                LinearModule("dense_h_to_4h", h, i, "mlp"),
                LinearModule("dense_4h_to_h", i, h, "mlp"),
            ]
        elif t == "phi":
            mods = [
                LinearModule("q_proj", h, q, "attn"),
                LinearModule("k_proj", h, kv, "attn"),
                LinearModule("v_proj", h, kv, "attn"),
                LinearModule("dense", q, h, "attn"),
                LinearModule("fc1", h, i, "mlp"),
                LinearModule("fc2", i, h, "mlp"),
            ]
        else:
            mods = [
                LinearModule("q_proj", h, q, "attn"),
                LinearModule("k_proj", h, kv, "attn"),
                LinearModule("v_proj", h, kv, "attn"),
                LinearModule("o_proj", q, h, "attn"),
            ]
            # a mixture of experts is modelled as one linear over every expert (group "expert")
            g = "expert" if e > 1 else "mlp"
            if self.mlp == "plain":
                mods += [LinearModule("up_proj", h, i * e, g), LinearModule("down_proj", i * e, h, g)]
            else:
                mods += [
                    LinearModule("gate_proj", h, i * e, g),
                    LinearModule("up_proj", h, i * e, g),
                    LinearModule("down_proj", i * e, h, g),
                ]
            if self.shared_intermediate:
                si = self.shared_intermediate
                mods += [
                    LinearModule("shared_gate_proj", h, si, "mlp"),
                    LinearModule("shared_up_proj", h, si, "mlp"),
                    LinearModule("shared_down_proj", si, h, "mlp"),
                ]
        return mods

    def module_names(self) -> list[str]:
        """Distinct target-module names of one layer, plus ``lm_head`` and ``embed_tokens``."""
        names = list(dict.fromkeys(m.name for m in self.linear_modules()))
        return names + ["lm_head", "embed_tokens"]

    def param_counts(self) -> ParamCounts:
        """Count parameters from the architecture.

        >>> round(table_facts("meta-llama/Llama-2-7b-hf").param_counts().total / 1e9, 2)
        6.74
        """
        h = self.hidden
        embed = self.vocab * h
        head = 0 if self.tied else self.vocab * h
        mods = self.linear_modules()
        linear = self.layers * sum(m.params for m in mods)
        if self.dense_layers:
            # leading dense layers: a gated MLP of dense_intermediate instead of experts + shared experts
            moe_mlp = sum(m.params for m in mods if m.group in ("mlp", "expert"))
            linear += self.dense_layers * (3 * h * self.dense_intermediate - moe_mlp)
        # Norms: two per layer (four in Gemma 2/3, still tiny) + the final one. LayerNorm has a bias.
        per_norm = 2 * h if self.bias == "all" else h
        norms = (2 * self.layers + 1) * per_norm
        if self.bias == "all":
            biases = self.layers * sum(m.d_out for m in mods)
        elif self.bias == "qkv":
            biases = self.layers * (self.q_width + 2 * self.kv_width)
        else:
            biases = 0
        if self.experts > 1:
            # router: hidden -> experts per layer
            biases += self.layers * h * self.experts
        return ParamCounts(embed=embed, head=head, linear=linear, norms_biases=norms + biases)

    @property
    def params(self) -> int:
        """Total parameters, counted from the architecture."""
        return self.param_counts().total

    @property
    def active_params(self) -> int:
        """Parameters one token runs through: every expert's share replaced by the routed ones.
        Equal to :attr:`params` for a dense model."""
        if self.experts <= 1:
            return self.params
        per_expert = (3 if self.mlp == "gated" else 2) * self.hidden * self.intermediate
        idle = (self.layers - self.dense_layers) * (self.experts - self.experts_per_token) * per_expert
        return self.params - idle

    @property
    def fused_experts(self) -> bool:
        """The experts are fused 3-D parameters, not ``nn.Linear`` modules (transformers 5's own
        MoE classes): bitsandbytes does not quantize them and LoRA ``target_modules`` cannot reach
        them (PEFT's ``target_parameters`` can). Remote-code MoE models keep per-expert linears."""
        return self.experts > 1 and self.model_type in _FUSED_EXPERT_TYPES

    @property
    def expert_params(self) -> int:
        """Weight elements of every routed expert (0 for a dense model)."""
        moe_layers = self.layers - self.dense_layers
        return moe_layers * sum(m.params for m in self.linear_modules() if m.group == "expert")

    @property
    def active_intermediate(self) -> int:
        """MLP width a token's activations span: routed experts plus shared experts."""
        return self.intermediate * max(1, self.experts_per_token) + self.shared_intermediate

    @property
    def size_b(self) -> float:
        """Parameters in billions (for the recommendation tables)."""
        return self.params / 1e9

    def to_dict(self) -> dict[str, Any]:
        """JSON form for ``tuneterm plan --json`` (``model`` object)."""
        pc = self.param_counts()
        return {
            "name": self.name,
            "source": self.source,
            "source_detail": self.source_detail,
            "is_guess": self.is_guess,
            "model_type": self.model_type,
            "params": pc.total,
            "params_b": round(pc.total / 1e9, 3),
            "layers": self.layers,
            "hidden": self.hidden,
            "heads": self.heads,
            "kv_heads": self.kv_heads,
            "head_dim": self.head_dim,
            "intermediate": self.intermediate,
            "vocab": self.vocab,
            "tied_embeddings": self.tied,
            "dtype": self.dtype,
            "experts": self.experts,
            "experts_per_token": self.experts_per_token,
            "active_params": self.active_params,
            "max_position": self.max_position,
        }


# ---------------------------------------------------------------------------- config.json
def _first(cfg: Mapping[str, Any], *keys: str, default: Any = None) -> Any:
    for k in keys:
        v = cfg.get(k)
        if v is not None:
            return v
    return default


def _int(value: Any, what: str, origin: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{origin}: {what} must be a positive integer, got {value!r}")
    return value


def facts_from_config(cfg: Mapping[str, Any], *, name: str, source: str, detail: str,
                      local_dir: Path | None = None) -> ModelFacts:
    """Build :class:`ModelFacts` from a parsed ``config.json`` mapping.

    Multimodal wrappers (Gemma 3, Mistral 3, LLaVA) keep the decoder under ``text_config``; that is
    what is read. Qwen-1's ``intermediate_size`` counts both MLP branches and is halved.

    Raises:
        ConfigError: a required shape is missing or not a positive integer.
    """
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"{detail}: config.json is not a JSON object")
    outer = cfg
    text = cfg.get("text_config")
    if isinstance(text, Mapping) and _first(text, "num_hidden_layers", "n_layer") is not None:
        cfg = {**{k: v for k, v in outer.items() if k != "text_config"}, **text}
    model_type = str(_first(cfg, "model_type", default=outer.get("model_type", "unknown")))
    layers = _int(_first(cfg, "num_hidden_layers", "n_layer", "num_layers"), "num_hidden_layers", detail)
    hidden = _int(_first(cfg, "hidden_size", "n_embd", "d_model"), "hidden_size", detail)
    heads = _int(_first(cfg, "num_attention_heads", "n_head"), "num_attention_heads", detail)
    kv_heads = _int(_first(cfg, "num_key_value_heads", "multi_query_group_num", default=heads), "num_key_value_heads", detail)
    head_dim = _first(cfg, "head_dim", default=None) or hidden // heads
    head_dim = _int(head_dim, "head_dim", detail)
    inter = _first(cfg, "intermediate_size", "n_inner", "ffn_hidden_size", default=None) or 4 * hidden
    inter = _int(inter, "intermediate_size", detail)
    if model_type == "qwen":
        inter //= 2  # Qwen-1 stores w1+w2 together
    experts = _first(cfg, "num_local_experts", "num_experts", "n_routed_experts", default=1) or 1
    dense_inter = inter
    shared = 0
    dense_layers = 0
    if experts > 1:
        inter = _first(cfg, "moe_intermediate_size", default=inter)
        # shared experts: DeepSeek counts them (n_shared_experts x moe width), Qwen2-MoE gives a width
        shared = int(_first(cfg, "shared_expert_intermediate_size", default=0) or 0)
        shared = shared or int(_first(cfg, "n_shared_experts", default=0) or 0) * inter
        dense_layers = int(_first(cfg, "first_k_dense_replace", default=0) or 0)
    vocab = _int(_first(cfg, "vocab_size", "padded_vocab_size"), "vocab_size", detail)
    tied = bool(_first(cfg, "tie_word_embeddings", default=outer.get("tie_word_embeddings", model_type in _TIED_BY_DEFAULT)))
    dtype = str(_first(cfg, "torch_dtype", "dtype", default=outer.get("torch_dtype", "float32"))).replace("torch.", "")
    mlp = "plain" if model_type in _PLAIN_MLP_TYPES else "gated"
    if model_type in ("phi", "gpt_neox", "gpt2", "gptj", "falcon", "bloom", "opt"):
        bias = "all"
    elif model_type in ("qwen2", "qwen", "qwen2_moe", "gpt_oss") or cfg.get("attention_bias") or cfg.get("qkv_bias"):
        bias = "qkv"
    else:
        bias = "none"
    return ModelFacts(
        name=name, source=source, source_detail=detail, model_type=model_type, layers=layers,
        hidden=hidden, heads=heads, kv_heads=kv_heads, head_dim=head_dim, intermediate=inter,
        vocab=vocab, tied=tied, dtype=dtype, mlp=mlp, bias=bias,
        max_position=_first(cfg, "max_position_embeddings", "n_positions", "seq_length"),
        experts=int(experts), experts_per_token=int(_first(cfg, "num_experts_per_tok", "experts_per_token", default=1) or 1),
        shared_intermediate=shared, dense_layers=dense_layers, dense_intermediate=dense_inter if dense_layers else 0,
        local_dir=local_dir, trust_remote_code=bool(outer.get("auto_map")),
    )


def read_config_json(path: Path) -> dict[str, Any]:
    """Read and parse a ``config.json`` safely (size-capped, UTF-8, must be an object).

    Raises:
        InputError: unreadable, too large, not UTF-8 or not JSON.
        ConfigError: valid JSON but not an object.
    """
    try:
        if path.stat().st_size > _MAX_CONFIG_BYTES:
            raise InputError(f"{path}: too large for a config.json ({path.stat().st_size} bytes)")
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: config.json is not a JSON object")
    return data


# ---------------------------------------------------------------------------- HF cache / hub
def hf_cache_dir() -> Path:
    """Where the local Hugging Face hub cache lives (``HF_HUB_CACHE`` > ``HF_HOME/hub`` > default)."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return Path("~/.cache/huggingface/hub").expanduser()


def find_in_cache(model_id: str) -> Path | None:
    """The snapshot directory of ``model_id`` in the local HF cache that has a config.json, or None.

    Prefers the snapshot ``refs/main`` points at; otherwise the most recently modified one.
    """
    if "/" not in model_id or model_id.count("/") != 1:
        return None
    repo = hf_cache_dir() / ("models--" + model_id.replace("/", "--"))
    snaps = repo / "snapshots"
    if not snaps.is_dir():
        return None
    ref = repo / "refs" / "main"
    try:
        if ref.is_file():
            cand = snaps / ref.read_text(encoding="utf-8").strip()
            if (cand / "config.json").is_file():
                return cand
        found = [p for p in snaps.iterdir() if (p / "config.json").is_file()]
    except OSError:
        return None
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def _offline() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("HF_HUB_OFFLINE", "TUNETERM_OFFLINE", "TRANSFORMERS_OFFLINE"))


def fetch_from_hub(model_id: str, timeout: float = 3.0) -> Path | None:
    """Download ``config.json`` of ``model_id`` from the Hub; None on any failure (offline, gated, missing).

    Uses ``huggingface_hub`` only when it is importable; never raises.
    """
    if _offline() or not re.fullmatch(r"[\w.\-]+/[\w.\-]+", model_id):
        return None
    try:
        import huggingface_hub  # optional; imported lazily
    except ImportError:
        return None
    try:
        # huggingface_hub retries connection errors with back-off (tens of seconds offline): probe
        # the endpoint once with a short timeout first, and skip the Hub when it does not answer.
        import socket
        from urllib.parse import urlparse

        endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
        with socket.create_connection((endpoint.hostname or "huggingface.co", endpoint.port or 443), timeout=timeout):
            pass
        path = huggingface_hub.hf_hub_download(repo_id=model_id, filename="config.json", etag_timeout=timeout)
        return Path(path).parent
    except Exception:  # noqa: BLE001 - "fail quietly to the table": any hub error means offline here
        return None


# ---------------------------------------------------------------------------- the family table
@cache
def _table() -> tuple[dict[str, Any], ...]:
    from tuneterm.plan.tables import load_yaml_table

    rows = load_yaml_table("models.yaml", "models")
    return tuple(rows)


def table_rows() -> tuple[dict[str, Any], ...]:
    """Rows of ``rules/models.yaml`` (validated mappings)."""
    return _table()


def _row_by_id(row_id: str) -> dict[str, Any]:
    for r in table_rows():
        if r["id"] == row_id:
            return r
    raise ConfigError(f"rules/models.yaml: base {row_id!r} is not a row")


def _resolved_row(row: Mapping[str, Any]) -> Mapping[str, Any]:
    """A derivative row (``base: <id>``: a distill or fine-tune that keeps its base's architecture)
    takes every shape from its base row."""
    if "base" not in row:
        return row
    return {**_row_by_id(str(row["base"])), **{k: v for k, v in row.items() if k not in ("match",)}}


def _row_facts(row: Mapping[str, Any], *, name: str, source: str, detail: str, is_guess: bool = False) -> ModelFacts:
    row = _resolved_row(row)
    heads = int(row["heads"])
    return ModelFacts(
        name=name, source=source, source_detail=detail, model_type=str(row["model_type"]),
        layers=int(row["layers"]), hidden=int(row["hidden"]), heads=heads,
        kv_heads=int(row.get("kv_heads", heads)), head_dim=int(row.get("head_dim") or int(row["hidden"]) // heads),
        intermediate=int(row["intermediate"]), vocab=int(row["vocab"]), tied=bool(row["tied"]),
        dtype=str(row.get("dtype", "bfloat16")), mlp=str(row.get("mlp", "gated")), bias=str(row.get("bias", "none")),
        max_position=row.get("max_position"), is_guess=is_guess,
        experts=int(row.get("experts", 1)), experts_per_token=int(row.get("experts_per_token", 1)),
        shared_intermediate=int(row.get("shared_intermediate", 0)), dense_layers=int(row.get("dense_layers", 0)),
        dense_intermediate=int(row.get("dense_intermediate", 0)),
    )


def _basename(spec: str) -> str:
    return spec.rstrip("/").split("/")[-1].lower()


def table_match(spec: str) -> dict[str, Any] | None:
    """The first table row whose ``match`` pattern is found in the lower-cased repo name, or None."""
    base = _basename(spec)
    for row in table_rows():
        if row["id"].lower() == spec.lower():
            return row
    for row in table_rows():
        if any(re.search(p, base) for p in row.get("match", ())):
            return row
    return None


def table_facts(spec: str) -> ModelFacts:
    """Facts from the family table for ``spec`` (raises ConfigError if no row matches)."""
    row = table_match(spec)
    if row is None:
        raise ConfigError(f"{spec}: not in the model table (rules/models.yaml)")
    detail = f"rules/models.yaml: {row['id']} ({row['source']})"
    if "base" in row:
        detail = f"rules/models.yaml: {row['id']} has the architecture of {row['base']} ({row['source']})"
    return _row_facts(row, name=spec, source="table", detail=detail)


_SIZE_RE = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)\s*([bm])(?![a-z])", re.I)


def parse_size_b(name: str) -> float | None:
    """Parameter count in billions parsed from a model name (``Foo-7B`` → 7.0, ``x-135M`` → 0.135).

    >>> parse_size_b("mistralai/Mistral-Small-3.1-24B-Instruct-2503")
    24.0
    >>> parse_size_b("gpt2") is None
    True
    """
    sizes = []
    for num, unit in _SIZE_RE.findall(_basename(name)):
        v = float(num) / (1000.0 if unit.lower() == "m" else 1.0)
        sizes.append(v)
    return max(sizes) if sizes else None


def guess_facts(spec: str) -> ModelFacts:
    """Last resort: the table architecture whose counted size is nearest the size in the name.

    Raises:
        ConfigError: the name carries no size either.
    """
    size = parse_size_b(spec)
    if size is None:
        raise ConfigError(
            f"{spec}: no config.json found (local path, HF cache) and the name matches no known family "
            "and carries no size; pass a local model directory"
        )
    rows = [r for r in table_rows() if "base" not in r and r.get("mlp", "gated") == "gated"
            and r["model_type"] != "qwen" and int(r.get("experts", 1)) == 1]
    best = min(rows, key=lambda r: abs(_row_facts(r, name="", source="", detail="").size_b - size))
    detail = (f"GUESSED from the name ({size:g}B): no config.json found and no table entry; the dense "
              f"architecture of {best['id']} is assumed")
    return _row_facts(best, name=spec, source="guess", detail=detail, is_guess=True)


def resolve_model(spec: str, *, online: bool | None = None) -> ModelFacts:
    """Find the facts of a model named by a path or id (see the module docstring for the order).

    Args:
        spec: local directory, path to a config.json, or ``org/name`` hub id.
        online: allow the Hub lookup (default: unless ``HF_HUB_OFFLINE``/``TUNETERM_OFFLINE`` is set).

    Raises:
        InputError: ``spec`` is a local path whose config.json is unreadable or malformed.
        ConfigError: nothing at all is known about ``spec``.
    """
    spec = spec.strip()
    if not spec:
        raise ConfigError("empty model name")
    if spec.startswith("tuneterm:"):
        # tuneterm's built-in tiny model: its local build, once `tuneterm train` has made it
        from tuneterm.assets.names import built_model_dir

        built = built_model_dir(spec)
        if built is None:
            raise ConfigError(f"{spec}: built-in model not built yet (the first `tuneterm train` builds it)")
        return facts_from_config(read_config_json(built / "config.json"), name=spec, source="local",
                                 detail=str(built / "config.json"), local_dir=built)
    p = Path(spec).expanduser()
    if p.is_file() and p.name.endswith(".json"):
        return facts_from_config(read_config_json(p), name=spec, source="local", detail=str(p), local_dir=p.parent)
    if p.is_dir():
        cfg = p / "config.json"
        if not cfg.is_file():
            raise InputError(f"{spec}: directory has no config.json")
        return facts_from_config(read_config_json(cfg), name=spec, source="local", detail=str(cfg), local_dir=p)
    if spec.startswith((".", "/", "~")):
        raise InputError(f"{spec}: no such model directory")
    snap = find_in_cache(spec)
    if snap is not None:
        return facts_from_config(read_config_json(snap / "config.json"), name=spec, source="cache",
                                 detail=str(snap / "config.json"), local_dir=snap)
    if online is None:
        online = not _offline()
    if online:
        hub = fetch_from_hub(spec)
        if hub is not None:
            return facts_from_config(read_config_json(hub / "config.json"), name=spec, source="hub",
                                     detail=f"hf.co/{spec}/config.json", local_dir=hub)
    if table_match(spec) is not None:
        return table_facts(spec)
    return guess_facts(spec)


def family_members(model: ModelFacts) -> list[ModelFacts]:
    """Smaller models of ``model``'s family in the model table, largest first (empty when the
    model matches no table row). Used to propose a smaller model when nothing else fits."""
    row = table_match(model.name)
    if row is None:
        return []
    size = model.size_b
    members = [_row_facts(r, name=r["id"], source="table", detail=f"rules/models.yaml: {r['id']} ({r['source']})")
               for r in table_rows() if r.get("family") == row.get("family") and r["id"] != row["id"] and "base" not in r]
    return sorted((m for m in members if m.size_b < size * 0.9), key=lambda m: -m.size_b)
