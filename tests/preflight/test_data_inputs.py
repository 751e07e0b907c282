"""Bad dataset input gives one clear line and the documented exit code; routing; safe rendering."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest
from rich.console import Console

from tests.preflight.conftest import sentence
from tuneterm.errors import InputError, NoMetricsError
from tuneterm.exit_codes import ExitCode
from tuneterm.preflight.data import check_dataset, looks_like_dataset, render_data_report, to_check_result


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and text
    return text


def test_broken_json_lines_name_the_lines(jsonl) -> None:
    path = jsonl([{"text": "a"}, '{"text": "b"', {"text": "c"}, "{not json}"])
    with pytest.raises(InputError) as err:
        check_dataset(str(path), model=None)
    msg = one_line(err.value)
    assert f"{path}:2: invalid JSON" in msg and "2 broken lines (2, 4)" in msg
    assert err.value.exit_code == ExitCode.USAGE


def test_empty_file_is_nothing_to_check(tmp_path: Path) -> None:
    for name, content in (("e.jsonl", b""), ("blank.jsonl", b"\n \n"), ("e.json", b"[]")):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(NoMetricsError) as err:
            check_dataset(str(tmp_path / name), model=None)
        assert "no rows" in one_line(err.value) and err.value.exit_code == ExitCode.NO_METRICS


def test_unknown_format_names_the_formats_looked_for(jsonl) -> None:
    path = jsonl([{"foo": 1, "bar": "x"}] * 3)
    with pytest.raises(InputError) as err:
        check_dataset(str(path), model=None)
    msg = one_line(err.value)
    assert "no known dataset format" in msg and "foo" in msg
    for col in ("messages", "conversations", "prompt+completion", "instruction+output", "chosen+rejected"):
        assert col in msg


def test_binary_invalid_utf8_missing_and_bad_parquet(tmp_path: Path) -> None:
    (tmp_path / "junk.jsonl").write_bytes(b"\x00\x01\x02binary\xff" * 50)
    (tmp_path / "latin.jsonl").write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    (tmp_path / "fake.parquet").write_bytes(b"not parquet at all")
    cases = {"junk.jsonl": "binary", "latin.jsonl": "latin.jsonl:2: invalid UTF-8", "fake.parquet": "not a Parquet",
             "missing.jsonl": "no such file"}
    for name, expected in cases.items():
        with pytest.raises(InputError) as err:
            check_dataset(str(tmp_path / name), model=None)
        assert expected in one_line(err.value), name


def test_bad_options_and_trainer_format_mismatch(jsonl) -> None:
    path = jsonl([{"text": sentence(i)} for i in range(3)])
    for kwargs, expected in (({"trainer": "dpo"}, "--trainer dpo cannot train on 'text'"),
                             ({"trainer": "ppo"}, "--trainer must be"),
                             ({"max_length": 0}, "--max-length"),
                             ({"sample": 0}, "--sample")):
        with pytest.raises(InputError) as err:
            check_dataset(str(path), model=None, **kwargs)
        assert expected in one_line(err.value)


@pytest.mark.train
def test_offline_model_and_hub_dataset_fail_fast(jsonl, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = jsonl([{"text": "a"}])
    start = time.monotonic()
    with pytest.raises(InputError) as err:
        check_dataset(str(path), model="no-such-org/no-such-model-xyz")
    assert "Hub is not available" in one_line(err.value)
    with pytest.raises(InputError) as err:
        check_dataset("no-such-org/no-such-dataset-xyz", model=None)
    assert "Hugging Face Hub is not available" in one_line(err.value)
    assert time.monotonic() - start < 20


@pytest.mark.train
def test_model_path_without_tokenizer(jsonl, tmp_path: Path) -> None:
    (tmp_path / "empty_model").mkdir()
    with pytest.raises(InputError) as err:
        check_dataset(str(jsonl([{"text": "a"}])), model=str(tmp_path / "empty_model"))
    assert "cannot load a tokenizer" in one_line(err.value)


def test_looks_like_dataset(tmp_path: Path, jsonl) -> None:
    data = jsonl([{"messages": [{"role": "user", "content": "hi"}]}])
    log = jsonl([{"loss": 1.0, "step": 1, "learning_rate": 1e-4}], "metrics.jsonl")
    (tmp_path / "trainer_state.json").write_text(json.dumps({"log_history": [{"loss": 1.0, "step": 1}]}))
    (tmp_path / "d.csv").write_text("instruction,output\nx,y\n")
    (tmp_path / "c.yaml").write_text("learning_rate: 1e-4\n")
    assert looks_like_dataset(str(data)) and looks_like_dataset(str(tmp_path / "d.csv"))
    assert not looks_like_dataset(str(log))
    assert not looks_like_dataset(str(tmp_path / "trainer_state.json"))
    assert not looks_like_dataset(str(tmp_path / "c.yaml"))
    assert looks_like_dataset("trl-lib/Capybara") and not looks_like_dataset("missing.jsonl")


def test_text_report_is_inert_and_complete(jsonl, tokenizers_dir) -> None:
    evil = "[bold red]boom[/] \x1b]0;pwned\x07\x1b[2J end"
    rows = [{"prompt": evil + sentence(i), "completion": " " + sentence(i + 1)} for i in range(30)]
    rows.append({"prompt": evil, "completion": ""})
    report = check_dataset(str(jsonl(rows)), model=str(tokenizers_dir["chatml"]), max_length=16)
    buf = io.StringIO()
    render_data_report(report, Console(file=buf, width=100, force_terminal=False, color_system=None))
    out = buf.getvalue()
    assert "\x1b" not in out and "pwned" not in out  # the OSC title write is stripped whole
    assert "[bold red]boom[/]" in out  # shown literally, not interpreted
    assert "token lengths" in out and "max_length 16" in out  # the histogram and its marker
    assert "data.jsonl:" in out and "empty-responses" in out and "max_length:" in out


def test_check_result_adapter(jsonl, tokenizers_dir) -> None:
    from tuneterm.preflight.data import _data_rules

    rules = _data_rules()
    rows = [{"prompt": "q", "completion": ""}] + [{"prompt": sentence(i), "completion": " x"} for i in range(5)]
    report = check_dataset(str(jsonl(rows)), model=str(tokenizers_dir["chatml"]), rules=rules)
    result = to_check_result(report, rules)
    assert result.subject == "data" and result.format == "prompt_completion"
    assert [f.name for f in result.findings] == ["empty-responses"]
    assert {r.name for r in result.rules} >= {"sequences-truncated", "inconsistent-schema"}
    assert "identical-preference-pair" not in {r.name for r in result.rules}  # dpo only
