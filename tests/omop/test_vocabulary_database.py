"""FHIR codes resolved against a PostgreSQL vocabulary schema map as they do against the Athena CSV folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from synthcohort.cli.main import cli
from synthcohort.cohort import CohortStore
from synthcohort.connectors.fhir.reader import read_fhir
from synthcohort.connectors.fhir.report import RunReport
from synthcohort.connectors.omop.database_vocabulary import open_vocabulary
from synthcohort.connectors.omop.vocabulary import concept_columns
from synthcohort.errors import ConfigError, InputError
from tests.conftest import PG_URL, shared_path
from tests.omop.conftest import StatementLog

pytestmark = [pytest.mark.postgres, pytest.mark.shared_data]

BUNDLES = 30  # of the 200: enough codes of every vocabulary, a few seconds to read


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bundles")
    for path in sorted(shared_path("data", "synthea-fhir-r4-bundles", "bundles").iterdir())[:BUNDLES]:
        shutil.copy(path, folder / path.name)
    return folder


def _read(bundles: Path, store_path: Path, vocab: str | Path, schema: str | None = None) -> RunReport:
    vocabulary = open_vocabulary(vocab, schema)
    try:
        with CohortStore.building(store_path) as store:
            report = read_fhir(bundles, store, vocabulary=vocabulary)
            store.set_meta("kind", "real")
    finally:
        vocabulary.close()
    return report


def _mapping(path: Path) -> dict[str, list[tuple[object, ...]]]:
    """Concepts per clinical column (with counts), and the concept rows the store holds."""
    with CohortStore.open(path) as store:
        out = {
            f"{table}.{column}": store.con.execute(
                f'SELECT "{column}", count(*) FROM "{table}" GROUP BY 1 ORDER BY 1'
            ).fetchall()
            for table, column in concept_columns()
        }
        out["concept"] = store.con.execute("SELECT * FROM concept ORDER BY concept_id").fetchall()
    return out


def test_database_vocabulary_maps_as_the_csv_folder(
    bundles: Path, eunomia: Path, eunomia_vocabulary_pg: str, tmp_path: Path, statement_log: StatementLog
) -> None:
    from_csv = _read(bundles, tmp_path / "csv.duckdb", eunomia)
    from_pg = _read(bundles, tmp_path / "pg.duckdb", PG_URL, eunomia_vocabulary_pg)
    assert from_pg.coverage == from_csv.coverage
    assert 0.5 < from_pg.coverage["Condition"]["share"] <= 1.0  # codes were mapped, not merely equally unmapped
    assert _mapping(tmp_path / "pg.duckdb") == _mapping(tmp_path / "csv.duckdb")
    assert from_pg.vocabulary == f"postgresql database test, schema {eunomia_vocabulary_pg}"
    # Only the rows the codes need were asked for: every read of the vocabulary is filtered by bound values.
    reads = [s for s in statement_log.statements if f"{eunomia_vocabulary_pg}.concept" in s]
    assert reads and all("WHERE" in s and "ANY (%(" in s for s in reads), reads
    assert any("relationship_id = %(" in s for s in reads)


def test_cli_extract_fhir_with_database_vocabulary(
    bundles: Path, eunomia_vocabulary_pg: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    url = PG_URL.replace("+psycopg", "")
    run = CliRunner().invoke(
        cli,
        ["extract", "fhir", str(bundles), "--vocab", url, "--vocab-schema", eunomia_vocabulary_pg, "-o", "c.duckdb"],
    )
    assert run.exit_code == 0, run.output
    assert "codes mapped to standard concepts: " in run.output and "no --vocab given" not in run.output
    with CohortStore.open(tmp_path / "c.duckdb") as store:
        row = store.con.execute("SELECT count(*) FROM concept WHERE standard_concept = 'S'").fetchone()
    assert row and row[0] > 100


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--vocab", "postgresql://postgres:secret@127.0.0.1:5432/test"], ConfigError.exit_code, "password"),
        (["--vocab", PG_URL, "--vocab-schema", "no_such_schema"], InputError.exit_code, "does not exist"),
        (["--vocab", "{eunomia}", "--vocab-schema", "vocab"], ConfigError.exit_code, "--vocab-schema applies to"),
        (["--vocab-schema", "vocab"], 2, "--vocab-schema goes with --vocab"),
        (["--vocab", "missing-folder"], InputError.exit_code, "there is no vocabulary at missing-folder"),
    ],
)
def test_database_vocabulary_refusals(
    bundles: Path,
    eunomia: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    code: int,
    message: str,
) -> None:
    if "127.0.0.1" in " ".join(args):
        from tests.omop.conftest import pg_engine

        pg_engine().dispose()  # skips when no server answers
    monkeypatch.chdir(tmp_path)
    args = [a.replace("{eunomia}", str(eunomia)) for a in args]
    run = CliRunner().invoke(cli, ["extract", "fhir", str(bundles), *args, "-o", "c.duckdb"])
    assert run.exit_code == code, run.output
    assert message in run.output, run.output
    assert not (tmp_path / "c.duckdb").exists()
    assert "secret" not in run.output


def test_schema_without_vocabulary_refused(bundles: Path, pg_schema: tuple[str, str], tmp_path: Path) -> None:
    url, schema = pg_schema
    with pytest.raises(InputError, match="has no CONCEPT table"):
        open_vocabulary(url, schema)
