"""Score, grade and satisfaction rate of a set of ratings: pure functions over level counts.

Rules (shared/reference/rules.md, Art. 10 and the grades of the seed documents):
- A level scores `scores[level]` (10 / 8 / 6 / 3 / 0 for 非常满意 .. 非常不满意); the score of a set
  is the mean level score * 10, rounded to one decimal (0..100).
- Grade by score: 优秀 >= excellent (90), 良好 >= good (80), 一般 >= fair (70), else 较差.
- Satisfaction rate: the share of rated ratings that are not 差评 (levels 1-3: 非常满意, 满意,
  基本满意; Art. 10 makes only 不满意 and 非常不满意 bad), as a percentage with one decimal.
- "Not rated at the window" (vocab.SRC_NOT_RATED) carries no level: counted apart, never scored.
- Nothing rated: score, grade and rate are None (no grade is better than an invented one).
Scores and cut-offs are configuration: `[console.grading]` scores = {"1"=10, ...}, excellent,
good, fair (Grading.from_config checks them).
"""

from dataclasses import dataclass, field

from protocol import vocab

DEFAULT_SCORES = {1: 10, 2: 8, 3: 6, 4: 3, 5: 0}
GRADES = ("优秀", "良好", "一般", "较差")


class GradingError(ValueError):
    pass


@dataclass(frozen=True)
class Grading:
    scores: dict = field(default_factory=lambda: dict(DEFAULT_SCORES))
    excellent: float = 90
    good: float = 80
    fair: float = 70

    @classmethod
    def from_config(cls, section):
        """From a `[console.grading]` table (or None: the defaults); GradingError when wrong."""
        section = dict(section or {})
        unknown = set(section) - {"scores", "excellent", "good", "fair"}
        if unknown:
            raise GradingError("[console.grading]: unknown keys %s" % ", ".join(sorted(unknown)))
        scores = dict(DEFAULT_SCORES)
        raw = section.pop("scores", {})
        if not isinstance(raw, dict):
            raise GradingError("[console.grading] scores maps levels 1..5 to points 0..10")
        for key, value in raw.items():
            level = int(key) if str(key).isdigit() else None
            if level not in DEFAULT_SCORES or not _number(value) or not 0 <= value <= 10:
                raise GradingError("[console.grading] scores maps levels 1..5 to points 0..10")
            scores[level] = value
        cuts = dict((k, section.get(k, getattr(cls, k))) for k in ("excellent", "good", "fair"))
        if (not all(_number(v) for v in cuts.values())
                or not 0 <= cuts["fair"] <= cuts["good"] <= cuts["excellent"] <= 100):
            raise GradingError("[console.grading] needs 0 <= fair <= good <= excellent <= 100")
        return cls(scores=scores, **cuts)


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def score(counts, grading=Grading()):
    """Mean level score * 10 over `counts` {level: n}, one decimal; None when nothing is rated."""
    rated = sum(counts.get(level, 0) for level in vocab.LEVELS)
    if not rated:
        return None
    points = sum(grading.scores[level] * counts.get(level, 0) for level in vocab.LEVELS)
    return round(points * 10.0 / rated, 1)


def grade(value, grading=Grading()):
    """优秀 / 良好 / 一般 / 较差 for a score; None for None."""
    if value is None:
        return None
    if value >= grading.excellent:
        return GRADES[0]
    if value >= grading.good:
        return GRADES[1]
    if value >= grading.fair:
        return GRADES[2]
    return GRADES[3]


def satisfaction_rate(counts):
    """Percentage (one decimal) of rated ratings that are not 差评; None when nothing is rated."""
    rated = sum(counts.get(level, 0) for level in vocab.LEVELS)
    if not rated:
        return None
    satisfied = sum(counts.get(level, 0) for level in vocab.LEVELS if not vocab.is_bad(level))
    return round(satisfied * 100.0 / rated, 1)


def summarize(counts, not_rated=0, grading=Grading()):
    """The figures of one row of a summary: counts by level ("1".."5"), rated, not_rated,
    satisfaction_rate, score, grade."""
    s = score(counts, grading)
    return {"counts": dict((str(level), counts.get(level, 0)) for level in vocab.LEVELS),
            "rated": sum(counts.get(level, 0) for level in vocab.LEVELS),
            "not_rated": not_rated, "satisfaction_rate": satisfaction_rate(counts),
            "score": s, "grade": grade(s, grading)}
