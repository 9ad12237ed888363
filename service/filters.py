"""The query language of --where, --sort and --group-by, parsed into bound SQLAlchemy expressions.

    expr       := term ("or" term)*
    term       := factor ("and" factor)*
    factor     := "not" factor | "(" expr ")" | comparison
    comparison := FIELD OP literal | FIELD ["not"] "in" "(" literal ("," literal)* ")"
    OP         := = | == | != | <> | < | <= | > | >=
    FIELD      := a hyperparameter | tag.KEY | tag."ANY KEY" | a summary field
                  | train_loss_t[T] | val_loss_t[T]   (the last epoch's L_t of the winning attempt)
                  | train_NAME | val_NAME | best_val_NAME | train_NAME_t[T] | val_NAME_t[T]
                    (a metric: at the last epoch, at the best epoch, at output step T)
    literal    := a number in any float notation (1, -2.5, .5, 1e-3, inf) | 'text' | "text"

Keywords are case-insensitive. A hand-written tokenizer and recursive-descent parser turn the
text into SQL expressions whose values are bound parameters: user text never reaches the SQL
string.

Missing values follow SQL's three-valued logic. A comparison with a value a run does not have
(a tag it lacks, a hyperparameter that does not apply to it, a timestep with no loss or a
non-finite one, an empty summary field) is unknown, and so is a number compared with a tag
that is not a number. `not unknown` is unknown; `and` and `or` follow Kleene's tables (false
and unknown is false, true or unknown is true). A run matches when the whole expression is
true, so `E` and `not E` never both match a run. A tag compares as a number when the literal
is a number (`tag.x < 9` matches x=8.5, not x=10 or x=abc) and as text when it is quoted.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Numeric,
    Select,
    and_,
    cast,
    exists,
    literal,
    not_,
    or_,
    select,
)

from service.errors import InputError
from service.sql_logic import TagNumber, Truth, all_of, any_of
from service.tables import (
    LOSS,
    WHOLE_SPLIT,
    experiments,
    losses,
    metrics,
    run_params,
    run_tags,
    run_values,
    runs,
)

MAX_LENGTH = 65_536
MAX_DEPTH = 64
MAX_IN_VALUES = 1_000

# Columns of runs (and the experiment's name) that --where, --sort and --group-by accept.
_COLUMNS: dict[str, tuple[Any, str]] = {
    "id": (runs.c.run_id, "integer"),
    "experiment": (experiments.c.name, "text"),
    "task": (runs.c.task, "text"),
    "model": (runs.c.model, "text"),
    "status": (runs.c.status, "text"),
    "queue": (runs.c.queue, "text"),
    "priority": (runs.c.priority, "integer"),
    "worker": (runs.c.worker, "text"),
    "attempt": (runs.c.attempt, "integer"),
    "max_attempts": (runs.c.max_attempts, "integer"),
    "given_back": (runs.c.given_back, "integer"),
    "epochs_done": (runs.c.epochs_done, "integer"),
    "final_train_loss": (runs.c.final_train_loss, "number"),
    "final_val_loss": (runs.c.final_val_loss, "number"),
    "best_train_loss": (runs.c.best_train_loss, "number"),
    "best_val_loss": (runs.c.best_val_loss, "number"),
    "final_metric": (runs.c.final_metric, "number"),
    "best_metric": (runs.c.best_metric, "number"),
    "best_epoch": (runs.c.best_epoch, "integer"),
    "error": (runs.c.error, "text"),
    "created_at": (runs.c.created_at, "time"),
    "queued_at": (runs.c.queued_at, "time"),
    "started_at": (runs.c.started_at, "time"),
    "finished_at": (runs.c.finished_at, "time"),
}
_NULLABLE = {"worker", "error", "started_at", "finished_at", "best_epoch"} | {
    name for name, (_, kind) in _COLUMNS.items() if kind == "number"
}
_PER_TIMESTEP = re.compile(r"(train|val)_loss_t\[\s*(\d{1,6})\s*\]")
METRIC_NAMES = ("accuracy", "token_accuracy", "exact_match")
_METRIC = re.compile(r"(best_val|train|val)_([A-Za-z_]\w*?)(?:_t\[\s*(\d{1,6})\s*\])?")
_SPEC_KINDS = {"int": "integer", "float": "number", "str": "text"}


def _param_kinds() -> dict[str, str]:
    from dataclasses import fields

    from models.spec import PARAM_NAMES, TrainSpec

    types = {f.name: str(f.type).removesuffix(" | None") for f in fields(TrainSpec)}
    return {name: _SPEC_KINDS[types[name]] for name in PARAM_NAMES}


PARAM_KINDS = _param_kinds()


@dataclass(frozen=True)
class Field:
    """A field a run can be filtered, sorted or grouped by."""

    name: str  # canonical: "lr", "tag.team", "val_loss_t[3]"
    kind: str  # number, integer, text or time
    source: str  # column, param, tag, loss or metric
    key: str | int | None = None  # the param name, tag key, loss timestep or metric name
    split: str | None = None
    step: int | None = None  # a metric's output step; None for the whole split
    at_best: bool = False  # a metric at the run's best epoch rather than its last

    @property
    def numeric(self) -> bool:
        return self.kind in ("number", "integer")


def field_names_help() -> str:
    return (
        f"{', '.join(_COLUMNS)}, the hyperparameters ({', '.join(PARAM_KINDS)}), "
        "tag.KEY, train_loss_t[T], val_loss_t[T], train_M, val_M, best_val_M, val_M_t[T] "
        f"(M: {', '.join(METRIC_NAMES)})"
    )


def lookup_field(name: str) -> Field | None:
    """The field named `name`, or None. Hyperparameters win over the run's columns."""
    if name in PARAM_KINDS:
        if name in ("task", "model"):  # kept on runs itself: no lookup needed
            return Field(name, "text", "column")
        return Field(name, PARAM_KINDS[name], "param", name)
    if name in _COLUMNS:
        return Field(name, _COLUMNS[name][1], "column")
    if name.startswith("tag."):
        key = name[4:]
        if len(key) >= 2 and key[0] == key[-1] and key[0] in "'\"":
            key = _unquote(key)
        return Field(f"tag.{key}", "text", "tag", key) if key else None
    matched = _PER_TIMESTEP.fullmatch(name)
    if matched and int(matched.group(2)) >= 1:
        step = int(matched.group(2))
        return Field(f"{matched.group(1)}_loss_t[{step}]", "number", "loss", step, matched.group(1))
    return _metric_field(name)


