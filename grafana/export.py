"""``archwatch grafana export``: write the site's dashboards (and provisioning) to a folder.

The output is deterministic (sorted keys, two-space indent, one trailing newline), so the
committed ``grafana/dashboards`` can be regenerated in CI and compared with ``diff -r``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from gateway.configfile import ConfigError
from gateway.resources import demo_site_path
from gateway.site import Site, load_site
from grafana.dashboards import build_dashboards


def dashboard_json(dashboard: dict[str, Any]) -> str:
    """The file text of one dashboard: stable across runs and machines."""
    return json.dumps(dashboard, ensure_ascii=False, indent=2, sort_keys=True) + "\n"


def write_dashboards(out_dir: Path, site: Site) -> list[Path]:
    """Write ``out_dir/dashboards/<uid>.json``; JSON files of dashboards the site no longer
    has (a removed room) are deleted, so the folder always equals the site."""
    folder = out_dir / "dashboards"
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for dashboard in build_dashboards(site):
        path = folder / f"{dashboard['uid']}.json"
        text = dashboard_json(dashboard)
        # Rewrite only on change: keeps mtimes (and Grafana's file watcher) quiet.
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
        written.append(path)
    for stale in sorted(set(folder.glob("*.json")) - set(written)):
        stale.unlink()
    return written


def export_command(out_dir: Path, site_file: Path | None) -> None:
    """Load the site (default: the demo building) and write dashboards and provisioning."""
    path = site_file or demo_site_path()
    try:
        site = load_site(path)
    except ConfigError as exc:
        for line in exc.problems:
            click.echo(f"error: {line}", err=True)
        sys.exit(1)
    dashboards = write_dashboards(out_dir, site)
    others: list[Path] = []
    try:
        # Provisioning (datasources, dashboard provider) belongs to grafana/provisioning.py.
        from grafana.provisioning import write_provisioning
    except ModuleNotFoundError as exc:
        if exc.name != "grafana.provisioning":
            raise
        click.echo("note: grafana/provisioning.py not present: no provisioning written", err=True)
    else:
        others = write_provisioning(out_dir, site)
    panels = sum(
        1
        for f in dashboards
        for panel in json.loads(f.read_text(encoding="utf-8"))["panels"]
        if panel["type"] != "row"
    )
    click.echo(
        f"wrote {len(dashboards)} dashboards ({panels} panels) and {len(others)} provisioning "
        f"files to {out_dir}"
    )
