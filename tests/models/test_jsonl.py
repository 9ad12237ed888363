from __future__ import annotations

import json
import subprocess
import sys

import pytest

from models.jsonl import MAX_DATA_BYTES, DataError, parse_jsonl


def lines(*rows: object) -> bytes:
    return "\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows).encode()


def error_of(content: bytes, task: str, source: str = "train.jsonl") -> str:
    with pytest.raises(DataError) as caught:
        parse_jsonl(content, task, source)
    return str(caught.value)


def test_valid_rows_for_every_task_and_blank_lines_skipped() -> None:
    binary = lines({"input": [1, 2.5], "target": 0}, "", "  ", {"input": [0, 1], "target": 1})
    assert parse_jsonl(binary, "binary") == [
        {"input": [1, 2.5], "target": 0},
        {"input": [0, 1], "target": 1},
    ]
    sentiment = lines(
        {"input": ["not", "good"], "target": "neg"}, {"input": ["good"], "target": "pos", "id": 7}
    )
    assert parse_jsonl(sentiment, "sentiment")[1] == {"input": ["good"], "target": "pos"}
    caption = lines({"input": [0.0, 1.0, 0.0], "target": ["a", "dot"]})
    assert parse_jsonl(caption, "captioning")[0]["target"] == ["a", "dot"]
    pairs = lines({"input": ["le", "chat"], "target": ["the", "cat"]})
    assert len(parse_jsonl(pairs, "translation")) == 1


def test_error_names_source_and_line() -> None:
    content = lines(
        {"input": ["a"], "target": ["b"]},
        {"input": ["a"], "target": ["b"]},
        {"input": ["a"], "target": "b"},
    )
    assert error_of(content, "translation") == (
        "train.jsonl line 3: target must be a non-empty list of strings for task translation"
    )


@pytest.mark.parametrize(
    ("content", "task", "expected"),
    [
        (b'{"input": [1], "target": 0}\n{oops', "binary", "train.jsonl line 2: invalid JSON"),
        (
            lines({"input": [1, 2], "target": 0}, {"input": [1], "target": 1}),
            "binary",
            "train.jsonl line 2: input has 1 numbers but line 1 has 2",
        ),
        (lines({"input": ["a", 1], "target": 0}), "sentiment", "line 1: input must be a list of"),
        (lines({"input": [1, True], "target": 0}), "binary", "line 1: input must be a list of"),
        (lines({"input": [], "target": 0}), "binary", "line 1: input must be a non-empty"),
        (lines({"target": 0}), "binary", "line 1: missing key 'input'"),
        (lines([1, 2]), "binary", "line 1: must be an object"),
        (lines({"input": [1], "target": 1.5}), "binary", "line 1: target must be a label"),
        (lines({"input": [1], "target": "x"}), "captioning", "line 1: target must be a non-empty"),
        (lines({"input": ["<pad>"], "target": ["x"]}), "translation", "reserved token '<pad>'"),
        (b'{"input": [NaN], "target": 0}', "binary", "line 1: invalid JSON"),
        (b'{"input": [1e999], "target": 0}', "binary", "line 1: input must contain finite"),
    ],
)
def test_row_errors(content: bytes, task: str, expected: str) -> None:
    assert expected in error_of(content, task)


def test_invalid_utf8_names_line() -> None:
    assert error_of(b'{"input": [1], "target": 0}\n\xff\xfe', "binary") == (
        "train.jsonl line 2: not valid UTF-8"
    )


def test_empty_file_and_single_class() -> None:
    assert "no rows" in error_of(b"\n \n", "binary")
    same = lines({"input": [1], "target": "a"}, {"input": [2], "target": "a"})
    assert "at least 2 distinct labels" in error_of(same, "binary")


def test_size_limit() -> None:
    assert "64 MiB limit" in error_of(b" " * (MAX_DATA_BYTES + 1), "binary")


def test_jsonl_spec_and_registry_do_not_import_torch() -> None:
    code = (
        "import sys, models, models.jsonl, models.spec, models.registry; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
