"""``synthcohort evaluate REAL SYNTH --report report.html``: fidelity, utility, privacy and study evidence."""

from __future__ import annotations

import click


def _concepts(value: str | None) -> list[str] | None:
    if not value:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def _gate_overrides(values: tuple[str, ...]) -> dict[str, float]:
    from synthcohort.errors import ConfigError
    from synthcohort.evaluation.gates import ALL_GATES

    out: dict[str, float] = {}
    for item in values:
        name, sep, number = item.partition("=")
        if not sep or name not in ALL_GATES:
            raise ConfigError(
                f"unknown gate setting {item!r}", f"use NAME=VALUE with NAME one of {', '.join(ALL_GATES)}"
            )
        try:
            out[name] = float(number)
        except ValueError:
            raise ConfigError(f"gate {name}: {number!r} is not a number") from None
    return out


@click.command("evaluate")
@click.argument("real", type=click.Path(dir_okay=False))
@click.argument("synth", type=click.Path(dir_okay=False))
@click.option("--control", type=click.Path(dir_okay=False), help="Held-out real patients never used to fit.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False), help="HTML report to write.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="JSON of every figure to write.")
@click.option("--accept-risk", help="Reason for releasing although a privacy gate failed (written in the report).")
@click.option("--exposure", help="Exposure concept set: comma-separated concept ids.")
@click.option("--outcome", help="Outcome concept set: comma-separated concept ids.")
@click.option("--target", help="Condition concept id to predict for the utility figure.")
@click.option("--gate", "gates", multiple=True, metavar="NAME=VALUE", help="Change a gate threshold (repeatable).")
@click.option("--seed", default=0, show_default=True, help="Seed of the subsampling and the attacks.")
def command(
    real: str,
    synth: str,
    control: str | None,
    report_path: str | None,
    json_path: str | None,
    accept_risk: str | None,
    exposure: str | None,
    outcome: str | None,
    target: str | None,
    gates: tuple[str, ...],
    seed: int,
) -> None:
    """Compare SYNTH with the REAL cohort; exit 7 when a privacy gate fails (unless --accept-risk)."""
    from synthcohort.cli.progress import progress_bar
    from synthcohort.errors import ConfigError, GateFailed
    from synthcohort.evaluation.api import EvaluationConfig, evaluate
    from synthcohort.evaluation.report import write_report

    if not report_path and not json_path:
        raise ConfigError("nothing to write", "give --report report.html and/or --json metrics.json")
    if bool(exposure) != bool(outcome):
        raise ConfigError("--exposure and --outcome go together", "give both concept sets, or neither for the default")
    if accept_risk is not None and not accept_risk.strip():
        raise ConfigError("--accept-risk needs a reason", 'say why, e.g. --accept-risk "internal test data only"')
    config = EvaluationConfig(
        target=target,
        exposure=_concepts(exposure),
        outcome=_concepts(outcome),
        gate_overrides=_gate_overrides(gates),
        accept_risk=accept_risk,
        seed=seed,
    )
    with progress_bar("evaluate", total=5, unit="steps") as bar:
        result = evaluate(real, synth, control, config, progress=lambda step: bar.advance(1, step))
        write_report(result, report_path, json_path)
    for g in result.gates:
        if g.blocking:
            colour = {"pass": "green", "warn": "yellow"}.get(g.status, "red")
            value = "-" if g.value is None else f"{g.value:.3f}"
            click.echo(
                f"  {click.style(g.status.upper().ljust(12), fg=colour)} {g.label}: {value} ({g.op} {g.threshold:g})"
            )
    for path in (report_path, json_path):
        if path:
            click.echo(f"written: {path}")
    if result.failed:
        names = ", ".join(g.name for g in result.failed)
        if accept_risk:
            click.secho(f"privacy gates failed ({names}); risk accepted: {accept_risk}", fg="yellow")
            return
        raise GateFailed(
            f"privacy gates failed: {names}",
            'read the report; release only if the data controller accepts the risk (--accept-risk "reason")',
        )
