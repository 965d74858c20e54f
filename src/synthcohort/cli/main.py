"""The ``synthcohort`` command group: lazy command loading, logging set-up, errors to exit codes."""

from __future__ import annotations

import logging
import os
import select
import shlex
import sys
import traceback
from pathlib import Path
from typing import Any, NoReturn

import click

from synthcohort import __version__
from synthcohort.cli.groups import SubcommandGroup
from synthcohort.errors import SourceError, SynthcohortError

# command name -> module under synthcohort.cli that defines a click command called ``command``
COMMANDS: dict[str, str] = {
    "extract": "extract",
    "export": "export",
    "info": "info",
    "validate": "validate",
    "demo": "demo",
    "fit": "fit",
    "generate": "generate",
    "run": "run",
    "evaluate": "evaluate",
}
# files that ``extract fhir`` reads, besides folders
_FHIR_SUFFIXES = (".json", ".ndjson", ".zip", ".tar", ".tar.gz", ".tgz")


class LazyGroup(SubcommandGroup):
    """The root group: a command's module is imported only when that command runs (heavy imports stay out of
    --help), and the errors it raises become messages and exit codes."""

    def meant(self, ctx: click.Context, given: list[str], args: list[str]) -> list[str]:
        """A path typed without its command (``synthcohort ./cohort.duckdb``): the commands that take it. The
        rest of the line is left out: which of them it was meant for cannot be told."""
        return [shlex.join([*command, args[0], *needs]) for command, needs in _uses(args[0])]

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SynthcohortError as exc:
            _user_error(ctx, exc)
        except KeyboardInterrupt:
            click.echo("interrupted: no output was left under a final name", err=True)
            ctx.exit(130)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except BrokenPipeError as exc:
            if _stdout_reader_gone():
                raise  # stdout closed early (``| head``): click stops quietly with code 1
            _internal_fault(ctx, exc)
        except Exception as exc:
            error = _out_of_memory(exc)
            if error is None:
                _internal_fault(ctx, exc)
            _user_error(ctx, error.with_traceback(exc.__traceback__))


def _uses(path: str) -> list[tuple[list[str], list[str]]]:
    """The commands that take ``path``, each with what it needs besides: judged by the path's suffix, else by
    what is there (os.path: a name too long to look up is nothing there); none for other files."""
    name, to_store = path.lower(), ["-o", "COHORT.duckdb"]
    if name.endswith(".duckdb"):
        return [(["info"], []), (["fit"], ["-o", "MODEL"])]
    if name.endswith(".toml"):
        return [(["run"], [])]
    if name.endswith(_FHIR_SUFFIXES):
        return [(["extract", "fhir"], to_store), (["validate", "fhir"], [])]
    if os.path.isdir(path):
        from synthcohort.generator.modelfile import MANIFEST  # only now: it loads numpy

        if os.path.isfile(os.path.join(path, MANIFEST)):
            return [(["generate"], ["-n", "N", "-o", "SYNTH.duckdb"])]
    elif os.path.exists(path) or Path(path).suffix:
        return []
    return [(["extract", "fhir"], to_store), (["extract", "omop"], to_store)]


def _user_error(ctx: click.Context, exc: SynthcohortError) -> NoReturn:
    # Code locations only: a chained low-level cause (a driver error) could quote data or a URL.
    where = "".join(traceback.format_tb(exc.__traceback__))
    logging.getLogger("synthcohort").debug("%s at\n%s", type(exc).__name__, where)
    click.secho(f"error: {exc.message}", fg="red", err=True)
    if exc.hint:
        click.echo(f"  what to do: {exc.hint}", err=True)
    ctx.exit(exc.exit_code)


def _out_of_memory(exc: BaseException) -> SourceError | None:
    """DuckDB's out-of-memory error as a user error, also when it led to the error raised. A DuckDB error
    only exists once DuckDB is loaded (and the module that names it is only imported then)."""
    if "duckdb" not in sys.modules:
        return None
    from synthcohort.cohort import out_of_memory

    said = out_of_memory(exc)
    return SourceError(said.message, said.hint) if said else None


def _internal_fault(ctx: click.Context, exc: Exception) -> NoReturn:
    # An unforeseen fault: its text may quote data, so only its type and code location are shown.
    where = "".join(traceback.format_tb(exc.__traceback__))
    logging.getLogger("synthcohort").debug("unexpected %s at\n%s", type(exc).__name__, where)
    click.secho(f"error: unexpected internal fault ({type(exc).__name__})", fg="red", err=True)
    click.echo("  what to do: run again with -vv --log-file to record where it failed, and report it", err=True)
    ctx.exit(70)


def _stdout_reader_gone() -> bool:
    """Whether stdout is a pipe whose reader has closed it (a broken pipe elsewhere is a fault)."""
    try:
        poll = select.poll()
        poll.register(sys.stdout.fileno(), select.POLLOUT)
        return any(event & select.POLLERR for _, event in poll.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll() on this system, or stdout has no descriptor
        return True


@click.group(cls=LazyGroup, subcommands=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="synthcohort")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors; no progress bars.")
@click.option("--log-file", type=click.Path(dir_okay=False), help="Also write the log to this file.")
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: bool, log_file: str | None) -> None:
    """Synthetic patient cohorts from OMOP CDM and FHIR R4 data, with measured fidelity and risk."""
    # Everything the tool writes (stores, models, exports, logs) is readable by its owner only.
    os.umask(0o077)
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    logging.basicConfig(level=level, handlers=handlers, format="%(levelname)s %(name)s: %(message)s", force=True)
    ctx.ensure_object(dict)
    ctx.obj["quiet"] = quiet


def main() -> None:
    cli(prog_name="synthcohort")
