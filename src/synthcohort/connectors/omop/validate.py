"""OMOP CDM validity checks (quality bar §1): keys, required fields, foreign keys, clinical plausibility."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from synthcohort import cdm
from synthcohort.cohort import hardened_config, held_by_another_process, out_of_memory
from synthcohort.errors import InputError, SourceError

VALID_GENDERS = (8507, 8532, 8551, 8570, 8521)
MIN_YEAR_OF_BIRTH = 1850
DEATH_GRACE_DAYS = 60
Scalar = Callable[[str], int]


@dataclass(frozen=True)
class Check:
    """One rule on one table (and column), with how many rows break it."""

    rule: str
    table: str
    column: str | None
    violations: int

    @property
    def name(self) -> str:
        return f"{self.rule}:{self.table}{'.' + self.column if self.column else ''}"


@dataclass
class ValidationResult:
    target: str
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.violations == 0 for c in self.checks)

    @property
    def violations(self) -> int:
        return sum(c.violations for c in self.checks)

    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.violations]

    def by_rule(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for c in self.checks:
            out[c.rule] = out.get(c.rule, 0) + c.violations
        return out

    def as_dict(self) -> dict[str, object]:
        return {
            "target": self.target,
            "ok": self.ok,
            "violations": self.violations,
            "failed": {c.name: c.violations for c in self.failed()},
            "checks": len(self.checks),
        }


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class Query:
    """The SQL that counts one check's violations."""

    rule: str
    table: str
    column: str | None
    sql: str

    @property
    def name(self) -> str:
        return Check(self.rule, self.table, self.column, 0).name


class OutOfMemory(Exception):
    """A check's query needed more memory than its connection may use (raised by a scalar function)."""


# Every query is shaped so that what it holds can spill to disk under the 512 MB DuckDB memory limit
# of a store connection (cohort.MEMORY_LIMIT). A grouping that only de-duplicates keys, which is what
# count(DISTINCT ...) and a decorrelated NOT EXISTS build, asks for its hash table in one piece: 128 MB
# (256 MB with one thread) for the 25,000,000 ids of a table of 1,000,000 persons, which fails under
# the limit instead of spilling (DuckDB 2.0). A grouping with a count, and a LEFT JOIN keeping the rows
# that match nothing, count the same and spill.
def check_queries(
    tables: Iterable[str],
    *,
    prefix: str = "",
    expect_cdm_source: bool = True,
    today: dt.date | None = None,
) -> list[Query]:
    """The queries of every check that applies to ``tables``, each returning one integer."""
    present = set(tables)
    t = {name: f"{prefix}{_q(name)}" for name in present}
    queries: list[Query] = []

    def add(rule: str, table: str, column: str | None, sql: str) -> None:
        queries.append(Query(rule, table, column, sql))

    for name in sorted(present):
        spec = cdm.table(name)
        if spec.primary_key:
            pk = _q(spec.primary_key)
            # count(pk) - count(DISTINCT pk): each key present n > 1 times adds n - 1.
            add(
                "primary_key_unique",
                name,
                spec.primary_key,
                f"SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM {t[name]} WHERE {pk} IS NOT NULL "
                f"GROUP BY {pk} HAVING count(*) > 1) d",
            )
        for col in spec.columns:
            if col.required:
                add("required_not_null", name, col.name, f"SELECT count(*) FROM {t[name]} WHERE {_q(col.name)} IS NULL")
            ref = col.references
            if ref and ref[0] in present and (ref[0] != "concept" or name != "concept"):
                # Rows whose value matches no row of the referenced table (each counted once).
                add(
                    "foreign_key_resolves",
                    name,
                    col.name,
                    f"SELECT count(*) FROM {t[name]} x LEFT JOIN {t[ref[0]]} r ON r.{_q(ref[1])} = x.{_q(col.name)} "
                    f"WHERE x.{_q(col.name)} IS NOT NULL AND r.{_q(ref[1])} IS NULL",
                )
    if expect_cdm_source and "cdm_source" in present:
        add(
            "cdm_source_filled",
            "cdm_source",
            None,
            f"SELECT CASE WHEN count(*) = 0 THEN 1 ELSE 0 END FROM {t['cdm_source']}",
        )
    if "person" in present:
        year = (today or dt.date.today()).year
        add(
            "year_of_birth_plausible",
            "person",
            "year_of_birth",
            f"SELECT count(*) FROM {t['person']} WHERE year_of_birth < {MIN_YEAR_OF_BIRTH} OR year_of_birth > {year}",
        )
        genders = ", ".join(map(str, VALID_GENDERS))
        add(
            "gender_valid",
            "person",
            "gender_concept_id",
            f"SELECT count(*) FROM {t['person']} WHERE gender_concept_id NOT IN ({genders})",
        )
        queries.extend(_event_queries(present, t))
    return queries


