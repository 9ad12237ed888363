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


@pytest.mark.parametrize(
    ("number", "found"),
    [("1e308", "1e+308"), ("-3.5e38", "-3.5e+38"), ("1" + "0" * 400, "100000000000000000000...")],
)
def test_numbers_beyond_float32_are_refused_with_the_line(number: str, found: str) -> None:
    content = f'{{"input": [1, 2], "target": 0}}\n{{"input": [{number}, 2], "target": 1}}'.encode()
    assert error_of(content, "binary") == (
        f"train.jsonl line 2: input must contain numbers within +-3.403e+38 (float32); "
        f"found {found} (task binary takes a list of numbers)"
    )


def test_numbers_up_to_the_float32_limit_pass() -> None:
    content = lines({"input": [3.4e38, -3.4e38], "target": 0}, {"input": [1, 2], "target": 1})
    assert parse_jsonl(content, "binary")[0]["input"] == [3.4e38, -3.4e38]


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_literals_are_refused(literal: str) -> None:
    content = f'{{"input": [1, 2], "target": 0}}\n{{"input": [{literal}, 2], "target": 1}}'
    message = error_of(content.encode(), "binary")
    assert message.startswith("train.jsonl line 2: invalid JSON") and literal.strip("-") in message


@pytest.mark.parametrize(
    ("task", "row", "expected"),
    [
        ("binary", {"input": [0.5] * 513, "target": 0}, "input has 513 numbers"),
        ("sentiment", {"input": ["w"] * 513, "target": "pos"}, "input has 513 tokens"),
        ("captioning", {"input": [0.5], "target": ["w"] * 19}, "target has 19 tokens"),
        ("translation", {"input": ["w"] * 513, "target": ["v"]}, "input has 513 tokens"),
        ("translation", {"input": ["w"], "target": ["v"] * 513}, "target has 513 tokens"),
    ],
)
def test_sequences_longer_than_the_task_seq_len_limit_are_refused(
    task: str, row: dict, expected: str
) -> None:
    from models.registry import TASKS

    most = TASKS[task].seq_len[1]
    message = error_of(lines(row), task)
    assert message == (
        f"train.jsonl line 1: {expected}; task {task} takes at most {most} (its seq_len limit)"
    )


@pytest.mark.parametrize(
    ("task", "row"),
    [
        ("binary", {"input": [0.5] * 512, "target": 0}),
        ("sentiment", {"input": ["w"] * 512, "target": "pos"}),
        ("captioning", {"input": [0.5] * 1000, "target": ["w"] * 18}),
        ("translation", {"input": ["w"] * 512, "target": ["v"] * 512}),
    ],
)
def test_sequences_at_the_task_seq_len_limit_pass(task: str, row: dict) -> None:
    other = {**row, "target": 1} if task == "binary" else {**row, "target": "neg"}
    content = lines(row, other) if task in ("binary", "sentiment") else lines(row)
    assert parse_jsonl(content, task)[0] == row


def test_labels_that_print_alike_are_refused_with_both_lines() -> None:
    content = lines(
        {"input": [1], "target": 1}, {"input": [2], "target": 0}, {"input": [3], "target": "1"}
    )
    assert error_of(content, "binary") == (
        "train.jsonl line 3: label '1' (a string) and line 1's label 1 (a number) would be "
        "two classes that print alike; write each label one way"
    )
    distinct = lines({"input": [1], "target": 1}, {"input": [2], "target": "cat"})
    assert [row["target"] for row in parse_jsonl(distinct, "binary")] == [1, "cat"]
