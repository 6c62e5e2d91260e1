"""The console's rating history (gateway.history) and grades (gateway.grading): what the intake
stores reaches the history with its case and never the applicant, a duplicate counts once,
follow-ups move only forward and survive a restart, a damaged file never stops the gateway."""

import os
import sqlite3
import threading
import time

import pytest
from hypothesis import given, settings, strategies as st

from gateway import config as config_mod, grading
from gateway.app import Gateway
from gateway.text_rules import bad_char
from gateway.history import STATES, FollowUpError, History, settings as history_settings
from gw_live import STAFF, LiveGateway, gateway_config
from gw_support import FakeDevice, make_rating
from protocol import vocab

# pending -> verified -> handled, pending -> handled; the same state again changes the note
FORWARD = {"pending": {"pending", "verified", "handled"}, "verified": {"verified", "handled"},
           "handled": {"handled"}}
APPLICANT = {"name": "李堃", "id_number": "440301199001011234", "phone": "13800138000"}
NOW = 1764727200            # 2025-12-03 10:00 in Shanghai (02:00 UTC)
DAY = "2025-12-03"


def stored(device, counter, level=vocab.SATISFIED, at=NOW, **extra):
    rating = make_rating(device, counter, level=level, **extra)
    rating["gateway_time"] = at
    rating["hall"] = "futian-1"
    return rating


def enrichment(**extra):
    return dict({"matter_code": "440300-0001", "matter_name": "企业开办", "staff_name": STAFF,
                 "window": "A01", "applicant": "sealed-applicant-token"}, **extra)


@pytest.fixture
def history(tmp_path):
    alarms = []
    h = History(tmp_path / "history.sqlite", alarm=lambda n, d: alarms.append((n, d)),
                clock=lambda: NOW)
    h.alarms = alarms
    yield h
    h.close()


def test_a_rating_through_the_real_intake_is_in_the_history_with_its_case_never_the_applicant(
        mosquitto_broker, tmp_path):
    with LiveGateway(gateway_config(mosquitto_broker, tmp_path / "gw")) as live:
        assert live.request("POST", "/api/v1/windows/A01/sign-in",
                            {"staff_id": "1001", "staff_name": STAFF}, role="queue")[0] == 200
        status, case = live.request("POST", "/api/v1/cases", {
            "window": "A01", "node": "completion", "serials": ["SN-77"], "matter_code": "440300-0001",
            "matter_name": "企业开办", "applicant": APPLICANT}, role="queue")
        assert status == 201
        device = FakeDevice(mosquitto_broker, "dev-a")
        try:
            rating = make_rating("dev-a", 1, level=vocab.VERY_DISSATISFIED, case_id=case["case_id"],
                                 serials=["SN-77"], text="等了很久")
            device.rate(rating)
            assert device.ack()["result"] == vocab.ACK_STORED
            device.rate(rating)                                  # resent: a duplicate
            assert device.ack()["result"] == vocab.ACK_DUPLICATE
        finally:
            device.close()
        assert live.gw.history.flush()
        item = live.gw.history.item("dev-a:1")
        assert item["staff_name"] == STAFF and item["matter_name"] == "企业开办"
        assert item["matter_code"] == "440300-0001" and item["case_id"] == case["case_id"]
        assert item["serial"] == "SN-77" and item["window"] == "A01" and item["level"] == 5
        assert item["tags"] == [501] and item["text"] == "等了很久" and item["bad"]
        assert item["follow_up"]["state"] == "pending"
        rows, (total, _) = live.gw.history.summary(item["day"], item["day"], "window")
        assert total == {5: 1}                                   # the duplicate counted once
        assert live.gw.history.stats["written"] == 1
        sealed = live.gw.cases.cases[case["case_id"]].get("applicant")
        assert sealed                                            # the case held it (sealed) ...
        raw = b"".join(open(os.path.join(live.gw.cfg.data_dir, n), "rb").read()
                       for n in os.listdir(live.gw.cfg.data_dir) if n.startswith("history.sqlite"))
        for secret in (sealed, APPLICANT["name"], APPLICANT["id_number"], APPLICANT["phone"]):
            assert secret.encode("utf-8") not in raw             # ... the history never does