def _metric_field(name: str) -> Field | None:
    matched = _METRIC.fullmatch(name)
    if matched is None or matched.group(2) not in METRIC_NAMES:
        return None
    where, metric, step = matched.groups()
    if step is not None and (int(step) < 1 or where == "best_val"):
        return None
    at_best = where == "best_val"
    split = "val" if at_best else where
    shown = f"{where}_{metric}" + ("" if step is None else f"_t[{int(step)}]")
    return Field(
        shown, "number", "metric", metric, split, None if step is None else int(step), at_best
    )


def unknown_metric(name: str) -> str | None:
    """The metric name in `name` when it reads as a metric field of an unknown metric."""
    matched = _METRIC.fullmatch(name)
    if matched is None or matched.group(2) in METRIC_NAMES or matched.group(2) == "loss":
        return None
    return matched.group(2)


# --- SQL for one field ---------------------------------------------------------------------

_TABLES = {"param": run_params, "tag": run_tags, "loss": losses, "metric": metrics}


def _lookup(field: Field, table: Any = None) -> list[ColumnElement]:
    """Where a param, tag or per-timestep value of the current run lives: one index probe each
    ((run_id, name), (run_id, key), and the losses' unique key for the last epoch's L_t)."""
    if field.source == "param":
        columns = (table if table is not None else run_params).c
        return [columns.run_id == runs.c.run_id, columns.name == field.key]
    if field.source == "tag":
        columns = (table if table is not None else run_tags).c
        return [columns.run_id == runs.c.run_id, columns.key == field.key]
    if field.source == "metric":
        columns = (table if table is not None else metrics).c
        return [
            columns.run_id == runs.c.run_id,
            columns.attempt == runs.c.attempt,
            columns.epoch == (runs.c.best_epoch if field.at_best else runs.c.epochs_done),
            columns.split == field.split,
            columns.name == field.key,
            columns.timestep.is_(None) if field.step is None else columns.timestep == field.step,
        ]
    columns = (table if table is not None else losses).c
    return [
        columns.run_id == runs.c.run_id,
        columns.attempt == runs.c.attempt,
        columns.epoch == runs.c.epochs_done,
        columns.split == field.split,
        columns.timestep == field.key,
    ]


