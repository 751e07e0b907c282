"""How often tuneterm's diagnosis is right on real training logs it was not tuned on.

Runs the same diagnosis as ``tuneterm check FILE --format json`` (in-process, one
``check_subject`` per file) on every log of ``benchmarks/accuracy/labels.yaml`` and compares the
warning- and error-level findings with the labels, which were read from the numbers before
tuneterm ran on the file. Only files labelled ``clear: true`` are scored:

* per rule: precision (findings of the rule on a clear file that carries it, over all its findings
  on clear files; a rule listed under ``also_ok`` neither counts for nor against) and recall
  (clear files labelled with the rule on which it fired);
* overall recall: labelled (file, rule) pairs found, and problem files with at least one / all of
  their labelled rules found;
* false alarms: the share of clear healthy files with any warning or error outside ``also_ok``
  (and, for reference, with any warning or error at all).

``--corpus`` adds the shared 58-file corpus (``../shared/corpus``) with the primary labels of its
INDEX.md (healthy, nan, zero-grad, plateau, and strong overfit only; the rest is left unscored).

Usage::

    python benchmarks/accuracy_benchmark.py [--json | --markdown] [--corpus] [--files] [--labels PATH]
    python benchmarks/accuracy_benchmark.py --shrink-known-misses
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
ACCURACY = REPO / "benchmarks" / "accuracy"
LABELS = ACCURACY / "labels.yaml"
KNOWN_MISSES = ACCURACY / "known_misses.yaml"
CORPUS_DIRS = (REPO.parent / "shared" / "corpus", REPO / "shared" / "corpus")

# The shared corpus INDEX.md labels that name one tuneterm rule unambiguously.
CORPUS_LABEL_RULES = {"nan": "nan-or-inf", "zero-grad": "zero-grad-norm", "plateau": "loss-plateau",
                      "overfit": "overfitting"}


@dataclass(frozen=True)
class Labelled:
    """One benchmark log and what a reader of its numbers says about it.

    Attributes:
        path: the log file.
        name: its file name (the key in reports and in known_misses.yaml).
        problems: rule names that should fire at warning or error level (empty: healthy).
        also_ok: rules that may fire without being wrong.
        clear: whether the label is unambiguous (only clear files are scored).
        trainer: sft / dpo / orpo / kto / grpo / other.
    """

    path: Path
    name: str
    problems: frozenset[str]
    also_ok: frozenset[str]
    clear: bool
    trainer: str = "other"

    @property
    def healthy(self) -> bool:
        """No problem labelled."""
        return not self.problems


@dataclass(frozen=True)
class Outcome:
    """tuneterm's verdict on one labelled log, set against its label.

    Attributes:
        log: the labelled log.
        fired: rules with a warning or error finding.
        error: the one-line error when tuneterm could not check the file (no metrics, unreadable).
        seconds: wall time of the diagnosis.
    """

    log: Labelled
    fired: frozenset[str]
    error: str | None = None
    seconds: float = 0.0

    @property
    def missed(self) -> frozenset[str]:
        """Labelled rules that did not fire."""
        return self.log.problems - self.fired

    @property
    def false_alarms(self) -> frozenset[str]:
        """Rules that fired, are not labelled and are not acceptable."""
        return self.fired - self.log.problems - self.log.also_ok

    @property
    def correct(self) -> bool:
        """tuneterm read the file, every labelled rule fired and nothing unacceptable did."""
        return self.error is None and not self.missed and not self.false_alarms


@dataclass
class RuleScore:
    """Counts for one rule over the clear files."""

    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def precision(self) -> float | None:
        """tp / (tp + fp); None when the rule never fired."""
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        """tp / (tp + fn); None when no clear file carries the rule."""
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None


@dataclass
class Summary:
    """The benchmark's figures over the clear files."""

    files: int
    clear: int
    clear_problem_files: int
    clear_healthy_files: int
    problem_pairs: int
    problem_pairs_found: int
    problem_files_any_found: int
    problem_files_all_found: int
    healthy_with_false_alarm: int
    healthy_with_any_warning: int
    unreadable: int
    rules: dict[str, RuleScore] = field(default_factory=dict)

    @property
    def recall(self) -> float:
        """Labelled (file, rule) pairs found, over all labelled pairs of clear files."""
        return self.problem_pairs_found / self.problem_pairs if self.problem_pairs else 1.0

    @property
    def false_alarm_rate(self) -> float:
        """Clear healthy files with a warning or error outside also_ok, over clear healthy files."""
        return self.healthy_with_false_alarm / self.clear_healthy_files if self.clear_healthy_files else 0.0

    def to_dict(self) -> dict[str, object]:
        """JSON form."""
        return {
            "files": self.files, "clear": self.clear,
            "clear_problem_files": self.clear_problem_files, "clear_healthy_files": self.clear_healthy_files,
            "recall": round(self.recall, 4), "problem_pairs": self.problem_pairs,
            "problem_pairs_found": self.problem_pairs_found,
            "problem_files_any_found": self.problem_files_any_found,
            "problem_files_all_found": self.problem_files_all_found,
            "false_alarm_rate": round(self.false_alarm_rate, 4),
            "healthy_with_false_alarm": self.healthy_with_false_alarm,
            "healthy_with_any_warning": self.healthy_with_any_warning,
            "unreadable": self.unreadable,
            "rules": {name: {"tp": s.tp, "fp": s.fp, "fn": s.fn,
                             "precision": None if s.precision is None else round(s.precision, 4),
                             "recall": None if s.recall is None else round(s.recall, 4)}
                      for name, s in sorted(self.rules.items())},
        }


