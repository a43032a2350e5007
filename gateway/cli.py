"""The ``archwatch`` command line."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from gateway import __version__
from gateway.configfile import ConfigError, load_model, read_yaml
from gateway.logs import setup_logging
from gateway.settings import Settings, load_settings
from grafana.cli import grafana_group

if TYPE_CHECKING:
    from gateway.statedb import StateDB

DATA_DIR_HELP = (
    "Folder for the spool, embedded store, state database and key (env ARCHWATCH_DATA_DIR)."
)


def _settings(data_dir: Path | None, settings_file: Path | None, **extra: Any) -> Settings:
    try:
        return load_settings(settings_file, data_dir=data_dir, **extra)
    except ConfigError as exc:
        _fail(exc)


def _fail(exc: ConfigError) -> NoReturn:
    for line in exc.problems:
        click.echo(f"error: {line}", err=True)
    sys.exit(1)


class _StartError(Exception):
    """A start-up failure shown as one line; URLs in its message lose their passwords."""

    def __init__(self, cause: Exception) -> None:
        from gateway.logs import redact

        text = " ".join(str(cause).split()) or type(cause).__name__
        super().__init__(redact(text))


data_dir_option = click.option(
    "--data-dir", type=click.Path(path_type=Path, file_okay=False), default=None, help=DATA_DIR_HELP
)
settings_option = click.option(
    "--settings",
    "settings_file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="Settings file (YAML); default: archwatch.yaml in the data directory if present.",
)
log_level_option = click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default="INFO",
    show_default=True,
)


@click.group()
@click.version_option(__version__, prog_name="archwatch")
def main() -> None:
    """archwatch: monitoring and security for archive repository buildings (档案馆库房)."""


def _summarise_site(path: Path) -> list[str]:
    from gateway.site import ModbusDevice, load_site

    site = load_site(path)
    lines = [f"site {site.id} ({site.model.site.name}), timezone {site.model.site.timezone}"]
    today = date.today()
    for building in site.model.buildings:
        lines.append(f"  building {building.id} ({building.name})")
        for dev in building.outdoor:
            lines.append(
                f"    outdoor device {dev.id} [{dev.protocol}] {len(dev.sensors)} sensor(s)"
            )
        for room in building.rooms:
            prof = site.standards.get(room.storage_class)
            lines.append(
                f"    room {room.id} ({room.name}) class {room.storage_class}: "
                f"{prof.temperature.min:g}-{prof.temperature.max:g} °C, "
                f"{prof.humidity.min:g}-{prof.humidity.max:g} %RH, 24 h swing ≤ "
                f"{prof.fluctuation.allowed_span('temperature'):g} °C / "
                f"{prof.fluctuation.allowed_span('humidity'):g} %RH ({prof.fluctuation.mode})"
            )
            for dev in room.devices:
                where = (
                    f"{dev.line} unit {dev.unit_id} profile {dev.profile}"
                    if isinstance(dev, ModbusDevice)
                    else f"topic {dev.topic or '(per sensor)'}"
                )
                lines.append(f"      device {dev.id} [{dev.protocol}] {where}")
                for s in dev.sensors:
                    ref = site.sensor(s.id)
                    cal = ""
                    if s.calibration:
                        due = s.calibration.due
                        cal = f", calibration due {due}" + (" (OVERDUE)" if due < today else "")
                    lines.append(f"        sensor {s.id} {ref.kind}{cal}")
    if site.model.rules:
        from alerting.rules import summarise_rules

        rules_path = site.relative(site.model.rules)
        lines.append(f"rules {rules_path.name}:")
        lines.extend(f"  {line}" for line in summarise_rules(rules_path, site))
    if site.model.contacts:
        from alerting.contacts import load_contacts

        contacts = load_contacts(site.relative(site.model.contacts))
        lines.append(f"contacts {site.model.contacts}: {len(contacts.all())} contact(s)")
        if contacts.model.escalation is not None:
            lines.extend(f"  {line}" for line in contacts.model.escalation.describe())
    n_dev = sum(1 for _ in site.placements())
    lines.append(f"ok: {n_dev} devices, {len(site.sensors())} sensors")
    return lines


@main.command("check-config")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False))
def check_config(files: tuple[Path, ...]) -> None:
    """Validate site files, device profiles or standards profiles; print a summary.

    Exits 1 with file, line and field of every problem.
    """
    from collectors.modbus_profile import DeviceProfile
    from gateway.standards import StandardsProfile

    failed = False
    for path in files:
        try:
            data, _ = read_yaml(path)
            if isinstance(data, dict) and "points" in data:
                profile = load_model(path, DeviceProfile)
                click.echo(f"{path}: device profile {profile.id}: {len(profile.points)} points")
            elif isinstance(data, dict) and "fluctuation" in data:
                std = load_model(path, StandardsProfile)
                click.echo(f"{path}: standards profile {std.id}")
            else:
                click.echo(f"{path}:")
                for line in _summarise_site(path):
                    click.echo(f"  {line}")
        except ConfigError as exc:
            failed = True
            for line in exc.problems:
                click.echo(f"error: {line}", err=True)
    sys.exit(1 if failed else 0)


@main.command()
@click.argument("site_file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@data_dir_option
@settings_option
@log_level_option
def run(site_file: Path, data_dir: Path | None, settings_file: Path | None, log_level: str) -> None:
    """Run the gateway for SITE_FILE until interrupted."""
    from sqlalchemy.exc import SQLAlchemyError

    from gateway.app import Gateway
    from gateway.single import GatewayLockError
    from gateway.site import load_site
    from gateway.statedb import StateDBError

    setup_logging(log_level)
    settings = _settings(data_dir, settings_file)
    try:
        settings.check_secrets()
        site = load_site(site_file)
    except ConfigError as exc:
        _fail(exc)

    try:
        # The rules and contacts the gateway will load: refuse them here, not as a traceback.
        if site.model.rules:
            from alerting.rules import site_rules

            site_rules(site)
        if site.model.contacts:
            from alerting.contacts import load_contacts

            load_contacts(site.relative(site.model.contacts))
    except ConfigError as exc:
        _fail(exc)
    mqtt = next((p.device for p in site.placements() if p.device.protocol == "mqtt"), None)
    if mqtt is not None and not settings.broker_url:
        click.echo(
            f"error: {site_file}: device '{mqtt.id}' uses MQTT but no broker is set: set "
            "broker_url (ARCHWATCH_BROKER_URL), e.g. mqtt://user:password@host:1883",
            err=True,
        )
        sys.exit(1)

    async def _main() -> None:
        try:
            gateway = Gateway(settings, site)
        except (ValueError, OSError) as exc:
            # Whatever the settings checks above cannot see (a data directory that cannot
            # be created, devices that disagree about their line): one line, not a traceback.
            raise _StartError(exc) from exc
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            try:
                await gateway.start()
            except (GatewayLockError, StateDBError, SQLAlchemyError) as exc:
                # Another gateway on this data directory or state database, or a state
                # database that cannot be reached or migrated: one line, password masked.
                raise _StartError(exc) from exc
            await gateway.serve()

    try:
        asyncio.run(_main())
    except _StartError as exc:
        click.echo(f"error: the gateway cannot start: {exc}", err=True)
        sys.exit(1)
    except GatewayLockError as exc:  # lost while running (see Gateway._watch_lock)
        click.echo(f"error: the gateway stopped: {exc}", err=True)
        sys.exit(1)
    except ConfigError as exc:  # e.g. a damaged signing key, read at start
        _fail(exc)


@main.command()
@click.option(
    "--for",
    "duration",
    type=click.FloatRange(min=1),
    default=None,
    help="Stop after this many seconds and print a JSON summary (default: until Ctrl-C).",
)
@click.option(
    "--site",
    "site_file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="Site file to simulate (default: the shipped demo building).",
)
@click.option("--broker-url", default=None, help="Use this MQTT broker instead of an embedded one.")
@click.option(
    "--api-port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Serve the API and console on this loopback port (default: a free one).",
)
@data_dir_option
@settings_option
@log_level_option
def demo(
    duration: float | None,
    site_file: Path | None,
    broker_url: str | None,
    api_port: int | None,
    data_dir: Path | None,
    settings_file: Path | None,
    log_level: str,
) -> None:
    """Simulate the demo building on loopback and run the whole gateway against it, with the
    API and console on loopback (address and, on first use, an admin password on stderr)."""
    from gateway.demo import run_demo
    from gateway.single import GatewayLockError

    setup_logging("WARNING" if log_level.upper() == "INFO" else log_level)
    # The demo may run with placeholder secrets: it never calls settings.check_secrets().
    settings = _settings(data_dir, settings_file, broker_url=broker_url)
    try:
        summary = asyncio.run(
            run_demo(settings, site_file=site_file, duration=duration, api_port=api_port)
        )
    except ConfigError as exc:
        _fail(exc)
    except GatewayLockError as exc:
        click.echo(f"error: the demo cannot start: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        return
    click.echo(json.dumps(summary, ensure_ascii=False))


@main.command()
@click.argument("site_file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.argument("device_id")
def probe(site_file: Path, device_id: str) -> None:
    """Read a Modbus device of SITE_FILE once: raw registers beside decoded values.

    A wrong byte or word order shows here, at installation. Exits 1 if the device cannot
    be reached.
    """
    import logging

    from collectors.modbus import ProbeError, format_probe
    from collectors.modbus import probe as probe_device
    from gateway.site import ModbusDevice, load_site

    try:
        site = load_site(site_file)
    except ConfigError as exc:
        _fail(exc)
    placement = next((p for p in site.placements() if p.device.id == device_id), None)
    if placement is None or not isinstance(placement.device, ModbusDevice):
        what = "no device" if placement is None else "no Modbus device"
        click.echo(f"error: {site_file}: {what} '{device_id}'", err=True)
        sys.exit(1)
    dev = placement.device
    click.echo(f"device {dev.id} [{dev.protocol}] unit {dev.unit_id}, profile {dev.profile}")
    # pymodbus logs its own "Failed to connect ..." at ERROR, printed raw (no handler is set
    # up here) before the error line below that says the same in archwatch's words.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    try:
        rows = asyncio.run(probe_device(placement, site.profiles))
    except ProbeError as exc:
        click.echo(f"error: device {device_id} cannot be reached: {exc}", err=True)
        sys.exit(1)
    for line in format_probe(rows):
        click.echo(line)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--site",
    "site_file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="The site file the API and console describe (else ARCHWATCH_SITE_FILE).",
)
@click.option(
    "--forwarded-allow-ips",
    envvar="FORWARDED_ALLOW_IPS",
    default=None,
    help=(
        "Comma-separated addresses of reverse proxies whose X-Forwarded-For is believed "
        "(uvicorn's; default 127.0.0.1,::1). The limit on wrong acknowledgement codes "
        "counts the client address this yields."
    ),
)
@data_dir_option
@settings_option
@log_level_option
def api(
    host: str,
    port: int,
    site_file: Path | None,
    forwarded_allow_ips: str | None,
    data_dir: Path | None,
    settings_file: Path | None,
    log_level: str,
) -> None:
    """Serve the API and the console: site, rooms, series, alerts, silences, the audit log,
    users, API keys, the acknowledgement page, health and metrics."""
    import uvicorn
    from sqlalchemy.exc import SQLAlchemyError

    from api.main import create_app
    from gateway.datadir import DataDir
    from gateway.statedb import StateDB, StateDBError

    setup_logging(log_level)
    settings = _settings(data_dir, settings_file, site_file=site_file)
    try:
        settings.check_secrets()
        app = create_app(settings)
        settings.signing_key()  # read at the first request otherwise: refuse a damaged one now
        # Migrated here as well as at start-up, so an unreachable state database is one
        # line rather than uvicorn's traceback (the start-up migration is then a no-op).
        with StateDB(DataDir(settings.data_dir).ensure().state_db_url(settings.state_db_url)) as db:
            db.migrate()
    except ConfigError as exc:
        _fail(exc)
    except (ValueError, OSError, StateDBError, SQLAlchemyError) as exc:
        click.echo(f"error: the API cannot start: {_StartError(exc)}", err=True)
        sys.exit(1)
    # log_config=None keeps archwatch's logging; no access log: paths carry ack tokens.
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        forwarded_allow_ips=forwarded_allow_ips,
    )


@main.group()
def audit() -> None:
    """The hash-chained audit log."""


@audit.command("verify")
@data_dir_option
@settings_option
def audit_verify(data_dir: Path | None, settings_file: Path | None) -> None:
    """Recompute the audit chain; exit 0 if intact, 1 naming the first bad entry."""
    from gateway import audit as audit_log
    from gateway.datadir import DataDir
    from gateway.statedb import StateDB

    settings = _settings(data_dir, settings_file)
    db = StateDB(DataDir(settings.data_dir).ensure().state_db_url(settings.state_db_url))
    db.migrate()
    result = audit_log.verify(db)
    if result.ok:
        click.echo(f"audit log intact: {result.entries} entries")
        sys.exit(0)
    click.echo(f"audit log BROKEN at entry {result.first_bad_seq}: {result.reason}", err=True)
    sys.exit(1)


def _state_db(data_dir: Path | None, settings_file: Path | None) -> StateDB:
    """The configured state database, migrated."""
    from gateway.datadir import DataDir
    from gateway.statedb import StateDB

    settings = _settings(data_dir, settings_file)
    db = StateDB(DataDir(settings.data_dir).ensure().state_db_url(settings.state_db_url))
    db.migrate()
    return db


_ROLE_NAMES = ["keeper", "security", "inspector", "drill_coordinator", "admin"]


@main.group()
def user() -> None:
    """API and console users."""


@user.command("add")
@click.argument("username")
@click.option("--role", "roles", multiple=True, required=True, type=click.Choice(_ROLE_NAMES))
@click.option("--building", "buildings", multiple=True, help="A building a keeper sees.")
@click.option("--display-name", default="", help="Name shown in the console.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@data_dir_option
@settings_option
def user_add(
    username: str,
    roles: tuple[str, ...],
    buildings: tuple[str, ...],
    display_name: str,
    password_stdin: bool,
    data_dir: Path | None,
    settings_file: Path | None,
) -> None:
    """Create a user (the first admin included); there is no default password."""
    import re
    from datetime import UTC, datetime

    from api import accounts
    from api.models import Role
    from api.schemas import USERNAME_PATTERN
    from api.security import PasswordPolicyError, check_password_policy
    from gateway import audit as audit_log

    if not re.match(USERNAME_PATTERN, username):
        raise click.BadParameter("letters, digits and _ . @ - (at most 64)", param_hint="USERNAME")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        check_password_policy(password)
    except PasswordPolicyError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    db = _state_db(data_dir, settings_file)
    try:
        created = accounts.create_user(
            db,
            username=username,
            password=password,
            roles=[Role(r) for r in roles],
            display_name=display_name,
            buildings=buildings,
            now=datetime.now(UTC),
        )
        audit_log.append(
            db,
            actor="cli",
            action="user.create",
            target=f"user:{created.username}",
            detail={"roles": list(created.roles), "buildings": list(created.buildings)},
        )
    except accounts.UsernameTaken as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    finally:
        db.close()
    click.echo(f"created user {created.username} (id {created.id}): {', '.join(created.roles)}")


@main.group()
def apikey() -> None:
    """API keys for machines (Grafana, scripts)."""


@apikey.command("create")
@click.argument("name")
@click.option("--role", "roles", multiple=True, required=True, type=click.Choice(_ROLE_NAMES))
@data_dir_option
@settings_option
def apikey_create(
    name: str, roles: tuple[str, ...], data_dir: Path | None, settings_file: Path | None
) -> None:
    """Create an API key and print it once: it cannot be shown again."""
    import re
    from datetime import UTC, datetime

    from api import accounts
    from api.models import Role
    from gateway import audit as audit_log

    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_. -]{0,63}$", name):
        raise click.BadParameter("letters, digits, space and _ . - (at most 64)", param_hint="NAME")
    db = _state_db(data_dir, settings_file)
    try:
        key, secret = accounts.create_api_key(
            db, name=name, roles=[Role(r) for r in roles], created_by="cli", now=datetime.now(UTC)
        )
        audit_log.append(
            db,
            actor="cli",
            action="apikey.create",
            target=f"apikey:{key.id}",
            detail={"name": key.name, "prefix": key.prefix, "roles": list(key.roles)},
        )
    except ValueError as exc:
        # A role a key may not hold (keeper: keys are not scoped to buildings).
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    finally:
        db.close()
    click.echo(f"created API key {key.name} (id {key.id}): {', '.join(key.roles)}", err=True)
    click.echo("store it now; it is not shown again:", err=True)
    click.echo(secret)


main.add_command(grafana_group)


if __name__ == "__main__":
    main()
