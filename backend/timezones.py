"""Local days in IANA time zones, as the analytics and budgets count them.

A local day is the UTC interval from one local midnight to the next (23 or 25 hours on a
daylight-saving change). The rollups keep each UTC day's sums in quarter-hour slots
(backend/usage/rollups.py): every local midnight of every zone in use today falls on a UTC
quarter hour (offsets are whole hours, or :30 and :45, and clocks change on the hour or half
hour), so a local day is a whole number of slots. `Slots` maps each slot of a UTC day to its
local day and says when a range cannot be told apart by slots (a historical offset such as
local mean time): then the ledger answers instead.

An organization's zone rule (`ZoneRule`) also says since when its zone applies: a change takes
effect at the next midnight of the zone it replaces (backend/orgs).
"""
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

UTC_NAME = "UTC"
SLOT = timedelta(minutes=15)
SLOTS_PER_DAY = 96


def zone(name):
    """The ZoneInfo of an IANA name; ValueError when there is none (the message names it)."""
    if not isinstance(name, str) or not name or len(name) > 64 or name.startswith(("/", ".")) or ".." in name:
        raise ValueError(f"Unknown time zone {name!r}: use an IANA name such as Asia/Jakarta")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"Unknown time zone {name!r}: use an IANA name such as Asia/Jakarta") from None


def names():
    return sorted(available_timezones() | {UTC_NAME})


def is_utc(tz):
    return tz is None or getattr(tz, "key", None) == UTC_NAME


def day_start(day, tz):
    """The UTC instant the local day `day` starts (its first instant, also when midnight is skipped)."""
    local = datetime.combine(day, time(), tzinfo=tz)
    instant = local.astimezone(timezone.utc)
    if instant.astimezone(tz).date() < day:  # a local midnight that does not exist: the day starts later
        instant = datetime.combine(day, time(1), tzinfo=tz).astimezone(timezone.utc).replace(minute=0)
    return instant


def day_bounds(first, last, tz):
    """[start, end) in UTC of the local days first..last (either None: open)."""
    start = day_start(first, tz) if first is not None else None
    end = day_start(last + timedelta(days=1), tz) if last is not None and last < date.max else None
    return start, end


def local_date(instant, tz):
    return instant.astimezone(tz).date()


def slot_of(instant):
    """(UTC day, slot 0-95) of an instant."""
    instant = instant.astimezone(timezone.utc) if instant.tzinfo else instant.replace(tzinfo=timezone.utc)
    return instant.date(), instant.hour * 4 + instant.minute // 15


def slot_name(index):
    return f"{index:02d}"


class Slots:
    """Which local day each quarter-hour slot of a UTC day falls on, in one zone."""

    def __init__(self, tz):
        self.tz = tz
        self._days = {}

    def local_days(self, utc_day):
        """[local date of each of the day's 96 slots], or None when a local midnight of that UTC day
        falls inside a slot (slots cannot tell its local days apart)."""
        if utc_day not in self._days:
            self._days[utc_day] = self._compute(utc_day)
        return self._days[utc_day]

    def _compute(self, utc_day):
        start = datetime.combine(utc_day, time(), tzinfo=timezone.utc)
        days = []
        for index in range(SLOTS_PER_DAY):
            begins = start + index * SLOT
            first, last = begins.astimezone(self.tz), (begins + SLOT - timedelta(microseconds=1)).astimezone(self.tz)
            if first.date() != last.date():
                return None
            days.append(first.date())
        return days


@dataclass(frozen=True)
class ZoneRule:
    """An organization's zone: `name` since `since`, `previous` before it (a change takes effect at
    the next midnight of the zone it replaces); no `since`: `name` always."""

    name: str = UTC_NAME
    previous: str | None = None
    since: datetime | None = None

    def name_at(self, instant):
        if self.since is not None and self.previous is not None and instant < self.since:
            return self.previous
        return self.name

    def changed_to(self, new_name, now):
        """The rule after an admin sets `new_name` at `now`: it applies from the next midnight of the
        zone in effect now (at once when nothing changes)."""
        current = self.name_at(now)
        if new_name == current:
            return ZoneRule(new_name)
        tz = zone(current)
        return ZoneRule(new_name, current, day_start(local_date(now, tz) + timedelta(days=1), tz))

    def as_fields(self):
        return {"timeZone": self.name, "previousTimeZone": self.previous, "timeZoneSince": self.since}

    @classmethod
    def of(cls, document):
        """The rule stored on an organization (or carried by a budget ticket); UTC when none."""
        document = document or {}
        since = document.get("timeZoneSince")
        if isinstance(since, str):
            since = datetime.fromisoformat(since.replace("Z", "+00:00"))
        if since is not None and since.tzinfo is None:
            since = since.replace(tzinfo=timezone.utc)
        return cls(document.get("timeZone") or UTC_NAME, document.get("previousTimeZone"), since)

    def as_ticket(self):
        return {"timeZone": self.name, "previousTimeZone": self.previous,
                "timeZoneSince": self.since.isoformat() if self.since else None}


@dataclass(frozen=True)
class Window:
    """A budget window: its label (local YYYY-MM-DD or YYYY-MM), the zone it is counted in, its
    [start, end) in UTC, and whether a zone change cut it short."""

    label: str
    zone_name: str
    start: datetime
    end: datetime
    cut: bool = False

    @property
    def plain_utc(self):
        """A whole UTC day or month (named by its label alone, as before time zones)."""
        return self.zone_name == UTC_NAME and not self.cut


def _month_after(first):
    return date(first.year + first.month // 12, first.month % 12 + 1, 1)


def window_bounds(window, instant, rule):
    """The budget window ("day" or "month") holding `instant`: its local day or month in the zone in
    effect then. A zone change cuts the day at its `since` (a midnight of the zone it replaces),
    and the month only when `since` starts a month there; otherwise the month that began in the
    previous zone goes on to the end of the new zone's month."""
    name = rule.name_at(instant)
    tz = zone(name)
    local = local_date(instant, tz)
    first = local if window == "day" else local.replace(day=1)
    start = day_start(first, tz)
    end = day_start(first + timedelta(days=1) if window == "day" else _month_after(first), tz)
    since = rule.since if rule.previous is not None else None
    cut = False
    if since is not None and start < since < end:
        old_tz = zone(rule.previous)
        if window == "day" or _starts_month(since, old_tz):
            cut = True
            if instant < since:
                end = since
            else:
                start = since
        elif instant < since:  # the month goes on across the change, to the end of the new zone's month
            new_tz = zone(rule.name)
            end = day_start(_month_after(local_date(since, new_tz).replace(day=1)), new_tz)
        else:  # the month that began in the previous zone, named as it was
            start, name = day_start(local_date(since, old_tz).replace(day=1), old_tz), rule.previous
    label = local_date(start, zone(name)).isoformat()
    return Window(label if window == "day" else label[:7], name, start, end, cut)


def _starts_month(instant, tz):
    local = instant.astimezone(tz)
    return local.day == 1 and local.time() == time()
