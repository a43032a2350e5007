"""``archwatch grafana sync``: push dashboards and alert annotations to a running Grafana.

Uses grafana-client (the maintained successor of the ``grafana-api`` package; 3.11, on
requests, see pyproject.toml), with a service-account token from ``ARCHWATCH_GRAFANA_TOKEN``
sent as ``Authorization: Bearer``.
The calls, in order:

1. ``GET /api/health``: is this Grafana at all (a wrong URL fails here, clearly);
2. ``GET /api/folders/archwatch``, and when it is missing ``POST /api/folders``
   ``{"title": "archwatch", "uid": "archwatch"}`` (a 401 here means a bad token: nothing
   has been written yet);
3. ``POST /api/dashboards/db`` per generated dashboard: ``{"dashboard": ..., "folderUid":
   "archwatch", "overwrite": true, "message": ...}``; the dashboards' uids are stable, so
   this replaces the previous version instead of adding a copy (a dashboard Grafana loaded
   from the provisioned files is refused with 400 and left as it is);
4. per alert (firing, acknowledged or resolved; drills left out), ``GET
   /api/annotations?type=annotation&tags=alert:<id>``, then ``POST /api/annotations`` when
   there is none, ``PUT /api/annotations/<n>`` when it changed (nothing when it did not),
   and ``DELETE /api/annotations/<n>`` for any duplicate. The ``alert:<id>`` tag is the
   annotation's identity, which makes a second sync update rather than duplicate.

An alert is a region annotation from the moment it fired to its resolution (still open:
to now, extended by the next sync), tagged ``archwatch``, ``alert``, ``alert:<id>``,
``severity:<s>``, ``building:<b>``, ``room:<r>``, on the room detail dashboard.

Errors (bad URL, unreachable Grafana, 401/403, anything Grafana refuses) print one line
saying what failed and exit 1; the token never appears in any output.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import click
from grafana_client import GrafanaApi
from grafana_client.client import (
    GrafanaClientError,
    GrafanaException,
    GrafanaServerError,
    GrafanaUnauthorizedError,
)
from sqlalchemy.exc import SQLAlchemyError

from alerting.lifecycle import Alert
from alerting.model import AlertState
from alerting.templates import SEVERITY
from gateway.clock import Clock, SystemClock
from gateway.configfile import ConfigError
from gateway.settings import redact_url
from gateway.site import Site
from grafana.provisioning import FOLDER_TITLE, FOLDER_UID

TOKEN_ENV = "ARCHWATCH_GRAFANA_TOKEN"  # noqa: S105 - a variable name, not a secret
TIMEOUT_S = 10.0
# Annotations for at most this many alerts, newest first: an archive's alert history is
# small (tens a year), so this bound only stops a runaway table from flooding Grafana.
MAX_ALERTS = 10_000
SYNCED_STATES = (AlertState.FIRING, AlertState.ACKNOWLEDGED, AlertState.RESOLVED)
SYNC_MESSAGE = "archwatch grafana sync"
_MS = 1_000_000
STATE_TEXT = {
    AlertState.FIRING: "告警中",
    AlertState.ACKNOWLEDGED: "已确认",
    AlertState.RESOLVED: "已恢复",
}


class SyncError(Exception):
    """A sync step failed; the message says which and why, and holds no secret."""


@dataclass(frozen=True, slots=True)
class AnnotationTarget:
    """Where an alert's annotation is drawn: a dashboard, optionally one panel of it."""

    dashboard_uid: str | None
    panel_id: int | None = None