def check_omop(
    scalar: Scalar,
    tables: Iterable[str],
    *,
    prefix: str = "",
    expect_cdm_source: bool = True,
    today: dt.date | None = None,
) -> list[Check]:
    """Run every check through ``scalar`` (a function returning one integer for a SQL query)."""
    checks: list[Check] = []
    for q in check_queries(tables, prefix=prefix, expect_cdm_source=expect_cdm_source, today=today):
        try:
            violations = int(scalar(q.sql) or 0)
        except OutOfMemory:
            raise SourceError(
                f"the check {q.name} ran out of memory (DuckDB's memory limit)",
                "report it, with the rows per table ('synthcohort info' shows them for a cohort store)",
            ) from None
        checks.append(Check(q.rule, q.table, q.column, violations))
    return checks


def _event_queries(present: set[str], t: dict[str, str]) -> list[Query]:
    birth = (
        "make_date(p.year_of_birth, CASE WHEN p.month_of_birth BETWEEN 1 AND 12 THEN p.month_of_birth ELSE 1 END, "
        "CASE WHEN p.day_of_birth BETWEEN 1 AND 28 THEN p.day_of_birth ELSE 1 END)"
    )
    periods = {"observation_period": ("observation_period_start_date", "observation_period_end_date")}
    events = {name: (start, end) for name, (_, start, end) in cdm.EVENT_TABLES.items()} | periods
    out: list[Query] = []
    for name, (start, end) in events.items():
        if name not in present:
            continue
        s = f"e.{_q(start)}"
        base = f"FROM {t[name]} e JOIN {t['person']} p ON p.person_id = e.person_id"
        out.append(Query("not_before_birth", name, start, f"SELECT count(*) {base} WHERE {s} < {birth}"))
        if "death" in present:
            out.append(
                Query(
                    "not_after_death",
                    name,
                    start,
                    f"SELECT count(*) {base} WHERE {s} > (SELECT min(d.death_date) FROM {t['death']} d "
                    f"WHERE d.person_id = e.person_id) + INTERVAL '{DEATH_GRACE_DAYS} days'",
                )
            )
        if end:
            out.append(
                Query("start_before_end", name, end, f"SELECT count(*) FROM {t[name]} e WHERE e.{_q(end)} < {s}")
            )
        if name != "observation_period" and "observation_period" in present:
            # Events inside none of their person's periods (each counted once, however many periods overlap).
            out.append(
                Query(
                    "inside_observation_period",
                    name,
                    start,
                    f"SELECT count(*) FROM {t[name]} e LEFT JOIN {t['observation_period']} o "
                    f"ON o.person_id = e.person_id AND {s} BETWEEN o.observation_period_start_date "
                    "AND o.observation_period_end_date WHERE o.person_id IS NULL",
                )
            )
    return out


