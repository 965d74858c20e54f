"""The run report of a FHIR extraction: every input record accounted for, mapped or skipped by reason."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

# Skip reasons that are choices of the mapping or quarantines of implausible records (as the OMOP
# reader does), not faults of the input file: they never count against the skip tolerance.
# Everything else (parse errors, orphans, wrong versions, ...) does.
BENIGN_REASONS = frozenset(
    {
        "unsupported_type",
        "status_excluded",
        "intent_excluded",
        "deleted",
        "not_resource",
        "operation_outcome",
        "referenced_only",
        "quarantined",
        "quarantined_person",
        "before_birth",
        "after_death",
    }
)

# Records that are not resources of any type (a line that is not JSON, not an object, ...).
NO_TYPE = "(unparsed)"


@dataclass
class RunReport:
    """Counts in, mapped per resource type and per OMOP table, skipped by reason, notes, coverage."""

    read: Counter[str] = field(default_factory=Counter)
    mapped: Counter[str] = field(default_factory=Counter)
    skipped: dict[str, Counter[str]] = field(default_factory=dict)
    rows: Counter[str] = field(default_factory=Counter)
    rows_by_type: dict[str, Counter[str]] = field(default_factory=dict)
    notes: Counter[str] = field(default_factory=Counter)
    coverage: dict[str, dict[str, float]] = field(default_factory=dict)
    server_errors: Counter[str] = field(default_factory=Counter)
    warnings: list[str] = field(default_factory=list)
    files: int = 0
    vocabulary: str | None = None

    def skip(self, resource_type: str, reason: str, n: int = 1) -> None:
        self.skipped.setdefault(resource_type, Counter())[reason] += n

    def unskip(self, resource_type: str, reason: str, n: int = 1) -> None:
        self.skipped[resource_type][reason] -= n
        if not self.skipped[resource_type][reason]:
            del self.skipped[resource_type][reason]

    def warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)

    @property
    def skipped_total(self) -> int:
        return sum(sum(c.values()) for c in self.skipped.values())

    @property
    def faults(self) -> int:
        """Skips that count against the tolerance (parse errors, orphans, wrong versions, ...)."""
        return sum(n for c in self.skipped.values() for reason, n in c.items() if reason not in BENIGN_REASONS)

    def by_reason(self) -> Counter[str]:
        out: Counter[str] = Counter()
        for c in self.skipped.values():
            out.update(c)
        return out

    def balanced(self) -> bool:
        """Every record read is mapped or skipped, per resource type."""
        types = set(self.read) | set(self.skipped) | set(self.mapped)
        return all(self.read[t] == self.mapped[t] + sum(self.skipped.get(t, Counter()).values()) for t in types)

    def to_dict(self) -> dict[str, Any]:
        types = sorted(set(self.read) | set(self.skipped))
        return {
            "files": self.files,
            "vocabulary": self.vocabulary,
            "read": sum(self.read.values()),
            "mapped": sum(self.mapped.values()),
            "skipped": self.skipped_total,
            "faults": self.faults,
            "by_type": {
                t: {
                    "read": self.read[t],
                    "mapped": self.mapped[t],
                    "skipped": dict(sorted(self.skipped.get(t, Counter()).items())),
                    "rows": dict(sorted(self.rows_by_type.get(t, Counter()).items())),
                }
                for t in types
            },
            "rows": dict(self.rows),
            "skipped_by_reason": dict(sorted(self.by_reason().items())),
            "notes": dict(sorted(self.notes.items())),
            "coverage": self.coverage,
            "server_errors": dict(sorted(self.server_errors.items())),
            "warnings": list(self.warnings),
        }