def test_a_duplicate_never_counts_twice_and_the_applicant_is_never_kept(history):
    first = stored("dev-a", 1, level=vocab.DISSATISFIED)
    history.record(first, enrichment())
    history.record(dict(first), enrichment())
    history.record(stored("dev-a", 2), None)
    assert history.flush()
    assert history.stats["written"] == 2 and history.stats["duplicates"] == 1
    rows, (total, not_rated) = history.summary(DAY, DAY, "window")
    assert total == {4: 1, 2: 1} and not_rated == 0
    db = sqlite3.connect(history.path)
    dump = "\n".join(db.iterdump())
    db.close()
    assert "sealed-applicant-token" not in dump and "applicant" not in dump


def test_days_and_hours_are_the_halls_local_time(tmp_path):
    late = 1764777000           # 2025-12-03 15:50 UTC = 2025-12-03 23:50 in Shanghai
    h = History(tmp_path / "h.sqlite", clock=lambda: late)
    try:
        h.record(stored("dev-a", 1, at=late), None)
        h.record(stored("dev-a", 2, at=late + 3600), None)   # 00:50 the next day in Shanghai
        assert h.flush()
        rows, _ = h.summary("2025-12-03", "2025-12-04", "day")
        assert [r[0] for r in rows] == ["2025-12-03", "2025-12-04"]
        hours, _ = h.summary("2025-12-03", "2025-12-04", "hour")
        assert [r[0] for r in hours] == ["00", "23"]
    finally:
        h.close()
    utc = History(tmp_path / "u.sqlite", tz="UTC", clock=lambda: late)
    try:
        utc.record(stored("dev-a", 2, at=late + 3600), None)
        assert utc.flush()
        assert [r[0] for r in utc.summary(DAY, DAY, "day")[0]] == [DAY]
    finally:
        utc.close()


def test_not_rated_is_counted_apart_and_never_graded(history):
    history.record(stored("dev-a", 1, source=vocab.SRC_NOT_RATED), enrichment())
    history.record(stored("dev-a", 2, level=vocab.VERY_SATISFIED), enrichment())
    assert history.flush()
    rows, (total, not_rated) = history.summary(DAY, DAY, "staff")
    assert rows == [("1001", STAFF, {1: 1}, 1)] and total == {1: 1} and not_rated == 1
    figures = grading.summarize(total, not_rated)
    assert figures["rated"] == 1 and figures["not_rated"] == 1 and figures["score"] == 100.0


def test_recording_never_waits_for_the_writer(tmp_path):
    alarms = []
    h = History(tmp_path / "h.sqlite", alarm=lambda n, d: alarms.append(n), clock=lambda: NOW,
                queue_size=50)
    try:
        with h._wlock:                          # the writer stuck on its file
            h.record(stored("dev-a", 1), None)
            h._queue.put(threading.Event())     # a flush: the writer stops lingering and writes
            deadline = time.monotonic() + 5
            while h._queue.qsize() and time.monotonic() < deadline:
                time.sleep(0.01)                # the writer took both and now waits for the lock
            start = time.monotonic()
            for counter in range(2, 200):
                h.record(stored("dev-a", counter), None)
            spent = time.monotonic() - start
        assert spent < 2.0 and h.stats["dropped"] >= 100 and "history_full" in alarms
        assert h.flush()
        assert h.stats["written"] + h.stats["dropped"] == 199
    finally:
        h.close()


@settings(max_examples=40, deadline=None)
@given(steps=st.lists(st.tuples(st.sampled_from(("dev-a:1", "dev-a:2", "dev-a:9")),
                                st.sampled_from(STATES + ("reopened",)),
                                st.text(max_size=6)), max_size=12))
