"""The detector registry: named detector functions and the parameter schema each accepts.

A detector is a pure function ``(run, params) -> list[Detection]`` registered under a name with
:func:`detector`. Rule records (``rules/**/*.yaml``) refer to detectors by that name and pass
thresholds through ``params``; the loader (:mod:`tuneterm.engine.rules`) checks each record's
params against the schema declared here, and its message template against the evidence keys the
detector declares it produces. Thresholds therefore live in the rule records, never in detector
code: numeric thresholds are declared without defaults so a rule must state them.

Detectors of every scope live in :mod:`tuneterm.engine.detectors` and register the same way;
:data:`DETECTOR_MODULES` lists, per scope, the modules imported before that scope's rules are
validated or evaluated.

>>> from tuneterm.engine.registry import get_detector
>>> get_detector("nonfinite", "log").name
'nonfinite'
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tuneterm.engine.model import Detection

DetectorFunc = Callable[[Any, Mapping[str, Any]], list[Detection]]

DETECTOR_MODULES: dict[str, tuple[str, ...]] = {
    "log": ("tuneterm.engine.detectors",),
    "config": ("tuneterm.engine.detectors.config",),
    "data": ("tuneterm.engine.detectors.data",),
    "eval": ("tuneterm.engine.detectors.eval_report",),
}
"""Per rule scope, the modules that register its detectors when imported. They are imported
lazily, only for the scopes being loaded: ``tuneterm check LOG`` never imports the config or data
detectors (none of them imports anything beyond the engine either; the data detectors import
numpy only when they run)."""


class _Required:
    """Marker for a parameter without a default (a threshold the rule must state)."""

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()

# Parameter types a schema may declare, with the Python types accepted for each.
_TYPES: dict[str, tuple[type, ...]] = {
    "float": (int, float),
    "int": (int,),
    "bool": (bool,),
    "str": (str,),
    "str_list": (list,),
    "float_list": (list,),
    "int_list": (list,),
}


@dataclass(frozen=True, slots=True)
class Param:
    """Schema of one detector parameter.

    Attributes:
        type: one of ``float``, ``int``, ``bool``, ``str``, ``str_list``, ``float_list``,
            ``int_list``.
        doc: what it means (shown by ``tuneterm rule NAME``).
        default: value used when the rule omits it; :data:`REQUIRED` (the default) means the rule
            must give it.
        choices: allowed values for ``str`` params.
        min: inclusive lower bound for numbers.
        max: inclusive upper bound for numbers.
    """

    type: str
    doc: str
    default: Any = REQUIRED
    choices: tuple[str, ...] | None = None
    min: float | None = None
    max: float | None = None

    def check(self, name: str, value: Any) -> str | None:
        """Return an error text if ``value`` does not fit this schema, else ``None``."""
        accepted = _TYPES[self.type]
        if isinstance(value, bool) and self.type != "bool":
            return f"param '{name}' must be {self.type}, got bool"
        if not isinstance(value, accepted):
            return f"param '{name}' must be {self.type}, got {type(value).__name__}"
        if self.type.endswith("_list"):
            item = {"str_list": (str,), "float_list": (int, float), "int_list": (int,)}[self.type]
            if not all(isinstance(v, item) and not isinstance(v, bool) for v in value):
                return f"param '{name}' must be a list of {self.type[:-5]}"
            return None
        if self.choices is not None and value not in self.choices:
            return f"param '{name}' must be one of {', '.join(self.choices)}, got {value!r}"
        if self.type in ("float", "int"):
            if self.min is not None and value < self.min:
                return f"param '{name}' must be >= {self.min}, got {value}"
            if self.max is not None and value > self.max:
                return f"param '{name}' must be <= {self.max}, got {value}"
        return None


@dataclass(frozen=True, slots=True)
class DetectorSpec:
    """A registered detector: its function, parameter schema and the evidence keys it fills."""

    name: str
    func: DetectorFunc
    params: Mapping[str, Param] = field(default_factory=dict)
    evidence: tuple[str, ...] = ()
    scope: str = "log"
    doc: str = ""

    def resolve(self, params: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """Validate ``params`` against the schema and fill defaults.

        Returns:
            ``(resolved, errors)``: the full parameter dict, and one text per problem (unknown
            param, missing required param, wrong type or range).
        """
        errors: list[str] = []
        resolved: dict[str, Any] = {}
        for key in params:
            if key not in self.params:
                known = ", ".join(sorted(self.params)) or "none"
                errors.append(f"unknown param '{key}' for detector '{self.name}' (accepts: {known})")
        for key, schema in self.params.items():
            if key in params:
                problem = schema.check(key, params[key])
                if problem:
                    errors.append(problem)
                else:
                    resolved[key] = params[key]
            elif schema.default is REQUIRED:
                errors.append(f"missing param '{key}' for detector '{self.name}'")
            else:
                resolved[key] = schema.default
        return resolved, errors


_REGISTRY: dict[str, DetectorSpec] = {}
_loaded: set[str] = set()


def detector(
    name: str,
    *,
    params: Mapping[str, Param] | None = None,
    evidence: Sequence[str] = (),
    scope: str = "log",
) -> Callable[[DetectorFunc], DetectorFunc]:
    """Register the decorated function as detector ``name``.

    Args:
        name: the name rule records use in ``detector:``.
        params: the parameter schema (name -> :class:`Param`).
        evidence: keys the detector puts in ``Detection.evidence`` (message templates may use
            these, the rule's params, ``first_step`` and ``last_step``).
        scope: what the detector reads: ``log`` (a Run), ``config``, ``data``, ``eval`` (an eval
            report or a run's samples).

    Raises:
        ValueError: the name is already registered to another function.
    """

    def register(func: DetectorFunc) -> DetectorFunc:
        from tuneterm.engine.stats import analysis_cache, cache_active

        def run_cached(run: Any, params: Mapping[str, Any]) -> list[Detection]:
            # Called directly (tests, the live watcher), a detector still shares derived data
            # between its own passes; inside evaluate() the evaluation-wide cache is used.
            if cache_active():
                return func(run, params)
            with analysis_cache():
                return func(run, params)

        run_cached.__doc__ = func.__doc__
        run_cached.__qualname__ = func.__qualname__
        run_cached.__module__ = func.__module__
        old = _REGISTRY.get(name)
        if old is not None and old.func is not func and old.func.__qualname__ != func.__qualname__:
            raise ValueError(f"detector {name!r} registered twice")
        _REGISTRY[name] = DetectorSpec(
            name=name,
            func=run_cached,
            params=dict(params or {}),
            evidence=tuple(evidence),
            scope=scope,
            doc=(func.__doc__ or "").strip(),
        )
        return func

    return register


def ensure_loaded(scope: str | None = None) -> None:
    """Import the detector modules of ``scope`` (every scope when ``None``); idempotent."""
    scopes = list(DETECTOR_MODULES) if scope is None else [scope]
    for sc in scopes:
        if sc in _loaded:
            continue
        for module in DETECTOR_MODULES.get(sc, ()):
            importlib.import_module(module)
        _loaded.add(sc)


def get_detector(name: str, scope: str | None = None) -> DetectorSpec | None:
    """The detector registered as ``name`` (loading ``scope``'s modules first), or ``None``."""
    spec = _REGISTRY.get(name)
    if spec is None:
        ensure_loaded(scope)
        spec = _REGISTRY.get(name)
    return spec


def all_detectors(scope: str | None = None) -> dict[str, DetectorSpec]:
    """Every registered detector of ``scope`` (all scopes when ``None``), by name."""
    ensure_loaded(scope)
    return {k: v for k, v in _REGISTRY.items() if scope is None or v.scope == scope}
