"""One test per rating rule, through the whole hall (queueing system -> gateway -> evaluator ->
citizen -> gateway -> central API): receipt node, failed receipt, batch, theme, walk-away,
the 7-day default, bad rating -> work order. Each runs a two-window hall for a few seconds."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from hall_support import central, run_hall  # noqa: E402

from hall_simulator import citizens  # noqa: E402
from protocol import vocab  # noqa: E402

RATE_ALL = citizens.Mix(levels=(50, 30, 20, 0, 0), walk_away=0.0, double_tap=0.2, think_s=(1.0, 2.0))


def _ok(r, out):
    assert r["drained"] and r["lost"] == 0 and r["duplicates"] == 0, out


def test_receipt_rates_the_window_service_only(tmp_path):
    _, r, out = run_hall(tmp_path, mix=RATE_ALL, case_weights={"receipt": 1})
    _ok(r, out)
    rows = central(tmp_path, "SELECT case_key, overall, business, service FROM ratings WHERE source=1")
    assert rows and r["received"] == len(rows)
    for key, overall, business, service in rows:
        assert key.endswith("#%d" % vocab.NODE_RECEIPT)
        assert overall is None and business is None and service in vocab.LEVELS


def test_failed_receipt_opens_no_rating(tmp_path):
    _, r, out = run_hall(tmp_path, mix=RATE_ALL, case_weights={"failed_receipt": 1}, duration=40)
    assert r["queue"]["cases"] > 0                 # the queueing system reported failures...
    assert r["evaluators"]["cases"] == 0           # ...no evaluator ever showed a case
    assert r["confirmed"] == 0 and r["received"] == 0 and r["cases_at_central"] == 0


def test_a_batch_is_rated_once_for_all_its_serials(tmp_path):
    _, r, out = run_hall(tmp_path, mix=RATE_ALL, case_weights={"batch": 1})
    _ok(r, out)
    rated = central(tmp_path, "SELECT c.serials FROM ratings r JOIN cases c ON c.case_key = r.case_key"
                              " WHERE r.source=1")
    assert rated and len(rated) == r["received"]
    for (serials,) in rated:
        assert len(serials.split(",")) >= 2        # one rating holds the whole batch


def test_a_theme_is_rated_as_one_service(tmp_path):
    _, r, out = run_hall(tmp_path, mix=RATE_ALL, case_weights={"theme": 1})
    _ok(r, out)
    rows = central(tmp_path, "SELECT matter_code, overall FROM ratings WHERE source=1")
    assert rows
    for code, overall in rows:
        assert code.startswith("T-") and overall in vocab.LEVELS


def test_walk_away_is_not_rated_at_the_window(tmp_path):
    away = citizens.Mix(walk_away=1.0, think_s=(1.0, 2.0))
    _, r, out = run_hall(tmp_path, mix=away, case_weights={"completion": 1}, rating_timeout_s=10)
    assert r["drained"], out
    assert r["confirmed"] == 0 and r["received"] == 0
    assert r["not_rated"] > 0 and r["not_rated_at_central"] == r["not_rated"]


def test_seven_days_without_a_rating_count_as_basically_satisfied(tmp_path):
    # The business completed 7 days minus one simulated minute ago; nobody rates at the window.
    away = citizens.Mix(walk_away=1.0, think_s=(1.0, 2.0))
    _, r, out = run_hall(tmp_path, mix=away, case_weights={"completion": 1}, speed=40,
                         completed_ago_s=7 * 86400 - 60, duration=120, rating_timeout_s=10)
    assert r["system_defaults"] > 0, out
    rows = central(tmp_path, "SELECT level, source, rating_id FROM ratings WHERE superseded=0")
    defaults = [row for row in rows if row[1] == vocab.SRC_SYSTEM_DEFAULT]
    assert defaults and all(level == vocab.BASICALLY_SATISFIED for level, _, _ in defaults)
    assert all(rid.startswith("default:") for _, _, rid in defaults)   # never shown as a press
    assert r["received"] == 0


def test_every_bad_rating_opens_a_work_order(tmp_path):
    grumpy = citizens.Mix(levels=(0, 0, 0, 1, 1), walk_away=0.0, think_s=(1.0, 2.0))
    _, r, out = run_hall(tmp_path, mix=grumpy, case_weights={"completion": 1})
    _ok(r, out)
    assert r["received"] > 0 and r["work_orders"] == r["received"] == r["work_orders_expected"]
    orders = central(tmp_path, "SELECT level, tags, deadline_date, created_at FROM work_orders")
    for level, tags, deadline_date, created_at in orders:
        assert level in (vocab.DISSATISFIED, vocab.VERY_DISSATISFIED)
        assert tags                                # the citizen's tag choice went along
        assert deadline_date                       # 10 working days
