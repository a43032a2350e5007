"""The ``archwatch`` command as a keeper runs it: exit codes and what it prints."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.cli import main
from tests.servers import REPO


def test_check_config_summarises_the_demo_site() -> None:
    result = CliRunner().invoke(main, ["check-config", str(REPO / "examples" / "site.yaml")])
    assert result.exit_code == 0, result.output
    assert "room r101 (101 纸质档案库) class paper: 14-24 °C, 45-60 %RH" in result.output
    assert "24 h swing ≤ 4 °C / 10 %RH (span)" in result.output
    assert "calibration due 2027-03-01" in result.output
    assert "ok: 5 devices, 9 sensors" in result.output


def test_check_config_validates_device_and_standards_profiles() -> None:
    files = [
        str(REPO / "firmware_configs" / "rs485_th_int16.yaml"),
        str(REPO / "standards" / "paper.yaml"),
    ]
    result = CliRunner().invoke(main, ["check-config", *files])
    assert result.exit_code == 0, result.output
    assert "device profile rs485_th_int16: 2 points" in result.output
    assert "standards profile paper" in result.output


def test_check_config_exits_1_naming_file_line_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "site.yaml"
    text = (REPO / "examples" / "site.yaml").read_text(encoding="utf-8")
    bad.write_text(text.replace("storage_class: paper", "storage_class: papper"), encoding="utf-8")
    line = next(i for i, ln in enumerate(bad.read_text().splitlines(), 1) if "papper" in ln)
    result = CliRunner().invoke(main, ["check-config", str(bad)])
    assert result.exit_code == 1
    assert f"{bad}:{line}: buildings[0].rooms[0].storage_class: unknown storage class" in (
        result.output
    )


def test_check_config_missing_file_exits_1(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["check-config", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 1
    assert "cannot read" in result.output


def test_demo_stores_every_reading_and_later_commands_see_its_data(tmp_path: Path) -> None:
    """The README's first command, shortened: a JSON summary with nothing lost."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCHWATCH_")}
    proc = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "demo", "--for", "8"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["readings_stored"] > 0
    assert summary["readings_lost"] == 0
    assert (
        summary["readings_published"] == summary["readings_stored"] + summary["readings_rejected"]
    )
    assert summary["devices_online"] == summary["devices_total"] == 5
    data = tmp_path / "archwatch-data"
    assert {"spool.sqlite", "store.sqlite", "state.sqlite", "signing.key"} <= {
        p.name for p in data.iterdir()
    }
    with sqlite3.connect(data / "store.sqlite") as db:
        (stored,) = db.execute("SELECT count(*) FROM readings").fetchone()
    assert stored == summary["readings_stored"]
    verify = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "audit", "verify"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert verify.returncode == 0, verify.stderr
    assert "audit log intact: 3 entries" in verify.stdout


@pytest.mark.parametrize("tamper", ["UPDATE", "DELETE"])
def test_audit_verify_exits_1_naming_the_first_bad_entry(tmp_path: Path, tamper: str) -> None:
    from gateway import audit
    from gateway.statedb import StateDB

    data = tmp_path / "d"
    db = StateDB(f"sqlite:///{data / 'state.sqlite'}")
    db.migrate()
    for i in range(3):
        audit.append(db, actor="keeper", action="test", target=f"t{i}")
    db.close()
    with sqlite3.connect(data / "state.sqlite") as raw:
        # A tamperer with file access drops the append-only triggers first.
        for (name,) in raw.execute("SELECT name FROM sqlite_master WHERE type='trigger'"):
            raw.execute(f'DROP TRIGGER "{name}"')
        if tamper == "UPDATE":
            raw.execute("UPDATE audit_log SET actor = 'someone else' WHERE seq = 2")
        else:
            raw.execute("DELETE FROM audit_log WHERE seq = 2")
    result = CliRunner().invoke(main, ["audit", "verify", "--data-dir", str(data)])
    assert result.exit_code == 1
    bad_seq = 2 if tamper == "UPDATE" else 3
    assert f"audit log BROKEN at entry {bad_seq}" in result.output