def load_labels(path: Path = LABELS) -> list[Labelled]:
    """The benchmark's labelled logs, in file order."""
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    out = []
    for e in doc["logs"]:
        label = e["label"]
        problems = frozenset() if label == "healthy" else frozenset(label)
        out.append(Labelled(path=path.parent / "logs" / e["file"], name=e["file"], problems=problems,
                            also_ok=frozenset(e.get("also_ok") or ()), clear=bool(e["clear"]),
                            trainer=str(e.get("trainer", "other"))))
    return out


def corpus_dir() -> Path | None:
    """The shared corpus directory, when present beside or inside the checkout."""
    return next((p for p in CORPUS_DIRS if (p / "INDEX.md").is_file()), None)


def load_corpus_labels(corpus: Path) -> list[Labelled]:
    """The shared corpus with the primary INDEX.md labels that map to one rule.

    Mild or onset overfitting and the labels other / unclear / spike are kept but not clear.
    """
    out = []
    for line in (corpus / "INDEX.md").read_text(encoding="utf-8").splitlines():
        m = re.match(r"\| `([^`]+)`.*?\| \*\*([^*]+)\*\*", line)
        if not m:
            continue
        name, label = m.group(1), m.group(2).strip()
        word = label.split()[0]
        mild = "mild" in label or "onset" in label
        if word == "healthy":
            problems: frozenset[str] = frozenset()
            clear = True
        elif word in CORPUS_LABEL_RULES and not mild:
            problems, clear = frozenset({CORPUS_LABEL_RULES[word]}), True
        else:
            problems, clear = frozenset(), False
        out.append(Labelled(path=corpus / name, name=f"corpus/{name}", problems=problems,
                            also_ok=frozenset(), clear=clear))
    return out


def diagnose(log: Labelled) -> Outcome:
    """tuneterm's warning- and error-level rules on one log (the ``check`` code path)."""
    from tuneterm.errors import TunetermError
    from tuneterm.report import CheckOptions, check_subject

    t0 = time.perf_counter()
    try:
        result = check_subject(log.path, CheckOptions())
    except TunetermError as exc:
        return Outcome(log, frozenset(), error=str(exc), seconds=time.perf_counter() - t0)
    fired = frozenset(f.name for f in result.findings if f.severity.rank >= 1)
    return Outcome(log, fired, seconds=time.perf_counter() - t0)


def run(logs: Iterable[Labelled]) -> list[Outcome]:
    """Diagnose every log."""
    return [diagnose(log) for log in logs]


