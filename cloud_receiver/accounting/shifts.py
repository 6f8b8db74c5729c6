"""The shift calendar: named shifts in local wall-clock time that tile the day.

Energy and output are compared per shift (生产班组), so a shift must be a window the 15-minute
rollups fill exactly: shifts start on quarter hours and together cover the 24 h day once.
A shift belongs to the production date on which it *starts*, so a 22:00–06:00 night shift of
2025-06-01 ends on 2025-06-02. Times are wall-clock: the conversion to Unix ms is right even in a
zone with daylight saving (Asia/Shanghai has none).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cloud_receiver.accounting._files import read_toml
from nengtan.errors import ConfigError

SHIFTS_FILE = "shifts.toml"
_DAY_MINUTES = 24 * 60


@dataclass(frozen=True)
class Shift:
    name: str
    start_minute: int  # minutes after local midnight
    minutes: int


@dataclass(frozen=True)
class ShiftSlot:
    """One shift on one production date, as Unix-ms bounds ``[start_ms, end_ms)``."""

    day: date
    shift: str
    start_ms: int
    end_ms: int

    @property
    def label(self) -> str:
        return f"{self.day.isoformat()}/{self.shift}"


@dataclass(frozen=True)
class ShiftCalendar:
    timezone: str
    shifts: tuple[Shift, ...]  # ordered by start

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def names(self) -> list[str]:
        return [s.name for s in self.shifts]

    def slots_of_day(self, day: date) -> list[ShiftSlot]:
        midnight = datetime.combine(day, time(0), self.tz)
        out = []
        for s in self.shifts:
            # Wall-clock arithmetic, then one conversion: right even where the zone has DST.
            start = midnight.replace(tzinfo=None) + timedelta(minutes=s.start_minute)
            end = start + timedelta(minutes=s.minutes)
            out.append(ShiftSlot(day, s.name, _ms(start, self.tz), _ms(end, self.tz)))
        return out

    def slots(self, first: date, last: date) -> list[ShiftSlot]:
        """Every shift of the production dates ``first..last`` inclusive, in time order."""
        out: list[ShiftSlot] = []
        day = first
        while day <= last:
            out.extend(self.slots_of_day(day))
            day += timedelta(days=1)
        return sorted(out, key=lambda s: s.start_ms)

    def slot_at(self, ts_ms: int) -> ShiftSlot:
        local = datetime.fromtimestamp(ts_ms / 1000, self.tz).date()
        for slot in self.slots(local - timedelta(days=1), local):
            if slot.start_ms <= ts_ms < slot.end_ms:
                return slot
        raise AssertionError(f"shift calendar does not cover {ts_ms}")  # tiling is validated


def _ms(local: datetime, tz: ZoneInfo) -> int:
    return int(local.replace(tzinfo=tz).timestamp() * 1000)


DEFAULT_SHIFTS = (Shift("1", 0, 480), Shift("2", 480, 480), Shift("3", 960, 480))


def _parse_hhmm(text: object) -> int | None:
    if not isinstance(text, str) or len(text) != 5 or text[2] != ":":
        return None
    try:
        hours, minutes = int(text[:2]), int(text[3:])
    except ValueError:
        return None
    return hours * 60 + minutes if 0 <= hours < 24 and 0 <= minutes < 60 else None


def parse_shifts(doc: Mapping[str, object], source: str) -> ShiftCalendar:
    """A calendar from a parsed ``shifts.toml``; every problem reported at once."""
    problems: list[str] = []
    tz_name = doc.get("timezone", "Asia/Shanghai")
    if not isinstance(tz_name, str):
        problems.append("At 'timezone': expected an IANA zone name such as 'Asia/Shanghai'")
        tz_name = "Asia/Shanghai"
    else:
        try:
            ZoneInfo(tz_name)
        except (ZoneInfoNotFoundError, ValueError):
            problems.append(f"At 'timezone': unknown time zone {tz_name!r}")
    raw = doc.get("shift")
    if not isinstance(raw, list) or not raw:
        raise ConfigError(source, problems + ["At 'shift': expected at least one [[shift]] table"])
    shifts: list[Shift] = []
    for i, item in enumerate(raw):
        where = f"At 'shift[{i}]"
        if not isinstance(item, dict):
            problems.append(f"{where}': expected a table with name, start, hours")
            continue
        unknown = sorted(set(item) - {"name", "start", "hours"})
        if unknown:
            problems.append(f"{where}': unknown key(s) {', '.join(unknown)}")
        name, start, hours = item.get("name"), _parse_hhmm(item.get("start")), item.get("hours")
        if not isinstance(name, str) or not name.strip():
            problems.append(f"{where}.name': expected a non-empty string")
            continue
        if start is None:
            problems.append(f"{where}.start': expected local time 'HH:MM', got {item.get('start')!r}")
        elif start % 15:
            problems.append(f"{where}.start': {item['start']} is not on a quarter hour, so 15-minute"
                            " buckets would straddle two shifts")
        if (isinstance(hours, bool) or not isinstance(hours, int | float)
                or not 0 < hours <= 24 or (hours * 60) % 15):
            problems.append(f"{where}.hours': expected a number of hours in (0, 24] in quarter"
                            f" hours, got {hours!r}")
            continue
        if start is not None:
            shifts.append(Shift(name, start, int(hours * 60)))
    names = [s.name for s in shifts]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"At 'shift': name {dup!r} is used twice")
    if shifts and not problems:
        problems += _tiling_problems(sorted(shifts, key=lambda s: s.start_minute))
    if problems:
        raise ConfigError(source, problems)
    return ShiftCalendar(tz_name, tuple(sorted(shifts, key=lambda s: s.start_minute)))


def _tiling_problems(shifts: Sequence[Shift]) -> list[str]:
    total = sum(s.minutes for s in shifts)
    if total != _DAY_MINUTES:
        return [f"At 'shift': the shifts last {total / 60:g} h together; they must tile the"
                " 24 h day exactly so that every kWh belongs to one shift"]
    out = []
    for a, b in zip(shifts, [*shifts[1:], shifts[0]]):
        end = (a.start_minute + a.minutes) % _DAY_MINUTES
        if end != b.start_minute:
            out.append(f"At 'shift': shift {a.name!r} ends at {end // 60:02d}:{end % 60:02d} but"
                       f" the next one, {b.name!r}, starts at {b.start_minute // 60:02d}:"
                       f"{b.start_minute % 60:02d}")
    return out


def load_shifts(plant_dir: Path) -> ShiftCalendar:
    """``shifts.toml`` of the plant directory, or three 8-hour shifts from local midnight
    (``1`` 00:00, ``2`` 08:00, ``3`` 16:00, Asia/Shanghai) if the file is absent."""
    path = plant_dir / SHIFTS_FILE
    doc = read_toml(path)
    if doc is None:
        return ShiftCalendar("Asia/Shanghai", DEFAULT_SHIFTS)
    return parse_shifts(doc, str(path))
