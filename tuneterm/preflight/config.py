"""``tuneterm check CONFIG.yaml``: static checks of a training config before any GPU time is spent.

Public API (used by the ``check`` command and by ``tuneterm train``'s pre-flight):

- :func:`looks_like_config` -- is this path a training config (TRL, LLaMA-Factory or Axolotl YAML)?
- :func:`check_config` -- read it, judge it by every ``scope: config`` rule of ``rules/`` (through
  :func:`tuneterm.runs.diagnose.diagnose`), and return the facts shown in the summary and the
  findings, most severe first.

>>> import tempfile, os
>>> fd, p = tempfile.mkstemp(suffix=".yaml"); _ = os.write(fd, b"model_name_or_path: mistralai/Mistral-Small-3.1-24B-Instruct-2503\\nlearning_rate: 5.0e-5\\n"); os.close(fd)
>>> facts, findings = check_config(p, gpu_memory_gib=80.0)
>>> findings[0].code, findings[0].severity.value
('C101', 'error')
>>> os.unlink(p)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneterm.engine.model import Finding, Rule
from tuneterm.engine.subjects import Subject, by_severity_code
from tuneterm.preflight.config_read import ConfigFacts, looks_like_training_config, read_config

_SUFFIXES = (".yaml", ".yml")


def looks_like_config(path: str | Path) -> bool:
    """True when ``path`` is a YAML file whose top-level keys are those of a training config.

    Cheap and never raises: unreadable or malformed files are "not a config" here (``check``
    then reports them through its own route).
    """
    p = Path(path)
    if p.suffix.lower() not in _SUFFIXES:
        return False
    try:
        if not p.is_file() or p.stat().st_size > 2_000_000:
            return False
        import yaml

        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except Exception:  # noqa: BLE001 - any failure simply means "not a training config"
        return False
    return isinstance(data, Mapping) and looks_like_training_config({str(k): v for k, v in data.items()})


@dataclass(frozen=True, slots=True)
class MachineGpus:
    """This machine's GPUs as the config check needs them.

    Attributes:
        capacity_gib: total memory of the smallest GPU, None without a GPU.
        count: GPUs found (None without one).
        compute_capability: of the smallest GPU.
        bf16: every GPU supports bf16 (False without any GPU); None when NVML could not tell.
        without_bf16: the name of a GPU lacking bf16 (untrusted text), else None.
    """

    capacity_gib: float | None
    count: int | None
    compute_capability: float | None
    bf16: bool | None
    without_bf16: str | None = None


def machine_gpus() -> MachineGpus:
    """Probe this machine's GPUs through NVML (no torch)."""
    from tuneterm.plan.gpu import probe

    try:
        import pynvml  # noqa: F401 - without NVML the GPUs are unknown, not absent
    except ImportError:
        return MachineGpus(None, None, None, None)
    prof = probe()
    if not prof.gpus:
        return MachineGpus(None, None, None, False)  # NVML answers: no driver or no GPU
    smallest = min(prof.gpus, key=lambda g: g.total_bytes)
    cc = smallest.compute_capability
    lacking = [g for g in prof.gpus if g.bf16 is False]
    unknown = any(g.bf16 is None for g in prof.gpus)
    bf16 = False if lacking else (None if unknown else True)
    return MachineGpus(smallest.total_gib, len(prof.gpus), None if cc is None else cc[0] + cc[1] / 10, bf16,
                       lacking[0].name if lacking else None)


def installed_trl_fields() -> dict[str, Any] | None:
    """The installed TRL's config fields per trainer, from the schema cache (built on first use);
    None when TRL is not installed (the unknown-key check is then skipped)."""
    from tuneterm.errors import TunetermError
    from tuneterm.preflight.schema import load_schema

    try:
        schema = load_schema()
    except TunetermError:
        return None
    return {name: t.fields for name, t in schema.trainers.items()}


def subject_of(cf: ConfigFacts, rules: Iterable[Rule]) -> Subject:
    """``cf`` as the subject of the ``config`` rule scope: its facts computed for ``rules``
    (:func:`tuneterm.preflight.config_subject.config_subject`); findings point at the file (each
    at its key's line), most severe first, then by code."""
    from tuneterm.preflight.config_subject import config_subject

    return Subject(scope="config", value=config_subject(cf, rules), source=str(cf.path), trainer=cf.trainer,
                   order=by_severity_code)


