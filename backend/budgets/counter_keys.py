"""Every budget counter's identity in one place: whose it is, which window and period, its key.

A counter's owner is the user id, or `team:<id>`, `org:<id>`, `key:<id>`, or `global` (the whole
service's spend); its key is `<owner>|<window>|<period>`, one per UTC day (YYYY-MM-DD) or month
(YYYY-MM). A counter document lives for two months past its window, then expires.
"""
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from backend.db import DEFAULT_ORG_ID

WINDOWS = ("day", "month")
# Whose counters a call counts on: its user's, its team's (when the user is in one), its
# organization's and its API key's (when it came with one).
SCOPES = ("user", "team", "org", "key")
GLOBAL = "global"
KEPT_AFTER_WINDOW = timedelta(days=62)


def period_of(window, now):
    """(period label, when it resets) for a UTC day or month."""
    if window == "day":
        start = datetime(now.year, now.month, now.day, tzinfo=timezone.utc)
        return start.strftime("%Y-%m-%d"), start + timedelta(days=1)
    first_of_next = datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=timezone.utc)
    return now.strftime("%Y-%m"), first_of_next


@dataclass(frozen=True)
class BudgetCounter:
    scope: str  # one of SCOPES, or GLOBAL
    owner_id: object
    window: str
    period: str
    resets_at: datetime

    @classmethod
    def of(cls, scope, owner_id, window, now):
        return cls(scope, owner_id, window, *period_of(window, now))

    @property
    def owner(self):
        if self.scope == GLOBAL:
            return GLOBAL
        return str(self.owner_id) if self.scope == "user" else f"{self.scope}:{self.owner_id}"

    @property
    def key(self):
        return f"{self.owner}|{self.window}|{self.period}"

    def fields(self):
        """What a new counter document is created with."""
        return {"owner": self.owner, "window": self.window, "period": self.period,
                "expiresAt": self.resets_at + KEPT_AFTER_WINDOW}


def owner_ids(user_id, team_id, org_id, api_key_id):
    """{scope: id} of the owners a call counts for (an absent team or key counts for none)."""
    ids = {"user": user_id, "team": team_id, "org": org_id or DEFAULT_ORG_ID, "key": api_key_id}
    return {scope: ids[scope] for scope in SCOPES if ids[scope] is not None}


def counters(ids, now):
    """The day and month counters of every owner in `ids` ({scope: id}) at `now`."""
    return [BudgetCounter.of(scope, owner_id, window, now) for scope, owner_id in ids.items() for window in WINDOWS]


def global_day(now):
    return BudgetCounter.of(GLOBAL, None, "day", now)
