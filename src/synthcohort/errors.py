"""One error tree: each CLI-facing error carries its exit code and a hint saying what to do."""

from __future__ import annotations


class SynthcohortError(Exception):
    """Root of every error the tool raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ConfigError(SynthcohortError):
    """Invalid arguments or configuration, found before any data is touched."""

    exit_code = 2


class InputError(SynthcohortError):
    """The input data cannot be used as it is."""

    exit_code = 3


class CohortTooSmallError(InputError):
    """Too few persons to synthesize or to measure risk."""


class SkipToleranceExceeded(InputError):
    """More records were skipped than the configured tolerance allows."""


class SourceError(SynthcohortError):
    """A source database or file cannot be reached or read."""

    exit_code = 4


class TransientSourceError(SourceError):
    """A fault that may pass (dropped connection); callers may retry a bounded number of times."""


class PermissionDeniedError(SourceError):
    """The database role lacks a privilege it needs."""


class TargetError(SynthcohortError):
    """An output target cannot be written (exists, not empty, outside the chosen folder, full)."""

    exit_code = 5


class ModelError(SynthcohortError):
    """A model directory is missing, corrupt, unsigned, or from another version or schema."""

    exit_code = 6


class GateFailed(SynthcohortError):
    """A privacy or validity gate failed and the risk was not accepted."""

    exit_code = 7


class ValidationFailed(SynthcohortError):
    """An output did not pass validation."""

    exit_code = 8


class DependencyMissing(SynthcohortError):
    """An optional dependency is not installed; the hint gives the pip line."""

    exit_code = 9