def respell_config_fixes(findings: list[Finding], cf: ConfigFacts) -> list[Finding]:
    """Fixes of a renamed key (``gradient_checkpointing``) written as this TRL config spells it,
    else as the installed transformers prefers (``activation_checkpointing`` where it has it): a
    change under the other name would be ignored by transformers. Other dialects keep their keys."""
    from tuneterm.advise.spelling import fields_accept, respell_fixes
    from tuneterm.keynames import written_name

    if cf.dialect != "trl":
        return findings
    accepts = fields_accept(None if cf.trl_fields is None else frozenset(cf.trl_fields))
    return respell_fixes(findings, lambda key: written_name(key, cf.raw, accepts))


def check_config(path: str | Path, *, gpu_memory_gib: float | None = None, gpus: int | None = None,
                 trainer: str | None = None, dataset_size: int | None = None,
                 trl_fields: Mapping[str, Mapping[str, Any]] | None = None) -> tuple[dict[str, Any], list[Finding]]:
    """Check a training config statically.

    Args:
        path: TRL / LLaMA-Factory / Axolotl YAML.
        gpu_memory_gib: capacity of one GPU for the fit check; None probes the GPUs present (NVML)
            and skips the fit check when there are none.
        gpus: data-parallel GPUs (default: the GPUs found, else 1).
        trainer: force ``sft``/``dpo``/``grpo`` (else inferred from the keys).
        dataset_size: samples in the training set, when the caller knows it (else read from a
            local dataset file or a ``# tuneterm-dataset-size: N`` comment).
        trl_fields: the installed TRL's fields per trainer (default: read from the schema cache,
            the same fields ``tuneterm train`` validates against).

    Without ``gpu_memory_gib`` the check is against this machine: its GPUs set the capacity and
    whether bf16 can run (as ``tuneterm train`` would find them).

    Returns:
        ``(facts, findings)``: the summary facts dict and the findings, most severe first.

    Raises:
        InputError: missing, unreadable, binary or non-UTF-8 file.
        ConfigError: invalid YAML, not a mapping, or a field of the wrong type.
    """
    cc = None
    bf16: bool | None = None
    lacking: str | None = None
    if gpu_memory_gib is None:
        here = machine_gpus()
        gpu_memory_gib, cc, bf16, lacking = here.capacity_gib, here.compute_capability, here.bf16, here.without_bf16
        if gpus is None:
            gpus = here.count
    cf = read_config(path, trainer=trainer, gpu_memory_gib=gpu_memory_gib, gpus=gpus, dataset_size=dataset_size,
                     compute_capability=cc, trl_fields=trl_fields if trl_fields is not None else installed_trl_fields(),
                     gpu_bf16=bf16, gpu_name=lacking)
    # Judged through the one entry every face calls; a detector that crashes is reported as an
    # info finding of its rule, so one broken rule does not hide the others.
    from tuneterm.engine.rules import load_rules
    from tuneterm.runs.diagnose import diagnose

    rules = tuple(load_rules(scopes=["config"]).for_scope("config"))
    findings = respell_config_fixes(list(diagnose(subject_of(cf, rules), rules, scopes=("config",)).findings), cf)
    facts = cf.summary()
    if cf.model is not None:
        from tuneterm.errors import TunetermError
        from tuneterm.plan.memory import estimate
        from tuneterm.preflight.config_read import setup_from_config

        try:
            setup = setup_from_config(cf)
            est = estimate(cf.model, setup)
        except TunetermError:
            est = None  # a setting the estimator refuses is the detectors' business, not a crash
        if est is not None:
            # What `tuneterm train` records in launch.json, to set against the measured peak.
            facts["memory_estimate"] = {
                "peak_gib": round(est.peak_gib, 3), "allocated_gib": round(est.allocated_gib, 3),
                "reserved_gib": round(est.reserved_gib, 3), "peak_phase": est.peak_phase,
                "model": cf.model.name, "model_source": cf.model.source, "method": setup.method,
                "trainer": setup.trainer, "batch_size": setup.batch_size, "seq_len": setup.seq_len,
                "gradient_checkpointing": setup.gradient_checkpointing, "dtype": setup.dtype,
                "optimizer": setup.optimizer, "gpus": setup.gpus,
            }
            if cf.gpu_memory_gib is not None:
                facts["estimated_peak_gib"] = round(est.peak_gib, 2)
    return facts, findings