def _target(field: Field, table: Any = None):  # noqa: ANN202 - the column a condition compares
    if field.source == "column":
        return _COLUMNS[field.name][0]
    if table is None:
        table = _TABLES[field.source]
    if field.source == "param":
        return table.c.num_value if field.numeric else table.c.text_value
    return table.c.value


def value_of(field: Field) -> ColumnElement:
    """The field's value for the current row of runs, as a scalar subquery where needed."""
    if field.source == "column":
        return _target(field)
    return select(_target(field)).where(*_lookup(field)).scalar_subquery()


def joined_value(query: Select, field: Field, *, outer: bool = True) -> tuple[Select, Any]:
    """`query` with the field's table joined to runs (outer: runs without it kept), and the
    field's value column.

    For GROUP BY over many runs: PostgreSQL hash-joins the params of one name in one pass
    where a scalar subquery would run once per run (`runs summary`: 330 → 115 ms, 100k runs).
    """
    if field.source == "column":
        return query, _target(field)
    table = _TABLES[field.source].alias()
    condition = and_(*_lookup(field, table))
    joined = query.outerjoin(table, condition) if outer else query.join(table, condition)
    return joined, _target(field, table)


def settled_value(query: Select, field: Field) -> tuple[Select, Any]:
    """`query` narrowed to the ended runs that have a loss or metric `field`, joined to its
    row of run_values, and the value column: a sort walks run_values' index in value order
    and stops after its limit."""
    loss = field.source == "loss"
    table = run_values.alias()
    condition = and_(
        table.c.run_id == runs.c.run_id,
        table.c.at == ("best" if field.at_best else "last"),
        table.c.split == field.split,
        table.c.name == (LOSS if loss else field.key),
        table.c.timestep == (field.key if loss else field.step or WHOLE_SPLIT),
        table.c.attempt == runs.c.attempt,
        table.c.epoch == (runs.c.best_epoch if field.at_best else runs.c.epochs_done),
    )
    return query.join(table, condition), table.c.value


def _compared(field: Field, op: str, values: list[Any]) -> ColumnElement:
    """The field's value against `values` with `op` (an operator or "in").

    A tag compares numerically with numbers and as text with strings. NULL when the value
    is NULL (a non-finite loss, a tag that is not a number): the comparison is unknown.
    """

    def side(group: list[Any]) -> tuple[Any, list[Any]]:
        if field.source == "tag" and not isinstance(group[0], str):
            # Compared as numeric: a huge tag such as 1e999 must not overflow a float cast.
            return TagNumber(_target(field)), [cast(literal(v), Numeric) for v in group]
        return _target(field), group

    if op != "in":
        column, (value,) = side(values)
        return _OPS[op](column, value)
    texts = [v for v in values if isinstance(v, str)]
    others = [v for v in values if not isinstance(v, str)]
    parts = [column.in_(group) for column, group in (side(g) for g in (texts, others) if g)]
    return parts[0] if len(parts) == 1 else or_(*parts)


def _truth(field: Field, op: str, values: list[Any], per_run: bool = False) -> Truth:
    condition = _compared(field, op, values)
    if field.source == "column":
        # A NULL column makes both sides NULL, and a NULL side never matches: unknown.
        return Truth(condition, not_(condition))

    def probe(matched: ColumnElement) -> ColumnElement:
        found = select(1).where(*_lookup(field), matched)
        # OFFSET 0 keeps PostgreSQL from hashing the whole table's matches up front (it plans
        # for every run, not for the few a LIMIT reads): `(hidden >= 64 or tag.team = 'b')
        # and ... --sort final_val_loss --limit 20`, 100k runs: 686 → see store_query.md.
        return exists(found.offset(0) if per_run else found)

    # EXISTS, correlated to the run: a run without the row has neither side. A loss or metric
    # probe goes before a param or tag probe: many runs lack that row, so it rules them out.
    true, false = probe(condition), probe(not_(condition))
    step = _output_step(field)
    if step is not None:
        # A run with fewer output steps has no row at t: its own row says so without a probe.
        has_step = runs.c.timesteps >= step
        true, false = and_(has_step, true), and_(has_step, false)
    return Truth(true, false, 1 if field.source in ("loss", "metric") else 2)


def _output_step(field: Field) -> int | None:
    if field.source == "loss":
        return int(field.key)
    return field.step if field.source == "metric" else None


