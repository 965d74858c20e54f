"""Load source rows into a cohort store: fresh dense ids, foreign keys remapped, rule breakers quarantined.

The store depends on the source's content only, never on the order its rows arrive in nor on how they are cut into
batches (a database or a multi-threaded scan may deliver them in any order): events are staged for a whole table, then
numbered in the order of their person, start and other values, the source id breaking ties between equal rows.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pyarrow as pa

from synthcohort import cdm
from synthcohort.cohort import CohortStore
from synthcohort.errors import InputError
from synthcohort.keys import keyed_digest
from synthcohort.text import plural

log = logging.getLogger(__name__)

MIN_YEAR_OF_BIRTH = 1850
DEATH_GRACE_DAYS = 60
_PERIOD = ("observation_period_start_date", "observation_period_end_date")


@dataclass
class IngestReport:
    """What came in, what was kept, and what was quarantined (by table and reason)."""

    source_rows: Counter[str] = field(default_factory=Counter)
    loaded: Counter[str] = field(default_factory=Counter)
    quarantined: dict[str, Counter[str]] = field(default_factory=dict)
    notes: dict[str, Counter[str]] = field(default_factory=dict)

    def quarantine(self, table: str, reason: str, n: int) -> None:
        if n:
            self.quarantined.setdefault(table, Counter())[reason] += n

    def note(self, table: str, what: str, n: int) -> None:
        if n:
            self.notes.setdefault(table, Counter())[what] += n

    @property
    def quarantined_total(self) -> int:
        return sum(sum(c.values()) for c in self.quarantined.values())

    def as_dict(self) -> dict[str, object]:
        return {
            "source_rows": dict(self.source_rows),
            "loaded": dict(self.loaded),
            "quarantined": {t: dict(c) for t, c in self.quarantined.items()},
            "notes": {t: dict(c) for t, c in self.notes.items()},
        }


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _by_content(columns: Iterable[str], alias: str = "") -> str:
    """An ORDER BY list of ``columns`` (each once, first place kept): rows it leaves tied are equal in all of them."""
    return ", ".join(alias + _q(c) for c in dict.fromkeys(columns))


class Ingest:
    """Feeds Arrow batches of source rows into a store. Source ids live only in TEMP maps, never in the file."""

    def __init__(self, store: CohortStore, *, today: dt.date | None = None) -> None:
        self.store = store
        self.con = store.con
        self.report = IngestReport()
        # Keyed, not random: the same source gives the same store (reruns are byte-identical), and the
        # order of store ids still says nothing about source ids without this installation's key.
        self._salt = keyed_digest(b"synthcohort: person order")
        self._max_year = (today or dt.date.today()).year
        self._persons_done = False
        self._staged_columns: list[str] = []
        self.con.execute("CREATE TEMP TABLE _pmap (src BIGINT, id BIGINT, birth DATE, death DATE)")
        self.con.execute("CREATE TEMP TABLE _vmap (src BIGINT PRIMARY KEY, id BIGINT)")

    # -- table transactions -------------------------------------------------------
    @contextmanager
    def table(self, name: str) -> Iterator[None]:
        """One table in one store transaction: a failure leaves no row of it (so a reader may retry)."""
        saved = (self.report.source_rows[name], self.report.loaded[name])
        saved_q = Counter(self.report.quarantined.get(name, Counter()))
        saved_n = Counter(self.report.notes.get(name, Counter()))
        self.con.begin()
        try:
            if name == "person":
                self.con.execute("CREATE OR REPLACE TEMP TABLE _src_person AS SELECT * FROM person WHERE false")
                self.con.execute("ALTER TABLE _src_person ADD COLUMN _src BIGINT")
            elif name == "death":
                self.con.execute("CREATE OR REPLACE TEMP TABLE _src_death AS SELECT * FROM death WHERE false")
                self.con.execute("ALTER TABLE _src_death ADD COLUMN _src BIGINT")
            self._staged_columns = []
            yield
            if name == "person":
                self._finish_persons()
            elif name == "death":
                self._finish_deaths()
            else:
                self._number_events(name)
            if name == "observation_period":
                self._merge_overlapping_periods()
            self.con.commit()
        except BaseException:
            self.con.rollback()
            self.report.source_rows[name], self.report.loaded[name] = saved
            self.report.quarantined[name] = saved_q
            self.report.notes[name] = saved_n
            raise

    def add(self, name: str, batch: pa.RecordBatch | pa.Table) -> int:
        """Add one batch of ``name``'s source rows (inside :meth:`table`); returns the rows seen."""
        if batch.num_rows == 0:
            return 0
        if name != "person" and not self._persons_done:
            raise RuntimeError("persons must be loaded before other tables")
        self.report.source_rows[name] += batch.num_rows
        self.con.register("_incoming", batch)
        try:
            if name in ("person", "death"):
                self._stage(name, batch)
            else:
                self._add_events(name, batch)
        finally:
            self.con.unregister("_incoming")
        return batch.num_rows

    def load(self, name: str, batches: Iterable[pa.RecordBatch | pa.Table]) -> int:
        with self.table(name):
            return sum(self.add(name, b) for b in batches)

    # -- persons and deaths ---------------------------------------------------------
    def _stage(self, name: str, batch: pa.RecordBatch | pa.Table) -> None:
        spec = cdm.table(name)
        cols = [c for c in spec.stored_columns if c in batch.schema.names and c != "person_id"]
        select = ", ".join(f"CAST({_q(c)} AS {spec.column(c).duckdb_type})" for c in cols)
        names = ", ".join(_q(c) for c in cols)
        self.con.execute(
            f"INSERT INTO _src_{name} ({names}{', ' if cols else ''}_src) "
            f"SELECT {select}{', ' if cols else ''}CAST(person_id AS BIGINT) FROM _incoming"
        )

    def _count(self, sql: str) -> int:
        rows = self.con.execute(sql).fetchall()
        return int(rows[0][0]) if rows and rows[0][0] is not None else 0

    def _append(self, name: str, select: str) -> None:
        """Every row reaches the store through CohortStore.append, which keeps only storable columns."""
        self.store.append(name, self.con.sql(select))

    def _finish_persons(self) -> None:
        dups = self._count("SELECT count(*) - count(DISTINCT _src) FROM _src_person WHERE _src IS NOT NULL")
        if dups:
            raise InputError(
                f"the source PERSON table has {plural(dups, 'duplicate person_id value')}",
                "fix the duplicates in the source; person_id must be unique",
            )
        missing_id = self._count("SELECT count(*) FROM _src_person WHERE _src IS NULL")
        self.report.quarantine("person", "person_id_missing", missing_id)
        nulls = self._count("SELECT count(*) FROM _src_person WHERE gender_concept_id IS NULL")
        self.report.note("person", "gender_concept_id_null_set_to_0", nulls)
        for col in ("gender_concept_id", "race_concept_id", "ethnicity_concept_id"):
            self.con.execute(f"UPDATE _src_person SET {col} = 0 WHERE {col} IS NULL")
        bad = f"(year_of_birth IS NULL OR year_of_birth < {MIN_YEAR_OF_BIRTH} OR year_of_birth > {self._max_year})"
        self.report.quarantine(
            "person", "year_of_birth_implausible", self._count(f"SELECT count(*) FROM _src_person WHERE {bad}")
        )
        birth = (
            "COALESCE(TRY_CAST(printf('%04d-%02d-%02d', year_of_birth, COALESCE(month_of_birth, 1), "
            "COALESCE(day_of_birth, 1)) AS DATE), make_date(year_of_birth, 1, 1))"
        )
        self.con.execute(
            f"INSERT INTO _pmap SELECT _src, CASE WHEN {bad} THEN NULL "
            f"ELSE row_number() OVER (PARTITION BY {bad} ORDER BY md5(?::VARCHAR || _src::VARCHAR)) END, "
            f"CASE WHEN {bad} THEN NULL ELSE {birth} END, NULL FROM _src_person WHERE _src IS NOT NULL",
            [self._salt],
        )
        cols = [c for c in cdm.table("person").stored_columns if c != "person_id"]
        self._append(
            "person",
            f"SELECT m.id AS person_id, {', '.join('s.' + _q(c) for c in cols)} "
            "FROM _src_person s JOIN _pmap m ON m.src = s._src WHERE m.id IS NOT NULL ORDER BY m.id",
        )
        self.report.loaded["person"] = self._count("SELECT count(*) FROM person")
        self.con.execute("DROP TABLE _src_person")
        self._persons_done = True

    def _finish_deaths(self) -> None:
        death_columns = [c for c in cdm.table("death").stored_columns if c != "person_id"]
        self.con.execute(
            "CREATE OR REPLACE TEMP TABLE _d AS SELECT d.*, m.id AS _pid, m.birth AS _birth, "
            f"row_number() OVER (PARTITION BY d._src ORDER BY {_by_content(['death_date', *death_columns], 'd.')}) "
            "AS _rank, "
            "CASE WHEN m.src IS NULL THEN 'person_missing' WHEN m.id IS NULL THEN 'person_quarantined' "
            "WHEN d.death_date IS NULL THEN 'death_date_missing' WHEN d.death_date < m.birth THEN 'before_birth' "
            "END AS _reason FROM _src_death d LEFT JOIN _pmap m ON m.src = d._src"
        )
        self.con.execute("UPDATE _d SET _reason = 'duplicate_death' WHERE _reason IS NULL AND _rank > 1")
        for reason, n in self.con.execute(
            "SELECT _reason, count(*) FROM _d WHERE _reason IS NOT NULL GROUP BY 1"
        ).fetchall():
            self.report.quarantine("death", reason, n)
        self._append(
            "death",
            f"SELECT _pid AS person_id, {', '.join(_q(c) for c in death_columns)} FROM _d WHERE _reason IS NULL "
            "ORDER BY _pid",
        )
        self.con.execute(
            "UPDATE _pmap SET death = d.death_date FROM (SELECT _src, death_date FROM _d WHERE _reason IS NULL) d "
            "WHERE _pmap.src = d._src"
        )
        self.report.loaded["death"] = self._count("SELECT count(*) FROM death")
        self.con.execute("DROP TABLE _d")
        self.con.execute("DROP TABLE _src_death")

    def _merge_overlapping_periods(self) -> None:
        """Overlapping observation periods of one person become one period (counted), ids dense again."""
        start, end = _PERIOD
        self.con.execute(
            f"CREATE OR REPLACE TEMP TABLE _op AS WITH s AS (SELECT *, CASE WHEN {start} <= max({end}) OVER "
            f"(PARTITION BY person_id ORDER BY {start}, observation_period_id ROWS BETWEEN UNBOUNDED PRECEDING "
            f"AND 1 PRECEDING) THEN 0 ELSE 1 END AS _new FROM observation_period), g AS (SELECT *, sum(_new) OVER "
            f"(PARTITION BY person_id ORDER BY {start}, observation_period_id) AS _island FROM s) "
            f"SELECT person_id, min({start}) AS {start}, max({end}) AS {end}, "
            f"first(period_type_concept_id ORDER BY {start}, observation_period_id) AS period_type_concept_id, "
            "count(*) AS _n "
            "FROM g GROUP BY person_id, _island"
        )
        merged = self._count("SELECT coalesce(sum(_n - 1), 0) FROM _op")
        if merged:
            self.report.quarantine("observation_period", "overlapping_merged", merged)
            self.con.execute("DELETE FROM observation_period")
            self._append(
                "observation_period",
                f"SELECT row_number() OVER (ORDER BY person_id, {start}) AS observation_period_id, person_id, "
                f"{start}, {end}, period_type_concept_id FROM _op",
            )
            self.report.loaded["observation_period"] = self._count("SELECT count(*) FROM observation_period")
        self.con.execute("DROP TABLE _op")

    # -- events -----------------------------------------------------------------------
    def _add_events(self, name: str, batch: pa.RecordBatch | pa.Table) -> None:
        """Stage the batch's rows, each with its store person, store visit and quarantine reason (or NULL)."""
        spec = cdm.table(name)
        pk = spec.primary_key or ""
        if name == "observation_period":
            start, end = _PERIOD
        else:
            _, start, end_or_none = cdm.EVENT_TABLES[name]
            end = end_or_none or ""
        present = set(batch.schema.names)
        if name == "visit_occurrence" and pk not in present:
            raise InputError("the source visit_occurrence table has no visit_occurrence_id column")
        has_visit = "visit_occurrence_id" in present and name != "visit_occurrence"
        reasons = [
            "WHEN p.src IS NULL THEN 'person_missing'",
            "WHEN p.id IS NULL THEN 'person_quarantined'",
            f"WHEN b.{_q(start)} IS NULL THEN 'start_missing'"
            if start in present
            else "WHEN true THEN 'start_missing'",
            f"WHEN CAST(b.{_q(start)} AS DATE) < p.birth THEN 'before_birth'",
            f"WHEN CAST(b.{_q(start)} AS DATE) > p.death + INTERVAL {DEATH_GRACE_DAYS} DAY THEN 'after_death'",
        ]
        if end and end in present:
            reasons.append(f"WHEN CAST(b.{_q(end)} AS DATE) < CAST(b.{_q(start)} AS DATE) THEN 'end_before_start'")
        cols = [c for c in spec.stored_columns if c in present and c not in (pk, "person_id", "visit_occurrence_id")]
        staged = {
            "person_id": "p.id",
            **{c: f"CAST(b.{_q(c)} AS {spec.column(c).duckdb_type})" for c in cols},
            # the source id orders rows equal in all else; it never reaches the store
            "_src": f"CAST(b.{_q(pk)} AS BIGINT)" if pk in present else "CAST(NULL AS BIGINT)",
            "_reason": f"CASE {' '.join(reasons)} END",
        }
        joins = "LEFT JOIN _pmap p ON p.src = CAST(b.person_id AS BIGINT)"
        if has_visit:
            staged["visit_occurrence_id"] = "v.id"
            staged["_vlost"] = "b.visit_occurrence_id IS NOT NULL AND v.id IS NULL"
            joins += " LEFT JOIN _vmap v ON v.src = CAST(b.visit_occurrence_id AS BIGINT)"
        select = ", ".join(f"{v} AS {_q(n)}" for n, v in staged.items())
        if self._staged_columns:
            self.con.execute(f"INSERT INTO _staged BY NAME SELECT {select} FROM _incoming b {joins}")
        else:
            self.con.execute(f"CREATE OR REPLACE TEMP TABLE _staged AS SELECT {select} FROM _incoming b {joins}")
            self._staged_columns = list(staged)

    def _number_events(self, name: str) -> None:
        """Count the staged rows quarantined; give the others their store ids, in the order of person, start and
        every other stored value (the source id last, for rows equal in all of them)."""
        if not self._staged_columns:
            return
        for reason, n in self.con.execute(
            "SELECT _reason, count(*) FROM _staged WHERE _reason IS NOT NULL GROUP BY 1"
        ).fetchall():
            self.report.quarantine(name, reason, n)
        if "_vlost" in self._staged_columns:
            lost = self._count("SELECT count(*) FROM _staged WHERE _reason IS NULL AND _vlost")
            self.report.note(name, "visit_link_dropped", lost)
        pk = cdm.table(name).primary_key or ""
        start = _PERIOD[0] if name == "observation_period" else cdm.EVENT_TABLES[name][1]
        content = [c for c in self._staged_columns if not c.startswith("_")]
        first = ["person_id", start] if start in content else []
        # A table made by ORDER BY holds its rows in that order, and row_number() OVER () numbers a table's rows
        # in their order: cheaper than a window sorting all the columns.
        self.con.execute(
            "CREATE TEMP TABLE _sorted AS SELECT * FROM _staged WHERE _reason IS NULL "
            f"ORDER BY {_by_content([*first, *content])}, _src"
        )
        self.con.execute("DROP TABLE _staged")
        numbered = f"SELECT row_number() OVER () AS {_q(pk)}, * FROM _sorted"
        if name == "visit_occurrence":
            if self._count("SELECT count(*) - count(DISTINCT _src) FROM _sorted"):
                raise InputError("the source visit_occurrence table has duplicate or missing visit_occurrence_id")
            self.con.execute(f"INSERT INTO _vmap SELECT _src, {_q(pk)} FROM ({numbered})")
        self._append(name, numbered)
        self.report.loaded[name] = self._count(f"SELECT count(*) FROM {_q(name)}")
        self.con.execute("DROP TABLE _sorted")
