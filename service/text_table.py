"""Tables as text, drawn like rich's default table (heavy head, light body), without rich.

Importing rich and laying out one of its tables took 33 ms of `expq runs list`'s start-up
(benchmarks/results/startup.md); this is all that command's output needs: columns sized to
their widest cell, the widest wrapped while the table is wider than the screen.
"""

from __future__ import annotations

import textwrap
import unicodedata
from collections.abc import Iterable, Sequence

_PADDING = 3  # a space either side of a cell, and its border
_NARROWEST = 4  # a folded column keeps at least this many cells


def cell_width(text: str) -> int:
    """Terminal cells that `text` takes: wide East Asian characters two, combining marks none."""
    if text.isascii():
        return len(text)
    return sum(
        0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1
        for c in text
    )


def _fold(text: str, width: int) -> list[str]:
    """`text`'s lines wrapped at spaces into pieces at most `width` cells wide; a longer word,
    or a line of wide characters, cut where it must be."""
    pieces: list[str] = []
    for line in text.splitlines() or [""]:
        if cell_width(line) <= width:
            pieces.append(line)
        elif line.isascii():
            pieces += textwrap.wrap(line, width, break_on_hyphens=False) or [""]
        else:
            piece, used = "", 0
            for char in line:
                size = cell_width(char)
                if used + size > width and piece:
                    pieces.append(piece)
                    piece, used = "", 0
                piece, used = piece + char, used + size
            pieces.append(piece)
    return pieces


def _widths(natural: list[int], floors: list[int], room: int) -> list[int]:
    """Column widths within `room` cells of text: the widest column gives way first."""
    widths = list(natural)
    while sum(widths) > room:
        widest = max(range(len(widths)), key=lambda i: widths[i] - floors[i])
        if widths[widest] <= floors[widest]:
            break
        widths[widest] -= 1
    return widths


def _line(left: str, fill: str, middle: str, right: str, widths: list[int]) -> str:
    return left + middle.join(fill * (width + 2) for width in widths) + right


def _row(border: str, cells: list[list[str]], widths: list[int], bold: bool = False) -> list[str]:
    height = max(len(pieces) for pieces in cells)
    lines = []
    for i in range(height):
        texts = []
        for pieces, width in zip(cells, widths, strict=True):
            text = pieces[i] if i < len(pieces) else ""
            padding = " " * (width - cell_width(text))
            if bold and text:
                text = f"\x1b[1m{text}\x1b[0m"
            texts.append(f" {text}{padding} ")
        lines.append(border + border.join(texts) + border)
    return lines


def _natural(column: Sequence[str]) -> int:
    return max(cell_width(line) for cell in column for line in cell.splitlines() or [""])


def table_lines(
    title: str | None,
    header: Sequence[str],
    rows: Iterable[Sequence[object]],
    width: int,
    *,
    style_header: bool = False,
) -> list[str]:
    """The table as lines, at most `width` cells wide where folding can make it so.

    `style_header`: the column names in bold (ANSI), for a terminal.
    """
    body = [[str(cell) for cell in row] for row in rows]
    columns = list(zip(header, *body, strict=True)) if body else [(name,) for name in header]
    natural = [_natural(column) for column in columns]
    floors = [
        min(size, max(_NARROWEST, cell_width(name)))
        for size, name in zip(natural, header, strict=True)
    ]
    widths = _widths(natural, floors, width - _PADDING * len(header) - 1)
    names = [_fold(name, w) for name, w in zip(header, widths, strict=True)]
    lines = [_line("┏", "━", "┳", "┓", widths), *_row("┃", names, widths, style_header)]
    lines.append(_line("┡", "━", "╇", "┩", widths))
    for row in body:
        lines += _row("│", [_fold(c, w) for c, w in zip(row, widths, strict=True)], widths)
    lines.append(_line("└", "─", "┴", "┘", widths))
    if title:
        lines.insert(0, title.center(len(lines[0])).rstrip())
    return lines
