"""Pipeline files: several TRL training stages in one YAML, each started from the previous one.

A pipeline file is a YAML mapping with a ``stages:`` list (a plain TRL config never has that key,
which is how ``tuneterm train FILE`` tells the two apart)::

    name: sft-then-dpo                 # optional; default: the file's stem
    stages:
      - name: sft                      # letters, digits, '.', '_' or '-'
        config: sft.yaml               # a TRL config file (relative to this file) ...
        set: {max_steps: 200}          # ... with optional overrides
        gate:                          # checked after the stage, before the next one starts
          fail_on: error               # error (default) | warning: findings that stop the pipeline
      - name: dpo
        trainer: dpo                   # optional, else inferred from the keys (as for one run)
        from: previous                 # start from the previous stage's output ...
        merge: true                    # ... its LoRA adapter merged into its base (default)
        config:                        # or the TRL keys inline (a model_name_or_path is replaced)
          dataset_name: trl-lib/ultrafeedback_binarized
          beta: 0.1
        data:
          templates: random            # template randomisation (instruction/input/response rows)
          template_seed: 0
        gate:
          eval:                        # base vs stage output with ``tuneterm eval``'s machinery
            against: previous          # previous (this stage's starting model) | base (stage 1's)
            data: eval.jsonl
            metric: rougeL             # rouge1|rouge2|rougeL|exact_match|probes[/CATEGORY]
            min_improvement: 0.0

A ``from: previous`` stage's own ``model_name_or_path`` (a reused single-run preset names one) is
replaced by the previous stage's output. ``from: previous`` + ``merge: true`` (the default) after a
stage that trained an adapter: the adapter is merged into its base with PEFT's ``merge_and_unload`` and saved in the previous
stage's ``merged/``; the stage trains on that full model (with its own adapters, if it sets
``use_peft``). ``merge: false`` continues training the previous stage's adapter itself (the stage
must set ``use_peft: true``; its ``lora_*`` keys are ignored because the adapter defines them;
for DPO the reference model is then the base with the adapter disabled, not the SFT model). A
previous stage that trained the full model hands over its saved model; ``merge`` does not apply.

Everything here is parsing and validation: no process starts, nothing heavy is imported.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from tuneterm.errors import ConfigError, InputError
from tuneterm.keynames import patched
from tuneterm.preflight.config_read import TRAINER_DIRECTIVE

FailOn = Literal["error", "warning"]
Against = Literal["previous", "base"]

EVAL_METRICS = ("rouge1", "rouge2", "rougeL", "exact_match", "probes")
_STAGE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,40}$")
_STAGE_KEYS = frozenset({"name", "config", "set", "trainer", "from", "merge", "gate", "data"})
_GATE_KEYS = frozenset({"fail_on", "eval"})
_EVAL_KEYS = frozenset({"against", "data", "metric", "min_improvement", "n", "max_new_tokens", "probes", "split"})
_DATA_KEYS = frozenset({"templates", "template_seed"})
_TOP_KEYS = frozenset({"name", "stages"})


@dataclass(frozen=True, slots=True)
class EvalGate:
    """An evaluation that must show an improvement before the next stage starts.

    Attributes:
        against: ``previous`` (the model this stage started from) or ``base`` (stage 1's model).
        data: evaluation data (a file, a hub id or a built-in ``tuneterm:`` dataset).
        metric: a paired metric of ``tuneterm eval`` (``rougeL`` ...) or ``probes`` /
            ``probes/CATEGORY`` (pass rate on the probe set, optionally one category).
        min_improvement: the least ``stage - against`` difference of the metric that passes
            (negative: a tolerated loss).
        n: examples to generate for; max_new_tokens: generation length; probes: the probe set
            (``general``, ``none`` or a JSONL file); split: the data split to sample.
    """

    against: Against
    data: str
    metric: str = "rougeL"
    min_improvement: float = 0.0
    n: int = 50
    max_new_tokens: int = 128
    probes: str = "none"
    split: str = "test"


@dataclass(frozen=True, slots=True)
class Gate:
    """What a stage must satisfy before the next one starts: no finding at or above ``fail_on``
    in its diagnosis (the same rules as ``tuneterm doctor``), and the optional evaluation."""

    fail_on: FailOn = "error"
    eval: EvalGate | None = None


@dataclass(frozen=True, slots=True)
class DataOptions:
    """tuneterm's own data options of a stage (not TRL keys, so kept out of its config).

    Attributes:
        templates: ``()`` for the fixed rendering, ``("random",)`` for the built-in template set,
            or the user's own prompt templates (``{instruction}``, ``{input}`` placeholders);
            with two or more, each example is rendered with one picked by a seeded RNG.
        template_seed: the seed of that choice.
    """

    templates: tuple[str, ...] = ()
    template_seed: int = 0


@dataclass(frozen=True, slots=True)
class StageSpec:
    """One stage of a pipeline.

    Attributes:
        index: 1-based position; dirname: its run directory's name (``01-sft``).
        name: the stage's name; trainer: ``sft``/``dpo``/``grpo`` or None (inferred).
        values: the flat TRL config (file + ``set`` overrides, or inline), without ``env``.
        env: the config's ``env:`` mapping.
        source: where the values came from (a config path or ``PIPELINE.yaml#stage``).
        from_previous: the stage starts from the previous stage's output.
        merge: with ``from_previous``: merge the previous adapter (True) or continue it (False).
        gate: the checks after the stage; data: tuneterm's data options.
    """

    index: int
    name: str
    trainer: str | None
    values: dict[str, Any]
    env: dict[str, str]
    source: str
    from_previous: bool
    merge: bool
    gate: Gate
    data: DataOptions

    @property
    def dirname(self) -> str:
        return f"{self.index:02d}-{self.name}"

    def fingerprint(self, trainer: str) -> str:
        """A hash of everything that defines the stage (with ``trainer``, the one it resolved to),
        so ``--resume`` reruns a stage whose definition changed instead of trusting its output."""
        doc = {
            "name": self.name, "trainer": trainer, "values": self.values, "env": self.env,
            "from_previous": self.from_previous, "merge": self.merge if self.from_previous else None,
            "gate": asdict(self.gate), "data": asdict(self.data),
        }
        return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class PipelineSpec:
    """A parsed pipeline file: its name, source path and stages in order."""

    name: str
    source: str
    stages: tuple[StageSpec, ...]


def is_pipeline_file(path: str | Path) -> bool:
    """True when ``path`` is a YAML mapping with a ``stages:`` key (a pipeline, not a TRL config).

    Unreadable or non-YAML files are not pipelines; the single-run path reports them.
    """
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    return isinstance(data, dict) and "stages" in data


def _where(source: str, index: int, name: str | None) -> str:
    return f"{source}: stage {index}" + (f" ({name})" if name else "")


def _mapping(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or any(not isinstance(k, str) for k in value):
        raise ConfigError(f"{what}: expected a mapping with string keys")
    return dict(value)


def _unknown(keys: Any, allowed: frozenset[str], what: str) -> None:
    extra = sorted(set(keys) - allowed)
    if extra:
        raise ConfigError(f"{what}: unknown key {extra[0]!r} (known: {', '.join(sorted(allowed))})")


def _read_config(path: Path, what: str) -> dict[str, Any]:
    """A stage's TRL config file: a YAML mapping with string keys.

    Raises:
        InputError: missing or unreadable; ConfigError: not a YAML mapping.
    """
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{what}: no such config file {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{what}: cannot read {path} ({exc})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what}: {path}: invalid YAML: {getattr(exc, 'problem', None) or type(exc).__name__}") from None
    if not isinstance(data, dict) or any(not isinstance(k, str) for k in data):
        raise ConfigError(f"{what}: {path}: expected a mapping of TRL fields")
    return data


def _read(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: no such pipeline file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read ({exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {getattr(exc, 'problem', None) or type(exc).__name__}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with a 'stages' list")
    return data


def parse_eval(raw: Any, what: str) -> EvalGate:
    """Parse a gate's ``eval:`` mapping.

    Raises:
        ConfigError: unknown keys, a missing ``data``, an unknown metric or ``against``.
    """
    m = _mapping(raw, what)
    _unknown(m, _EVAL_KEYS, what)
    against = m.get("against", "previous")
    if against not in ("previous", "base"):
        raise ConfigError(f"{what}: against must be 'previous' or 'base', got {against!r}")
    data = m.get("data")
    if not isinstance(data, str) or not data.strip():
        raise ConfigError(f"{what}: 'data' (the evaluation data: a file, a hub id or tuneterm:tiny-sft) is required")
    metric = str(m.get("metric", "rougeL"))
    if metric.split("/", 1)[0] not in EVAL_METRICS:
        raise ConfigError(f"{what}: unknown metric {metric!r} (known: {', '.join(EVAL_METRICS)}, probes/CATEGORY)")
    probes = str(m.get("probes", "general" if metric.startswith("probes") else "none"))
    if metric.startswith("probes") and probes == "none":
        raise ConfigError(f"{what}: metric {metric!r} needs a probe set (probes: general or a JSONL file)")
    try:
        return EvalGate(
            against=against, data=data, metric=metric, min_improvement=float(m.get("min_improvement", 0.0)),
            n=int(m.get("n", 50)), max_new_tokens=int(m.get("max_new_tokens", 128)), probes=probes,
            split=str(m.get("split", "test")),
        )
    except (TypeError, ValueError):
        raise ConfigError(f"{what}: min_improvement must be a number, n and max_new_tokens integers") from None


def parse_gate(raw: Any, what: str) -> Gate:
    """Parse a stage's ``gate:`` mapping (absent: no error findings, no evaluation)."""
    m = _mapping(raw, what)
    _unknown(m, _GATE_KEYS, what)
    fail_on = m.get("fail_on", "error")
    if fail_on not in ("error", "warning"):
        raise ConfigError(f"{what}: fail_on must be 'error' or 'warning', got {fail_on!r}")
    ev = parse_eval(m["eval"], f"{what} eval") if m.get("eval") is not None else None
    return Gate(fail_on=fail_on, eval=ev)


def parse_data(raw: Any, what: str) -> DataOptions:
    """Parse a stage's ``data:`` mapping (template randomisation)."""
    m = _mapping(raw, what)
    _unknown(m, _DATA_KEYS, what)
    t = m.get("templates")
    if t is None:
        templates: tuple[str, ...] = ()
    elif t == "random":
        templates = ("random",)
    elif isinstance(t, list) and t and all(isinstance(x, str) and "{instruction}" in x for x in t):
        templates = tuple(t)
    else:
        raise ConfigError(f"{what}: templates must be 'random' or a list of strings with an {{instruction}} placeholder")
    seed = m.get("template_seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"{what}: template_seed must be an integer")
    return DataOptions(templates=templates, template_seed=seed)


def _stage_values(
    raw: Mapping[str, Any], base: Path, what: str
) -> tuple[dict[str, Any], dict[str, str], str, str | None]:
    """The stage's TRL mapping (config file or inline, plus ``set``), its env, its source and the
    trainer a config file names with ``# tuneterm: trainer=NAME`` (else None)."""
    directive: str | None = None
    cfg = raw.get("config")
    if isinstance(cfg, str):
        path = Path(cfg) if Path(cfg).is_absolute() else base / cfg
        values, source = _read_config(path, what), str(path)
        found = TRAINER_DIRECTIVE.search(path.read_text(encoding="utf-8"))
        directive = found.group(1).lower() if found else None
    elif isinstance(cfg, dict):
        values, source = _mapping(cfg, f"{what} config"), what
    else:
        raise ConfigError(f"{what}: 'config' must be a TRL config file path or a mapping of TRL keys")
    values = patched(values, _mapping(raw.get("set"), f"{what} set"))  # either name of a renamed key
    env = values.pop("env", None) or {}
    if not isinstance(env, dict):
        raise ConfigError(f"{what}: 'env' must be a mapping of environment variables")
    return values, {str(k): str(v) for k, v in env.items()}, source, directive


def parse_stage(raw: Any, index: int, base: Path, source: str) -> StageSpec:
    """Parse one entry of ``stages:``.

    Raises:
        ConfigError: unknown keys, a bad name, a stage 1 ``from: previous``.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: stage {index}: expected a mapping with 'name' and 'config'")
    name = raw.get("name")
    what = _where(source, index, name if isinstance(name, str) else None)
    _unknown(raw, _STAGE_KEYS, what)
    if not isinstance(name, str) or not _STAGE_NAME.match(name):
        raise ConfigError(f"{what}: 'name' is required: letters, digits, '.', '_' or '-' (max 41)")
    values, env, cfg_source, directive = _stage_values(raw, base, what)
    origin = raw.get("from", "previous" if index > 1 and "model_name_or_path" not in values else "base")
    if origin not in ("previous", "base"):
        raise ConfigError(f"{what}: from must be 'previous' or 'base', got {origin!r}")
    from_previous = origin == "previous"
    if from_previous and index == 1:
        raise ConfigError(f"{what}: the first stage cannot start 'from: previous'")
    if from_previous:  # a reused single-run config names its own model: the previous output replaces it
        values.pop("model_name_or_path", None)
    merge = raw.get("merge", True)
    if not isinstance(merge, bool):
        raise ConfigError(f"{what}: merge must be true or false")
    trainer = raw.get("trainer", directive)
    if trainer is not None and trainer not in ("sft", "dpo", "grpo"):
        raise ConfigError(f"{what}: trainer must be sft, dpo or grpo, got {trainer!r}")
    return StageSpec(
        index=index, name=name, trainer=trainer, values=values, env=env, source=cfg_source,
        from_previous=from_previous, merge=merge, gate=parse_gate(raw.get("gate"), f"{what} gate"),
        data=parse_data(raw.get("data"), f"{what} data"),
    )


def load_pipeline(path: str | Path) -> PipelineSpec:
    """Read and parse a pipeline file (``yaml.safe_load``; config paths relative to the file).

    Raises:
        InputError: the file (or a stage's config file) is missing or unreadable.
        ConfigError: the structure is wrong (one line naming the stage and the key).
    """
    p = Path(path)
    data = _read(p)
    _unknown(data, _TOP_KEYS, str(p))
    stages_raw = data.get("stages")
    if not isinstance(stages_raw, list) or not stages_raw:
        raise ConfigError(f"{p}: 'stages' must be a non-empty list")
    stages = tuple(parse_stage(raw, i, p.parent, str(p)) for i, raw in enumerate(stages_raw, 1))
    names = [s.name for s in stages]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise ConfigError(f"{p}: two stages are named {dup!r}")
    first = stages[0]
    if "model_name_or_path" not in first.values:
        raise ConfigError(f"{p}: stage 1 ({first.name}) needs model_name_or_path (the base model)")
    name = data.get("name", p.stem)
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{p}: 'name' must be a string")
    return PipelineSpec(name=name, source=str(p), stages=stages)


def base_model(spec: PipelineSpec) -> str:
    """The pipeline's base model: stage 1's ``model_name_or_path``."""
    return str(spec.stages[0].values["model_name_or_path"])


def starting_model(spec: PipelineSpec, stage: StageSpec) -> str:
    """The model a stage names before the pipeline runs: its own ``model_name_or_path``, or, for a
    ``from: previous`` stage, the model the chain started from (the base of the chain), which is
    what its config is validated and pre-flight-checked with before the real input exists."""
    if not stage.from_previous:
        return str(stage.values["model_name_or_path"])
    for earlier in reversed(spec.stages[: stage.index - 1]):
        if not earlier.from_previous:
            return str(earlier.values["model_name_or_path"])
    return base_model(spec)


def uses_adapter(stage: StageSpec) -> bool:
    """True when the stage trains LoRA/QLoRA adapters (``use_peft``) rather than the full model."""
    v = stage.values.get("use_peft")
    return v is True or (isinstance(v, str) and v.strip().lower() in {"true", "yes", "1", "on"})


def handover(spec: PipelineSpec, stage: StageSpec) -> str:
    """How ``stage`` gets its model, in words (for the file's report and ``pipeline.json``):
    ``base``, ``model`` (the previous stage's full model), ``merged`` or ``adapter``."""
    if not stage.from_previous:
        return "base"
    prev = spec.stages[stage.index - 2]
    if not uses_adapter(prev):
        return "model"
    return "merged" if stage.merge else "adapter"


def check_handover(spec: PipelineSpec) -> None:
    """Refuse chains that cannot work: continuing an adapter (``merge: false``) in a stage that
    does not train adapters, or evaluating such a stage against the previous (adapter) model.

    Raises:
        ConfigError: one line naming the stage.
    """
    for stage in spec.stages:
        ev = stage.gate.eval
        if handover(spec, stage) == "adapter" and ev is not None and ev.against == "previous":
            raise ConfigError(
                f"{spec.source}: stage {stage.index} ({stage.name}): an eval gate 'against: previous' needs the "
                "previous model as one model; with 'merge: false' compare 'against: base' (or set merge: true)"
            )
        if handover(spec, stage) == "adapter" and not uses_adapter(stage):
            raise ConfigError(
                f"{spec.source}: stage {stage.index} ({stage.name}): 'merge: false' continues the previous "
                "stage's LoRA adapter, so this stage needs use_peft: true (or set merge: true)"
            )
