"""Pre-flight dataset check: ``tuneterm check DATASET --model M``.

Entry points used by the ``check`` command:

* :func:`looks_like_dataset` -- is this path (or hub id) a dataset rather than a log or a config?
* :func:`check_dataset` -- read the data, render every example the way TRL trains it with the
  model's tokenizer, run the ``data`` rules (``rules/diagnostics/data.yaml``) and return a :class:`DataReport`.
* :func:`render_data_report` -- the human summary (counts, token-length histogram with the
  max_length marked, worst examples with line numbers, findings with fixes).

Exit-code contract (DESIGN.md): unreadable data, broken JSON lines, unknown format, a tokenizer
that cannot be loaded -> :class:`~tuneterm.errors.InputError` (exit 2, one line naming the file and
line, or the formats looked for); an empty dataset -> :class:`~tuneterm.errors.NoMetricsError`
(exit 3, "nothing to check"). Findings use the same :class:`~tuneterm.engine.model.Finding`
records as log findings, so every ``--format`` works unchanged; ``Finding.line`` is the 1-based
line of the row in a JSONL file.

Nothing heavy is imported at module level: ``datasets``/``transformers`` load inside the functions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneterm.engine.model import Detection, Finding, Rule
from tuneterm.engine.subjects import Subject
from tuneterm.errors import InputError
from tuneterm.kinds import TRAINERS
from tuneterm.runs.layout import is_run_dir

if TYPE_CHECKING:
    from rich.console import Console

    from tuneterm.engine.data_subject import DataAnalysis
    from tuneterm.report.result import CheckResult

# Column names that mark a record as a training example (vs. a metrics log line).
_DATA_KEYS = frozenset(
    {"text", "messages", "conversations", "prompt", "completion", "chosen", "rejected", "instruction", "output"}
)
_LOG_KEYS = frozenset({"loss", "step", "learning_rate", "grad_norm", "log_history", "epoch", "global_step"})


@dataclass(frozen=True, slots=True)
class WorstExample:
    """One example worth looking at, with where it is.

    Attributes:
        where: ``file:line`` (JSONL) or ``file row N``.
        line: 1-based line (JSONL) or ``None``.
        row: 1-based row number.
        tokens: rendered length in tokens (``None`` when not rendered).
        reason: why it is listed (``longest``, ``truncated``, ``labels fully masked`` ...).
        preview: the start of the example, already made inert (no control characters).
    """

    where: str
    line: int | None
    row: int
    tokens: int | None
    reason: str
    preview: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"where": self.where, "line": self.line, "row": self.row, "tokens": self.tokens,
                "reason": self.reason, "preview": self.preview}


@dataclass(frozen=True, slots=True)
class DataReport:
    """The result of :func:`check_dataset`.

    Attributes:
        source: the checked path or hub id.
        format: detected format id (``text``, ``messages``, ``sharegpt``, ``prompt_completion``,
            ``alpaca``, ``prompt_output``, ``preference``, ``prompt_only``).
        facts: counts and figures: ``rows``, ``rows_checked``, ``trainer``, ``conversational``,
            ``max_length``, ``tokens_per_epoch``, ``trainable_tokens_per_epoch``, length
            percentiles (``length_p50``/``p90``/``p99``/``max``/``mean``), ``share_truncated``,
            ``fully_masked``, ``tokenizer`` {...}, ``notes`` [...].
        findings: findings of the ``data`` rules, errors first.
        worst: examples worth looking at (longest, truncated, masked, empty ...), with lines.
        lengths: token length of every rendered example (for the histogram).
    """

    source: str
    format: str
    facts: dict[str, Any]
    findings: list[Finding]
    worst: list[WorstExample] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON form (findings as in DESIGN.md)."""
        return {
            "source": self.source,
            "format": self.format,
            "facts": self.facts,
            "findings": [f.to_dict() for f in self.findings],
            "worst": [w.to_dict() for w in self.worst],
        }


def _sniff_record(record: Any) -> bool | None:
    if not isinstance(record, dict):
        return None
    keys = set(map(str, record))
    if keys & _LOG_KEYS and not keys & _DATA_KEYS:
        return False
    return bool(keys & _DATA_KEYS) or None


def _sniff_file(p: Path) -> bool:
    from tuneterm.preflight.data_load import DATA_SUFFIXES

    kind = DATA_SUFFIXES.get(p.suffix.lower())
    if kind is None:
        return False
    if kind == "parquet":
        return True
    try:
        with p.open("rb") as fh:
            head = fh.read(65536)
    except OSError:
        return False
    if b"\x00" in head:
        return False
    text = head.decode("utf-8", "replace").lstrip("\ufeff")
    if kind == "csv":
        header = {h.strip().strip('"').lower() for h in text.split("\n", 1)[0].replace("\t", ",").split(",")}
        return bool(header & _DATA_KEYS) and not (header & _LOG_KEYS and not header & _DATA_KEYS)
    stripped = text.lstrip()
    if kind == "json" and stripped.startswith("{") and "\n" not in stripped.split("}", 1)[0][:2]:
        # A whole JSON object: trainer_state.json has log_history; a dataset is a list or {"data": [...]}.
        if '"log_history"' in text or '"global_step"' in text:
            return False
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith("["):
            line = line[1:].strip()
            if not line:
                continue
        try:
            record = json.loads(line.rstrip(","))
        except ValueError:
            # Pretty-printed JSON: fall back to key names in the head.
            if any(f'"{k}"' in text for k in _LOG_KEYS) and not any(f'"{k}"' in text for k in _DATA_KEYS):
                return False
            return any(f'"{k}"' in text for k in _DATA_KEYS)
        verdict = _sniff_record(record)
        return bool(verdict)
    return False


