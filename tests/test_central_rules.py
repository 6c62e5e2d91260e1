"""Reference central API rules, applied to its store directly (the HTTP layer has its own tests)."""

import datetime

import pytest

from gateway import profiles
from hall_simulator import central_rules as rules
from hall_simulator.central_store import CentralStore, Rejected
from protocol import vocab
from tests.uplink_support import T0, FakeClock

DAY = 86400


def rating(device, counter, level=vocab.SATISFIED, serial=None, node=vocab.NODE_COMPLETION,
           window="A01", staff=("1001", "王喆"), matter=("440300-001", "居住证签注"), at=T0, **extra):
    record = {"rating_id": "%s:%d" % (device, counter), "device": device, "counter": counter,
              "serials": [serial or "SN%s%d" % (device, counter)], "node": node,
              "source": vocab.SRC_PRESS, "overall": level, "gateway_time": at, "window": window,
              "staff_id": staff[0], "staff_name": staff[1], "matter_code": matter[0],
              "matter_name": matter[1], "hall": "futian-1"}
    if vocab.is_bad(level):
        record["tags"] = [501]
    record.update(extra)
    return {k: v for k, v in record.items() if v is not None}


def case(serial, node=vocab.NODE_COMPLETION, completed=T0, window="A01"):
    return {"case_key": "%s#%d" % (serial, node), "serials": [serial], "node": node,
            "completed_at": completed, "deadline": completed + 7 * DAY, "window": window,
            "staff_id": "1002", "staff_name": "李堃", "matter_code": "440300-002",
            "matter_name": "不动产登记", "hall": "futian-1"}


def envelope(records, profile="gbt39046", batch_id=None, kind="rating"):
    p = profiles.get(profile)
    items = []
    for record in records:
        k = "case" if "case_key" in record else kind
        items.append({"kind": k, "id": record.get("rating_id") or record.get("case_key"),
                      "data": p.map_record(k, profiles.canonical_rating(record) if k == "rating"
                                           else record)})
    return {"batch_id": batch_id or "b-%d" % id(items), "gateway_id": "gw", "hall": "futian-1",
            "profile": profile, "items": items}


def statuses(answer):
    return [(r["status"], r.get("reason")) for r in answer["results"]]


@pytest.fixture
def central(tmp_path):
    clock = FakeClock()
    store = CentralStore(tmp_path / "c.db", clock=clock, wall_clock=clock)
    store.test_clock = clock
    yield store
    store.close()


def test_permanent_dedupe_by_rating_id(central):
    assert statuses(central.receive_batch(envelope([rating("d", 1)], batch_id="b1"))) == \
        [("accepted", None)]
    central.test_clock.now += 30 * DAY                   # days later, another batch
    answer = central.receive_batch(envelope([rating("d", 1), rating("d", 2)], batch_id="b2"))
    assert statuses(answer) == [("duplicate", "retransmission"), ("accepted", None)]
    report = central.report()
    assert report["received"] == 2 and report["retransmissions"] == 1 and report["duplicates"] == 0


def test_same_batch_id_answers_the_same_and_other_body_conflicts(central):
    first = central.receive_batch(envelope([rating("d", 1)], batch_id="b1"))
    again = central.receive_batch(envelope([rating("d", 1)], batch_id="b1"))
    assert again["results"] == first["results"] and again["replayed"] is True
    with pytest.raises(Rejected):
        central.receive_batch(envelope([rating("d", 2)], batch_id="b1"))
    assert central.report()["received"] == 1 and central.report()["replayed_batches"] == 1


def test_second_rating_of_a_case_is_a_counted_duplicate(central):
    answer = central.receive_batch(envelope([rating("d", 1, serial="SN1"),
                                             rating("e", 7, serial="SN1", level=vocab.SATISFIED)]))
    assert statuses(answer) == [("accepted", None), ("duplicate", "case_already_rated")]
    # Another node of the same serial is another case: rated separately (rules Art. 17).
    answer = central.receive_batch(envelope([rating("d", 2, serial="SN1", node=vocab.NODE_PICKUP)]))
    assert statuses(answer) == [("accepted", None)]
    report = central.report()
    assert report["received"] == 2 and report["duplicates"] == 1