def summarise(outcomes: Sequence[Outcome]) -> Summary:
    """Per-rule precision/recall and the overall figures over the clear files."""
    clear = [o for o in outcomes if o.log.clear]
    problems = [o for o in clear if not o.log.healthy]
    healthy = [o for o in clear if o.log.healthy]
    rules: dict[str, RuleScore] = {}
    for o in clear:
        for name in o.log.problems:
            score = rules.setdefault(name, RuleScore())
            if name in o.fired:
                score.tp += 1
            else:
                score.fn += 1
        for name in o.false_alarms:
            rules.setdefault(name, RuleScore()).fp += 1
    return Summary(
        files=len(outcomes), clear=len(clear), clear_problem_files=len(problems),
        clear_healthy_files=len(healthy),
        problem_pairs=sum(len(o.log.problems) for o in problems),
        problem_pairs_found=sum(len(o.log.problems & o.fired) for o in problems),
        problem_files_any_found=sum(1 for o in problems if o.log.problems & o.fired),
        problem_files_all_found=sum(1 for o in problems if not o.missed),
        healthy_with_false_alarm=sum(1 for o in healthy if o.false_alarms),
        healthy_with_any_warning=sum(1 for o in healthy if o.fired),
        unreadable=sum(1 for o in outcomes if o.error),
        rules=rules,
    )