def test_check_config_and_run_refuse_a_bad_contacts_file(tmp_path: Path) -> None:
    """A mistyped contacts file is found by check-config, and `run` says where, not a traceback."""
    import shutil

    site_dir = tmp_path / "site"
    shutil.copytree(REPO / "examples", site_dir)
    contacts = site_dir / "contacts.yaml"
    text = contacts.read_text(encoding="utf-8")
    contacts.write_text(text.replace("roles: [keeper]", "rolez: [keeper]", 1), encoding="utf-8")
    line = next(i for i, ln in enumerate(contacts.read_text().splitlines(), 1) if "rolez" in ln)
    expected = f"{contacts}:{line}: contacts[0].rolez: unknown key"
    checked = CliRunner().invoke(main, ["check-config", str(site_dir / "site.yaml")])
    assert checked.exit_code == 1
    assert expected in checked.output
    ran = CliRunner().invoke(
        main, ["run", str(site_dir / "site.yaml"), "--data-dir", str(tmp_path / "d")]
    )
    assert ran.exit_code == 1
    assert expected in ran.output
    assert "Traceback" not in ran.output


def _archwatch(
    args: list[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``archwatch`` as a keeper does, in a clean environment (plus ``env``).

    A subprocess with a timeout, not CliRunner: if a refusal regressed, ``run`` and ``api``
    would serve forever and the test must fail rather than hang.
    """
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("ARCHWATCH_")}
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        cwd=cwd,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


SITE = REPO / "examples" / "site.yaml"
BROKER = {"ARCHWATCH_BROKER_URL": "mqtt://gw:Xq7-random-9Lw@127.0.0.1:1"}
COMMANDS = {"run": ["run", str(SITE)], "api": ["api", "--port", "1"]}

# (secret environment, what the error line must say, what it must not print)
PLACEHOLDER_RUNS: list[tuple[str, dict[str, str], str, str]] = [
    (
        "influx-user-password",
        {"ARCHWATCH_INFLUX_TOKEN": "admin:changeme"},
        "the password in influx_token (ARCHWATCH_INFLUX_TOKEN, 'user:password') is a placeholder",
        "changeme",
    ),
    (
        "broker-readme-example",
        {"ARCHWATCH_BROKER_URL": "mqtt://user:pass@127.0.0.1:1883"},
        "the password in broker_url (ARCHWATCH_BROKER_URL) is a placeholder",
        "user:pass@",
    ),
    (
        "demo-variable-does-not-exempt",
        {"ARCHWATCH_INFLUX_TOKEN": "my-super-secret-auth-token", "ARCHWATCH_DEMO": "true"},
        "ARCHWATCH_DEMO: demo is not a setting; run `archwatch demo`",
        "my-super-secret-auth-token",
    ),
]


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize(
    ("env", "says", "hidden"),
    [c[1:] for c in PLACEHOLDER_RUNS],
    ids=[c[0] for c in PLACEHOLDER_RUNS],
)
def test_run_and_api_refuse_placeholder_secrets_in_one_line(
    tmp_path: Path, command: str, env: dict[str, str], says: str, hidden: str
) -> None:
    proc = _archwatch(COMMANDS[command], tmp_path, {**BROKER, **env})
    line = _one_error_line(proc)
    assert says in line
    assert hidden not in proc.stderr + proc.stdout
    assert not (tmp_path / "archwatch-data").exists(), "nothing started"


def test_a_demo_key_in_the_settings_file_is_refused(tmp_path: Path) -> None:
    settings = tmp_path / "prod.yaml"
    settings.write_text("demo: true\ninflux_token: changeme\n", encoding="utf-8")
    line = _one_error_line(_archwatch(["run", str(SITE), "--settings", str(settings)], tmp_path))
    assert line == f"error: {settings}:1: demo: demo is not a setting; run `archwatch demo`"


def test_run_without_a_broker_names_the_setting_and_the_mqtt_device(tmp_path: Path) -> None:
    line = _one_error_line(_archwatch(["run", str(SITE)], tmp_path))
    assert "ARCHWATCH_BROKER_URL" in line and "broker_url" in line
    assert "device 'weather-1' uses MQTT" in line  # the site's first MQTT device


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"ARCHWATCH_BROKER_URL": "http://gw:hunter2@host:1883"}, "must be mqtt or mqtts"),
        ({"ARCHWATCH_BROKER_URL": "mqtt://gw:hunter2@host:70000"}, "port must be a number"),
        ({"ARCHWATCH_STATE_DB_URL": "mysql://u:hunter2@h/x"}, "state_db_url"),
        ({"ARCHWATCH_DATA_DIR": "occupied/data"}, "Not a directory"),
        # An unencoded / ? or # in a password ends the URL's authority early: refused,
        # and the password still masked although the URL no longer parses as having one.
        ({"ARCHWATCH_BROKER_URL": "mqtt://gw:hunter2/x@host:1883"}, "must be percent-encoded"),
        ({"ARCHWATCH_BROKER_URL": "mqtt://gw:hunter2?x@host:1883"}, "must be percent-encoded"),
        ({"ARCHWATCH_INFLUX_URL": "http://u:hunter2#x@host:8086"}, "must be percent-encoded"),
    ],
    ids=[
        "broker-scheme",
        "broker-port",
        "state-db",
        "data-dir-under-a-file",
        "slash-in-password",
        "question-mark-in-password",
        "hash-in-password",
    ],
)
def test_bad_settings_stop_run_and_api_in_one_line(
    tmp_path: Path, command: str, env: dict[str, str], says: str
) -> None:
    (tmp_path / "occupied").write_text("a file, not a folder\n", encoding="utf-8")
    line = _one_error_line(_archwatch(COMMANDS[command], tmp_path, {**BROKER, **env}))
    assert says in line
    assert "hunter2" not in line


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_damaged_signing_key_stops_run_and_api_naming_the_file(
    tmp_path: Path, command: str
) -> None:
    data = tmp_path / "archwatch-data"
    data.mkdir()
    (data / "signing.key").write_text("not hex\n", encoding="ascii")
    line = _one_error_line(_archwatch(COMMANDS[command], tmp_path, BROKER))
    assert line.startswith("error: archwatch-data/signing.key: not a signing key")


def test_a_second_gateway_on_one_data_directory_stops_in_one_line(tmp_path: Path) -> None:
    """Two gateways on one data directory would drain one spool and page everyone twice."""
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("ARCHWATCH_")}
    first = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "run", str(SITE)],
        cwd=tmp_path,
        env={**clean, **BROKER},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lock = tmp_path / "archwatch-data" / "gateway.lock"
        for _ in range(600):  # the first gateway writes its pid once it holds the lock
            if lock.exists() and lock.read_text().strip() == str(first.pid):
                break
            assert first.poll() is None, first.communicate()[1]
            time.sleep(0.1)
        line = _one_error_line(_archwatch(COMMANDS["run"], tmp_path, BROKER))
        assert line.startswith("error: the gateway cannot start: another gateway is running on")
        assert "archwatch-data" in line
        assert first.poll() is None, "the first gateway keeps running"
    finally:
        first.terminate()
        first.wait(timeout=60)


@pytest.mark.parametrize(("command", "who"), [("run", "gateway"), ("api", "API")])
def test_an_unreachable_state_database_stops_run_and_api_in_one_line(
    tmp_path: Path, command: str, who: str
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    url = f"postgresql://archwatch:hunter2@127.0.0.1:{closed}/archwatch"
    env = {**BROKER, "ARCHWATCH_STATE_DB_URL": url}
    line = _one_error_line(_archwatch(COMMANDS[command], tmp_path, env))
    assert line.startswith(f"error: the {who} cannot start: ")
    assert "Connection refused" in line
    assert "hunter2" not in line
