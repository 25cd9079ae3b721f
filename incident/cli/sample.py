"""`incident sample`: synthetic logs with known misdeliveries."""

from __future__ import annotations

from pathlib import Path

import click

from incident.cli.messages import say


@click.command("sample")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Directory to write the synthetic logs to.",
)
@click.option("--deliveries", type=click.IntRange(min=1), default=20_000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--realistic",
    is_flag=True,
    help="Messier evidence: apps moving IP mid-incident, URLs with port and query string, "
    "missing backend hosts (truth unchanged).",
)
def sample_command(out: Path, deliveries: int, seed: int, realistic: bool) -> None:
    """Write synthetic logs with known misdeliveries (truth.parquet) for tests and benchmarks."""
    from incident.sample import generate_sample  # numpy, only for this command

    summary = generate_sample(out, deliveries=deliveries, seed=seed, realistic=realistic)
    say(
        f"wrote {summary.deliveries:,} deliveries, {summary.authorizations:,} authorizations, "
        f"{summary.apps:,} apps and {summary.injected_misdeliveries:,} injected misdeliveries "
        f"to {out}"
    )