def looks_like_dataset(path: str) -> bool:
    """True when ``path`` is a training dataset: a JSONL/JSON/CSV/Parquet file whose records have
    dataset columns (text, messages, conversations, prompt, completion, chosen, rejected,
    instruction, output), a directory of such files (not a run or checkpoint directory), or an
    ``owner/name`` hub id that is not a local path.

    Metrics logs (``trainer_log.jsonl``, ``metrics.jsonl``, ``trainer_state.json``) are not
    datasets. Never raises; reads at most 64 KiB of each file.

    >>> looks_like_dataset("trl-lib/Capybara"), looks_like_dataset("missing.yaml")
    (True, False)
    """
    from tuneterm.preflight.data_load import data_files, is_hub_id

    try:
        p = Path(path)
        if p.is_dir():
            if (p / "trainer_state.json").exists() or is_run_dir(p):
                return False
            files = data_files(p)
            return bool(files) and _sniff_file(files[0])
        if p.is_file():
            return _sniff_file(p)
        return is_hub_id(path)
    except (OSError, ValueError, RecursionError):  # a sniffer declines; the log reader explains
        return False


def _data_rules() -> list[Rule]:
    from tuneterm.engine import load_rules

    return list(load_rules(scopes=["data"]).for_scope("data"))


def _percentile(values: Any, q: float) -> int:
    import numpy as np

    return int(np.quantile(values, q, method="higher")) if len(values) else 0


def _facts(an: DataAnalysis) -> dict[str, Any]:
    ok = an.ok_mask()
    checked = int(ok.sum())
    facts: dict[str, Any] = {
        "rows": an.rows,
        "rows_checked": checked,
        "sampled": an.sampled,
        "trainer": an.trainer,
        "conversational": an.conversational,
        "max_length": an.max_length,
        "max_length_is_trl_default": an.max_length_is_default and an.max_length is not None,
        "formats": dict(an.format_counts),
    }
    if an.tokenizer is not None and checked:
        lengths = an.lengths[ok]
        # Sampled: scale the sample's token counts up to the whole dataset.
        scale = an.rows / checked if an.sampled else 1.0
        if an.trainer == "grpo":
            facts["prompt_tokens_per_epoch"] = int(round(float(an.kept[ok].sum()) * scale))
        else:
            trained = ok & (an.trainable > 0)  # TRL drops fully masked rows
            facts["tokens_per_epoch"] = int(round(float(an.kept[trained].sum()) * scale))
            facts["trainable_tokens_per_epoch"] = int(round(float(an.trainable[trained].sum()) * scale))
            facts["fully_masked"] = int((ok & (an.trainable == 0)).sum())
        facts.update(
            length_mean=round(float(lengths.mean()), 1),
            length_p50=_percentile(lengths, 0.50),
            length_p90=_percentile(lengths, 0.90),
            length_p99=_percentile(lengths, 0.99),
            length_max=int(lengths.max()),
            share_truncated=round(float(an.truncated[ok].mean()), 4),
            tokenizer=an.tokenizer.to_dict(),
        )
    facts["duplicates"] = an.n_exact_dups
    facts["empty_responses"] = an.n_empty_responses
    if an.trainer == "dpo":
        facts["identical_pairs"] = an.n_identical_pairs
    facts["schema_problems"] = an.n_schema_problems
    facts["notes"] = list(an.notes)
    return facts


def _worst(an: DataAnalysis, findings: list[Finding]) -> list[WorstExample]:
    from tuneterm.textsafe import inert_line

    out: list[WorstExample] = []
    seen: set[int] = set()

    def add(ref: Any, tokens: int | None, reason: str, preview: str = "") -> None:
        if ref.index in seen or len(out) >= 10:
            return
        seen.add(ref.index)
        out.append(WorstExample(ref.where, ref.line, ref.index + 1, tokens, reason, inert_line(preview, 120)))

    if an.tokenizer is not None and an.max_length is not None and an.trainer != "grpo":
        ok = an.ok_mask()
        masked = [int(i) for i in (ok & (an.trainable == 0)).nonzero()[0][:3]]
        for i in masked:
            add(an.refs[i], int(an.lengths[i]), "labels fully masked")
    for tokens, _, ref, preview in an.longest:
        trunc = an.max_length is not None and tokens > an.max_length
        add(ref, tokens, "longest, truncated" if trunc else "longest", preview)
    for ref, why in an.empty_responses[:2]:
        add(ref, None, why)
    for ref in an.identical_pairs[:2]:
        add(ref, None, "chosen == rejected")
    for ref, why in an.schema_problems[:2]:
        add(ref, None, why)
    for ref, _first in an.exact_dups[:2]:
        add(ref, None, f"duplicate of {_first.where}")
    del findings
    return out


