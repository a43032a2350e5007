"""``archwatch grafana export`` and ``archwatch grafana sync``."""

from __future__ import annotations

from pathlib import Path

import click


@click.group("grafana")
def grafana_group() -> None:
    """Grafana: provisioning and dashboards generated from the site file."""


@grafana_group.command("export")
@click.argument("out_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option(
    "--site",
    "site_file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="Site file (default: the shipped demo building).",
)
def export(out_dir: Path, site_file: Path | None) -> None:
    """Write provisioning and dashboards for SITE into OUT_DIR."""
    from grafana.export import export_command

    export_command(out_dir, site_file)


@grafana_group.command("sync")
@click.option("--url", envvar="ARCHWATCH_GRAFANA_URL", required=True, help="Grafana base URL.")
@click.option(
    "--site",
    "site_file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="Site file (default: ARCHWATCH_SITE_FILE, else the demo building).",
)
@click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False), default=None)
def sync(url: str, site_file: Path | None, data_dir: Path | None) -> None:
    """Push dashboards and alert annotations to a running Grafana (token:
    ARCHWATCH_GRAFANA_TOKEN)."""
    from grafana.sync import sync_command

    sync_command(url, site_file, data_dir)