def test_follow_ups_move_only_forward_and_a_refused_one_changes_nothing(tmp_path_factory, steps):
    h = History(tmp_path_factory.mktemp("fu") / "h.sqlite", clock=lambda: NOW)
    try:
        h.record(stored("dev-a", 1, level=vocab.DISSATISFIED), enrichment())
        h.record(stored("dev-a", 2, level=vocab.SATISFIED), enrichment())   # not a bad rating
        assert h.flush()
        model = {"dev-a:1": ("pending", "")}
        for rid, state, note in steps:
            before = h.item(rid)
            try:
                after = h.follow_up(rid, state, note, "王䶮明")
            except FollowUpError as e:
                assert h.item(rid) == before
                if state not in STATES or bad_char(note) is not None:
                    assert e.conflict is False                  # bad input: 400
                elif rid == "dev-a:9":
                    assert e.conflict is None                   # no such rating: 404
                elif rid == "dev-a:2":
                    assert e.conflict is True                   # not a bad rating: 409
                else:
                    assert e.conflict is True and state not in FORWARD[model[rid][0]]
                continue
            assert rid == "dev-a:1" and state in FORWARD[model[rid][0]]
            model[rid] = (state, note)
            assert after["follow_up"] == {"state": state, "note": note, "by": "王䶮明", "at": NOW}
        assert h.item("dev-a:1")["follow_up"]["state"] == model["dev-a:1"][0]
    finally:
        h.close()


def test_follow_ups_survive_a_restart_and_the_bad_list_filters(tmp_path):
    path = tmp_path / "history.sqlite"
    h = History(path, clock=lambda: NOW)
    for counter, level, window in ((1, 4, "A01"), (2, 5, "A02"), (3, 2, "A01"), (4, 5, "A01")):
        h.record(stored("dev-a", counter, level=level, window=window, at=NOW + counter), enrichment())
    assert h.flush()
    h.follow_up("dev-a:1", "handled", "已回访，已整改", "admin")
    h.close()
    h = History(path, clock=lambda: NOW)
    try:
        assert h.item("dev-a:1")["follow_up"]["state"] == "handled"
        assert [i["rating_id"] for i in h.bad(DAY, DAY)] == ["dev-a:4", "dev-a:2", "dev-a:1"]
        assert [i["rating_id"] for i in h.bad(DAY, DAY, state="pending")] == ["dev-a:4", "dev-a:2"]
        assert [i["rating_id"] for i in h.bad(DAY, DAY, window="A01", level=5)] == ["dev-a:4"]
        assert [i["rating_id"] for i in h.bad(DAY, DAY, limit=1)] == ["dev-a:4"]
        assert h.bad("2025-12-04", "2025-12-05") == []
    finally:
        h.close()


def test_old_days_are_pruned_with_their_follow_ups(tmp_path):
    now = [NOW]
    h = History(tmp_path / "h.sqlite", keep_days=2, clock=lambda: now[0])
    try:
        h.record(stored("dev-a", 1, level=5, at=NOW - 86400), None)     # yesterday
        h.record(stored("dev-a", 2, level=5, at=NOW), None)
        assert h.flush()
        h.follow_up("dev-a:1", "verified", "", "admin")
        now[0] = NOW + 86400                                            # a day later
        h.record(stored("dev-a", 3, at=now[0]), None)
        assert h.flush()
        assert h.item("dev-a:1") is None and h.item("dev-a:2") is not None
        assert h.stats["pruned"] == 1
        db = sqlite3.connect(h.path)
        assert db.execute("SELECT COUNT(*) FROM follow_ups").fetchone()[0] == 0
        db.close()
    finally:
        h.close()


def test_a_damaged_history_is_set_aside_and_the_gateway_keeps_going(tmp_path):
    data_dir = tmp_path / "gw"
    data_dir.mkdir()
    (data_dir / "history.sqlite").write_bytes(b"this is not a database at all" * 200)
    cfg = config_mod.from_dict({"gateway": {"hall": "futian-1", "data_dir": str(data_dir)},
                                "mqtt": {"port": 1}, "http": {"port": 0}})
    gw = Gateway(cfg)
    try:
        assert gw.alarms.get("corrupt_history") == 1
        aside = [n for n in os.listdir(data_dir) if n.startswith("history.sqlite.corrupt-")]
        assert len(aside) == 1
        gw.history.record(stored("dev-a", 1), None)
        assert gw.history.flush() and gw.history.item("dev-a:1") is not None
        # damaged again while the gateway was down: set aside again at the next start
        gw.history.close()
        with open(gw.history.path, "r+b") as f:
            f.seek(0)
            f.write(b"\x00" * 4096)
        gw.history = History(gw.history.path, alarm=gw.alarm, clock=lambda: NOW)
        assert gw.alarms.get("corrupt_history") == 2
        assert gw.history.summary(DAY, DAY, "window") == ([], ({}, 0))
    finally:
        gw.history.close()
        gw.committer.close()
        gw.store.close()


