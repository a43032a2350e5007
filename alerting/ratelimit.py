"""Channel limits: send budgets per robot, and long messages summarised rather than cut.

Chat robots throttle: a DingTalk robot takes about 20 messages a minute and a WeCom group
robot 20, and past that they answer with an error and the message is lost. A burst of
alerts (a power cut takes thirty rooms' sensors offline at once) must not be thrown away
nor trickle out over half an hour. So, per robot URL, the delivery worker asks
:meth:`ChannelLimiter.plan` before sending:

- within the budget, messages go out one by one, as usual;
- over it, each contact's pending messages for that robot are merged into **one summary
  message** (a new outbox row listing every one of them, one line each; the originals are
  marked ``merged`` with the summary's id in ``channel``), so every alert is still
  mentioned;
- with no budget left at all, messages wait (their ``due_at_ns`` moves, no attempt is
  counted) until the oldest send leaves the one-minute window, then are merged.

The window is kept in memory: a restarted gateway starts with a full budget.

:func:`fit_summary` keeps a body within its channel's limit (WeCom counts UTF-8 bytes) by
dropping whole lines at the end and saying how many there were (``…共 N 条``), so a reader
knows the list is longer and no character is ever cut in half.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import defaultdict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from alerting.contacts import Contacts
from alerting.notifiers import Notifier, notifier_for
from alerting.outbox import Outbox, OutboxMessage, OutboxRow
from alerting.templates import SEVERITY
from gateway.clock import Clock
from gateway.statedb import StateDB

_RANK = {"info": 0, "warning": 1, "critical": 2}
_MORE = {"zh": "…共 {n} 条", "en": "… {n} in total"}
_SUMMARY = {"zh": "[{sev}] 告警汇总：{n} 条通知", "en": "[{sev}] summary of {n} notifications"}


@dataclass(frozen=True, slots=True)
class Budget:
    """At most ``messages`` sends per ``per_s`` seconds to one URL."""

    messages: int
    per_s: float = 60.0

    def __post_init__(self) -> None:
        if self.messages < 1 or self.per_s <= 0:
            raise ValueError("a budget needs messages >= 1 and per_s > 0")


# The services' documented robot limits (per robot, i.e. per URL).
DEFAULT_BUDGETS: Mapping[str, Budget] = {
    "dingtalk": Budget(20),
    "wecombot": Budget(20),
    "feishu": Budget(100),
    "lark": Budget(100),
}


def fit_summary(
    notifier: Notifier, title: str, body: str, *, language: str = "zh"
) -> tuple[str, str]:
    """Title and body as ``notifier`` sends them, within its body limit.

    An over-long body loses whole lines from its end and gains ``…共 N 条`` (N: the lines
    it had). A body whose first line alone is too long is cut by :meth:`Notifier.fit`.
    """
    if not notifier.has_title and title:
        body, title = f"{title}\n{body}", ""
        head = 1  # the folded title is not one of the items
    else:
        head = 0
    if notifier.measure(body) <= notifier.body_limit:
        return title, body
    lines = body.split("\n")
    items = len(lines) - head
    marker = "\n" + _MORE.get(language, _MORE["en"]).format(n=items)
    keep = len(lines)
    while keep > head and notifier.measure("\n".join(lines[:keep]) + marker) > notifier.body_limit:
        keep -= 1
    if keep > head:
        return title, "\n".join(lines[:keep]) + marker
    return notifier.fit(title, body, language=language)


class ChannelLimiter:
    """Per-URL send budgets for the delivery worker (see the module docstring)."""

    def __init__(
        self,
        db: StateDB,
        outbox: Outbox,
        contacts: Contacts,
        clock: Clock,
        *,
        budgets: Mapping[str, Budget] = DEFAULT_BUDGETS,
    ) -> None:
        self._db = db
        self._outbox = outbox
        self._contacts = contacts
        self._clock = clock
        self._budgets = dict(budgets)
        self._sent: dict[str, deque[int]] = defaultdict(deque)

    def __repr__(self) -> str:
        return f"ChannelLimiter({sorted(self._budgets)})"

    def _target(self, message: OutboxMessage) -> tuple[str, Budget] | None:
        contact = self._contacts.get(message.contact_id)
        if contact is None or message.url_index >= len(contact.urls):
            return None
        url = contact.urls[message.url_index]
        budget = self._budgets.get(notifier_for(url).channel)
        return None if budget is None else (url, budget)

    def _remaining(self, url: str, budget: Budget, now: int) -> int:
        window = self._sent[url]
        while window and window[0] <= now - int(budget.per_s * 1e9):
            window.popleft()
        return budget.messages - len(window)

    async def plan(self, due: Sequence[OutboxMessage]) -> list[OutboxMessage]:
        """Of the messages due now, those to send now (some of them new summaries).

        Merges and deferrals are committed to the outbox before this returns.
        """
        now = self._clock.now_ns()
        out: list[OutboxMessage] = []
        by_url: dict[str, list[OutboxMessage]] = defaultdict(list)
        budgets: dict[str, Budget] = {}
        for message in due:
            target = self._target(message)
            if target is None:
                out.append(message)  # unlimited channel, or delivery will report the problem
                continue
            by_url[target[0]].append(message)
            budgets[target[0]] = target[1]
        for url, messages in by_url.items():
            budget = budgets[url]
            remaining = self._remaining(url, budget, now)
            if remaining <= 0:
                until = self._sent[url][0] + int(budget.per_s * 1e9)
                await asyncio.to_thread(self._defer, [m.id for m in messages], until)
                continue
            if len(messages) > remaining:
                messages = await self._merge_per_contact(messages, now)
            send, wait = messages[:remaining], messages[remaining:]
            self._sent[url].extend([now] * len(send))
            if wait:
                until = self._sent[url][0] + int(budget.per_s * 1e9)
                await asyncio.to_thread(self._defer, [m.id for m in wait], until)
            out.extend(send)
        return out

    async def _merge_per_contact(
        self, messages: list[OutboxMessage], now: int
    ) -> list[OutboxMessage]:
        per_contact: dict[str, list[OutboxMessage]] = defaultdict(list)
        for message in messages:
            per_contact[message.contact_id].append(message)
        out = []
        for members in per_contact.values():
            if len(members) == 1:
                out.extend(members)
                continue
            merged = await asyncio.to_thread(self._merge, members, now)
            out.append(merged)
        return out

    # --- outbox rows (blocking) ------------------------------------------------------------

    def _merge(self, members: list[OutboxMessage], now: int) -> OutboxMessage:
        contact = self._contacts.get(members[0].contact_id)
        language = self._contacts.language_of(contact) if contact is not None else "zh"
        lang = language if language in _SUMMARY else "zh"
        severity = max((m.severity for m in members), key=lambda s: _RANK.get(s, 0))
        sev = SEVERITY[lang].get(severity, severity)
        subject = _SUMMARY[lang].format(sev=sev, n=len(members))
        sep = "：" if lang == "zh" else ": "
        lines = [f"{m.subject}{sep}{'；'.join(m.body.splitlines())}" for m in members]
        alert_ids: list[str] = []
        for m in members:
            alert_ids.extend(a for a in m.alert_ids if a not in alert_ids)
        ids = ",".join(str(m.id) for m in members)
        key = "merge:" + hashlib.sha256(ids.encode()).hexdigest()[:40]
        with self._db.session(write=True) as session:
            row = OutboxRow(
                dedup_key=key,
                batch_id=None,
                contact_id=members[0].contact_id,
                kind="summary",
                severity=severity,
                subject=subject,
                body="\n".join(lines),
                short_body=f"{subject} " + " / ".join(m.subject for m in members),
                alert_ids=json.dumps(alert_ids),
                status="pending",
                created_at_ns=now,
                due_at_ns=now,
                url_index=members[0].url_index,
                attempt=0,
                attempts_total=0,
            )
            session.add(row)
            session.flush()
            merged_id = row.id
            for m in members:
                old = session.get(OutboxRow, m.id)
                if old is not None and old.status == "pending":
                    old.status = "merged"
                    old.channel = f"merged:{merged_id}"
                    old.finished_at_ns = now
        got = self._outbox.get(merged_id)
        assert got is not None
        return got

    def _defer(self, ids: list[int], until_ns: int) -> None:
        with self._db.session(write=True) as session:
            for message_id in ids:
                row = session.get(OutboxRow, message_id)
                if row is not None and row.status == "pending":
                    row.due_at_ns = max(row.due_at_ns, until_ns)