def test_validation_in_each_profile(central):
    for profile in ("gbt39046", "zhejiang"):
        n = 10 if profile == "gbt39046" else 20
        good = rating("z", n, level=vocab.VERY_DISSATISFIED)
        env = envelope([good, rating("z", n + 1), rating("z", n + 2, level=vocab.SATISFIED)],
                       profile=profile)
        env["items"][1]["data"].pop(profiles.get(profile).api_name("rating", "node"))
        env["items"][2]["data"][profiles.get(profile).api_name("rating", "tags")] = "501"
        answer = central.receive_batch(env)
        assert [s for s, _ in statuses(answer)] == ["accepted", "rejected", "rejected"]
        assert "node" in answer["results"][1]["reason"]
        assert "tags" in answer["results"][2]["reason"]
    stored = central.rating("z:20")
    assert stored["overall"] == vocab.VERY_DISSATISFIED and stored["profile"] == "zhejiang"
    bad = envelope([rating("z", 30)])
    bad["items"][0]["data"]["satisfactionCode"] = 9
    bad["items"].append({"kind": "rating", "id": "z:31", "data": {"evaluationId": "z:32"}})
    bad["items"].append({"kind": "vote", "id": "x", "data": {}})
    answer = central.receive_batch(bad)
    assert [s for s, _ in statuses(answer)] == ["rejected"] * 3
    assert central.report()["rejected"] == 7


def test_seven_day_default_is_marked_system_default(central):
    central.receive_batch(envelope([case("SN100"), case("SN101"), case("SN102")]))
    # SN101 rated at the window; SN102 walked away (not rated) and never rated later.
    central.receive_batch(envelope([rating("d", 1, serial="SN101"),
                                    rating("d", 2, serial="SN102", source=vocab.SRC_NOT_RATED,
                                           overall=None)]))
    assert central.close_expired(T0 + 7 * DAY - 1) == 0
    assert central.close_expired(T0 + 7 * DAY) == 2
    assert central.close_expired(T0 + 8 * DAY) == 0      # once only
    default = central.rating("default:SN100#3")
    assert default["source"] == vocab.SRC_SYSTEM_DEFAULT and default["channel"] == "system_default"
    assert default["level"] == vocab.BASICALLY_SATISFIED and default["staff_name"] == "李堃"
    report = central.report()
    assert report["system_defaults"] == 2 and report["received"] == 1 and report["not_rated"] == 1


def test_configured_default_level_and_late_press_replaces_default(tmp_path):
    clock = FakeClock()
    central = CentralStore(tmp_path / "gx.db", clock=clock, default_level=vocab.VERY_SATISFIED)
    central.receive_batch(envelope([case("SN200"), case("SN201")]))
    assert central.close_expired(T0 + 7 * DAY) == 2
    assert central.rating("default:SN200#3")["level"] == vocab.VERY_SATISFIED  # Guangxi style
    # A press made in time (gateway offline for 8 days) replaces the default ...
    in_time = central.receive_batch(envelope([rating("d", 1, serial="SN200", at=T0 + 3600)]))
    # ... a press stamped after the deadline does not.
    late = central.receive_batch(envelope([rating("d", 2, serial="SN201", at=T0 + 8 * DAY)]))
    assert statuses(in_time) == [("accepted", None)]
    assert statuses(late) == [("duplicate", "case_already_rated")]
    assert central.rating("default:SN200#3")["superseded"] == 1
    report = central.report()
    assert report["system_defaults"] == 1 and report["received"] == 1
    central.close()


def test_rating_window_closes_at_the_case_deadline_even_in_the_same_batch(central):
    central.receive_batch(envelope([case("SN300")]))
    answer = central.receive_batch(envelope([
        case("SN301"),                                              # known from this batch
        rating("d", 1, serial="SN300", at=T0 + 7 * DAY + 1),         # late: window closed
        rating("d", 2, serial="SN301", at=T0 + 8 * DAY),             # late, case in same batch
        rating("d", 3, serial="SN302", at=T0 + 30 * DAY),            # no case known: no deadline
        rating("d", 4, serial="SN301", at=T0 + 3600, level=vocab.DISSATISFIED)]))  # in time
    assert [s for s, _ in statuses(answer)] == ["accepted", "rejected", "rejected", "accepted",
                                                "accepted"]
    assert "rating window closed at %d" % (T0 + 7 * DAY) == answer["results"][1]["reason"]
    assert [o["rating_id"] for o in central.work_orders()] == ["d:4"]
    report = central.report()
    assert report["received"] == 2 and report["rejected"] == 2


