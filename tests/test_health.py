"""The health check's deep-check rotation, simulated over a year of daily runs (no servers)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from bhv360_backup.health import DEEP_CHECK_CYCLE_DAYS, History, deep_check_due, due_today

START = datetime(2026, 1, 1, tzinfo=timezone.utc)


def simulate(days: int, every: int, keep_days: int, missed: set[int] = frozenset()):
    """Backups made every ``every`` days at 01:00, kept ``keep_days``; health at 07:00 on each day
    not in ``missed``. Returns each backup's life (made, gone) and the days it was read back in full."""
    made: dict[str, datetime] = {}
    checks: dict[str, list[datetime]] = {}
    last_checked: dict[str, datetime] = {}
    for day in range(days):
        backup_time = START + timedelta(days=day, hours=1)
        if day % every == 0:
            backup_id = backup_time.strftime("%Y%m%dT%H%M%SZ")
            made[backup_id] = backup_time
        kept = sorted(i for i, t in made.items() if backup_time - t < timedelta(days=keep_days))
        if day in missed:
            continue
        now = START + timedelta(days=day, hours=7)
        for backup_id in deep_check_due(kept, now.date(), last_checked, now):
            last_checked[backup_id] = now
            checks.setdefault(backup_id, []).append(now)
    return made, checks


def lifetimes(made, keep_days, days):
    end = START + timedelta(days=days)
    return {backup_id: (t, min(t + timedelta(days=keep_days), end)) for backup_id, t in made.items()}


@pytest.mark.parametrize(("every", "keep_days"), [(1, 30), (7, 30), (1, 90)], ids=["daily", "weekly", "daily-90d"])
def test_every_kept_backup_is_read_back_at_least_once_a_week_and_the_newest_on_its_first_run(every, keep_days):
    made, checks = simulate(365, every, keep_days)
    for backup_id, (born, gone) in lifetimes(made, keep_days, 365).items():
        times = checks.get(backup_id, [])
        assert times and times[0] - born < timedelta(hours=7), f"{backup_id} not checked on its first run"
        for earlier, later in zip([born, *times], [*times, gone], strict=True):
            assert later - earlier <= timedelta(days=DEEP_CHECK_CYCLE_DAYS), f"{backup_id}: a gap {earlier}..{later}"


def test_the_reads_are_spread_over_the_week():
    made, checks = simulate(365, 1, 30)
    per_day: dict = {}
    for times in checks.values():
        for moment in times:
            per_day[moment.date()] = per_day.get(moment.date(), 0) + 1
    steady = [count for day, count in per_day.items() if day > (START + timedelta(days=40)).date()]
    assert max(steady) <= 30 // DEEP_CHECK_CYCLE_DAYS + 2  # the newest, plus a seventh of 30


def test_a_missed_run_is_caught_up_on_the_next():
    missed = {day for day in range(365) if day % 10 == 3}
    made, checks = simulate(365, 1, 30, missed)
    for backup_id, (_born, gone) in lifetimes(made, 30, 365).items():
        times = checks.get(backup_id, [])
        for earlier, later in zip(times, [*times[1:], gone], strict=True):
            assert later - earlier <= timedelta(days=DEEP_CHECK_CYCLE_DAYS + 1), f"{backup_id}: {earlier}..{later}"


def test_each_blob_comes_round_once_a_cycle_and_missed_days_are_read_too():
    keys = [f"blobs/sha256/{i:02x}/{i:064x}" for i in range(500)]
    today = START.date()
    for key in keys:
        days = [today + timedelta(days=d) for d in range(DEEP_CHECK_CYCLE_DAYS)]
        assert sum(due_today(key, day) for day in days) == 1
    history = History(last_run=START - timedelta(days=3))  # two runs missed
    covered = {key for key in keys if due_today(key, today, days=history.days_to_catch_up(today, 7))}
    assert covered == {key for key in keys for back in range(3) if due_today(key, today - timedelta(days=back))}
    assert History().days_to_catch_up(today, 7) == 7  # a first run reads every blob
