"""The ``archwatch`` command as a keeper runs it: exit codes and what it prints."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
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
