"""Every budget counter's identity in one place: whose it is, which window and period, its key.

A counter's owner is the user id, or `team:<id>`, `org:<id>`, `key:<id>`, or `global` (the whole
service's spend). Its window is a local day or month of the organization's time zone
(backend/timezones.py: window_bounds, a zone change included); its key is
`<owner>|<window>|<period>` for a whole UTC day (YYYY-MM-DD) or month (YYYY-MM), as before time
zones, and `<owner>|<window>|<period>|<zone>|<start>` otherwise, so no two windows share a key.
A counter document lives for two months past its window, then expires.
"""
from dataclasses import dataclass
from datetime import datetime, timedelta

from backend.db import DEFAULT_ORG_ID
from backend.timezones import UTC_NAME, ZoneRule, window_bounds

WINDOWS = ("day", "month")
# Whose counters a call counts on: its user's, its team's (when the user is in one), its
# organization's and its API key's (when it came with one).
SCOPES = ("user", "team", "org", "key")
GLOBAL = "global"
KEPT_AFTER_WINDOW = timedelta(days=62)


UTC_RULE = ZoneRule()


@dataclass(frozen=True)
class BudgetCounter:
    scope: str  # one of SCOPES, or GLOBAL
    owner_id: object
    window: str
    period: str  # the local day (YYYY-MM-DD) or month (YYYY-MM) of the window's start
    resets_at: datetime
    starts_at: datetime
    zone_name: str = UTC_NAME
    plain_utc: bool = True  # a whole UTC day or month

    @classmethod
    def of(cls, scope, owner_id, window, now, rule=UTC_RULE):
        return cls.within(scope, owner_id, window, window_bounds(window, now, rule))

    @classmethod
    def within(cls, scope, owner_id, window, bounds):
        """The counter of an owner in one window (timezones.Window)."""
        return cls(scope, owner_id, window, bounds.label, bounds.end, bounds.start, bounds.zone_name,
                   bounds.plain_utc)

    @property
    def owner(self):
        if self.scope == GLOBAL:
            return GLOBAL
        return str(self.owner_id) if self.scope == "user" else f"{self.scope}:{self.owner_id}"

    @property
    def key(self):
        if self.plain_utc:
            return f"{self.owner}|{self.window}|{self.period}"
        return f"{self.owner}|{self.window}|{self.period}|{self.zone_name}|{self.starts_at:%Y-%m-%dT%H:%MZ}"

    def fields(self):
        """What a new counter document is created with."""
        return {"owner": self.owner, "window": self.window, "period": self.period,
                "expiresAt": self.resets_at + KEPT_AFTER_WINDOW}


def owner_ids(user_id, team_id, org_id, api_key_id):
    """{scope: id} of the owners a call counts for (an absent team or key counts for none)."""
    ids = {"user": user_id, "team": team_id, "org": org_id or DEFAULT_ORG_ID, "key": api_key_id}
    return {scope: ids[scope] for scope in SCOPES if ids[scope] is not None}


def counters(ids, now, rule=UTC_RULE):
    """The day and month counters of every owner in `ids` ({scope: id}) at `now`, in the windows of
    the organization's zone `rule`."""
    bounds = {window: window_bounds(window, now, rule) for window in WINDOWS}
    return [BudgetCounter.within(scope, owner_id, window, bounds[window]) for scope, owner_id in ids.items()
            for window in WINDOWS]


def global_day(now):
    return BudgetCounter.of(GLOBAL, None, "day", now)