def test_central_store_is_durable_by_default(tmp_path):
    store = CentralStore(tmp_path / "full.db")
    assert store.db.execute("PRAGMA synchronous").fetchone()[0] == 2          # FULL
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()

def test_work_orders_skip_weekends_and_holidays(tmp_path):
    clock = FakeClock(datetime.datetime(2024, 9, 27, 10, 0, tzinfo=rules.CHINA_TZ).timestamp())
    calendar = rules.WorkCalendar(holidays=["2024-10-0%d" % d for d in range(1, 8)],
                                  workdays=["2024-09-29", "2024-10-12"])
    central = CentralStore(tmp_path / "wo.db", clock=clock, calendar=calendar)
    central.receive_batch(envelope([rating("d", 1, level=vocab.DISSATISFIED),
                                    rating("d", 2, level=vocab.VERY_DISSATISFIED),
                                    rating("d", 3, level=vocab.BASICALLY_SATISFIED)]))
    orders = central.work_orders()
    assert [o["rating_id"] for o in orders] == ["d:1", "d:2"]
    # Fri 27 Sep: 29 Sep (Sun, make-up day) 1, 30 Sep 2, 1-7 Oct holidays, 8-11 Oct 3-6,
    # 12 Oct (Sat, make-up) 7, 14-16 Oct 8-10.
    assert {o["deadline_date"] for o in orders} == {"2024-10-16"}
    assert orders[0]["tags"] == "501" and orders[0]["status"] == "open"
    central.close()


def test_plain_ten_working_days():
    cal = rules.WorkCalendar()
    monday = datetime.date(2024, 6, 10)
    assert cal.add_working_days(monday, 10) == datetime.date(2024, 6, 24)
    assert cal.add_working_days(datetime.date(2024, 6, 15), 1) == datetime.date(2024, 6, 17)  # Sat
    assert cal.add_working_days(monday, 5) == datetime.date(2024, 6, 17)


def test_scores_and_grades(central):
    a = ("A01", "1001", "王喆")
    batch = []
    n = 0
    for window, levels in (("A01", [1] * 9 + [2]), ("A02", [2] * 5 + [1] * 5), ("A03", [3, 2]),
                           ("A04", [4, 5, 1])):
        for level in levels:
            n += 1
            batch.append(rating("s", n, level=level, window=window,
                                staff=("10" + window[-1], "朱镕" if window == "A03" else a[2])))
    central.receive_batch(envelope(batch))
    groups = {g["key"]: g for g in central.statistics("window")}
    assert groups["A01"]["score"] == 98.0 and groups["A01"]["grade"] == "优秀"
    assert groups["A02"]["score"] == 90.0 and groups["A02"]["grade"] == "优秀"
    assert groups["A03"]["score"] == 70.0 and groups["A03"]["grade"] == "一般"
    assert groups["A04"]["score"] == pytest.approx(43.33, abs=0.01) and groups["A04"]["grade"] == "较差"
    assert groups["A04"]["levels"] == {"非常满意": 1, "不满意": 1, "非常不满意": 1}
    staff = {g["key"]: g for g in central.statistics("staff")}
    assert staff["103"]["name"] == "朱镕" and staff["103"]["ratings"] == 2
    matters = central.statistics("matter")
    assert len(matters) == 1 and matters[0]["ratings"] == 25 and matters[0]["name"] == "居住证签注"
    assert rules.grade(89.99) == "良好" and rules.grade(80) == "良好" and rules.grade(69.9) == "较差"
    assert rules.score({}) is None


def test_receipt_rating_counts_its_service_level(central):
    receipt = rating("r", 1, node=vocab.NODE_RECEIPT, overall=None, service=vocab.DISSATISFIED)
    overall_at_receipt = rating("r", 2, node=vocab.NODE_RECEIPT)
    answer = central.receive_batch(envelope([receipt, overall_at_receipt]))
    assert [s for s, _ in statuses(answer)] == ["accepted", "rejected"]
    assert central.rating("r:1")["level"] == vocab.DISSATISFIED
    assert central.report()["work_orders"] == 1
