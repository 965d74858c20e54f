"""Small hand-written inputs for the bad-input suites, with canary values that must never come out."""

from __future__ import annotations

import datetime as dt
import random
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

CANARY_PATIENT = "HOSP-CANARY-4711"
CANARY_NOTE = "canary free text Jeanne Canary-Dupont"
CANARY_PASSWORD = "pw-CANARY-9q7z"
PERSONS = 60
VISITS_EACH = 5


CONDITIONS = (201826, 320128, 4329847, 255573, 317576, 432867, 80180, 313217, 436659, 257012)
_CONCEPTS = [
    (8507, "MALE", "Gender", "Gender", "Gender", "M"),
    (8532, "FEMALE", "Gender", "Gender", "Gender", "F"),
    (9201, "Inpatient Visit", "Visit", "Visit", "Visit", "IP"),
    (9202, "Outpatient Visit", "Visit", "Visit", "Visit", "OP"),
    (9203, "Emergency Room Visit", "Visit", "Visit", "Visit", "ER"),
    (32817, "EHR", "Type Concept", "Type Concept", "Type Concept", "OMOP4976890"),
    *((c, f"condition {c}", "Condition", "SNOMED", "Clinical Finding", str(100000 + c)) for c in CONDITIONS),
]


def write_omop_csv(folder: Path, persons: int = 40, seed: int = 7) -> Path:
    """An OMOP CSV folder of varied persons (seeded), with a hospital id in person_source_value and free text
    in visit/condition source values and a note: the canaries no output may carry."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    person = [
        "person_id,gender_concept_id,year_of_birth,month_of_birth,day_of_birth,race_concept_id,"
        "ethnicity_concept_id,person_source_value,gender_source_value"
    ]
    period = [
        "observation_period_id,person_id,observation_period_start_date,observation_period_end_date,"
        "period_type_concept_id"
    ]
    visit = [
        "visit_occurrence_id,person_id,visit_concept_id,visit_start_date,visit_end_date,visit_type_concept_id,"
        "visit_source_value"
    ]
    cond = [
        "condition_occurrence_id,person_id,condition_concept_id,condition_start_date,condition_type_concept_id,"
        "condition_source_value,visit_occurrence_id"
    ]
    vid = cid = 0
    for i in range(1, persons + 1):
        male = rng.random() < 0.5
        person.append(
            f"{i},{8507 if male else 8532},{rng.randint(1935, 2000)},{rng.randint(1, 12)},{rng.randint(1, 28)},"
            f"0,0,{CANARY_PATIENT}-{i},{'M' if male else 'F'}"
        )
        period.append(f"{i},{i},2010-01-01,2020-12-31,32817")
        day = dt.date(2010, 2, 1)
        for _ in range(rng.randint(1, 6)):
            day += dt.timedelta(days=rng.randint(5, 500))
            if day > dt.date(2020, 12, 1):
                break
            vid += 1
            end = day + dt.timedelta(days=rng.choice((0, 0, 0, 1, 3)))
            kind = rng.choice((9202, 9202, 9202, 9201, 9203))
            visit.append(f"{vid},{i},{kind},{day},{end},32817,{CANARY_NOTE}")
            for _ in range(rng.randint(0, 3)):
                cid += 1
                cond.append(f"{cid},{i},{rng.choice(CONDITIONS)},{day},32817,{CANARY_NOTE},{vid}")
    concept = [
        "concept_id,concept_name,domain_id,vocabulary_id,concept_class_id,standard_concept,concept_code,"
        "valid_start_date,valid_end_date,invalid_reason"
    ]
    concept += [f"{c},{n},{d},{v},{k},S,{code},1970-01-01,2099-12-31," for c, n, d, v, k, code in _CONCEPTS]
    (folder / "person.csv").write_text("\n".join(person) + "\n")
    (folder / "observation_period.csv").write_text("\n".join(period) + "\n")
    (folder / "visit_occurrence.csv").write_text("\n".join(visit) + "\n")
    (folder / "condition_occurrence.csv").write_text("\n".join(cond) + "\n")
    (folder / "concept.csv").write_text("\n".join(concept) + "\n")
    (folder / "note.csv").write_text(f"note_id,person_id,note_text\n1,1,{CANARY_NOTE}\n")
    return folder


def leftovers(folder: Path) -> list[str]:
    """Temporary or partial files left in ``folder``."""
    return sorted(p.name for p in folder.rglob("*") if ".partial" in p.name or p.name.endswith((".wal", ".tmp")))


def leave_unsaved_log(path: Path) -> None:
    """Leave the DuckDB file ``path`` with a write-ahead log of 150,000 rows (6 MB) in table NOTES, as a writer
    killed before its checkpoint does: opening the file replays the log in memory, a checkpoint writes it out."""
    killed = (
        f"import duckdb, os; c = duckdb.connect({str(path)!r}); c.execute('CREATE TABLE notes (i BIGINT, t VARCHAR)'); "
        "[c.execute(f'INSERT INTO notes SELECT range, md5(range::VARCHAR) FROM range({k}000, {k + 1}000)') "
        "for k in range(150)]; os._exit(0)"
    )
    subprocess.run([sys.executable, "-c", killed], check=True)
    assert Path(f"{path}.wal").stat().st_size > 4_000_000


def fill_pg(url: str, schema: str) -> None:
    """A small CDM v5.4 source with identifiers and free text in the columns the tool must never read."""
    engine = sa.create_engine(url)
    q = f'"{schema}"'
    with engine.begin() as con:
        ddl = [
            f"CREATE TABLE {q}.person (person_id BIGINT PRIMARY KEY, gender_concept_id INT, year_of_birth INT, "
            "month_of_birth INT, day_of_birth INT, birth_datetime TIMESTAMP, race_concept_id INT, "
            "ethnicity_concept_id INT, location_id BIGINT, person_source_value VARCHAR(50), "
            "gender_source_value VARCHAR(50))",
            f"CREATE TABLE {q}.observation_period (observation_period_id BIGINT PRIMARY KEY, person_id BIGINT, "
            "observation_period_start_date DATE, observation_period_end_date DATE, period_type_concept_id INT)",
            f"CREATE TABLE {q}.visit_occurrence (visit_occurrence_id BIGINT PRIMARY KEY, person_id BIGINT, "
            "visit_concept_id INT, visit_start_date DATE, visit_end_date DATE, visit_type_concept_id INT, "
            "visit_source_value VARCHAR(50))",
            f"CREATE TABLE {q}.note (note_id BIGINT, person_id BIGINT, note_text TEXT)",
            f"CREATE TABLE {q}.location (location_id BIGINT, address_1 VARCHAR(50), city VARCHAR(50))",
            f"CREATE TABLE {q}.concept (concept_id INT, concept_name VARCHAR(255), domain_id VARCHAR(20), "
            "vocabulary_id VARCHAR(20), concept_class_id VARCHAR(20), standard_concept VARCHAR(1), "
            "concept_code VARCHAR(50), valid_start_date DATE, valid_end_date DATE, invalid_reason VARCHAR(1))",
        ]
        for statement in ddl:
            con.execute(sa.text(statement))
        con.execute(
            sa.text(f"INSERT INTO {q}.person VALUES (:i, :g, :y, 3, 4, NULL, 0, 0, 1, :sv, 'x')"),
            [
                {"i": i, "g": 8507 if i % 2 else 8532, "y": 1950 + i % 40, "sv": f"{CANARY_PATIENT}-{i}"}
                for i in range(1, PERSONS + 1)
            ],
        )
        con.execute(
            sa.text(f"INSERT INTO {q}.observation_period VALUES (:i, :i, '2010-01-01', '2020-12-31', 32817)"),
            [{"i": i} for i in range(1, PERSONS + 1)],
        )
        con.execute(
            sa.text(f"INSERT INTO {q}.visit_occurrence VALUES (:v, :p, 9202, '2015-03-01', '2015-03-02', 32817, :t)"),
            [
                {"v": p * 100 + k, "p": p, "t": CANARY_NOTE[:50]}
                for p in range(1, PERSONS + 1)
                for k in range(VISITS_EACH)
            ],
        )
        con.execute(sa.text(f"INSERT INTO {q}.note VALUES (1, 1, :t)"), {"t": CANARY_NOTE})
        con.execute(sa.text(f"INSERT INTO {q}.location VALUES (1, :t, 'Canaryville')"), {"t": CANARY_NOTE[:50]})
        con.execute(
            sa.text(
                f"INSERT INTO {q}.concept VALUES (8507, 'MALE', 'Gender', 'Gender', 'Gender', 'S', 'M', "
                "'1970-01-01', '2099-12-31', NULL), (8532, 'FEMALE', 'Gender', 'Gender', 'Gender', 'S', 'F', "
                "'1970-01-01', '2099-12-31', NULL), (9202, 'Outpatient Visit', 'Visit', 'Visit', 'Visit', 'S', "
                "'OP', '1970-01-01', '2099-12-31', NULL)"
            )
        )
    engine.dispose()
