"""`incident config show`: the resolved configuration, and where each value came from."""

from __future__ import annotations

import json
from typing import Any

import click

from incident.cli.messages import printable
from incident.cli.options import input_options, project_config, scan_options
from incident.settings import ProjectConfig


def _text(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, list):
        return ", ".join(str(item) for item in value)
    return str(value).lower() if isinstance(value, bool) else str(value)


def render(project: ProjectConfig) -> str:
    """One line per setting, `key = value  origin (where)`, control characters escaped."""
    document = project.to_json()
    file, origin = document["config_file"], document["config_file_origin"]
    lines = [f"config file: {file} ({origin})" if file else "config file: none"]
    settings = document["settings"]
    width = max(len(key) for key in settings)
    for key, entry in settings.items():
        where = f" ({entry['where']})" if entry["where"] else ""
        lines.append(f"{key:<{width}} = {_text(entry['value'])}  [{entry['origin']}{where}]")
    return "\n".join(printable(line) for line in lines)


@click.group("config")
def config_group() -> None:
    """The project configuration: incident.toml, INCIDENT_* variables and flags."""


@config_group.command("show")
@input_options
@scan_options
@click.option("--json", "as_json", is_flag=True, help="Print it as JSON.")
@click.pass_context
def show_command(ctx: click.Context, /, as_json: bool, **_: object) -> None:
    """Print the configuration a scan with these flags would use, and where each value came
    from: default, file, environment or flag."""
    project = project_config(ctx)
    if as_json:
        click.echo(json.dumps(project.to_json(), indent=2))
    else:
        click.echo(render(project))