@dataclass(slots=True)
class SyncReport:
    """What a sync did, for the summary line."""

    folder_uid: str = FOLDER_UID
    folder_created: bool = False
    dashboards: list[str] = field(default_factory=list)
    provisioned: list[str] = field(default_factory=list)
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    duplicates_removed: int = 0
    left_to_events: int = 0

    def summary(self, url: str) -> str:
        folder = "created" if self.folder_created else "exists"
        return (
            f"synced to {redact_url(url)}: folder {self.folder_uid} ({folder}), "
            f"{len(self.dashboards)} dashboards"
            + (
                f" ({len(self.provisioned)} provisioned from files, left as they are)"
                if self.provisioned
                else ""
            )
            + f", alert annotations: {self.created} created, "
            f"{self.updated} updated, {self.unchanged} unchanged"
            + (f", {self.duplicates_removed} duplicates removed" if self.duplicates_removed else "")
            + (
                f", {self.left_to_events} left to the provisioned dashboards' own alert events"
                if self.left_to_events
                else ""
            )
        )


def _event_annotations(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """The dashboard's annotations drawn from the store's alert events (InfluxDB)."""
    from grafana.dashboards import INFLUX_DS_UID

    listed = dashboard.get("annotations", {}).get("list", [])
    return [a for a in listed if (a.get("datasource") or {}).get("uid") == INFLUX_DS_UID]


def events_off(dashboard: dict[str, Any]) -> dict[str, Any]:
    """The dashboard as the sync pushes it: its InfluxDB alert-event annotation switched off
    (still listed, so a viewer can switch it back on), since the sync draws each alert as a
    region annotation of its own and the two together would show every alert twice."""
    events = _event_annotations(dashboard)
    if not events:
        return dashboard
    listed = [
        {**a, "enable": False} if any(a is e for e in events) else a
        for a in dashboard["annotations"]["list"]
    ]
    return {**dashboard, "annotations": {**dashboard["annotations"], "list": listed}}


# --- annotations from alerts ---------------------------------------------------------------


def alert_tags(alert: Alert) -> list[str]:
    """The annotation's tags; ``alert:<id>`` is its identity across syncs."""
    tags = ["archwatch", "alert", f"alert:{alert.id}", f"severity:{alert.severity.value}"]
    for label in ("building", "room"):
        if alert.labels.get(label):
            tags.append(f"{label}:{alert.labels[label]}")
    return tags


def alert_text(alert: Alert) -> str:
    """What the annotation says, in Chinese like every keeper-facing text."""
    severity = SEVERITY["zh"].get(alert.severity.value, alert.severity.value)
    parts = [f"【{severity}】{alert.summary or alert.rule_id}"]
    if alert.value is not None:
        parts.append(f"当前值 {alert.value:g}")
    if alert.limit:
        parts.append(f"限值 {alert.limit}")
    if alert.state is AlertState.ACKNOWLEDGED and alert.acked_by:
        note = f"（{alert.acked_note}）" if alert.acked_note else ""
        parts.append(f"已由 {alert.acked_by} 确认{note}")
    else:
        parts.append(STATE_TEXT.get(alert.state, alert.state.value))
    parts.append(f"规则 {alert.rule_id}")
    return "；".join(parts)


def alert_span_ms(alert: Alert, now_ns: int) -> tuple[int, int]:
    """The region: fired to resolved, or fired to now while the alert is open (ms)."""
    start = alert.fired_at_ns if alert.fired_at_ns is not None else alert.started_at_ns
    if alert.state is AlertState.RESOLVED:
        end = alert.resolved_at_ns or alert.inactive_since_ns or alert.last_active_ns
    else:
        end = now_ns
    return start // _MS, max(start, end) // _MS


def annotation_target(alert: Alert, dashboards: Sequence[dict[str, Any]]) -> AnnotationTarget:
    """The dashboard and panel an alert is drawn on, as the dashboards define it
    (:func:`grafana.dashboards.alert_target`): the room's dashboard, on the state timeline
    for smoke/door/leak/offline alerts; the overview for an alert without a room."""
    from grafana.dashboards import alert_target

    uid, panel = alert_target(alert.labels, alert.rule_kind, dashboards)
    return AnnotationTarget(uid, panel)


# --- the Grafana calls ----------------------------------------------------------------------


def _wanted(alert: Alert, target: AnnotationTarget, now_ns: int) -> dict[str, Any]:
    start, end = alert_span_ms(alert, now_ns)
    return {
        "dashboardUID": target.dashboard_uid,
        "panelId": target.panel_id,
        "time": start,
        "timeEnd": end,
        "tags": alert_tags(alert),
        "text": alert_text(alert),
    }


def _same(existing: dict[str, Any], wanted: dict[str, Any]) -> bool:
    # Grafana need not return tags in the order they were sent.
    return (
        existing.get("time") == wanted["time"]
        and existing.get("timeEnd") == wanted["timeEnd"]
        and existing.get("text") == wanted["text"]
        and sorted(existing.get("tags") or []) == sorted(wanted["tags"])
    )


class GrafanaSync:
    """The sync steps against one Grafana, through grafana-client."""

    def __init__(self, api: GrafanaApi, clock: Clock) -> None:
        # grafana-client is unannotated; Any keeps mypy strict quiet about its calls.
        self._api: Any = api
        self._clock = clock

    def check_grafana(self) -> None:
        """Fail clearly when the URL is not a Grafana (a 404, an HTML page...)."""
        try:
            health = self._api.client.GET("/health")
        except GrafanaClientError as exc:
            if exc.status_code == 401:
                raise
            raise SyncError(
                f"GET /api/health answered {exc.status_code}: this is not Grafana's base URL "
                "(give the sub-path too if Grafana is served under one)"
            ) from None
        if not isinstance(health, dict) or "database" not in health:
            raise SyncError(
                "GET /api/health did not answer like Grafana: check the URL "
                "(give the sub-path too if Grafana is served under one)"
            )

    def ensure_folder(self, report: SyncReport) -> str:
        """The uid of the folder ``archwatch``, created when missing."""
        try:
            folder = self._api.folder.get_folder(FOLDER_UID)
            return str(folder["uid"])
        except GrafanaClientError as exc:
            if exc.status_code != 404:
                raise
        try:
            folder = self._api.folder.create_folder(FOLDER_TITLE, uid=FOLDER_UID)
        except GrafanaClientError as exc:
            if exc.status_code not in (409, 412):
                raise
            # A folder titled "archwatch" made by hand, with another uid: use it.
            for existing in self._api.folder.get_all_folders():
                if existing.get("title") == FOLDER_TITLE:
                    return str(existing["uid"])
            raise
        report.folder_created = True
        return str(folder["uid"])

    def push_dashboards(
        self, dashboards: Iterable[dict[str, Any]], folder_uid: str, report: SyncReport
    ) -> None:
        for dashboard in dashboards:
            uid = dashboard.get("uid")
            if not uid:
                raise SyncError(f"dashboard {dashboard.get('title')!r} has no uid")
            # id None: Grafana finds the dashboard by uid, so ids of another Grafana never
            # collide with this one's.
            try:
                self._api.dashboard.update_dashboard(
                    {
                        "dashboard": {**events_off(dashboard), "id": None},
                        "folderUid": folder_uid,
                        "overwrite": True,
                        "message": SYNC_MESSAGE,
                    }
                )
            except GrafanaClientError as exc:
                # The compose stack provisions the same dashboards from files (same uids);
                # Grafana refuses to overwrite those, and they are already current.
                if exc.status_code != 400 or "provisioned" not in str(exc.response):
                    raise
                report.provisioned.append(str(uid))
            report.dashboards.append(str(uid))

    def push_annotation(self, wanted: dict[str, Any], alert_id: str, report: SyncReport) -> None:
        annotations = self._api.annotations
        # find_annotations in grafana-client 4+, get_annotation (same query) in 3.x.
        find = getattr(annotations, "find_annotations", None) or annotations.get_annotation
        found = find(tags=[f"alert:{alert_id}"], ann_type="annotation", limit=100)
        found = sorted(found or [], key=lambda a: int(a["id"]))
        if not found:
            annotations.add_annotation(
                dashboard_uid=wanted["dashboardUID"],
                panel_id=wanted["panelId"],
                time_from=wanted["time"],
                time_to=wanted["timeEnd"],
                tags=wanted["tags"],
                text=wanted["text"],
            )
            report.created += 1
            return
        keep, *extra = found
        for duplicate in extra:  # left by an interrupted run of an older version, or by hand
            annotations.delete_annotations_by_id(duplicate["id"])
            report.duplicates_removed += 1
        if _same(keep, wanted):
            report.unchanged += 1
            return
        annotations.update_annotation(
            keep["id"],
            time_from=wanted["time"],
            time_to=wanted["timeEnd"],
            tags=wanted["tags"],
            text=wanted["text"],
        )
        report.updated += 1

    def run(self, dashboards: Sequence[dict[str, Any]], alerts: Sequence[Alert]) -> SyncReport:
        report = SyncReport()
        self.check_grafana()
        report.folder_uid = self.ensure_folder(report)
        self.push_dashboards(dashboards, report.folder_uid, report)
        now_ns = self._clock.now_ns()
        # A provisioned dashboard keeps its InfluxDB alert-event annotation switched on, so
        # an annotation pushed onto it would show every alert twice.
        drawn_by_events = set(report.provisioned) & {
            str(d["uid"]) for d in dashboards if _event_annotations(d)
        }
        # Oldest first: a run cut short leaves the older history complete.
        for alert in sorted(alerts, key=lambda a: (a.fired_at_ns or a.started_at_ns, a.id)):
            target = annotation_target(alert, dashboards)
            if target.dashboard_uid in drawn_by_events:
                report.left_to_events += 1
                continue
            self.push_annotation(_wanted(alert, target, now_ns), alert.id, report)
        return report


# --- the command ----------------------------------------------------------------------------


def check_url(url: str) -> None:
    """Refuse what cannot be a Grafana base URL before any request is made."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise SyncError(f"--url '{redact_url(url)}' is not a URL") from None
    if parts.scheme not in ("http", "https") or not host:
        raise SyncError(
            f"--url '{redact_url(url)}' is not a Grafana base URL: "
            "use http(s)://host[:port][/sub-path], e.g. http://127.0.0.1:3000"
        )


def explain(exc: Exception, url: str, token: str) -> str:
    """One line for the person at the terminal; never the token."""
    where = redact_url(url)
    if isinstance(exc, SyncError):
        text = f"{where}: {exc}"
    elif isinstance(exc, GrafanaUnauthorizedError):
        text = (
            f"Grafana at {where} refused the token (401 Unauthorized): set {TOKEN_ENV} "
            "to a valid service-account token"
        )
    elif isinstance(exc, GrafanaClientError) and exc.status_code == 403:
        text = (
            f"Grafana at {where} refused the request (403 Forbidden): the token's "
            "service account needs the Editor role"
        )
    elif isinstance(exc, GrafanaServerError | GrafanaClientError):
        text = f"Grafana at {where} refused the sync: {exc.message}"
    elif _is_timeout(exc):
        text = f"Grafana at {where} did not answer within {TIMEOUT_S:g} s"
    elif isinstance(exc, GrafanaException | OSError):
        # requests' (and niquests') exceptions are OSErrors: refused, unresolvable, reset.
        text = f"cannot reach Grafana at {where}: {_reason(exc)}"
    elif isinstance(exc, json.JSONDecodeError):  # a 2xx answer that is not JSON
        text = f"{where} answered something that is not Grafana's JSON: check the URL"
    else:
        text = f"sync with Grafana at {where} failed: {type(exc).__name__}: {exc}"
    return text.replace(token, "***") if token else text


def _is_timeout(exc: Exception) -> bool:
    # requests.Timeout (3.x) and grafana-client 5's GrafanaTimeoutError, without importing
    # either HTTP library by name.
    return any(cls.__name__ in ("Timeout", "GrafanaTimeoutError") for cls in type(exc).__mro__)


def _reason(exc: Exception) -> str:
    """The innermost cause's words (``Connection refused``), not the pool's preamble."""
    inner: BaseException = exc
    while inner.__cause__ is not None or inner.__context__ is not None:
        nxt = inner.__cause__ or inner.__context__
        assert nxt is not None
        inner = nxt
    text = str(inner) or type(inner).__name__
    for needle in ("Connection refused", "Name or service not known", "No route to host"):
        if needle in str(exc) or needle in text:
            return needle.lower()
    return text


def connect(url: str, token: str) -> GrafanaApi:
    """A grafana-client API for ``url`` (checked by :func:`check_url`) with the token.

    Built from the URL's parts rather than ``GrafanaApi.from_url``, which glues a sub-path
    to ``api`` without a slash (``/grafanaapi``) and would prefer a password in the URL.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    path = parts.path.strip("/")
    return GrafanaApi(
        auth=token,
        host=f"[{host}]" if ":" in host else host,  # an IPv6 literal keeps its brackets
        port=parts.port,
        url_path_prefix=f"{path}/" if path else "",
        protocol=parts.scheme,
        timeout=TIMEOUT_S,
    )


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def _load_alerts(data_dir: Path | None) -> tuple[list[Alert], str | None]:
    """The alerts to annotate, and a note when there is no state database to read."""
    from alerting.state_models import query_alerts
    from gateway.datadir import DataDir
    from gateway.settings import load_settings
    from gateway.statedb import StateDB, StateDBError

    settings = load_settings(None, data_dir=data_dir)
    folder = DataDir(settings.data_dir)
    if settings.state_db_url is None and not folder.state_db.is_file():
        # Creating an empty database here would hide a mistyped --data-dir.
        return [], f"no state database in {settings.data_dir}: dashboards only, no alerts"
    try:
        db = StateDB(folder.state_db_url(settings.state_db_url))
    except StateDBError as exc:
        raise SyncError(str(exc)) from None
    try:
        db.migrate()
        alerts = query_alerts(db, states=SYNCED_STATES, drill=False, limit=MAX_ALERTS)
    except SQLAlchemyError as exc:
        # db.url masks the password; the driver's own message may not, so it is not shown.
        raise SyncError(
            f"cannot read the alerts from the state database {db.url}: {type(exc).__name__}"
        ) from None
    finally:
        db.close()
    return [a for a in alerts if a.fired_at_ns is not None], None


def _load_site(site_file: Path | None, data_dir: Path | None) -> Site:
    from gateway.resources import demo_site_path
    from gateway.settings import load_settings
    from gateway.site import load_site

    if site_file is None:
        site_file = load_settings(None, data_dir=data_dir).site_file or demo_site_path()
    return load_site(site_file)


def generated_dashboards(site: Site) -> list[dict[str, Any]]:
    """The dashboards ``archwatch grafana export`` writes, as JSON models."""
    from grafana.dashboards import build_dashboards

    return list(build_dashboards(site))


def sync_command(
    url: str,
    site_file: Path | None,
    data_dir: Path | None,
    *,
    clock: Clock | None = None,
) -> None:
    """Push the site's dashboards and the state database's alerts to Grafana at ``url``."""
    token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        _fail(f"set {TOKEN_ENV} to a Grafana service-account token (Editor role)")
    try:
        check_url(url)
        site = _load_site(site_file, data_dir)
        dashboards = generated_dashboards(site)
        alerts, note = _load_alerts(data_dir)
    except SyncError as exc:
        # Not explain(): these failures are local (site file, state database), not Grafana.
        _fail(str(exc).replace(token, "***"))
    except ConfigError as exc:
        for line in exc.problems:
            click.echo(f"error: {line}", err=True)
        sys.exit(1)
    if note:
        click.echo(f"note: {note}", err=True)
    api = connect(url, token)
    try:
        report = GrafanaSync(api, clock or SystemClock()).run(dashboards, alerts)
    except (SyncError, GrafanaException, OSError, json.JSONDecodeError) as exc:
        _fail(explain(exc, url, token))
    click.echo(report.summary(url))