def test_a_history_that_cannot_be_opened_leaves_reads_unavailable(tmp_path):
    from gateway.history import HistoryUnavailable
    alarms = []
    folder = tmp_path / "not-here"                   # its directory does not exist
    h = History(folder / "h.sqlite", alarm=lambda n, d: alarms.append(n))
    try:
        assert alarms == ["history_unavailable"]
        h.record(stored("dev-a", 1), None)
        assert h.flush() and h.stats["dropped"] == 1
        with pytest.raises(HistoryUnavailable):
            h.summary(DAY, DAY, "window")
        with pytest.raises(HistoryUnavailable):
            h.follow_up("dev-a:1", "handled", "", "admin")
    finally:
        h.close()


def test_console_settings_are_checked_at_load():
    base = {"gateway": {"hall": "futian-1"}}
    cfg = config_mod.from_dict(dict(base, console={"timezone": "Asia/Urumqi", "history_days": 30,
                                                   "grading": {"scores": {"4": 2}, "fair": 60}}))
    zone, days, g = history_settings(cfg.raw["console"])
    assert str(zone) == "Asia/Urumqi" and days == 30 and g.scores[4] == 2 and g.fair == 60
    for console in ({"timezone": "Mars/Olympus"}, {"history_days": 0}, {"history_days": True},
                    {"grading": {"scores": {"6": 1}}}, {"grading": {"scores": {"1": 11}}},
                    {"grading": {"good": 95}}, {"grading": {"pass": 1}}):
        with pytest.raises(config_mod.ConfigError):
            config_mod.from_dict(dict(base, console=console))


# --- grading -------------------------------------------------------------------------------
counts_st = st.dictionaries(st.sampled_from(vocab.LEVELS), st.integers(0, 10_000))


@given(counts=counts_st)
def test_score_rate_and_grade_follow_the_rule(counts):
    rated = sum(counts.values())
    s, rate = grading.score(counts), grading.satisfaction_rate(counts)
    if not rated:
        assert s is None and rate is None and grading.grade(s) is None
        return
    exact = sum(grading.DEFAULT_SCORES[k] * n for k, n in counts.items()) * 10 / rated
    assert abs(s - exact) <= 0.05 and 0 <= s <= 100
    assert abs(rate - 100 * sum(counts.get(k, 0) for k in (1, 2, 3)) / rated) <= 0.05
    assert grading.grade(s) == ("优秀" if s >= 90 else "良好" if s >= 80 else "一般" if s >= 70 else "较差")


@given(counts=counts_st, level=st.sampled_from(vocab.LEVELS))
def test_a_better_rating_never_lowers_the_score(counts, level):
    more = dict(counts)
    more[1] = more.get(1, 0) + 1
    worse = dict(counts)
    worse[5] = worse.get(5, 0) + 1
    base = grading.score(counts)
    if base is not None:
        assert grading.score(more) >= base >= grading.score(worse)


def test_the_cut_offs_and_a_known_set():
    assert [grading.grade(v) for v in (90, 89.9, 80, 79.9, 70, 69.9, 0)] == [
        "优秀", "良好", "良好", "一般", "一般", "较差", "较差"]
    # 6 非常满意, 2 满意, 1 不满意, 1 非常不满意: (60 + 16 + 3 + 0) / 10 * 10 = 79.0
    figures = grading.summarize({1: 6, 2: 2, 4: 1, 5: 1}, not_rated=3)
    assert figures == {"counts": {"1": 6, "2": 2, "3": 0, "4": 1, "5": 1}, "rated": 10,
                       "not_rated": 3, "satisfaction_rate": 80.0, "score": 79.0, "grade": "一般"}
    strict = grading.Grading.from_config({"scores": {"2": 9}, "excellent": 95})
    assert grading.score({2: 1}, strict) == 90.0 and grading.grade(90.0, strict) == "良好"