# --- tokens --------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
    |(?P<number>[+-]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|(?i:infinity|inf))
        (?![A-Za-z0-9_.]))
    |(?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
    |(?P<op><=|>=|!=|<>|==|=|<|>)
    |(?P<punct>[(),])
    |(?P<field>tag\.(?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|[A-Za-z0-9_.\-]+)
        |[A-Za-z_][A-Za-z0-9_]*(?:\[[^\]\s]*\])?)
    """,
    re.VERBOSE,
)
_KEYWORDS = {"and", "or", "not", "in"}


@dataclass(frozen=True)
class Token:
    kind: str  # number, string, op, punct, field, keyword, end
    text: str
    position: int  # 1-based column in the user's text


def _unquote(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text[1:-1], flags=re.DOTALL)


def _shown(text: str) -> str:
    """A token as the error shows it: one line, at most 30 characters."""
    shown = repr(text[:30] + ("..." if len(text) > 30 else ""))
    return shown


def tokenize(text: str, option: str) -> list[Token]:
    if len(text) > MAX_LENGTH:
        raise InputError(
            f"{option}: the expression is {len(text)} characters; the limit is {MAX_LENGTH}"
        )
    if "\x00" in text:  # PostgreSQL refuses NUL even in a bound string: stop it here
        raise InputError(f"{option}: NUL character at position {text.index(chr(0)) + 1}")
    tokens: list[Token] = []
    position = 0
    while position < len(text):
        matched = _TOKEN.match(text, position)
        if matched is None:
            if text[position] in "'\"":
                raise InputError(f"{option}: unterminated string at position {position + 1}")
            raise InputError(
                f"{option}: unexpected {_shown(text[position])} at position {position + 1}"
            )
        kind = matched.lastgroup or ""
        value = matched.group()
        if kind == "field" and value.lower() in _KEYWORDS:
            kind, value = "keyword", value.lower()
        if kind != "space":
            tokens.append(Token(kind, value, position + 1))
        position = matched.end()
    tokens.append(Token("end", "", len(text) + 1))
    return tokens


# --- the parser ----------------------------------------------------------------------------

_OPS: dict[str, Callable[[Any, Any], ColumnElement]] = {
    "=": lambda a, b: a == b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<>": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


class _Parser:
    def __init__(self, text: str, option: str, per_run: bool = False) -> None:
        self.option = option
        self.per_run = per_run
        self.tokens = tokenize(text, option)
        self.index = 0
        self.depth = 0

    @property
    def token(self) -> Token:
        return self.tokens[self.index]

    def fail(self, what: str, token: Token | None = None) -> InputError:
        token = token or self.token
        found = "end of expression" if token.kind == "end" else _shown(token.text)
        return InputError(f"{self.option}: {what}{found} at position {token.position}")

    def take(self) -> Token:
        token = self.token
        self.index += 1
        return token

    def accept(self, kind: str, text: str | None = None) -> Token | None:
        if self.token.kind == kind and (text is None or self.token.text == text):
            return self.take()
        return None

    def expect(self, kind: str, text: str, what: str) -> Token:
        token = self.accept(kind, text)
        if token is None:
            raise self.fail(f"expected {what}, got ")
        return token

    def field(self) -> Field:
        token = self.token
        if token.kind != "field":
            raise self.fail("expected a field, got ")
        found = lookup_field(token.text)
        metric = None if found else unknown_metric(token.text)
        if metric is not None:
            raise InputError(
                f"{self.option}: unknown metric {_shown(metric)} in {_shown(token.text)} at "
                f"position {token.position} (metrics: {', '.join(METRIC_NAMES)})"
            )
        if found is None:
            raise InputError(
                f"{self.option}: unknown field {_shown(token.text)} at position "
                f"{token.position} (fields: {field_names_help()})"
            )
        self.take()
        return found

    # expr := term ("or" term)*
    def expr(self) -> Truth:
        parts = [self.term()]
        while self.accept("keyword", "or"):
            parts.append(self.term())
        return parts[0] if len(parts) == 1 else any_of(parts)

    def term(self) -> Truth:
        parts = [self.factor()]
        while self.accept("keyword", "and"):
            parts.append(self.factor())
        return parts[0] if len(parts) == 1 else all_of(parts)

    def factor(self) -> Truth:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(f"nested deeper than {MAX_DEPTH} levels: ")
        try:
            if self.accept("keyword", "not"):
                return self.factor().negated()
            if self.accept("punct", "("):
                inner = self.expr()
                self.expect("punct", ")", "')'")
                return inner
            return self.comparison()
        finally:
            self.depth -= 1

    def comparison(self) -> Truth:
        field = self.field()
        negated = self.accept("keyword", "not") is not None
        if negated or self.token.kind == "keyword" and self.token.text == "in":
            self.expect("keyword", "in", "'in'")
            self.expect("punct", "(", "'('")
            values = [self.literal(field)]
            while self.accept("punct", ","):
                if len(values) >= MAX_IN_VALUES:
                    raise self.fail(f"more than {MAX_IN_VALUES} values in a list: ")
                values.append(self.literal(field))
            self.expect("punct", ")", "',' or ')'")
            found = _truth(field, "in", values, self.per_run)
            return found.negated() if negated else found
        op = self.accept("op")
        if op is None:
            raise self.fail("expected a comparison (= != < <= > >= in), got ")
        return _truth(field, op.text, [self.literal(field)], self.per_run)

    def literal(self, field: Field) -> Any:
        token = self.token
        if token.kind == "number":
            number = float(token.text)
            if field.numeric:
                self.take()
                if field.kind == "integer" and math.isfinite(number) and number.is_integer():
                    return int(number)
                return number
            if field.source == "tag":  # compared with the tag's value as a number
                self.take()
                return number
            raise self.fail(f"{field.name} takes a quoted string, got ")
        if token.kind == "string":
            text = _unquote(token.text)
            if field.kind == "text":
                self.take()
                return text
            if field.kind == "time":
                self.take()
                return _as_time(text, self.option, field.name, token)
            raise self.fail(f"{field.name} takes a number, got ")
        raise self.fail("expected a number or a quoted string, got ")


def _as_time(text: str, option: str, name: str, token: Token) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InputError(
            f"{option}: {name} takes an ISO 8601 time, got {_shown(text)} at position "
            f"{token.position}"
        ) from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def parse_where(text: str, option: str = "--where", *, per_run: bool = False) -> ColumnElement:
    """The SQL condition of a --where expression; InputError with the position on bad input.

    `per_run`: the query reads a few runs in index order (a LIMIT), so every probe is made
    run by run, never by reading all of a table's matches first.
    """
    parser = _Parser(text, option, per_run)
    if parser.token.kind == "end":
        raise parser.fail("empty expression: ")
    condition = parser.expr()
    if parser.token.kind != "end":
        raise parser.fail("unexpected ")
    return condition.true


def parse_field(text: str, option: str) -> Field:
    parser = _Parser(text.strip(), option)
    found = parser.field()
    if parser.token.kind != "end":
        raise parser.fail("unexpected ")
    return found


def parse_sort(text: str, option: str = "--sort") -> tuple[Field, bool]:
    """FIELD[:asc|desc] → the field and whether it sorts descending (ascending unless asked)."""
    name, sep, direction = text.rpartition(":")
    if not sep or direction.strip().lower() not in ("asc", "desc"):
        name, direction = text, "asc"
    return parse_field(name, option), direction.strip().lower() == "desc"


def parse_fields(text: str, option: str) -> list[Field]:
    """A comma-separated list of fields (--group-by)."""
    names = [name for name in text.split(",")]
    if not text.strip() or any(not name.strip() for name in names):
        raise InputError(f"{option}: give one or more comma-separated fields; got {text!r}")
    found = [parse_field(name, option) for name in names]
    if len({f.name for f in found}) != len(found):
        raise InputError(f"{option}: a field is named twice in {text!r}")
    return found


@dataclass(frozen=True)
class RunFilter:
    """What `runs list`, `runs summary` and `export` narrow runs by: the shortcut options and
    a --where expression, all of them at once."""

    experiment: str | None = None
    task: str | None = None
    model: str | None = None
    status: str | None = None
    where: str | None = None

    def conditions(self, *, per_run: bool = False) -> list[ColumnElement]:
        """The SQL conditions; `per_run` as parse_where takes it."""
        found = [
            column == wanted
            for column, wanted in (
                (experiments.c.name, self.experiment),
                (runs.c.task, self.task),
                (runs.c.model, self.model),
                (runs.c.status, self.status),
            )
            if wanted is not None
        ]
        if self.where is not None:
            found.append(parse_where(self.where, per_run=per_run))
        return found


def nullable(field: Field) -> bool:
    """Whether some runs may lack a value for `field` (sorting puts those last)."""
    return field.source != "column" or field.name in _NULLABLE
