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
from functools import lru_cache
from zoneinfo import ZoneInfo, available_timezones

UTC_NAME = "UTC"
SLOT = timedelta(minutes=15)
SLOTS_PER_DAY = 96


# Names that tzdata lists but are no place's zone: the host's own setting, POSIX rules, and the
# "posix/" and "right/" copies (the latter counting leap seconds).
NOT_PLACES = ("localtime", "posixrules", "Factory")


@lru_cache(maxsize=1)
def names():
    """Every IANA zone name a request may use."""
    return frozenset(name for name in available_timezones() | {UTC_NAME}
                     if name not in NOT_PLACES and not name.startswith(("posix/", "right/")))


def zone(name):
    """The ZoneInfo of an IANA name; ValueError when there is none (the message names it)."""
    if not isinstance(name, str) or name not in names():
        raise ValueError(f"Unknown time zone {name!r}: use an IANA name such as Asia/Jakarta")
    return ZoneInfo(name)


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
    """[start, end) in UTC of the local days first..last (either None: open; a bound past what a
    UTC datetime holds, as 0001-01-01 east of UTC, is open too)."""
    return _bound(first, tz), _bound(last + timedelta(days=1) if last is not None and last < date.max else None, tz)


def _bound(day, tz):
    if day is None:
        return None
    try:
        return day_start(day, tz)
    except OverflowError:
        return None


def aware(instant):
    """An instant as stored (a naive datetime is UTC, as the store keeps it) made timezone-aware."""
    return instant if instant.tzinfo else instant.replace(tzinfo=timezone.utc)


def local_date(instant, tz):
    return instant.astimezone(tz).date()


def slot_of(instant):
    """(UTC day, slot 0-95) of an instant."""
    instant = aware(instant).astimezone(timezone.utc)
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
            try:
                first = begins.astimezone(self.tz)
                last = (begins + SLOT - timedelta(microseconds=1)).astimezone(self.tz)
            except OverflowError:  # the first or last day a datetime holds: the ledger answers
                return None
            if first.date() != last.date():
                return None
            days.append(first.date())
        return days


# A zone change is kept this long (past any budget window or counter it can shape).
HISTORY_KEPT = timedelta(days=70)


def _instant(value):
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return aware(value) if value is not None else None


@dataclass(frozen=True)
class ZoneRule:
    """An organization's zones over time: `periods` is ((name, since), ...) in order, the first since
    None (always before). Each change takes effect at the next midnight of the zone it replaces."""

    periods: tuple = ((UTC_NAME, None),)

    @classmethod
    def always(cls, name):
        return cls(((name, None),))

    @property
    def name(self):
        """The latest zone (in effect, or about to be at its `since`)."""
        return self.periods[-1][0]

    @property
    def previous(self):
        return self.periods[-2][0] if len(self.periods) > 1 else None

    @property
    def since(self):
        return self.periods[-1][1]

    def index_at(self, instant):
        index = 0
        for position, (_, since) in enumerate(self.periods):
            if since is None or since <= instant:
                index = position
        return index

    def name_at(self, instant):
        return self.periods[self.index_at(instant)][0]

    def changed_to(self, new_name, now):
        """The rule after an admin sets `new_name` at `now`: a change still pending is dropped, and
        the new zone applies from the next midnight of the zone in effect now (nothing changes when
        that is the new zone). Changes older than HISTORY_KEPT are forgotten."""
        periods = [period for period in self.periods if period[1] is None or period[1] <= now]
        current = periods[-1][0]
        if new_name != current:
            tz = zone(current)
            periods.append((new_name, day_start(local_date(now, tz) + timedelta(days=1), tz)))
        while len(periods) > 1 and periods[1][1] < now - HISTORY_KEPT:
            periods = [(periods[1][0], None), *periods[2:]]
        return ZoneRule(tuple(periods))

    def as_fields(self):
        """As an organization stores it: its zone, the last change (the zone before and when it took
        or takes effect) and the history the budget windows are drawn from."""
        return {"timeZone": self.name, "previousTimeZone": self.previous, "timeZoneSince": self.since,
                "timeZoneHistory": [{"timeZone": name, "since": since} for name, since in self.periods]}

    def as_ticket(self):
        """As a budget ticket carries it through the spool (JSON)."""
        return {"timeZone": self.name, "timeZoneHistory": [
            {"timeZone": name, "since": since.isoformat() if since else None} for name, since in self.periods]}

    @classmethod
    def of(cls, document):
        """The rule stored on an organization (or carried by a budget ticket); UTC when none."""
        document = document or {}
        history = document.get("timeZoneHistory")
        if history:
            return cls(tuple((entry["timeZone"], _instant(entry.get("since"))) for entry in history))
        return cls.always(document.get("timeZone") or UTC_NAME)


@dataclass(frozen=True)
class Window:
    """A budget window: its label (local YYYY-MM-DD or YYYY-MM), the zone it is counted in, its
    [start, end) in UTC, and whether a zone change made it other than its zone's whole day or month."""

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


def _natural(window, instant, tz):
    """[start, end) of the zone's whole day or month holding `instant`."""
    local = local_date(instant, tz)
    first = local if window == "day" else local.replace(day=1)
    following = first + timedelta(days=1) if window == "day" else _month_after(first)
    return day_start(first, tz), day_start(following, tz)


def _cuts(window, periods, index):
    """Whether the change into periods[index] is a boundary: of every day (it falls on a midnight of
    the zone it replaces), of a month only when it falls on a first of the month there."""
    return window == "day" or _starts_month(periods[index][1], zone(periods[index - 1][0]))


def _start(window, instant, periods, index):
    """(start, index of the period it falls in) of the window holding `instant`."""
    start, _ = _natural(window, instant, zone(periods[index][0]))
    since = periods[index][1]
    if since is None or start >= since:
        return start, index
    if _cuts(window, periods, index):
        return since, index
    return _start(window, since - timedelta(microseconds=1), periods, index - 1)


def _end(window, instant, periods, index):
    _, end = _natural(window, instant, zone(periods[index][0]))
    if index + 1 >= len(periods) or end <= periods[index + 1][1]:
        return end
    following = periods[index + 1][1]
    if _cuts(window, periods, index + 1):
        return following
    return _end(window, following, periods, index + 1)


def window_bounds(window, instant, rule):
    """The budget window ("day" or "month") holding `instant`: its local day or month in the zone in
    effect then. A zone change cuts the day at its `since` (a midnight of the zone it replaces),
    and the month only when `since` starts a month there; otherwise the month that began in the
    previous zone goes on to the end of the new zone's month. Named by its start, in the zone in
    effect at its start."""
    periods = rule.periods
    index = rule.index_at(instant)
    start, starting = _start(window, instant, periods, index)
    end = _end(window, instant, periods, index)
    name = periods[starting][0]
    tz = zone(name)
    label = local_date(start, tz).isoformat()
    natural = _natural(window, start, tz)
    return Window(label if window == "day" else label[:7], name, start, end, (start, end) != natural)


def _starts_month(instant, tz):
    local = instant.astimezone(tz)
    return local.day == 1 and local.time() == time()
