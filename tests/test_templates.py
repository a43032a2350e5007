"""Message text: a rule whose value is a change says so; the SMS value is still found."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest

from alerting.model import AlertSnapshot, AlertState, Severity
from alerting.notifiers.cloud_sms import _VALUE
from alerting.templates import alert_line


def snapshot(rule_kind: str, value: float) -> AlertSnapshot:
    return AlertSnapshot(
        id="a1",
        fingerprint="f1",
        rule_id=f"{rule_kind}-1",
        rule_kind=rule_kind,
        severity=Severity.WARNING,
        labels={"building": "main", "room": "r101"},
        state=AlertState.FIRING,
        value=value,
        summary="…",
        limit="",
        started_at_ns=1_767_225_600_000_000_000,
    )


@pytest.mark.parametrize(
    ("rule_kind", "language", "label"),
    [
        ("band", "zh", "当前值 61.4"),
        ("threshold", "en", "value 61.4"),
        ("rate_of_change", "zh", "变化量 61.4"),
        ("fluctuation", "zh", "变化量 61.4"),
        ("rate_of_change", "en", "change 61.4"),
    ],
)
def test_the_value_is_named_for_what_it_is(rule_kind: str, language: str, label: str) -> None:
    line = alert_line(
        snapshot(rule_kind, 61.4),
        "firing",
        language=language,
        tz=ZoneInfo("Asia/Shanghai"),
        names={},
        short=True,
    )
    assert label in line
    found = _VALUE.search(line)
    assert found is not None and found.group("value") == "61.4"
