"""The nightly incremental sync, pure logic: when it runs (behaviour.md, "Incremental sync").

- The **night of D** runs from D 20:00 to D+1 03:00 in the tenant's time zone. A local time
  of 00:00 to 02:59 belongs to the night that started the previous evening.
- Each night runs once, at a whole hour in {20, 21, 22, 23, 0, 1, 2} chosen reproducibly from
  a SHA-256 of the tenant and D: every worker, and the same worker after a restart, agrees.
- Local times go to UTC with `zoneinfo`. A scheduled time that does not exist (the spring
  forward gap) moves to the first instant after the gap; an ambiguous one (fall back) is its
  first occurrence (fold=0).
- A night never runs twice: the caller passes the last night it ran (kept durably), and no
  night up to it is offered again.
- A missed run (the worker was down at the scheduled instant) runs as soon as the worker is up
  if the night's window is still open, else that night is skipped: the next night's run
  compares timestamps anyway, so it covers the missed changes, and a day-time catch-up would
  load the sources during working hours. A run always keeps at least the hour of slack a
  02:00 run has (`CATCH_UP`), also when a spring-forward gap moved it to 03:00, the window's
  end.

No clock is read here: `after` / `now` are passed in and must be timezone-aware.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

NIGHT_HOURS: tuple[int, ...] = (20, 21, 22, 23, 0, 1, 2)
NIGHT_START_HOUR = 20
NIGHT_END_HOUR = 3  # exclusive: the window closes at 03:00 local the next morning
CATCH_UP = timedelta(hours=1)  # the least time a missed run may still start after its instant
_ONE_DAY = timedelta(days=1)


def scheduled_hour(tenant: str, local_date: date) -> int:
    """The local hour of the run of the night that starts on `local_date` evening."""
    digest = hashlib.sha256(f"{tenant}\x00{local_date.isoformat()}".encode()).digest()
    # 64 bits modulo 7: the bias (< 2**-60) is far below anything a schedule could notice.
    return NIGHT_HOURS[int.from_bytes(digest[:8], "big") % len(NIGHT_HOURS)]


def scheduled_local(tenant: str, night: date) -> datetime:
    """The naive local wall time of the night's run (hours 0 to 2 fall on the next date)."""
    hour = scheduled_hour(tenant, night)
    day = night if hour >= NIGHT_START_HOUR else night + _ONE_DAY
    return datetime.combine(day, time(hour))


def night_window(tz_name: str, night: date) -> tuple[datetime, datetime]:
    """The night's window as UTC instants: [D 20:00, D+1 03:00) local."""
    zone = ZoneInfo(tz_name)
    start = datetime.combine(night, time(NIGHT_START_HOUR))
    end = datetime.combine(night + _ONE_DAY, time(NIGHT_END_HOUR))
    return local_to_utc(start, zone), local_to_utc(end, zone)


def run_instant(tenant: str, tz_name: str, night: date) -> datetime:
    """The UTC instant of the night's scheduled run."""
    return local_to_utc(scheduled_local(tenant, night), ZoneInfo(tz_name))


def catch_up_until(tenant: str, tz_name: str, night: date) -> datetime:
    """Until when (exclusive, UTC) a missed run of the night may still start: the window's
    end, or an hour after the run instant if that is later (a run moved by a gap)."""
    return max(night_window(tz_name, night)[1], run_instant(tenant, tz_name, night) + CATCH_UP)


def night_of(instant: datetime, tz_name: str) -> date:
    """The night in progress at `instant`, or the one that starts next (during the day)."""
    local = _aware(instant).astimezone(ZoneInfo(tz_name))
    return local.date() - _ONE_DAY if local.hour < NIGHT_END_HOUR else local.date()


def next_run(tenant: str, tz_name: str, after: datetime,
             last_run_night: date | None) -> tuple[date, datetime]:
    """The next night to run and the UTC instant to run it, at or after `after`.

    Never a night on or before `last_run_night`. When the night in progress has not run and
    its scheduled instant has passed, the instant is `after` itself (a catch-up) as long as
    `catch_up_until` has not passed; otherwise the first night whose instant is still ahead."""
    after = _aware(after).astimezone(UTC)
    # Start a night early: a run moved by a spring-forward gap can fall at its window's end
    # (02:00 → 03:00), which `night_of` already counts as the next day.
    night = night_of(after, tz_name) - _ONE_DAY
    if last_run_night is not None and night <= last_run_night:
        night = last_run_night + _ONE_DAY
    while True:
        at = run_instant(tenant, tz_name, night)
        if at >= after:
            return night, at
        if after < catch_up_until(tenant, tz_name, night):
            return night, after
        night += _ONE_DAY


def due(tenant: str, tz_name: str, now: datetime, last_run_night: date | None) -> date | None:
    """The night whose run is due at `now` (record it as run once started), or None."""
    night, at = next_run(tenant, tz_name, now, last_run_night)
    return night if at <= _aware(now) else None


def local_to_utc(local: datetime, zone: ZoneInfo) -> datetime:
    """A naive local wall time → its UTC instant: the first occurrence of an ambiguous time,
    the first instant after the gap for a time that does not exist."""
    first = local.replace(tzinfo=zone, fold=0)
    if _wall(first.astimezone(UTC), zone) == local:
        return first.astimezone(UTC)
    # In a gap, fold=0 reads the time with the offset before the change and fold=1 with the
    # one after; the change itself lies between the two readings.
    later = first.astimezone(UTC)
    earlier = local.replace(tzinfo=zone, fold=1).astimezone(UTC)
    return _offset_change(zone, min(earlier, later), max(earlier, later))


def _offset_change(zone: ZoneInfo, low: datetime, high: datetime) -> datetime:
    """The first UTC second in (low, high] whose offset differs from the offset at `low`."""
    before = low.astimezone(zone).utcoffset()
    lo, hi = 0, int((high - low).total_seconds())
    while lo + 1 < hi:  # invariant: offset at low+lo is `before`, at low+hi it is not
        mid = (lo + hi) // 2
        if (low + timedelta(seconds=mid)).astimezone(zone).utcoffset() == before:
            lo = mid
        else:
            hi = mid
    return low + timedelta(seconds=hi)


def _wall(instant: datetime, zone: ZoneInfo) -> datetime:
    return instant.astimezone(zone).replace(tzinfo=None, fold=0)


def _aware(instant: datetime) -> datetime:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError("the schedule needs a timezone-aware datetime")
    return instant
