"""Tables as text: rich's look, sized to the widest cell, wrapped to the screen's width."""

from __future__ import annotations

from service.text_table import cell_width, table_lines


def _cells(line: str, border: str) -> list[str]:
    return [cell.strip() for cell in line.strip(border).split(border)]


def test_columns_fit_their_widest_cell_and_every_line_is_as_wide() -> None:
    lines = table_lines("2 runs", ["id", "status"], [[1, "succeeded"], [12, "queued"]], 160)
    assert lines[0].strip() == "2 runs"
    assert lines[1:3] == ["┏━━━━┳━━━━━━━━━━━┓", "┃ id ┃ status    ┃"]
    assert [_cells(line, "│") for line in lines[4:6]] == [["1", "succeeded"], ["12", "queued"]]
    assert lines[-1] == "└────┴───────────┘"
    assert len({len(line) for line in lines[1:]}) == 1


def test_a_table_wider_than_the_screen_wraps_its_widest_column_at_spaces() -> None:
    words = "lr=0.1, momentum=0.9, hidden=64, layers=2, dropout=0.25, epochs=30"
    lines = table_lines(None, ["field", "value"], [["hyperparameters", words]], 40)
    assert max(len(line) for line in lines) <= 40
    body = [_cells(line, "│") for line in lines if line.startswith("│")]
    assert body[0][0] == "hyperparameters" and all(row[0] == "" for row in body[1:])
    assert " ".join(row[1] for row in body) == words


def test_a_word_longer_than_its_column_is_cut_and_kept_whole() -> None:
    word = "x" * 50
    lines = table_lines(None, ["k", "v"], [["a", word]], 30)
    assert max(len(line) for line in lines) <= 30
    assert "".join(_cells(line, "│")[1] for line in lines if line.startswith("│")) == word


def test_wide_characters_take_two_cells() -> None:
    assert cell_width("日本") == 4 and cell_width("e\u0301") == 1
    lines = table_lines(None, ["name"], [["日本"], ["abc"]], 80)
    assert lines[0] == "┏━━━━━━┓" and lines[3] == "│ 日本 │" and lines[4] == "│ abc  │"


def test_an_empty_table_shows_its_header_and_a_header_is_bold_only_when_asked() -> None:
    plain = table_lines("none", ["id", "name"], [], 80)
    assert plain[1:] == ["┏━━━━┳━━━━━━┓", "┃ id ┃ name ┃", "┡━━━━╇━━━━━━┩", "└────┴──────┘"]
    assert "\x1b[" not in "".join(plain)
    styled = table_lines("none", ["id", "name"], [], 80, style_header=True)
    assert styled[2] == "┃ \x1b[1mid\x1b[0m ┃ \x1b[1mname\x1b[0m ┃"


def test_a_cell_of_several_lines_keeps_them() -> None:
    lines = table_lines(None, ["k", "v"], [["error", "first\nsecond"]], 80)
    assert [_cells(line, "│") for line in lines if line.startswith("│")] == [
        ["error", "first"],
        ["", "second"],
    ]
