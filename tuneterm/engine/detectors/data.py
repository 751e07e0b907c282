"""Detectors for the ``data`` rules (``rules/diagnostics/data.yaml``).

Each detector is a pure function ``(analysis, params) -> list[Detection]`` over a
:class:`~tuneterm.engine.data_subject.DataAnalysis` (built by the dataset check,
:func:`tuneterm.preflight.data_analysis.analyse`), registered with the engine's registry
(``scope="data"``) under a ``data-`` name. Thresholds come from the rule's ``params``. Computed
fixes (e.g. the ``max_length`` that keeps 99% of examples whole) are returned as
``Detection.fixes`` and put before the rule's static fixes. A detection that points at a row puts
``line`` (JSONL), ``row`` and ``file`` in its evidence; the dataset check's subject
(:func:`tuneterm.preflight.data.data_subject`) turns them into the finding's ``line`` and
``source``.

Importing this module registers the detectors and imports nothing beyond the engine: numpy (not a
core dependency) is imported inside the detectors, which only run on an analysis numpy built.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from tuneterm.engine.data_subject import FAMILIES, STANDARD_ROLES, DataAnalysis, RowRef
from tuneterm.engine.model import Detection, Fix, Severity
from tuneterm.engine.registry import Param, detector
from tuneterm.textsafe import inert_line


def round_up(n: float, multiple: int) -> int:
    """Round ``n`` up to a multiple of ``multiple`` (at least one multiple).

    >>> round_up(1000, 64), round_up(0, 64)
    (1024, 64)
    """
    return max(multiple, int(math.ceil(n / multiple)) * multiple)


def _pct(part: int, whole: int) -> float:
    return 100.0 * part / whole if whole else 0.0


def _where(ref: RowRef) -> dict[str, Any]:
    d: dict[str, Any] = {"file": ref.source, "row": ref.index + 1}
    if ref.line is not None:
        d["line"] = ref.line
    return d


def _rows_text(refs: Iterable[RowRef], limit: int = 5) -> str:
    refs = list(refs)
    shown = [str(r.line) if r.line is not None else f"row {r.index + 1}" for r in refs[:limit]]
    label = "lines" if refs and refs[0].line is not None else "rows"
    if label == "rows":
        shown = [s.removeprefix("row ") for s in shown]
    return f"{label} {', '.join(shown)}" + (", ..." if len(refs) > limit else "")


def _token_text(an: DataAnalysis, tok_id: int) -> str:
    # Token strings shown to the user come from the tokenizer files: keep them inert.
    assert an.tokenizer is not None  # noqa: S101 - narrows the type; callers pass analysed data
    for name, tid in (("eos", an.tokenizer.eos_id), ("end_of_turn", an.tokenizer.end_of_turn_id)):
        if tid == tok_id:
            return (an.tokenizer.eos_token if name == "eos" else an.tokenizer.end_of_turn) or str(tok_id)
    return f"id {tok_id}"


# --------------------------------------------------------------------------------------------
@detector(
    "data-sequences-truncated",
    scope="data",
    params={
        "min_share": Param("float", "share of checked examples longer than max_length that fires", min=0, max=1),
        "keep_quantile": Param("float", "quantile of lengths the suggested max_length keeps whole", 0.99, min=0.5, max=1),
        "round_to": Param("int", "suggested max_length is rounded up to a multiple of this", 64, min=1),
    },
    evidence=("n_truncated", "rows_checked", "share_pct", "max_length", "suggested", "keep_pct", "longest"),
)
def sequences_truncated(an: DataAnalysis, params: Mapping[str, Any]) -> list[Detection]:
    """Examples longer than ``max_length`` (TRL keeps the start and cuts the rest).

    Fires when the truncated share reaches ``min_share``; the computed fix is the ``max_length``
    that keeps ``keep_quantile`` of the examples whole.
    """
    import numpy as np

    if an.max_length is None or an.tokenizer is None:
        return []
    ok = an.ok_mask()
    n_ok = int(ok.sum())
    n_trunc = int(an.truncated[ok].sum())
    if n_trunc == 0 or n_trunc / max(n_ok, 1) < params["min_share"]:
        return []
    lengths = an.lengths[ok]
    q = params["keep_quantile"]
    suggested = round_up(float(np.quantile(lengths, q, method="higher")), params["round_to"])
    idx = [i for i in np.flatnonzero(an.truncated & ok)]
    worst = max(idx, key=lambda i: an.lengths[i])
    if an.trainer == "grpo":
        # TRL 1.16 GRPO does not truncate prompts: a long prompt costs memory and, with vLLM, must fit
        # vllm_max_model_length together with the completion (max_completion_length, default 512).
        key, value = "vllm_max_model_length", suggested + 512
        why = (f"fits {q:.0%} of prompts plus a 512-token completion (TRL 1.16 does not truncate GRPO prompts; "
               "or drop the longest prompts)")
    else:
        key, value = "max_length", suggested
        why = (f"keeps {q:.0%} of examples whole (longest {int(lengths.max())} tokens); "
               "memory per batch grows with max_length, so pair a big value with a smaller batch or packing")
    ev = {
        "n_truncated": n_trunc,
        "rows_checked": n_ok,
        "share_pct": _pct(n_trunc, n_ok),
        "max_length": an.max_length,
        "suggested": suggested,
        "keep_pct": round(q * 100),
        "longest": int(lengths.max()),
        **_where(an.refs[worst]),
    }
    return [Detection(None, None, ev, fixes=(Fix(why=why, key=key, value=value),))]


# --------------------------------------------------------------------------------------------
@detector(
    "data-labels-fully-masked",
    scope="data",
    params={
        "error_share": Param("float", "share of fully masked examples at which the finding is an error", min=0, max=1),
        "round_to": Param("int", "suggested max_length is rounded up to a multiple of this", 64, min=1),
    },
    evidence=("n_masked", "rows_checked", "share_pct", "max_length", "reason", "rows"),
)
def labels_fully_masked(an: DataAnalysis, params: Mapping[str, Any]) -> list[Detection]:
    """Examples with no trainable label after truncation or assistant-only masking.

    TRL 1.16 silently drops them (SFT: all labels -100; DPO: prompt fills ``max_length``), so the
    run trains on fewer examples than the dataset holds; when all are masked, loss is 0 or NaN and
    grad_norm 0 (huggingface/trl#6668).
    """
    import numpy as np

    if an.trainer == "grpo" or an.tokenizer is None:
        return []
    ok = an.ok_mask()
    masked = ok & (an.trainable == 0)
    n = int(masked.sum())
    if n == 0:
        return []
    n_ok = int(ok.sum())
    idx = np.flatnonzero(masked)
    L = an.max_length
    by_prompt = int((masked & (an.prompt_tokens >= (L if L is not None else np.iinfo(np.int64).max))).sum()) if L else 0
    fixes: list[Fix] = []
    causes: list[str] = []
    if by_prompt:
        reason = f"the prompt alone fills max_length {L} in {by_prompt} of them"
        need = int(an.prompt_tokens[masked].max())
        fixes.append(Fix(why=f"fits the longest masked prompt ({need} tokens) plus room for its answer",
                         key="max_length", value=round_up(need * 1.25, params["round_to"])))
        causes.append("prompts at least max_length tokens long: truncation keeps the start and cuts every target token")
    if n - by_prompt > 0:
        if an.assistant_only_loss:
            reason = ("assistant_only_loss found no assistant tokens"
                      + ("" if an.tokenizer.generation_markers else " (the chat template has no {% generation %} markers)"))
            fixes.append(Fix(why="train on the whole sequence, or use prompt/completion data with completion_only_loss",
                             key="assistant_only_loss", value=False))
            causes.append("assistant_only_loss=True with a chat template whose {% generation %} mask is empty")
        else:
            reason = "no target tokens remain"
    sev = Severity.ERROR if n / max(n_ok, 1) >= params["error_share"] else Severity.WARNING
    ev = {
        "n_masked": n,
        "rows_checked": n_ok,
        "share_pct": _pct(n, n_ok),
        "max_length": L,
        "reason": reason,
        "rows": _rows_text(an.refs[i] for i in idx),
        **_where(an.refs[int(idx[0])]),
    }
    return [Detection(None, None, ev, severity=sev, fixes=tuple(fixes), causes=tuple(causes))]


# --------------------------------------------------------------------------------------------
@detector(
    "data-eos-missing",
    scope="data",
    params={
        "min_share": Param("float", "share of untruncated targets not ending in a stop token that fires", min=0, max=1),
    },
    evidence=("problem", "eos_token", "pad_token"),
)
def eos_missing(an: DataAnalysis, params: Mapping[str, Any]) -> list[Detection]:
    """Targets that do not end with a token generation stops on, and pad == EOS.

    Three cases: the tokenizer has no EOS at all (error); untruncated targets whose last trainable
    token (ignoring whitespace) is not an EOS/stop id, e.g. a template ending turns with
    ``<|im_end|>`` while generation stops on ``<|endoftext|>`` (error; QwenLM/Qwen3#927); and a pad token equal
    to EOS (or none: TRL then pads with EOS), which makes any collator that masks pad ids mask
    every EOS too (warning, huggingface/transformers#23530; TRL 1.16's own collator masks by attention mask).
    """
    import numpy as np

    tf = an.tokenizer
    if tf is None:
        return []
    eos, pad = tf.eos_token or "", tf.pad_token or ""
    out: list[Detection] = []
    if tf.eos_id is None:
        out.append(Detection(None, None, {"problem": "the tokenizer defines no EOS token: TRL cannot append one and "
                                          "the model is never shown where to stop", "eos_token": None, "pad_token": pad},
                             severity=Severity.ERROR,
                             fixes=(Fix(why="give the tokenizer an end-of-sequence token present in its vocabulary",
                                        key="eos_token", value=tf.end_of_turn or "</s>"),)))
    if an.trainer != "grpo" and tf.eos_id is not None:
        ok = an.ok_mask() & ~an.truncated & (an.trainable > 0)
        n_ok = int(ok.sum())
        bad = ok & ~np.isin(an.last_target, np.fromiter(tf.stop_ids, dtype=np.int64, count=len(tf.stop_ids)))
        n_bad = int(bad.sum())
        if n_ok and n_bad / n_ok >= params["min_share"]:
            endings = Counter(int(t) for t in an.last_target[bad])
            common, _ = endings.most_common(1)[0]
            idx = np.flatnonzero(bad)
            fixes: list[Fix] = []
            if common >= 0 and common == tf.end_of_turn_id:
                text = tf.end_of_turn or ""
                problem = (f"{n_bad} of {n_ok} targets ({_pct(n_bad, n_ok):.1f}%) end with {text} but generation stops on "
                           f"EOS {eos}: the model learns to emit {text}, then keeps generating")
                fixes.append(Fix(why=f"make {text} the EOS: TRL sets it on the tokenizer and adds it to "
                                 "generation_config.eos_token_id", key="eos_token", value=text))
            else:
                shown = "nothing trainable" if common < 0 else inert_line(_token_text(an, common), 40)
                problem = (f"{n_bad} of {n_ok} targets ({_pct(n_bad, n_ok):.1f}%) do not end with EOS {eos} "
                           f"(most end with {shown}): the model is never taught to stop")
                fixes.append(Fix(why="end every target with the EOS token (the chat template's end-of-turn token for "
                                 "chat data)", key="eos_token", value=tf.end_of_turn or eos))
            ev = {"problem": problem, "eos_token": eos, "pad_token": pad, "n_bad": n_bad,
                  "rows": _rows_text(an.refs[i] for i in idx), **_where(an.refs[int(idx[0])])}
            out.append(Detection(None, None, ev, severity=Severity.ERROR, fixes=tuple(fixes)))
    if an.trainer == "sft" and tf.pad_is_eos and tf.eos_id is not None:
        problem = (f"pad token {'is not set (TRL pads with EOS)' if tf.pad_token is None else 'equals EOS'} {eos}: "
                   "a collator that sets labels[labels == pad_token_id] = -100 also masks every EOS, so the model "
                   "never learns to stop (TRL 1.16's own collator masks padding by attention mask)")
        alt = tf.pad_candidate or "<pad>"
        out.append(Detection(None, None, {"problem": problem, "eos_token": eos, "pad_token": pad or None},
                             severity=Severity.WARNING,
                             fixes=(Fix(why="a pad token distinct from EOS keeps EOS in the labels with any collator; "
                                        "if the token is new, resize the embeddings "
                                        "(resize_token_embeddings(len(tokenizer), pad_to_multiple_of=64))",
                                        key="pad_token", value=alt),)))
    return out


# --------------------------------------------------------------------------------------------
@detector(
    "data-chat-template",
    scope="data",
    params={
        "min_share": Param("float", "share of rows (double BOS, pre-rendered text) that fires", min=0, max=1),
    },
    evidence=("problem", "template", "model_family"),
)
def chat_template(an: DataAnalysis, params: Mapping[str, Any]) -> list[Detection]:
    """A chat template that is absent, does not match the model family, or breaks rendering.

    Cases: conversational data with no chat template (TRL stops: ``chat_template is not set``);
    template markers this vocabulary splits into pieces (ChatML on a Llama-3 tokenizer, Llama-3
    headers on a Qwen tokenizer); config ``model_type`` implying another family; text rows
    pre-rendered in another family's format; sequences starting with two BOS tokens; rows the
    template refuses to render; non-standard roles passed through unchanged (ShareGPT human/gpt).
    """
    import numpy as np

    tf = an.tokenizer
    if tf is None:
        return []
    fam = tf.template_family if tf.has_template else None
    model_family = tf.config_family or (tf.vocab_families[0] if tf.vocab_families else None)
    base = {"template": fam, "model_family": model_family}
    out: list[Detection] = []
    uses_template = an.conversational or an.format in ("alpaca", "prompt_output")

    def add(problem: str, sev: Severity, fixes: tuple[Fix, ...] = (), **extra: Any) -> None:
        out.append(Detection(None, None, {**base, "problem": problem, **extra}, severity=sev, fixes=fixes))

    own = (f"the {model_family} template" if model_family else "the model's own chat template")
    if an.conversational and not tf.has_template:
        add(f"'{an.format}' data is conversational but the tokenizer of {inert_line(tf.name, 80)} has no chat "
            "template (a base model?): TRL stops with 'chat_template is not set'",
            Severity.ERROR,
            (Fix(why="use the instruct model's tokenizer, or give the base model a template whose special tokens "
                 "exist in its vocabulary (trl.clone_chat_template)", command="tuneterm check DATA --model <instruct model>"),))
    if tf.split_markers:
        markers = ", ".join(tf.split_markers[:4])
        add(f"the chat template ({fam}) emits {markers}, which this tokenizer splits into several ordinary tokens: "
            f"the template belongs to another model family{f' (this vocabulary is {model_family})' if model_family else ''}",
            Severity.ERROR if uses_template else Severity.WARNING,
            (Fix(why=f"train with {own}, the one the model will be served with",
                 key="chat_template_path", value=f"<{model_family or 'model'} tokenizer directory>"),),
            markers=markers)
    elif fam and fam not in ("custom",) and tf.config_family and tf.config_family != fam and uses_template:
        add(f"config.json model_type '{tf.model_type}' uses the {tf.config_family} template, the tokenizer's "
            f"template is {fam}", Severity.WARNING,
            (Fix(why="train and serve with the same template", key="chat_template_path",
                 value=f"<{tf.config_family} tokenizer directory>"),))
    n_text = an.format_counts.get("text", 0)
    for pre_fam, count in sorted(an.preformatted.items()):
        markers = FAMILIES[pre_fam][0]
        if pre_fam not in tf.vocab_families and any(m not in ("[INST]", "[/INST]") for m in markers) and n_text and \
                count / n_text >= params["min_share"]:
            add(f"{count} text rows are pre-rendered in the {pre_fam} chat format, whose markers this tokenizer "
                f"({model_family or 'another family'}) does not have as tokens", Severity.ERROR,
                (Fix(why="store conversations as messages and let the model's own template render them",
                     key="dataset_text_field", value="messages"),))
    ok = an.ok_mask()
    n_ok = int(ok.sum())
    n_bos = int((an.double_bos & ok).sum())
    if n_ok and n_bos / n_ok >= params["min_share"] and n_bos:
        idx = np.flatnonzero(an.double_bos & ok)
        add(f"{n_bos} of {n_ok} sequences start with two BOS tokens ({inert_line(tf.bos_token or '', 20)}): the text "
            "already contains BOS and the tokenizer adds another", Severity.WARNING,
            (Fix(why="remove the BOS string from the data; the tokenizer adds it", command="sed -i 's/^<s>//' DATA"),),
            **_where(an.refs[int(idx[0])]))
    if an.n_render_errors:
        ref, msg = an.render_errors[0]
        add(f"the chat template refused {an.n_render_errors} rows (first: {inert_line(msg, 120)})",
            Severity.ERROR, (), rows=_rows_text(r for r, _ in an.render_errors), **_where(ref))
    odd = sorted(r for r in an.roles if r not in STANDARD_ROLES)
    if odd and an.conversational:
        shown = ", ".join(inert_line(r, 20) for r in odd[:5])
        add(f"roles {shown} are not user/assistant/system: TRL passes role values to the template unchanged "
            "(ShareGPT from/value is renamed, human/gpt is not), so the model learns headers it never sees at "
            "inference and assistant masks stay empty", Severity.WARNING,
            (Fix(why="map human->user, gpt->assistant before training",
                 command="python -c \"import json,sys; m={'human':'user','gpt':'assistant'}; "
                         "[print(json.dumps({'messages':[{'role':m.get(t['from'],t['from']),'content':t['value']} "
                         "for t in json.loads(l)['conversations']]})) for l in sys.stdin]\" < DATA > DATA.messages.jsonl"),))
    return out


# --------------------------------------------------------------------------------------------
@detector(
    "data-duplicates",
    scope="data",
    params={
        "min_share": Param("float", "share of duplicate rows at which the finding is a warning (below: info)", min=0, max=1),
        "near_threshold": Param("float", "estimated Jaccard similarity (word 3-grams) for a near duplicate", min=0.5, max=1),
        "near_sample": Param("int", "rows (the first ones) compared for near duplicates", 10000, min=2),
    },
    evidence=("n_exact", "n_near", "rows", "share_pct", "near_checked", "rows_text"),
)
def duplicates(an: DataAnalysis, params: Mapping[str, Any]) -> list[Detection]:
    """Exact (normalised text) and near (MinHash) duplicate examples.

    Duplicates weight some examples several times per epoch (memorisation, epoch-boundary loss
    stairs) and leak between train and eval splits.
    """
    near = [(i, j, s) for i, j, s in an.near_pairs
            if s >= params["near_threshold"] and an.near_exact_keys[i] != an.near_exact_keys[j]]
    n_exact, n_near = an.n_exact_dups, len(near)
    total = n_exact + n_near
    if total == 0:
        return []
    share = total / max(an.rows, 1)
    sev = Severity.WARNING if share >= params["min_share"] else Severity.INFO
    refs = [r for r, _ in an.exact_dups] + [an.near_refs[i] for i, _, _ in near]
    refs.sort(key=lambda r: r.index)
    first_pair = an.exact_dups[0] if an.exact_dups else (an.near_refs[near[0][0]], an.near_refs[near[0][1]])
    src = an.source
    if src.endswith((".jsonl", ".ndjson")):
        cmd = f"awk '!seen[$0]++' {src} > {src.rsplit('.', 1)[0]}.dedup.jsonl"
        why = "drops byte-identical lines (exact duplicates); near duplicates listed in the evidence need a look"
    else:
        cmd = (f"python -c \"import datasets; d=datasets.load_dataset('{src}', split='train').to_pandas(); "
               "d.astype(str).drop_duplicates().to_json('dedup.jsonl', orient='records', lines=True)\"")
        why = "drops exact duplicate rows"
    ev = {
        "n_exact": n_exact,
        "n_near": n_near,
        "rows": an.rows,
        "share_pct": 100.0 * share,
        "near_checked": len(an.near_refs),
        "rows_text": _rows_text(refs),
        "duplicate_of": first_pair[1].to_dict(),
        **_where(first_pair[0]),
    }
    return [Detection(None, None, ev, severity=sev, fixes=(Fix(why=why, command=cmd),))]


# --------------------------------------------------------------------------------------------
@detector(
    "data-empty-responses",
    scope="data",
    params={"error_share": Param("float", "share of empty responses at which the finding is an error", min=0, max=1)},
    evidence=("n_empty", "rows", "share_pct", "reason", "rows_text"),
)
def empty_responses(an: DataAnalysis, params: Mapping[str, Any]) -> list[Detection]:
    """Rows whose target (text, completion, output, assistant turn, chosen/rejected) is empty or blank.

    The model is trained to answer with nothing (an immediate EOS), which shows up at inference as
    empty replies.
    """
    n = an.n_empty_responses
    if n == 0:
        return []
    share = n / max(an.rows, 1)
    reasons = Counter(why for _, why in an.empty_responses)
    ev = {
        "n_empty": n,
        "rows": an.rows,
        "share_pct": 100.0 * share,
        "reason": reasons.most_common(1)[0][0],
        "rows_text": _rows_text(r for r, _ in an.empty_responses),
        **_where(an.empty_responses[0][0]),
    }
    sev = Severity.ERROR if share >= params["error_share"] else Severity.WARNING
    return [Detection(None, None, ev, severity=sev)]


# --------------------------------------------------------------------------------------------
@detector(
    "data-identical-pairs",
    scope="data",
    params={"error_share": Param("float", "share of identical pairs at which the finding is an error", min=0, max=1)},
    evidence=("n_identical", "n_pairs", "share_pct", "rows_text"),
)
def identical_pairs(an: DataAnalysis, params: Mapping[str, Any]) -> list[Detection]:
    """Preference pairs whose chosen and rejected are the same text (after normalisation).

    Their DPO margin is exactly 0: no gradient from them, and a dataset full of them leaves the loss
    at ln 2 (huggingface/trl#1311).
    """
    n = an.n_identical_pairs
    if n == 0:
        return []
    share = n / max(an.n_pairs, 1)
    ev = {
        "n_identical": n,
        "n_pairs": an.n_pairs,
        "share_pct": 100.0 * share,
        "rows_text": _rows_text(an.identical_pairs),
        **_where(an.identical_pairs[0]),
    }
    sev = Severity.ERROR if share >= params["error_share"] else Severity.WARNING
    return [Detection(None, None, ev, severity=sev)]


# --------------------------------------------------------------------------------------------
@detector(
    "data-inconsistent-schema",
    scope="data",
    params={"min_count": Param("int", "rows that do not fit the dataset's format before the rule fires", 1, min=1)},
    evidence=("n_bad", "rows", "share_pct", "format", "formats", "reason", "rows_text"),
)
def inconsistent_schema(an: DataAnalysis, params: Mapping[str, Any]) -> list[Detection]:
    """Rows in another format than the dataset's, or with wrong field types.

    TRL decides the format from the first row, and ``datasets`` casts all rows to one Arrow
    schema: a mixed file fails to load, or trains some rows in the wrong format.
    """
    n = an.n_schema_problems
    if n < params["min_count"]:
        return []
    ref, why = an.schema_problems[0]
    formats = ", ".join(f"{k} {v}" for k, v in an.format_counts.most_common())
    ev = {
        "n_bad": n,
        "rows": an.rows,
        "share_pct": _pct(n, an.rows),
        "format": an.format,
        "formats": formats,
        "reason": inert_line(why, 120),
        "rows_text": _rows_text(r for r, _ in an.schema_problems),
        **_where(ref),
    }
    return [Detection(None, None, ev)]