def validate_omop(target: str, *, schema: str | None = None) -> ValidationResult:
    """Validate a DuckDB file (a cohort store or an OMOP database), a CSV/Parquet folder, or a database URL."""
    if "://" in target:
        return _validate_url(target, schema)
    path = Path(target)
    if path.is_dir():
        return _validate_folder(path)
    if path.is_file():
        return _validate_duckdb_file(path, schema or "main")
    raise InputError(f"nothing to validate at {target}", "give a DuckDB file, an OMOP folder or a database URL")


def _duck_scalar(con: object) -> Scalar:
    import duckdb

    def run(sql: str) -> int:
        try:
            rows = con.execute(sql).fetchall()  # type: ignore[attr-defined]
        except duckdb.OutOfMemoryException:
            raise OutOfMemory from None
        row = rows[0] if rows else None
        return int(row[0]) if row and row[0] is not None else 0

    return run


def _validate_duckdb_file(path: Path, schema: str) -> ValidationResult:
    import duckdb

    try:
        con = duckdb.connect(str(path), config=hardened_config(read_only=True))
    except duckdb.Error as exc:
        if said := out_of_memory(exc):
            raise InputError(f"{path.name} cannot be opened ({said.message})", said.hint) from None
        msg = "is locked by another process" if held_by_another_process(exc) else "is not a DuckDB database"
        raise InputError(f"{path.name} {msg}") from None
    try:
        names = {
            r[0]
            for r in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = ?", [schema]
            ).fetchall()
        }
        tables = [n for n in cdm.cdm_tables() if n in names]
        store = "synthcohort_meta" in names
        checks = check_omop(_duck_scalar(con), tables, prefix=f"{_q(schema)}.", expect_cdm_source=not store)
    finally:
        con.close()
    return ValidationResult(str(path), checks)


def _validate_folder(folder: Path) -> ValidationResult:

    from synthcohort.connectors.omop.csv_source import _cast, _delimiter, _reader, find_table_files

    con = _reader(folder)  # may read this folder's files only
    tables = []
    parquet = {p.stem.lower(): p for p in sorted(folder.glob("*.parquet")) if p.stem.lower() in cdm.cdm_tables()}
    for name, path in parquet.items():
        con.execute(f'CREATE TABLE "{name}" AS SELECT * FROM read_parquet(?)', [str(path)])
        tables.append(name)
    for name, path in ({} if parquet else find_table_files(folder)).items():
        spec = cdm.table(name)
        rel = con.read_csv(str(path), header=True, all_varchar=True, sep=_delimiter(path))
        by_name = {c.strip().lower(): c for c in rel.columns}
        cols = ", ".join(
            f'{_cast(c, by_name[c.name])} AS "{c.name}"'
            if c.name in by_name
            else f'CAST(NULL AS {c.duckdb_type}) AS "{c.name}"'
            for c in spec.columns
        )
        con.register(f"_src_{name}", rel)
        con.execute(f'CREATE TABLE "{name}" AS SELECT {cols} FROM _src_{name}')
        tables.append(name)
    if not tables:
        raise InputError(f"no OMOP table found in {folder}")
    try:
        return ValidationResult(str(folder), check_omop(_duck_scalar(con), tables))
    finally:
        con.close()


def _validate_url(url: str, schema: str | None) -> ValidationResult:
    import sqlalchemy as sa

    from synthcohort.connectors.omop.database import Catalogue, classify, make_engine

    engine = make_engine(url)
    try:
        cat = Catalogue.load(engine, "the target database")
        name = cat.schema(schema)
        present = [t for t in cdm.cdm_tables() if cat.table(name, t) == t]
        with engine.connect() as con:

            def run(sql: str) -> int:
                return int(con.execute(sa.text(sql)).scalar() or 0)

            try:
                checks = check_omop(run, present, prefix=f"{_q(name)}.")
            except sa.exc.SQLAlchemyError as exc:
                raise classify(exc, "the target database") from None
        from synthcohort.secrets import display_url

        return ValidationResult(display_url(engine.url), checks)
    finally:
        engine.dispose()