def render_markdown(summary: Summary, outcomes: Sequence[Outcome]) -> str:
    """The figures as the README records them (summary lines and the per-rule table)."""
    s = summary
    unreadable = sum(1 for o in outcomes if o.log.clear and o.error)
    lines = [
        f"On the benchmark ({s.files} files, {s.clear} clear: {s.clear_problem_files} with problems, "
        f"{s.clear_healthy_files} healthy; {unreadable} of the clear files cannot be read):",
        "",
        f"- recall on clear problems: {s.problem_pairs_found}/{s.problem_pairs} labelled rules "
        f"({100 * s.recall:.1f}%); problem files with a problem found {s.problem_files_any_found}/"
        f"{s.clear_problem_files}, with every labelled problem found {s.problem_files_all_found}/"
        f"{s.clear_problem_files};",
        f"- healthy files with a warning or error: {s.healthy_with_false_alarm}/{s.clear_healthy_files} "
        f"({100 * s.false_alarm_rate:.1f}%) outside `also_ok`, {s.healthy_with_any_warning}/"
        f"{s.clear_healthy_files} with any.",
        "",
        "| rule | tp | fp | fn | precision | recall |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in sorted(s.rules.items()):
        lines.append(f"| {name} | {r.tp} | {r.fp} | {r.fn} | {_pct(r.precision).strip()} | {_pct(r.recall).strip()} |")
    return "\n".join(lines)


def _pct(x: float | None) -> str:
    return "   -" if x is None else f"{100 * x:4.0f}%"


def render(summary: Summary, outcomes: Sequence[Outcome], show_files: bool) -> str:
    """The human-readable report."""
    s = summary
    lines = [
        (f"files {s.files}, clear {s.clear} ({s.clear_problem_files} with problems, "
         f"{s.clear_healthy_files} healthy), unreadable {s.unreadable}"),
        (f"recall on clear problems: {s.problem_pairs_found}/{s.problem_pairs} labelled rules "
         f"({100 * s.recall:.1f}%); files with a problem found: {s.problem_files_any_found}/"
         f"{s.clear_problem_files}, with every labelled problem found: {s.problem_files_all_found}/"
         f"{s.clear_problem_files}"),
        (f"healthy files with a warning or error: {s.healthy_with_false_alarm}/{s.clear_healthy_files} "
         f"({100 * s.false_alarm_rate:.1f}%) outside also_ok; {s.healthy_with_any_warning} with any"),
        "",
        f"{'rule':32} {'tp':>4} {'fp':>4} {'fn':>4} {'precision':>10} {'recall':>7}",
    ]
    for name, r in sorted(s.rules.items()):
        lines.append(f"{name:32} {r.tp:4} {r.fp:4} {r.fn:4} {_pct(r.precision):>10} {_pct(r.recall):>7}")
    if show_files:
        lines.append("")
        for o in outcomes:
            if o.log.clear and not o.correct:
                lines.append(f"{o.log.name}: missed {sorted(o.missed)} false alarms {sorted(o.false_alarms)}"
                             + (" (unreadable: no training metrics found)" if o.error else ""))
    return "\n".join(lines)


_KNOWN_HEAD = """# Clear benchmark labels that tuneterm's current diagnosis does not reproduce, one entry per file.
#
# tests/accuracy/test_benchmark_labels.py asserts that exactly these files go wrong, and exactly in
# these ways (missed: labelled rules that do not fire; false_alarms: warning/error rules that fire
# outside the label and its also_ok list; unreadable: no training metrics found) and say why under
# `why`, one line per missed rule, false alarm or `unreadable`. When a detector
# fix makes a file right, the test fails and asks for its entry to be removed: shrink this list
# (`python benchmarks/accuracy_benchmark.py --shrink-known-misses`), never grow it to hide a
# regression.
"""


def shrink_known_misses(outcomes: Sequence[Outcome], path: Path = KNOWN_MISSES) -> tuple[list[str], list[str]]:
    """Drop from ``path`` what tuneterm now gets right; never add anything.

    An entry whose file is now right is removed; an entry that still goes wrong keeps only the
    missed / false-alarm rules (and their reasons) that still apply. Files that go wrong in a way
    the list does not record are not written: they are returned, to be looked at.

    Returns:
        (changed file names, new wrong file names).
    """
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    known = {e["file"]: e for e in doc.get("known_misses") or []}
    by_name = {o.log.name: o for o in outcomes if o.log.clear}
    changed: list[str] = []
    new_wrong = [n for n, o in by_name.items() if not o.correct and n not in known]
    out = []
    for name, entry in known.items():
        o = by_name.get(name)
        if o is None or o.correct:
            changed.append(name)
            continue
        missed = sorted(set(entry["missed"]) & o.missed)
        false_alarms = sorted(set(entry["false_alarms"]) & o.false_alarms)
        unreadable = bool(entry.get("unreadable")) and o.error is not None
        if (set(missed), set(false_alarms), unreadable) != (set(o.missed), set(o.false_alarms), o.error is not None):
            new_wrong.append(name)
        keys = {*missed, *false_alarms} | ({"unreadable"} if unreadable else set())
        shrunk: dict[str, object] = {"file": name, "missed": missed, "false_alarms": false_alarms}
        if unreadable:
            shrunk["unreadable"] = True
        shrunk["why"] = {k: v for k, v in entry["why"].items() if k in keys}
        if shrunk != entry:
            changed.append(name)
        out.append(shrunk)
    with path.open("w", encoding="utf-8") as f:
        f.write(_KNOWN_HEAD)
        yaml.safe_dump({"known_misses": out}, f, sort_keys=False, width=100, allow_unicode=True)
    return changed, sorted(new_wrong)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--labels", type=Path, default=LABELS, help="labels file (default: the benchmark's)")
    ap.add_argument("--corpus", action="store_true", help="also score the shared corpus (INDEX.md labels)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    ap.add_argument("--files", action="store_true", help="list the clear files tuneterm gets wrong")
    ap.add_argument("--markdown", action="store_true", help="print the figures as the README records them")
    ap.add_argument("--shrink-known-misses", action="store_true",
                    help="remove from known_misses.yaml what is now right (adds nothing)")
    args = ap.parse_args(argv)
    logs = load_labels(args.labels)
    if args.corpus:
        corpus = corpus_dir()
        if corpus is None:
            print("accuracy_benchmark: ../shared/corpus not found", file=sys.stderr)
            return 2
        logs += load_corpus_labels(corpus)
    t0 = time.perf_counter()
    outcomes = run(logs)
    summary = summarise(outcomes)
    if args.shrink_known_misses:
        changed, new_wrong = shrink_known_misses(outcomes)
        print(f"known_misses.yaml: {len(changed)} entries removed or shrunk: {', '.join(changed) or '-'}")
        if new_wrong:
            print("wrong in a way known_misses.yaml does not record (look at these, not written): "
                  + ", ".join(new_wrong))
    if args.json:
        doc = summary.to_dict()
        doc["seconds"] = round(time.perf_counter() - t0, 2)
        doc["wrong"] = [{"file": o.log.name, "missed": sorted(o.missed), "false_alarms": sorted(o.false_alarms),
                         "unreadable": o.error is not None} for o in outcomes if o.log.clear and not o.correct]
        print(json.dumps(doc, indent=2))
    elif args.markdown:
        print(render_markdown(summary, outcomes))
    else:
        print(render(summary, outcomes, args.files))
        print(f"\n{time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # piped into `head`: a quiet exit
        sys.stderr.close()
        sys.exit(0)
