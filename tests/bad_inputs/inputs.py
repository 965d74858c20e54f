"""Small hand-written inputs for the bad-input suites, with canary values that must never come out."""

from __future__ import annotations

from pathlib import Path

CANARY_PATIENT = "HOSP-CANARY-4711"
CANARY_NOTE = "canary free text Jeanne Canary-Dupont"
CANARY_PASSWORD = "pw-CANARY-9q7z"


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
