"""The central side's rating rules as plain functions: working-day deadlines, scores and grades.

Scoring (stated, configurable): each level earns points 非常满意 10, 满意 8, 基本满意 6, 不满意 3,
非常不满意 0 (one province's published scale); a group's score is the mean points x 10, so 0..100.
Grades: 优秀 >= 90, 良好 80-89.99, 一般 70-79.99, 较差 < 70 (rules: 优 >= 90, 良 80-89, 中 70-79, 差 < 70).
A rating counts with its overall level; a receipt-node rating (service only) or a rating without an
overall level counts with the worst level it has. System defaults count (rules Art. 18: 基本满意).
"""

import datetime as _dt

from protocol import vocab

CHINA_TZ = _dt.timezone(_dt.timedelta(hours=8))

LEVEL_POINTS = {vocab.VERY_SATISFIED: 10, vocab.SATISFIED: 8, vocab.BASICALLY_SATISFIED: 6,
                vocab.DISSATISFIED: 3, vocab.VERY_DISSATISFIED: 0}
GRADES = ((90.0, "优秀"), (80.0, "良好"), (70.0, "一般"), (float("-inf"), "较差"))


def effective_level(record):
    """The level a rating counts with in statistics (see module doc); 0 if it has none."""
    if record.get("overall"):
        return record["overall"]
    levels = [record[name] for name in ("business", "service") if record.get(name)]
    levels += [item["level"] for item in record.get("items") or () if item.get("level")]
    return max(levels) if levels else 0


def score(level_counts, points=LEVEL_POINTS):
    """0..100 from {level: count}; None when nothing was rated."""
    total = sum(level_counts.values())
    if not total:
        return None
    return 10.0 * sum(points[level] * n for level, n in level_counts.items()) / total


def grade(value, grades=GRADES):
    if value is None:
        return None
    for floor, name in grades:
        if value >= floor:
            return name
    return grades[-1][1]


def china_date(unix_seconds):
    return _dt.datetime.fromtimestamp(unix_seconds, CHINA_TZ).date()


class WorkCalendar:
    """Working days: Monday-Friday, minus holidays, plus make-up working days (调休) at weekends."""

    def __init__(self, holidays=(), workdays=()):
        self.holidays = {self._date(d) for d in holidays}
        self.workdays = {self._date(d) for d in workdays}

    @staticmethod
    def _date(value):
        return value if isinstance(value, _dt.date) else _dt.date.fromisoformat(value)

    def is_working_day(self, day):
        if day in self.workdays:
            return True
        return day.weekday() < 5 and day not in self.holidays

    def add_working_days(self, start, days):
        """The date of the `days`-th working day after `start` (the day itself does not count)."""
        day = start
        left = days
        while left > 0:
            day += _dt.timedelta(days=1)
            if self.is_working_day(day):
                left -= 1
        return day

    def deadline(self, created_unix, days):
        """End of the `days`-th working day after the creation day, as (ISO date, unix seconds)."""
        day = self.add_working_days(china_date(created_unix), days)
        end = _dt.datetime.combine(day, _dt.time(23, 59, 59), CHINA_TZ)
        return day.isoformat(), int(end.timestamp())