def test_the_writer_outlives_a_failure_and_a_rating_it_cannot_read(history):
    real, calls = history._write, []

    def failing_once(batch):
        calls.append(len(batch))
        if len(calls) == 1:
            raise RuntimeError("a bug")
        return real(batch)
    history._write = failing_once
    history.record(stored("dev-a", 1), None)
    assert history.flush()                              # answered, not left waiting
    history.record({"counter": 2, "gateway_time": NOW}, None)   # no device: no row
    assert history.flush()
    history.record(stored("dev-a", 3), None)
    assert history.flush()
    assert history.item("dev-a:3") is not None and history.stats["errors"] == 2


def test_the_export_pages_through_a_period_once_each(history):
    for counter in range(1, 11):
        history.record(stored("dev-a", counter, at=NOW + counter), None)
    history.record(stored("dev-a", 11, at=NOW + 86400), None)         # the next day: not in it
    assert history.flush()
    seen, position = [], 0
    while True:
        position, items = history.export(DAY, DAY, position, limit=3)
        if not items:
            break
        seen += [i["rating_id"] for i in items]
    assert seen == ["dev-a:%d" % n for n in range(1, 11)]


RATED = st.tuples(st.integers(0, 3), st.sampled_from([None, 1, 2, 3, 4, 5]), st.integers(0, 2),
                  st.integers(0, 47))          # window, level (None: not rated), staff, half hours


@settings(max_examples=15, deadline=None)
@given(plan=st.lists(RATED, max_size=40), resend=st.integers(0, 5))
def test_the_daily_counts_are_the_ratings_counted_whatever_the_batches(tmp_path_factory, plan, resend):
    h = History(tmp_path_factory.mktemp("daily") / "h.sqlite", clock=lambda: NOW)
    try:
        model = {}
        for counter, (window, level, staff, half) in enumerate(plan, 1):
            at = NOW - 10 * 3600 + half * 1800                 # 2025-12-03 00:00 .. 23:30 local
            extra = {"window": "A%02d" % window, "staff_id": "10%02d" % staff}
            rating = (stored("dev-a", counter, at=at, source=vocab.SRC_NOT_RATED, **extra)
                      if level is None else stored("dev-a", counter, level=level, at=at, **extra))
            h.record(rating, enrichment(staff_name="员工%d" % staff))
            if counter % 7 == 0:
                assert h.flush()                               # batches of every size
            keys = {"window": "A%02d" % window, "staff": "10%02d" % staff,
                    "hour": "%02d" % (half // 2), "day": DAY, "matter": "440300-0001"}
            for by, key in keys.items():
                model.setdefault(by, {}).setdefault(key, [{}, 0])
                if level is None:
                    model[by][key][1] += 1
                else:
                    counts = model[by][key][0]
                    counts[level] = counts.get(level, 0) + 1
        for counter in range(1, min(resend, len(plan)) + 1):     # resent: counted once
            h.record(stored("dev-a", counter), None)
        assert h.flush()
        for by in ("window", "staff", "hour", "day", "matter"):
            rows, _ = h.summary(DAY, DAY, by)
            assert dict((k, [c, n]) for k, _, c, n in rows) == model.get(by, {}), by
    finally:
        h.close()


def test_damage_found_while_running_sets_the_file_aside_and_the_next_query_works(history, tmp_path):
    from gateway.history import HistoryUnavailable
    history.record(stored("dev-a", 1), None)
    assert history.flush()

    class Damaged:               # what SQLite answers when it meets a malformed page
        def execute(self, *args):
            error = sqlite3.DatabaseError("database disk image is malformed")
            error.sqlite_errorcode = 11
            raise error

        def close(self):
            pass
    history._rdb = Damaged()
    with pytest.raises(HistoryUnavailable):
        history.summary(DAY, DAY, "window")
    assert [name for name, _ in history.alarms] == ["corrupt_history"]
    assert any(n.startswith("history.sqlite.corrupt-") for n in os.listdir(tmp_path))
    assert history.summary(DAY, DAY, "window") == ([], ({}, 0))       # a fresh file
    history.record(stored("dev-a", 2), None)
    assert history.flush() and history.item("dev-a:2") is not None
