"""The ORM's partial indexes: the same WHERE on both backends, without importing a dialect."""

from __future__ import annotations

import subprocess
import sys

import pytest
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.schema import CreateIndex

from service.schema import Base


@pytest.mark.parametrize("dialect", [sqlite.dialect(), postgresql.dialect()], ids=["sqlite", "pg"])
def test_partial_indexes_carry_their_where_on_each_backend(dialect) -> None:  # noqa: ANN001
    indexes = {i.name: i for t in Base.metadata.tables.values() for i in t.indexes}
    metrics = str(CreateIndex(indexes["uq_metrics_whole"]).compile(dialect=dialect))
    assert metrics.endswith("(run_id, attempt, epoch, split, name) WHERE timestep IS NULL")
    losses = str(CreateIndex(indexes["uq_losses_total"]).compile(dialect=dialect))
    assert losses.startswith("CREATE UNIQUE INDEX") and losses.endswith("WHERE timestep IS NULL")
    plain = str(CreateIndex(indexes["ix_runs_best_metric"]).compile(dialect=dialect))
    assert "WHERE" not in plain


def test_the_schema_does_not_import_the_postgresql_dialect() -> None:
    probe = "import sys, service.schema; print('sqlalchemy.dialects.postgresql' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr
