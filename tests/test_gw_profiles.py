"""Upstream code profiles: the published codes, and map/unmap round trips (hypothesis)."""

import pytest
from hypothesis import given, settings, strategies as st

from gateway import builtin_profiles, profiles
from gateway.profiles import ProfileError
from protocol import vocab

T0 = 1718000000  # 2024-06-10 14:13:20 +08:00


def rating_record(**over):
    record = {
        "device": "win-07", "counter": 42, "case_id": 9, "serials": ["SZ2024060001"],
        "node": vocab.NODE_COMPLETION, "source": vocab.SRC_PRESS, "overall": 1, "service": 2,
        "staff_id": "A1024", "window": "07", "gateway_time": T0, "hall": "sz-futian",
        "rating_id": "win-07:42", "matter_code": "440300-001", "matter_name": "居住证签注",
        "staff_name": "王喆", "mac": "00" * 16, "device_time": T0 - 2, "uptime_ms": 1234,
    }
    record.update(over)
    return record


def test_gbt39046_codes_follow_table_9():
    data = profiles.get("gbt39046").map_record("rating", profiles.canonical_rating(rating_record()))
    assert data["satisfactionCode"] == 1 and data["satisfaction"] == "非常满意"
    assert data["evaluationTime"] == "20240610T141320"
    assert data["caseNo"] == "SZ2024060001"
    assert data["channel"] == "4"          # hall tablet / window evaluator
    assert data["evaluationCount"] == 1
    assert data["staffName"] == "王喆"
    assert "rater" not in data             # applicant omitted by this profile


def test_zhejiang_counts_the_other_way_and_uses_pf():
    record = profiles.canonical_rating(rating_record(overall=5, tags=[501, 502]))
    data = profiles.get("zhejiang").map_record("rating", record)
    assert data["satisfaction"] == 1       # 非常不满意 is 1 in Zhejiang
    assert data["pf"] == 4
    assert data["evalDetail"] == "501,502"
    assert data["assessTime"] == "2024-06-10 14:13:20"
    assert data["projectNo"] == "SZ2024060001" and data["taskCode"] == "440300-001"
    assert data["assessNumber"] == 1 and data["proStatus"] == 3
    system = profiles.get("zhejiang").map_record("rating", {"channel": builtin_profiles.CH_SYSTEM})
    assert system["pf"] == 7


def test_unknown_code_is_a_clear_error():
    with pytest.raises(ProfileError) as info:
        profiles.get("zhejiang").map_record("rating", rating_record(overall=9))
    assert info.value.field == "overall"
    with pytest.raises(ProfileError) as info:
        profiles.get("gbt39046").unmap_record("rating", {"evaluationTime": "2024-06-10"})
    assert info.value.field == "evaluationTime"
    with pytest.raises(KeyError):
        profiles.get("nowhere")


def test_profile_from_config_dict_is_validated():
    spec = dict(builtin_profiles.GBT39046, name="guangxi")
    assert profiles.get(spec).name == "guangxi"
    with pytest.raises(ValueError):
        profiles.Profile(dict(spec, rating_fields=(("overall", "x", "nonsense"),)))
    with pytest.raises(ValueError):
        profiles.Profile({"name": "half"})


token = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-",
                min_size=1, max_size=20)
chinese = st.text(alphabet="王喆李堃朱镕居住证签注不动产登记营业执照abc123 ", min_size=1, max_size=30)
level = st.integers(min_value=1, max_value=5)

ratings = st.fixed_dictionaries(
    {"rating_id": token, "serials": st.lists(token, min_size=1, max_size=16),
     "node": st.sampled_from(list(vocab.NODE_NAMES)),
     "source": st.sampled_from(list(vocab.SOURCE_NAMES)),
     "channel": st.sampled_from(builtin_profiles.CHANNELS),
     "gateway_time": st.integers(min_value=946684800, max_value=4102444800),
     "evaluation_count": st.integers(min_value=1, max_value=2)},
    optional={"overall": level, "business": level, "service": level,
              "tags": st.lists(st.integers(min_value=1, max_value=9999), min_size=1, max_size=8),
              "text": chinese, "items": st.lists(st.fixed_dictionaries({"code": token, "level": level}),
                                                 max_size=8),
              "hall": token, "window": token, "staff_id": token, "staff_name": chinese,
              "matter_code": token, "matter_name": chinese, "device": token,
              "counter": st.integers(min_value=1, max_value=2 ** 32 - 1),
              "device_time": st.integers(min_value=0, max_value=2 ** 40), "division": token})

cases = st.fixed_dictionaries(
    {"case_key": token, "serials": st.lists(token, min_size=1, max_size=16),
     "node": st.sampled_from(list(vocab.NODE_NAMES)),
     "completed_at": st.integers(min_value=946684800, max_value=4102444800),
     "deadline": st.integers(min_value=946684800, max_value=4102444800)},
    optional={"hall": token, "window": token, "staff_id": token, "staff_name": chinese,
              "matter_code": token, "matter_name": chinese, "division": token,
              "items": st.lists(st.fixed_dictionaries({"code": token, "name": chinese}), max_size=8)})


def expected(profile, kind, record):
    return {k: v for k, v in record.items() if k in profile.mapped_fields(kind) and v not in ([], "")}


def assert_round_trip(name, kind, record):
    profile = profiles.get(name)
    assert profile.unmap_record(kind, profile.map_record(kind, record)) == expected(profile, kind, record)


@pytest.mark.parametrize("name", sorted(builtin_profiles.BUILTIN))
@settings(max_examples=150, deadline=None)
@given(record=ratings)
def test_rating_round_trip(name, record):
    assert_round_trip(name, "rating", record)


@pytest.mark.parametrize("name", sorted(builtin_profiles.BUILTIN))
@settings(max_examples=100, deadline=None)
@given(record=cases)
def test_case_round_trip(name, record):
    assert_round_trip(name, "case", record)
