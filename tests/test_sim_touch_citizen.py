"""The touch-board citizen (hall_simulator.citizens.TouchVisit) on the real firmware touch UI: it
finds buttons on the screen, rates overall / business / service, each theme item on its page,
picks tag chips for a bad rating, and a double tap on 提交 still makes one rating."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import fw_support  # noqa: E402

from hall_simulator import citizens  # noqa: E402
from protocol import vocab  # noqa: E402

FONT = str(Path(__file__).resolve().parent.parent / "firmware" / "fonts" / "unifont16.bin")
ITEMS = [{"code": "T1", "name": "营业执照设立登记"}, {"code": "T2", "name": "食品经营许可"},
         {"code": "T3", "name": "消防安全检查"}, {"code": "T4", "name": "税务登记"}]


def visit(rig, plan, case_id, **ctx):
    """Play one citizen on the rig, as hall_simulator.evaluator does; returns (visit, taps)."""
    rig.context(case_id, **ctx)
    rig.wait(1000)
    v = citizens.TouchVisit(plan)
    taps = 0
    for _ in range(80):
        point = v.next_tap(rig.dev.ui, rig.dev.app.view())
        if point is None:
            if v.done:
                break
            rig.wait(500)
            continue
        again = v.double_tap_point(point)
        rig.board.advance(700)
        rig.board.touch(*point)
        rig.dev.step()
        taps += 1
        if again is not None:
            rig.board.advance(100)
            rig.board.touch(*again)
            rig.dev.step()
            taps += 1
    return v, taps


def test_three_indicators_tapped_and_submitted(tmp_path):
    rig = fw_support.Rig("touch", font=FONT, base=str(tmp_path))
    plan = citizens.Plan(2, 1.0, business=1, service=3)
    v, taps = visit(rig, plan, 41)
    assert v.done and not v.gave_up and rig.state == "thanks" and taps == 4
    (r,) = rig.ratings
    fw_support.check_rating(r)
    assert (r["overall"], r["business"], r["service"], r["source"]) == (2, 1, 3, vocab.SRC_PRESS)


def test_theme_items_rated_one_by_one_a_page_each_then_tags(tmp_path):
    rig = fw_support.Rig("touch", font=FONT, base=str(tmp_path))
    plan = citizens.Plan(2, 1.0, tag_count=2, business=2, service=1, items=(1, 0, 5, 2))
    v, taps = visit(rig, plan, 42, items=ITEMS, matter_name="我要开餐馆")
    assert v.done and not v.gave_up and rig.state == "thanks"
    (r,) = rig.ratings
    fw_support.check_rating(r)
    assert (r["overall"], r["business"], r["service"]) == (2, 2, 1)
    assert r["items"] == [{"code": "T1", "level": 1}, {"code": "T3", "level": 5},
                          {"code": "T4", "level": 2}]                 # T2 left out on purpose
    assert len(r["tags"]) == 2                                        # a bad item needs tags
    # a page a block, a press moves on: three indicators, T1, › past T2 (left out), T3, T4,
    # 提交; then two chips and 确定
    assert taps == 3 + 1 + 1 + 1 + 1 + 1 + 2 + 1


def test_receipt_shows_the_service_block_alone(tmp_path):
    rig = fw_support.Rig("touch", font=FONT, base=str(tmp_path))
    v, taps = visit(rig, citizens.Plan(1, 1.0, business=4, service=2), 43, node=vocab.NODE_RECEIPT)
    assert rig.state == "thanks" and taps == 2
    (r,) = rig.ratings
    assert r["service"] == 2 and "overall" not in r and "business" not in r


def test_a_double_tap_on_submit_is_one_rating_and_a_walk_away_none(tmp_path):
    rig = fw_support.Rig("touch", font=FONT, base=str(tmp_path))
    v, taps = visit(rig, citizens.Plan(1, 1.0, double_tap=True), 44)
    assert taps == 5 and rig.state == "thanks" and len(rig.ratings) == 1
    rig.wait(5000)
    v, taps = visit(rig, citizens.Plan(0, 1.0), 45)                # waits 40 s: the timeout passes
    assert taps == 0 and [r["source"] for r in rig.ratings] == [vocab.SRC_PRESS, vocab.SRC_NOT_RATED]


def test_mix_draws_touch_opinions_near_the_overall_level():
    import random
    mix = citizens.Mix()
    for n in range(200):
        plan = mix.decide(random.Random(n))
        if plan.walks_away:
            continue
        assert abs(plan.business - plan.level) <= 1 and abs(plan.service - plan.level) <= 1
        assert len(plan.items) == citizens.MAX_ITEMS
        assert all(i == 0 or abs(i - plan.level) <= 1 for i in plan.items)
        bad = any(vocab.is_bad(x) for x in (plan.level, plan.business, plan.service) + plan.items)
        assert (plan.tag_count > 0) == bad
