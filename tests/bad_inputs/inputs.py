"""Small hand-written inputs for the bad-input suites, with canary values that must never come out."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

CANARY_PATIENT = "HOSP-CANARY-4711"
CANARY_NOTE = "canary free text Jeanne Canary-Dupont"
CANARY_PASSWORD = "pw-CANARY-9q7z"
PERSONS = 60
VISITS_EACH = 5


def write_omop_csv(folder: Path, persons: int = 40) -> Path:
    """An OMOP CSV folder: persons with a hospital id in person_source_value, visits, conditions, a note."""
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
    for i in range(1, persons + 1):
        gender = 8507 if i % 2 else 8532
        person.append(
            f"{i},{gender},{1940 + i % 50},{1 + i % 12},{1 + i % 28},0,0,{CANARY_PATIENT}-{i},{'M' if i % 2 else 'F'}"
        )
        period.append(f"{i},{i},2010-01-01,2020-12-31,32817")
        visit.append(f"{i},{i},9202,2015-0{1 + i % 9}-10,2015-0{1 + i % 9}-10,32817,{CANARY_NOTE}")
        cond.append(f"{i},{i},{201826 if i % 3 else 320128},2015-0{1 + i % 9}-10,32817,{CANARY_NOTE},{i}")
    (folder / "person.csv").write_text("\n".join(person) + "\n")
    (folder / "observation_period.csv").write_text("\n".join(period) + "\n")
    (folder / "visit_occurrence.csv").write_text("\n".join(visit) + "\n")
    (folder / "condition_occurrence.csv").write_text("\n".join(cond) + "\n")
    (folder / "note.csv").write_text(f"note_id,person_id,note_text\n1,1,{CANARY_NOTE}\n")
    return folder


def leftovers(folder: Path) -> list[str]:
    """Temporary or partial files left in ``folder``."""
    return sorted(p.name for p in folder.rglob("*") if ".partial" in p.name or p.name.endswith((".wal", ".tmp")))


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