def check_dataset(
    path: str,
    *,
    model: str | None,
    max_length: int | None = None,
    trainer: str | None = None,
    sample: int | None = None,
    assistant_only_loss: bool = False,
    trust_remote_code: bool = False,
    rules: list[Rule] | None = None,
) -> DataReport:
    """Check a dataset the way TRL will train on it.

    Args:
        path: JSONL/JSON/CSV/Parquet file, a directory of them, or an ``owner/name`` hub id.
        model: tokenizer source (local model directory or hub id; no weights are loaded). Without
            it only the tokenizer-free checks run (format, schema, duplicates, empty responses,
            identical pairs) and a note says so.
        max_length: TRL ``max_length``; default TRL's 1024 for SFT/DPO (GRPO prompts: no limit).
        trainer: ``sft``, ``dpo`` or ``grpo``; default from the format (preference -> dpo,
            prompt-only -> grpo, else sft).
        sample: render a seeded random sample of this many rows (all rows are still read for
            schema, duplicates and empty responses).
        assistant_only_loss: mirror ``SFTConfig(assistant_only_loss=True)``.
        trust_remote_code: passed to ``AutoTokenizer.from_pretrained`` (off by default).
        rules: the ``data`` rules to run (default: every ``scope: data`` rule of ``rules/``).

    Returns:
        A :class:`DataReport`.

    Raises:
        InputError: unreadable input, broken JSON (with the line), unknown format, bad
            ``--trainer``/``--max-length``/``--sample``, tokenizer not loadable (exit 2).
        NoMetricsError: the dataset has no rows (exit 3).
    """
    from tuneterm.preflight.data_analysis import analyse

    if max_length is not None and max_length < 1:
        raise InputError(f"--max-length must be a positive number of tokens, got {max_length}")
    if sample is not None and sample < 1:
        raise InputError(f"--sample must be a positive number of rows, got {sample}")
    if trainer is not None and trainer not in TRAINERS:
        raise InputError(f"--trainer must be sft, dpo or grpo, got {trainer!r}")
    rule_list = rules if rules is not None else _data_rules()
    near_sample = 10000
    for r in rule_list:
        if r.detector == "data-duplicates" and isinstance(r.params.get("near_sample"), int):
            near_sample = r.params["near_sample"]

    facts_tok = None
    factory = None
    if model:
        from tuneterm.preflight.data_render import Renderer, load_tokenizer, tokenizer_facts

        tok = load_tokenizer(model, trust_remote_code=trust_remote_code)
        facts_tok = tokenizer_facts(tok, model)

        def factory(eff_len: int | None) -> Renderer:
            return Renderer(tok, facts_tok, eff_len, assistant_only_loss=assistant_only_loss)

    an = analyse(
        path,
        renderer_factory=factory,
        facts=facts_tok,
        trainer=trainer,
        max_length=max_length,
        sample=sample,
        assistant_only_loss=assistant_only_loss,
        near_sample=near_sample,
    )
    from tuneterm.runs.diagnose import diagnose

    findings = list(diagnose(data_subject(an), rule_list, scopes=("data",)).findings)
    return DataReport(
        source=path,
        format=an.format,
        facts=_facts(an),
        findings=findings,
        worst=_worst(an, findings),
        lengths=[int(x) for x in an.lengths[an.ok_mask()]] if an.tokenizer is not None else [],
    )


def data_subject(an: DataAnalysis) -> Subject:
    """``an`` as the subject of the ``data`` rule scope: its trainer picks the rules; a finding
    points at the file named in its evidence (a directory of files), errors first, then by line."""

    def place(rule: Rule, det: Detection) -> tuple[str, int | None]:
        return str(det.evidence.get("file", an.source)), None

    return Subject(scope="data", value=an, source=an.source, trainer=an.trainer, place=place,
                   order=lambda f: (-f.severity.rank, f.line or 0, f.code))


def render_data_report(report: DataReport, console: Console) -> None:
    """Print the human summary of ``report`` (see :mod:`tuneterm.preflight.data_view`)."""
    from tuneterm.preflight.data_view import render_data_report as _render

    _render(report, console)


def to_check_result(report: DataReport, rules: list[Rule] | tuple[Rule, ...] = ()) -> CheckResult:
    """Wrap ``report`` as a :class:`tuneterm.report.result.CheckResult` (``subject="data"``) so the
    ``check`` command's emitters (text, json, sarif, github, junit) print it unchanged.

    ``rules`` are the data rules that were evaluated (JUnit writes one test case per rule).
    """
    from tuneterm.report.result import CheckResult

    facts = {k: v for k, v in report.facts.items() if k != "notes"}
    return CheckResult(
        source=report.source,
        subject="data",
        format=report.format,
        findings=tuple(report.findings),
        rules=tuple(r for r in rules if report.facts.get("trainer") in r.trainers),
        facts=facts,
        notes=tuple(report.facts.get("notes", ())),
    )
