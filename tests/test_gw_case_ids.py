"""Case ids are never handed out twice in a hall: across restarts of one store, and by a new store
that replaced a lost one (a spare gateway), whose devices still remember the ids they were rated
on and would refuse a case shown under one of them again."""

from gateway.case_state import CASE_EPOCH, CASES_PER_S, first_case_id
from gateway.store import Store

DAY = 86400


def test_a_store_counts_on_from_its_last_case_id_across_a_restart(tmp_path):
    clock = [CASE_EPOCH + 700 * DAY]
    store = Store(str(tmp_path / "o.db"), clock=lambda: clock[0])
    first = store.next_case_id()
    assert first == first_case_id(clock[0]) and store.next_case_id() == first + 1
    store.close()
    clock[0] -= 30 * DAY                  # a clock set back changes nothing for a store in use
    again = Store(str(tmp_path / "o.db"), clock=lambda: clock[0])
    assert again.next_case_id() == first + 2
    again.close()


def test_a_blank_replacement_store_starts_above_every_id_the_lost_one_handed_out(tmp_path):
    clock = [CASE_EPOCH + 700 * DAY]
    lost = Store(str(tmp_path / "lost.db"), clock=lambda: clock[0])
    issued = []
    for _ in range(300):                  # a busy week: 300 cases, one every half hour
        issued.append(lost.next_case_id())
        clock[0] += 1800
    lost.close()
    spare = Store(str(tmp_path / "spare.db"), clock=lambda: clock[0] + 3600)
    ids = [spare.next_case_id() for _ in range(5)]
    assert min(ids) > max(issued) and len(set(ids + issued)) == len(ids) + len(issued)
    spare.close()


def test_the_first_id_is_a_valid_case_id_at_any_time():
    assert first_case_id(CASE_EPOCH + 1) == CASES_PER_S
    assert first_case_id(0) == 1                           # a clock at 1970: never 0
    assert first_case_id(CASE_EPOCH + (1 << 32)) == 1      # past the range: from 1 again
    assert 0 < first_case_id(1796313582) <= 0xFFFFFFFF
