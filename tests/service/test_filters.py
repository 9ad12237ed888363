"""The --where / --sort / --group-by language: what parses, every error with its position, and
hostile text that must never reach SQL (run against SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, inspect, select
from sqlalchemy.dialects import postgresql, sqlite
from support import Split, claim, new_run

from service.errors import InputError
from service.filters import (
    MAX_DEPTH,
    lookup_field,
    parse_fields,
    parse_sort,
    parse_where,
    tokenize,
)
from service.lifecycle import record_epoch
from service.schema import Base
from service.store import list_runs


@pytest.mark.parametrize(
    "text",
    [
        "lr < 0.05",
        "lr<0.05",
        "lr <= 5e-2 and hidden >= 32",
        "lr = .5 or lr == 1. or lr != 1E+3 or lr <> -2.5e-7",
        "dropout > -inf and dropout < Infinity",
        "model = 'rnn' and cell in ('gru', \"lstm\")",
        "not (model = 'mlp' or task = 'binary')",
        "NOT status IN ('failed', 'diverged') AND epochs_done > 3",
        "tag.team = 'a' or tag.\"odd key\" = 'x' or tag.seed = 5",
        "val_loss_t[3] < 0.2 and train_loss_t[1] >= 0",
        "created_at >= '2024-01-01' and finished_at < '2030-01-01T00:00:00+02:00'",
        'experiment = \'it\\\'s\' or experiment = "say \\"hi\\""',
        "((((lr < 1))))",
        "hidden not in (16, 32, 64)",
    ],
)
def test_valid_expressions_parse(text: str) -> None:
    parse_where(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("lr < 1; DROP TABLE runs", "unexpected ';' at position 7"),
        ("", "empty expression: end of expression at position 1"),
        ("   ", "empty expression"),
        ("lr <", "expected a number or a quoted string, got end of expression at position 5"),
        ("lr 0.1", "expected a comparison (= != < <= > >= in), got '0.1' at position 4"),
        ("bogus = 1", "unknown field 'bogus' at position 1"),
        ("lr < 1 and bogus = 1", "unknown field 'bogus' at position 12"),
        ("(lr < 1", "expected ')', got end of expression at position 8"),
        ("lr < 1)", "unexpected ')' at position 7"),
        ("lr < 'fast'", "lr takes a number, got \"'fast'\" at position 6"),
        ("model = 5", "model takes a quoted string, got '5' at position 9"),
        ("model = rnn", "expected a number or a quoted string, got 'rnn' at position 9"),
        ("model = 'rnn", "unterminated string at position 9"),
        ("created_at > 'yesterday'", "created_at takes an ISO 8601 time, got 'yesterday'"),
        ("lr in 1", "expected '(', got '1' at position 7"),
        ("lr in (1 2)", "expected ',' or ')', got '2' at position 10"),
        ("lr not = 1", "expected 'in', got '=' at position 8"),
        ("and lr < 1", "expected a field, got 'and' at position 1"),
        ("lr < 1 or", "expected a field, got end of expression at position 10"),
        ("val_loss_t[0] < 1", "unknown field 'val_loss_t[0]' at position 1"),
        ("val_loss_t[x] < 1", "unknown field 'val_loss_t[x]'"),
        ("test_loss_t[1] < 1", "unknown field"),
        ("lr < 1.2.3", "unexpected '1' at position 6"),
        ("lr < 0x10", "unexpected '0' at position 6"),
        ("lr < nan", "expected a number or a quoted string, got 'nan' at position 6"),
        ("lr < 1 \x00", "NUL character at position 8"),
        ("tag.team = 'a\x00b'", "NUL character at position 14"),
        ("lr < 1 @", "unexpected '@' at position 8"),
        ("experiment = 'it''s'", "unexpected \"'s'\" at position 18"),
        ("hidden in (16, 32,)", "expected a number or a quoted string, got ')' at position 19"),
        ("(" * (MAX_DEPTH + 1) + "lr < 1" + ")" * (MAX_DEPTH + 1), "nested deeper than 64"),
        ("lr in (" + ",".join(["1"] * 1001) + ")", "more than 1000 values in a list"),
        ("x" * 70_000, "the expression is 70000 characters; the limit is 65536"),
    ],
)
def test_every_error_is_one_line_with_its_position(text: str, message: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_where(text)
    assert str(caught.value).startswith("--where: ")
    assert message in str(caught.value)
    # An unknown field's error names every field, the hyperparameters (data_seed among them)
    # included.
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 800


def test_tokens_carry_their_positions() -> None:
    tokens = tokenize("lr<=1e-3 and tag.team in ('a')", "--where")
    assert [(t.kind, t.text, t.position) for t in tokens[:4]] == [
        ("field", "lr", 1),
        ("op", "<=", 3),
        ("number", "1e-3", 5),
        ("keyword", "and", 10),
    ]


def test_fields_resolve_by_kind() -> None:
    assert lookup_field("lr").source == "param" and lookup_field("lr").kind == "number"
    assert lookup_field("hidden").kind == "integer"
    assert lookup_field("model").source == "column"
    assert lookup_field("device").source == "param"  # the device asked for, as submitted
    assert lookup_field("tag.team").key == "team"
    assert lookup_field("tag.'a b'").key == "a b"
    assert lookup_field("val_loss_t[3]").split == "val" and lookup_field("val_loss_t[3]").key == 3
    assert lookup_field("status").kind == "text" and lookup_field("created_at").kind == "time"
    assert lookup_field("nothing") is None


def test_sort_and_group_by_take_the_same_fields() -> None:
    assert parse_sort("final_val_loss")[1] is False
    field, descending = parse_sort("val_loss_t[2]:desc")
    assert field.name == "val_loss_t[2]" and descending
    assert parse_sort("tag.team:asc")[0].key == "team"
    assert [f.name for f in parse_fields("model, hidden,tag.team", "--group-by")] == [
        "model",
        "hidden",
        "tag.team",
    ]
    for bad, message in (
        ("lr;1", "unexpected ';' at position 3"),
        ("lr:sideways", "unexpected ':' at position 3"),
    ):
        with pytest.raises(InputError, match=message):
            parse_sort(bad)
    for bad in ("", "model,,hidden", "model,model"):
        with pytest.raises(InputError, match="--group-by"):
            parse_fields(bad, "--group-by")


HOSTILE = [
    "lr < 1; DROP TABLE runs",
    "1=1 OR 1=1",
    "lr < 1 OR 1=1",
    "lr < 1 --",
    "experiment = '' OR 1=1 --'",
    "experiment = 'x'); DROP TABLE runs; --'",
    "tag.team = 'a'' OR ''1''=''1'",
    'tag."x""; DROP TABLE runs; --" = \'a\'',
    "lr < 1 UNION SELECT * FROM runs",
    "status = 'a' || 'b'",
    "lr < 1 /* comment */",
    "lr < 1 \x00 DROP TABLE runs",
    "tag.team = '" + "A" * 10_240 + "'",
    "experiment = '" + "'; DROP TABLE runs; --" * 500 + "'",
    "x" * 10_240,
    "(" * 10_240,
    "lr in (" + ",".join(["1"] * 5_000) + ")",
]


@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_text_never_becomes_sql(text: str) -> None:
    """Whatever parses is bound parameters: no user text appears in the SQL string."""
    try:
        condition = parse_where(text)
    except InputError as exc:
        assert "\n" not in str(exc)
        return
    for dialect in (sqlite.dialect(), postgresql.dialect()):
        sql = str(select(1).where(condition).compile(dialect=dialect))
        assert "DROP" not in sql and "--" not in sql and "AAAA" not in sql and "UNION" not in sql


def _table_state(engine) -> dict[str, int]:  # noqa: ANN001
    with engine.connect() as connection:
        names = sorted(inspect(connection).get_table_names())
        return {
            name: connection.execute(
                select(func.count()).select_from(Base.metadata.tables[name])
            ).scalar_one()
            for name in names
            if name in Base.metadata.tables
        }


def test_hostile_filters_change_no_table(engine) -> None:  # noqa: ANN001
    run = new_run(engine, lr=0.1)
    attempt = claim(engine, run.id)
    record_epoch(engine, run.id, attempt, 1, {"train": Split(1.0, [1.0]), "val": Split(2, [2])})
    before = _table_state(engine)
    for text in HOSTILE:
        try:
            found = list_runs(engine, where=text)
        except InputError:
            continue
        assert [r.id for r in found] in ([], [run.id])
        with pytest.raises(InputError):
            list_runs(engine, where="lr < 1", sort=text)
    assert _table_state(engine) == before
    # Text that looks like SQL is only ever a value: it matches nothing, and breaks nothing.
    assert list_runs(engine, where="experiment = 'exp\\' OR 1=1'") == []
    assert list_runs(engine, where="tag.team = 'a\\' OR \\'1\\'=\\'1'") == []


def _run(engine, spec: dict, tags: dict[str, str], val: list[float] | None = None) -> int:  # noqa: ANN001
    """A run of `spec` with `tags`; with `val`, one recorded epoch whose val L_t are `val`."""
    from models.spec import spec_from_dict
    from service.store import NewRun, create_run

    valid = spec_from_dict(spec)
    run = create_run(engine, valid.to_dict(), valid.params(), NewRun("exp", "cpu", tags=tags))
    if val is not None:
        attempt = claim(engine, run.id)
        record_epoch(
            engine, run.id, attempt, 1, {"train": Split(sum(val), val), "val": Split(sum(val), val)}
        )
    return run.id


@pytest.fixture
def gappy_runs(engine) -> dict[str, int]:  # noqa: ANN001
    """Runs that each lack something: a tag, a timestep, a finite loss, any losses at all."""
    rnn = {"task": "translation", "model": "rnn"}
    return {
        "full": _run(engine, {**rnn, "cell": "gru"}, {"team": "a", "x": "10"}, [0.1, 0.2, 0.3]),
        "lstm": _run(engine, {**rnn, "cell": "lstm", "lr": 0.01}, {"team": "b"}, [0.3, 0.1]),
        "untagged": _run(engine, rnn, {}, [0.2, 0.4, 0.1]),
        "nan": _run(engine, rnn, {"x": "abc"}, [0.1, float("nan")]),
        "one_step": _run(engine, {"task": "binary", "model": "rnn"}, {"team": "a"}, [0.4]),
        "queued": _run(engine, {**rnn, "lr": 0.01}, {"x": "9.5"}),
        "mlp": _run(engine, {"task": "binary", "model": "mlp"}, {"team": "b"}, [0.3]),
    }


# An atom and the runs that lack its value (neither it nor its negation may match them).
ATOMS = {
    "tag.team = 'a'": {"untagged", "nan", "queued"},
    "tag.team != 'a'": {"untagged", "nan", "queued"},
    "tag.team in ('a', 'b')": {"untagged", "nan", "queued"},
    "tag.team not in ('b')": {"untagged", "nan", "queued"},
    "tag.x < 9.7": {"lstm", "untagged", "one_step", "nan", "mlp"},  # abc is not a number
    "tag.x >= 'a'": {"lstm", "untagged", "one_step", "mlp"},
    "cell = 'gru'": {"mlp"},  # a hyperparameter that does not apply
    "cell not in ('lstm', 'rnn')": {"mlp"},
    "activation != 'relu'": {"full", "lstm", "untagged", "nan", "one_step", "queued"},
    "val_loss_t[2] < 0.3": {"nan", "one_step", "queued", "mlp"},
    "val_loss_t[2] != 0.2": {"nan", "one_step", "queued", "mlp"},
    "val_loss_t[2] not in (0.1, 0.4)": {"nan", "one_step", "queued", "mlp"},
    "final_val_loss <= 0.6": {"nan", "queued"},
    "worker = 'host'": {"queued"},
    "lr > 0.05": set(),
}


def _matches(engine, where: str, runs: dict[str, int]) -> set[str]:  # noqa: ANN001
    found = {r.id for r in list_runs(engine, where=where, limit=None)}
    return {name for name, run_id in runs.items() if run_id in found}


def _kleene(op: str, a: bool | None, b: bool | None) -> bool | None:
    if op == "and":
        return False if False in (a, b) else None if None in (a, b) else True
    return True if True in (a, b) else None if None in (a, b) else False


def test_missing_values_are_unknown_and_not_never_agrees_with_its_operand(
    engine,  # noqa: ANN001
    gappy_runs: dict[str, int],
) -> None:
    truth: dict[str, dict[str, bool | None]] = {}
    for atom, lacking in ATOMS.items():
        yes, no = _matches(engine, atom, gappy_runs), _matches(engine, f"not ({atom})", gappy_runs)
        assert not yes & no, atom
        assert not lacking & (yes | no), f"{atom}: a run without the value matched"
        assert yes | no | lacking == set(gappy_runs), atom
        truth[atom] = {
            name: True if name in yes else False if name in no else None for name in gappy_runs
        }
    assert truth["tag.team != 'a'"]["lstm"] and truth["tag.team = 'a'"]["full"]
    assert truth["tag.x < 9.7"]["queued"] and truth["tag.x < 9.7"]["full"] is False
    # Combinations follow Kleene's tables, atom by atom.
    atoms = list(ATOMS)
    for left, right in zip(atoms, atoms[3:] + atoms[:3], strict=True):
        for op in ("and", "or"):
            expression = f"({left}) {op} ({right})"
            yes = _matches(engine, expression, gappy_runs)
            no = _matches(engine, f"not ({expression})", gappy_runs)
            for name in gappy_runs:
                expected = _kleene(op, truth[left][name], truth[right][name])
                assert (name in yes, name in no) == (expected is True, expected is False), (
                    expression,
                    name,
                )


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("tag.x < 9", {"5"}),
        ("tag.x < 9.7", {"5", "9.5"}),
        ("tag.x = 5.0", {"5"}),
        ("tag.x = 10", {"10", "1e1"}),
        ("tag.x > 1e300", {"1e999"}),
        ("tag.x in (5, 10)", {"5", "10", "1e1"}),
        ("tag.x in (5, 'abc')", {"5", "abc"}),
        ("not tag.x < 9", {"10", "9.5", "1e1", "1e999"}),  # abc and 10abc are not numbers
        ("tag.x = '5'", {"5"}),  # quoted: compared as text
        ("tag.x = '5.0'", set()),
        ("tag.x < '9'", {"10", "1e1", "1e999", "10abc", "5", ""}),
    ],
)
def test_a_tag_compares_as_a_number_with_a_number(engine, where: str, expected: set[str]) -> None:  # noqa: ANN001
    values = ["10", "9.5", "5", "abc", "10abc", "1e1", "1e999", ""]
    runs = {v: _run(engine, {"task": "binary", "model": "mlp"}, {"x": v}) for v in values}
    assert _matches(engine, where, runs) == expected


def test_loss_and_metric_probes_are_tested_before_param_and_tag_probes() -> None:
    """The conjunct that rules out the runs lacking a row goes first, whatever the order typed."""

    def sql(where: str) -> str:
        return str(parse_where(where).compile(dialect=sqlite.dialect()))

    both = sql("(hidden >= 64 or tag.team = 'b') and val_loss_t[3] < 0.2")
    assert both == sql("val_loss_t[3] < 0.2 and (hidden >= 64 or tag.team = 'b')")
    assert both.index("FROM losses") < both.index("FROM run_params") < both.index("FROM run_tags")
    mixed = sql("tag.team = 'b' and val_exact_match > 0.5 and lr < 0.1 and status = 'succeeded'")
    assert mixed.startswith("runs.status = ?")
    assert mixed.index("FROM metrics") < mixed.index("FROM run_params")
