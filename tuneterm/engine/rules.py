"""Loading and validating rule tables: ``rules/**/*.yaml`` -> :class:`RuleSet`.

Every YAML file under the rules directory whose top level is a mapping with a ``rules:`` list is a
rule table (``rules/diagnostics/*.yaml`` always are; recommendation tables and model facts without
a ``rules:`` key are ignored). Each record is validated (required fields, types, code format,
kebab-case names, unique codes and names, known severity/trainers/scope, detector registered,
params accepted by the detector, message placeholders resolvable, fixes complete). All problems are
collected and reported in one :class:`~tuneterm.errors.RuleFileError` whose message names the
first file and rule and counts the rest; :attr:`RuleFileError.problems` holds them all.

>>> rules = load_rules()
>>> rules.get("zero-grad-norm").code
'G101'
>>> [r.name for r in rules.select(["G1"], None).rules][:1]
['zero-grad-norm']
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tuneterm.engine.model import Fix, Rule, Severity
from tuneterm.engine.registry import get_detector
from tuneterm.errors import RuleFileError, TunetermError
from tuneterm.logs.model import TRAINER_KINDS

CODE_RE = re.compile(r"^[A-Z]\d{3}$")
NAME_RE = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")
FIELD_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SCOPES = ("log", "config", "data", "eval")
# Placeholders every message may use besides the detector's evidence keys and the rule's params.
STANDARD_FIELDS = ("first_step", "last_step", "code", "name", "trainer")

_REQUIRED = ("code", "name", "category", "severity", "trainers", "detector", "summary", "message", "why")
_KNOWN = set(_REQUIRED) | {"params", "scope", "causes", "fixes", "references", "example", "since"}
_MAX_FILE_BYTES = 2_000_000

try:  # the C loader is much faster; both are *safe* loaders (no arbitrary object construction)
    _Loader: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    _Loader = yaml.SafeLoader


class RuleSetError(TunetermError):
    """``--select``/``--ignore`` named rules that do not exist (exit 2)."""


@dataclass(frozen=True, slots=True)
class RuleSet:
    """An immutable, code-sorted collection of validated rules."""

    rules: tuple[Rule, ...]

    def __iter__(self) -> Iterator[Rule]:
        return iter(self.rules)

    def __len__(self) -> int:
        return len(self.rules)

    def get(self, name_or_code: str) -> Rule | None:
        """The rule whose name or code is ``name_or_code`` (codes case-insensitive), or ``None``."""
        key = name_or_code.strip()
        for rule in self.rules:
            if rule.name == key or rule.code == key.upper():
                return rule
        return None

    def _match(self, token: str) -> list[Rule]:
        token = token.strip()
        exact = self.get(token)
        if exact is not None:
            return [exact]
        if re.fullmatch(r"[A-Za-z]\d{0,2}", token):  # a code prefix: "G", "G1", "G10"
            prefix = token.upper()
            return [r for r in self.rules if r.code.startswith(prefix)]
        return []

    def select(self, select: Iterable[str] | None, ignore: Iterable[str] | None) -> RuleSet:
        """Keep rules matching ``select`` (all when empty/None), then drop those matching ``ignore``.

        Each token is an exact name, an exact code, or a code prefix (``G``, ``G1``); tokens may
        also be comma-separated lists.

        Raises:
            RuleSetError: a token matches no rule (the message names every such token).
        """

        def tokens(items: Iterable[str] | None) -> list[str]:
            out: list[str] = []
            for item in items or ():
                out += [t.strip() for t in str(item).split(",") if t.strip()]
            return out

        sel, ign = tokens(select), tokens(ignore)
        unknown = [t for t in sel + ign if not self._match(t)]
        if unknown:
            names = ", ".join(repr(t) for t in unknown)
            raise RuleSetError(f"unknown rule {names} (see 'tuneterm rules')")
        chosen = {r.code for t in sel for r in self._match(t)} if sel else {r.code for r in self.rules}
        dropped = {r.code for t in ign for r in self._match(t)}
        return RuleSet(tuple(r for r in self.rules if r.code in chosen and r.code not in dropped))

    def for_scope(self, scope: str) -> RuleSet:
        """The rules whose ``scope`` is ``scope`` (``log``, ``config``, ``data``, ``samples``)."""
        return RuleSet(tuple(r for r in self.rules if r.scope == scope))

    def for_trainer(self, trainer: str) -> RuleSet:
        """The rules that apply to trainer kind ``trainer``."""
        return RuleSet(tuple(r for r in self.rules if trainer in r.trainers))


def placeholders(template: str) -> list[str]:
    """Field names used by a ``str.format`` template.

    Raises:
        ValueError: the template is malformed, or uses attribute/index access or conversions.
    """
    names: list[str] = []
    for _literal, field, spec, conv in string.Formatter().parse(template):
        if field is None:
            continue
        if not FIELD_RE.match(field):
            raise ValueError(f"placeholder {{{field}}} must be a plain name")
        if conv is not None:
            raise ValueError(f"placeholder {{{field}!{conv}}} must not use a conversion")
        if spec and "{" in spec:
            raise ValueError(f"placeholder {{{field}:{spec}}} must not nest fields")
        names.append(field)
    return names


def _str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _parse_fix(raw: Any, where: str, problems: list[str]) -> Fix | None:
    if not isinstance(raw, Mapping):
        problems.append(f"{where}: each fix must be a mapping")
        return None
    extra = set(raw) - {"key", "value", "why", "command"}
    if extra:
        problems.append(f"{where}: unknown fix field {sorted(extra)[0]!r}")
    why = raw.get("why")
    if not isinstance(why, str) or not why.strip():
        problems.append(f"{where}: every fix needs a 'why'")
        return None
    if "command" in raw:
        if not isinstance(raw["command"], str) or not raw["command"].strip():
            problems.append(f"{where}: fix 'command' must be a non-empty string")
            return None
        return Fix(why=why.strip(), command=raw["command"].strip())
    if not isinstance(raw.get("key"), str) or not raw["key"].strip() or "value" not in raw:
        problems.append(f"{where}: a fix needs 'key' and 'value', or 'command'")
        return None
    return Fix(why=why.strip(), key=raw["key"].strip(), value=raw["value"])


def _parse_rule(raw: Any, where: str, problems: list[str], scopes: Iterable[str] | None = None) -> Rule | None:
    """Validate one record; append problems (prefixed with ``where``) and return the Rule if sound."""
    if not isinstance(raw, Mapping):
        problems.append(f"{where}: each rule must be a mapping")
        return None
    code = raw.get("code")
    label = f"{where}: rule {code}" if isinstance(code, str) else where
    start = len(problems)
    for key in _REQUIRED:
        if key not in raw:
            problems.append(f"{label}: missing field '{key}'")
    for key in raw:
        if key not in _KNOWN:
            problems.append(f"{label}: unknown field '{key}'")
    if len(problems) > start:
        return None
    for key in ("code", "name", "category", "severity", "detector", "summary", "message", "why"):
        if not isinstance(raw[key], str) or not raw[key].strip():
            problems.append(f"{label}: field '{key}' must be a non-empty string")
    if len(problems) > start:
        return None
    if not CODE_RE.match(raw["code"]):
        problems.append(f"{label}: code '{raw['code']}' must be a capital letter and 3 digits (e.g. G101)")
    if not NAME_RE.match(raw["name"]):
        problems.append(f"{label}: name '{raw['name']}' must be kebab-case")
    try:
        severity = Severity(raw["severity"])
    except ValueError:
        problems.append(f"{label}: unknown severity '{raw['severity']}' (error, warning, info)")
        severity = Severity.INFO
    trainers = raw["trainers"]
    if trainers == "any" or trainers == ["any"]:
        trainers = list(TRAINER_KINDS)
    if not _str_list(trainers) or not trainers:
        problems.append(f"{label}: 'trainers' must be a non-empty list")
        trainers = []
    for t in trainers:
        if t not in TRAINER_KINDS:
            problems.append(f"{label}: unknown trainer kind '{t}' ({', '.join(TRAINER_KINDS)})")
    scope = raw.get("scope", "log")
    if scopes is not None and scope in SCOPES and scope not in scopes:
        return None  # not asked for: neither validated nor imported (keeps `check LOG` light)
    if scope not in SCOPES:
        problems.append(f"{label}: unknown scope '{scope}' ({', '.join(SCOPES)})")
    params = raw.get("params", {}) or {}
    if not isinstance(params, Mapping):
        problems.append(f"{label}: 'params' must be a mapping")
        params = {}
    spec = get_detector(raw["detector"], scope if scope in SCOPES else None)
    resolved: dict[str, Any] = dict(params)
    evidence_keys: tuple[str, ...] = ()
    if spec is None:
        problems.append(f"{label}: unknown detector '{raw['detector']}'")
    else:
        if spec.scope != scope:
            problems.append(f"{label}: detector '{spec.name}' is for scope '{spec.scope}', rule scope is '{scope}'")
        resolved, errors = spec.resolve(params)
        problems.extend(f"{label}: {e}" for e in errors)
        evidence_keys = spec.evidence
    try:
        names = placeholders(raw["message"])
    except ValueError as exc:
        problems.append(f"{label}: message: {exc}")
        names = []
    if spec is not None:
        known = set(evidence_keys) | set(resolved) | set(STANDARD_FIELDS)
        for n in names:
            if n not in known:
                problems.append(f"{label}: message placeholder {{{n}}} is not filled by detector '{spec.name}'")
    for key in ("causes", "references"):
        if key in raw and not _str_list(raw[key]):
            problems.append(f"{label}: '{key}' must be a list of strings")
    fixes: list[Fix] = []
    raw_fixes = raw.get("fixes", []) or []
    if not isinstance(raw_fixes, list):
        problems.append(f"{label}: 'fixes' must be a list")
        raw_fixes = []
    for i, rf in enumerate(raw_fixes):
        fix = _parse_fix(rf, f"{label}: fix {i + 1}", problems)
        if fix is not None:
            fixes.append(fix)
    for key in ("example", "since"):
        if key in raw and not isinstance(raw[key], str):
            problems.append(f"{label}: '{key}' must be a string")
    if len(problems) > start:
        return None
    return Rule(
        code=raw["code"],
        name=raw["name"],
        category=raw["category"].strip(),
        severity=severity,
        trainers=tuple(trainers),
        detector=raw["detector"],
        summary=" ".join(raw["summary"].split()),
        message=raw["message"].strip(),
        why=raw["why"].strip(),
        params=resolved,
        scope=scope,
        causes=tuple(c.strip() for c in raw.get("causes", []) or []),
        fixes=tuple(fixes),
        references=tuple(raw.get("references", []) or []),
        example=(raw.get("example") or "").rstrip(),
        since=str(raw.get("since", "0.1.0")),
    )


def _rule_files(directory: Path) -> list[Path]:
    files = sorted(p for ext in ("*.yaml", "*.yml") for p in directory.rglob(ext) if p.is_file())
    return files


def _looks_like_rule_table(path: Path, text: str, directory: Path) -> bool:
    # Diagnostics tables are always rule tables; elsewhere only files with a top-level `rules:`
    # key are (so recommendation tables and model facts are not parsed on every start-up).
    if "diagnostics" in path.relative_to(directory).parts:
        return True
    return re.search(r"(?m)^rules\s*:", text) is not None


_CODE_LINE = re.compile(r"(?m)^\s*-\s+code\s*:")
_SCOPE_LINE = re.compile(r"(?m)^\s+scope\s*:\s*['\"]?(\w+)")


def _only_other_scopes(text: str, scopes: Iterable[str]) -> bool:
    """True when every rule of a table declares a scope outside ``scopes`` (read from the text).

    Lets ``check LOG`` skip parsing the config, data and eval tables (~35 ms). Conservative: a
    table with any rule lacking an explicit ``scope:`` (default ``log``), or one whose lines do not
    pair up one scope per rule, is parsed as usual.
    """
    found = _SCOPE_LINE.findall(text)
    wanted = set(scopes)
    return bool(found) and len(found) == len(_CODE_LINE.findall(text)) and not wanted.intersection(found)


def load_rules(directory: Path | str | None = None, scopes: Iterable[str] | None = None) -> RuleSet:
    """Load and validate every rule table under ``directory`` (default: the shipped ``rules/``).

    Args:
        directory: a rules directory; every ``*.yaml``/``*.yml`` below it with a top-level
            ``rules:`` list (and every file under a ``diagnostics/`` folder) is read with
            ``yaml.safe_load``.
        scopes: load only rules of these scopes (e.g. ``["log"]`` for ``tuneterm check LOG``,
            which then never imports the config/data detectors); ``None`` loads and validates all.

    Returns:
        A :class:`RuleSet` sorted by code.

    Raises:
        RuleFileError: any file or record is invalid. The message names the first problem's file
            and rule and counts the others; ``err.problems`` lists them all.
    """
    from tuneterm.resources import rules_dir

    root = Path(directory) if directory is not None else rules_dir()
    if not root.is_dir():
        raise RuleFileError(f"rules directory not found: {root}")
    problems: list[str] = []
    rules: list[Rule] = []
    for path in _rule_files(root):
        try:
            shown = path.relative_to(root.parent).as_posix()
        except ValueError:  # pragma: no cover - rglob results are always below root
            shown = str(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            problems.append(f"{shown}: cannot read ({exc.strerror})")
            continue
        if len(data) > _MAX_FILE_BYTES:
            problems.append(f"{shown}: file too large for a rule table ({len(data)} bytes)")
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            problems.append(f"{shown}: not valid UTF-8")
            continue
        if not _looks_like_rule_table(path, text, root):
            continue
        if scopes is not None and _only_other_scopes(text, scopes):
            continue
        try:
            doc = yaml.load(text, Loader=_Loader)  # noqa: S506 - a *safe* loader (CSafeLoader/SafeLoader)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or "invalid YAML"
            problems.append(f"{shown}: invalid YAML{where}: {problem}")
            continue
        if not isinstance(doc, Mapping) or not isinstance(doc.get("rules"), list):
            problems.append(f"{shown}: expected a top-level 'rules:' list")
            continue
        for i, raw in enumerate(doc["rules"]):
            where = shown if isinstance(raw, Mapping) and isinstance(raw.get("code"), str) else f"{shown}: record {i + 1}"
            rule = _parse_rule(raw, where, problems, None if scopes is None else tuple(scopes))
            if rule is not None:
                rules.append(rule)
    seen_codes: dict[str, str] = {}
    seen_names: dict[str, str] = {}
    for rule in rules:
        if rule.code in seen_codes:
            problems.append(f"rule {rule.code}: code used twice ('{seen_codes[rule.code]}' and '{rule.name}')")
        seen_codes.setdefault(rule.code, rule.name)
        if rule.name in seen_names:
            problems.append(f"rule {rule.code}: name '{rule.name}' used twice (also {seen_names[rule.name]})")
        seen_names.setdefault(rule.name, rule.code)
    if problems:
        more = len(problems) - 1
        suffix = f"; {more} more error{'s' if more != 1 else ''}" if more else ""
        err = RuleFileError(problems[0] + suffix)
        err.problems = problems  # type: ignore[attr-defined]
        raise err
    return RuleSet(tuple(sorted(rules, key=lambda r: r.code)))
