"""The nightly incremental sync: a reproducible hour per tenant and night, DST-safe, once."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from processors.sync.schedule import (
    NIGHT_HOURS,
    due,
    local_to_utc,
    next_run,
    night_of,
    night_window,
    run_instant,
    scheduled_hour,
    scheduled_local,
)

ZONES = ("UTC", "Europe/Warsaw", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def tenant_with_hour(hour: int, night: date) -> str:
    """A tenant name whose run on `night` is at `hour` (the hash decides, so search for one)."""
    return next(t for t in (f"tenant-{i}" for i in range(10_000))
                if scheduled_hour(t, night) == hour)


# --- the hour ------------------------------------------------------------------------------


def test_the_hour_is_reproducible_and_in_the_night() -> None:
    night = date(2026, 3, 28)
    assert scheduled_hour("acme", night) == scheduled_hour("acme", night)
    assert all(scheduled_hour("acme", night + timedelta(days=d)) in NIGHT_HOURS
               for d in range(400))


def test_one_tenant_spreads_over_all_seven_hours() -> None:
    start = date(2026, 1, 1)
    counts = Counter(scheduled_hour("acme", start + timedelta(days=d)) for d in range(1000))
    assert set(counts) == set(NIGHT_HOURS)
    assert all(90 <= n <= 200 for n in counts.values()), counts  # about 1000 / 7 each


def test_tenants_spread_over_all_seven_hours_on_one_night() -> None:
    counts = Counter(scheduled_hour(f"tenant-{i}", date(2026, 6, 10)) for i in range(700))
    assert set(counts) == set(NIGHT_HOURS) and max(counts.values()) < 200


def test_the_hour_depends_on_tenant_and_date() -> None:
    hours = {scheduled_hour(t, date(2026, 6, d)) for t in ("a", "b", "c") for d in range(1, 8)}
    assert len(hours) > 1


def test_hours_after_midnight_belong_to_the_previous_evening() -> None:
    night = date(2026, 6, 10)
    assert scheduled_local(tenant_with_hour(0, night), night) == datetime(2026, 6, 11, 0)
    assert scheduled_local(tenant_with_hour(2, night), night) == datetime(2026, 6, 11, 2)
    assert scheduled_local(tenant_with_hour(23, night), night) == datetime(2026, 6, 10, 23)
    assert night_of(utc(2026, 6, 11, 0, 30), "UTC") == night
    assert night_of(utc(2026, 6, 11, 2, 59), "UTC") == night
    assert night_of(utc(2026, 6, 11, 3, 0), "UTC") == date(2026, 6, 11)
    assert night_of(utc(2026, 6, 10, 12), "UTC") == night  # day time: the coming night


# --- time zones ----------------------------------------------------------------------------


@pytest.mark.parametrize(("zone", "night", "hour", "expected"), [
    ("UTC", date(2026, 6, 10), 21, utc(2026, 6, 10, 21)),
    ("UTC", date(2026, 6, 10), 1, utc(2026, 6, 11, 1)),
    ("Europe/Warsaw", date(2026, 6, 10), 22, utc(2026, 6, 10, 20)),  # CEST, +2
    ("Europe/Warsaw", date(2026, 1, 10), 22, utc(2026, 1, 10, 21)),  # CET, +1
    ("America/New_York", date(2026, 6, 10), 20, utc(2026, 6, 11, 0)),  # EDT, -4
    ("America/New_York", date(2026, 1, 10), 0, utc(2026, 1, 11, 5)),  # EST, -5
    ("Asia/Kathmandu", date(2026, 6, 10), 20, utc(2026, 6, 10, 14, 15)),  # +5:45
    ("Australia/Lord_Howe", date(2026, 6, 10), 23, utc(2026, 6, 10, 12, 30)),  # +10:30
    ("Australia/Lord_Howe", date(2026, 12, 10), 23, utc(2026, 12, 10, 12)),  # +11
])
def test_the_run_in_each_zone(zone: str, night: date, hour: int, expected: datetime) -> None:
    tenant = tenant_with_hour(hour, night)
    assert run_instant(tenant, zone, night) == expected
    assert next_run(tenant, zone, expected - timedelta(hours=5), None) == (night, expected)


# --- daylight saving time --------------------------------------------------------------------


@pytest.mark.parametrize(("zone", "night", "hour", "expected"), [
    # Warsaw springs forward on 29 March 2026, 02:00 CET → 03:00 CEST: 02:00 does not exist.
    ("Europe/Warsaw", date(2026, 3, 28), 1, utc(2026, 3, 29, 0)),
    ("Europe/Warsaw", date(2026, 3, 28), 2, utc(2026, 3, 29, 1)),  # moved to 03:00 CEST
    # Warsaw falls back on 25 October 2026, 03:00 CEST → 02:00 CET: 02:00 happens twice.
    ("Europe/Warsaw", date(2026, 10, 24), 2, utc(2026, 10, 25, 0)),  # the first, CEST
    ("Europe/Warsaw", date(2026, 10, 24), 1, utc(2026, 10, 24, 23)),
    ("Europe/Warsaw", date(2026, 10, 25), 2, utc(2026, 10, 26, 1)),  # the night after: CET
    # New York springs forward on 8 March 2026 at 02:00 and falls back on 1 November at 02:00.
    ("America/New_York", date(2026, 3, 7), 2, utc(2026, 3, 8, 7)),  # moved to 03:00 EDT
    ("America/New_York", date(2026, 3, 7), 1, utc(2026, 3, 8, 6)),  # 01:00 EST
    ("America/New_York", date(2026, 10, 31), 1, utc(2026, 11, 1, 5)),  # first 01:00, EDT
    ("America/New_York", date(2026, 10, 31), 2, utc(2026, 11, 1, 7)),  # 02:00 EST
    # Lord Howe moves by 30 minutes: 02:00 → 02:30 on 4 October, 02:00 → 01:30 on 5 April.
    ("Australia/Lord_Howe", date(2026, 10, 3), 2, utc(2026, 10, 3, 15, 30)),  # 02:30 +11
    ("Australia/Lord_Howe", date(2026, 4, 4), 1, utc(2026, 4, 4, 14)),  # 01:00 +11
    ("Australia/Lord_Howe", date(2026, 4, 4), 2, utc(2026, 4, 4, 15, 30)),  # 02:00 +10:30
])
def test_the_run_across_dst_changes(zone: str, night: date, hour: int,
                                    expected: datetime) -> None:
    tenant = tenant_with_hour(hour, night)
    assert run_instant(tenant, zone, night) == expected
    assert next_run(tenant, zone, expected - timedelta(hours=6), None) == (night, expected)
    assert due(tenant, zone, expected, None) == night
    assert due(tenant, zone, expected - timedelta(seconds=1), None) is None


def test_a_time_inside_a_gap_moves_to_the_end_of_the_gap() -> None:
    warsaw, lord_howe = ZoneInfo("Europe/Warsaw"), ZoneInfo("Australia/Lord_Howe")
    assert local_to_utc(datetime(2026, 3, 29, 2, 30), warsaw) == utc(2026, 3, 29, 1)
    assert local_to_utc(datetime(2026, 3, 29, 2, 59, 59), warsaw) == utc(2026, 3, 29, 1)
    assert local_to_utc(datetime(2026, 10, 4, 2, 15), lord_howe) == utc(2026, 10, 3, 15, 30)


def test_an_ambiguous_time_is_its_first_occurrence() -> None:
    warsaw, lord_howe = ZoneInfo("Europe/Warsaw"), ZoneInfo("Australia/Lord_Howe")
    assert local_to_utc(datetime(2026, 10, 25, 2, 30), warsaw) == utc(2026, 10, 25, 0, 30)
    assert local_to_utc(datetime(2026, 4, 5, 1, 45), lord_howe) == utc(2026, 4, 4, 14, 45)


def test_the_window_is_longer_when_the_clocks_fall_back() -> None:
    start, end = night_window("Europe/Warsaw", date(2026, 10, 24))
    assert (start, end) == (utc(2026, 10, 24, 18), utc(2026, 10, 25, 2))
    start, end = night_window("Europe/Warsaw", date(2026, 3, 28))
    assert end - start == timedelta(hours=6)


# --- once a night ------------------------------------------------------------------------------


def test_a_night_already_run_is_never_offered_again() -> None:
    night = date(2026, 6, 10)
    tenant = tenant_with_hour(22, night)
    assert due(tenant, "UTC", utc(2026, 6, 10, 22), None) == night
    # A restart right after the run: the stored last night keeps it from running twice.
    for minutes in (1, 60, 240, 299):
        assert due(tenant, "UTC", utc(2026, 6, 10, 22) + timedelta(minutes=minutes),
                   night) is None
    following, at = next_run(tenant, "UTC", utc(2026, 6, 10, 22, 5), night)
    assert following == night + timedelta(days=1) and at >= utc(2026, 6, 11, 20)


def test_the_second_0200_of_a_fall_back_night_does_not_run_again() -> None:
    night = date(2026, 10, 24)
    tenant = tenant_with_hour(2, night)
    assert due(tenant, "Europe/Warsaw", utc(2026, 10, 25, 0), None) == night  # 02:00 CEST
    assert due(tenant, "Europe/Warsaw", utc(2026, 10, 25, 1), night) is None  # 02:00 CET


def test_a_missed_run_catches_up_while_the_night_lasts() -> None:
    night = date(2026, 6, 10)
    tenant = tenant_with_hour(20, night)
    late = utc(2026, 6, 11, 2, 30)  # the worker was down from 19:00 to 02:30
    assert next_run(tenant, "UTC", late, night - timedelta(days=1)) == (night, late)
    assert due(tenant, "UTC", late, night - timedelta(days=1)) == night


def test_a_run_moved_to_the_end_of_the_window_still_has_an_hour_to_catch_up() -> None:
    night = date(2026, 3, 28)
    tenant = tenant_with_hour(2, night)  # 02:00 does not exist: the run is at 03:00 CEST
    instant = utc(2026, 3, 29, 1)
    assert night_window("Europe/Warsaw", night)[1] == instant
    assert due(tenant, "Europe/Warsaw", instant + timedelta(minutes=5), None) == night
    assert due(tenant, "Europe/Warsaw", instant + timedelta(minutes=59), None) == night
    assert due(tenant, "Europe/Warsaw", instant + timedelta(hours=1), None) is None


def test_a_gap_run_found_by_a_worker_ticking_off_the_hour() -> None:
    night = date(2026, 3, 7)
    tenant = tenant_with_hour(2, night)
    ticks = [utc(2026, 3, 8, 6, 53) + timedelta(minutes=10 * i) for i in range(6)]
    assert [due(tenant, "America/New_York", t, None) for t in ticks][:3] == [None, night, night]


def test_a_night_missed_entirely_is_skipped() -> None:
    night = date(2026, 6, 10)
    tenant = tenant_with_hour(20, night)
    morning = utc(2026, 6, 11, 3)  # the window closed at 03:00
    assert due(tenant, "UTC", morning, night - timedelta(days=1)) is None
    assert next_run(tenant, "UTC", morning, night - timedelta(days=1))[0] == \
        night + timedelta(days=1)


def test_the_stored_night_wins_over_the_clock() -> None:
    # A stored night ahead of the clock (it ran, then the clock was set back) is not rerun.
    night = date(2026, 6, 10)
    assert next_run("acme", "UTC", utc(2026, 6, 10, 12), night)[0] == date(2026, 6, 11)


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next_run("acme", "UTC", datetime(2026, 6, 10, 12), None)
    with pytest.raises(ValueError, match="timezone-aware"):
        due("acme", "UTC", datetime(2026, 6, 10, 12), None)


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize("first_night", [date(2026, 3, 5), date(2026, 3, 26),
                                         date(2026, 4, 2), date(2026, 10, 1),
                                         date(2026, 10, 22), date(2026, 10, 29)])
@pytest.mark.parametrize(("tenant", "tick_offset"), [("acme", 0), ("globex", 7)])
def test_a_worker_ticking_every_ten_minutes_runs_each_night_once(
        zone: str, first_night: date, tenant: str, tick_offset: int) -> None:
    """Ten days of ticks around the DST changes, with a restart (state kept) after each run."""
    last: date | None = None
    runs: list[tuple[date, datetime]] = []
    now = datetime.combine(first_night, datetime.min.time(), tzinfo=UTC) + \
        timedelta(minutes=tick_offset)
    while now < datetime.combine(first_night + timedelta(days=10), datetime.min.time(),
                                 tzinfo=UTC):
        night = due(tenant, zone, now, last)
        if night is not None:
            runs.append((night, now))
            last = night  # stored before the restart
        now += timedelta(minutes=10)
    nights = [night for night, _ in runs]
    assert len(nights) == len(set(nights)) >= 9
    assert nights == sorted(nights)
    for night, at in runs[1:]:
        scheduled = run_instant(tenant, zone, night)
        assert scheduled <= at < scheduled + timedelta(minutes=10)
