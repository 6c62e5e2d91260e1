"""Reading and writing profile times: the fast paths (fixed-width reading, gmtime writing) give
exactly what the general datetime path gives, for any text or number, in every profile."""

import datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import builtin_profiles, profiles

CHINA = datetime.timezone(datetime.timedelta(hours=8))
PROFILES = [profiles.get("gbt39046"), profiles.get("zhejiang"),
            profiles.Profile(dict(builtin_profiles.GBT39046, name="slashes", time_format="%d/%m/%Y %H.%M.%S")),
            profiles.Profile(dict(builtin_profiles.GBT39046, name="zoned", time_format="%Y%m%d%H%M%S%z"))]


general_read = profiles.general_time_from   # the general path alone (ISO, else strptime)


def outcome(function, *args):
    try:
        return ("ok", function(*args))
    except (TypeError, KeyError, ValueError, OverflowError, OSError) as exc:
        return ("error", type(exc).__name__)


def test_plans_only_for_fixed_width_formats():
    assert profiles.fixed_width_plan("%Y%m%dT%H%M%S") is not None
    assert profiles.fixed_width_plan("%Y-%m-%d %H:%M:%S") is not None
    assert profiles.fixed_width_plan("%Y%m%d%H%M%S%z") is None        # a zone: general path
    assert profiles.fixed_width_plan("%Y-%m-%d") is None              # no time of day
    assert profiles.fixed_width_plan("%Y%Y%m%d%H%M%S") is None        # a field twice


seconds = st.integers(min_value=-62135596800 + 86400, max_value=253402271999 - 86400)
texts = st.text(alphabet="0123456789T-:/. Z+０１２", max_size=22)


@settings(max_examples=400, deadline=None)
@given(seconds, st.sampled_from(PROFILES))
def test_written_times_read_back_the_same_both_ways(value, profile):
    text = profiles._time_to(value, profile)
    assert text == datetime.datetime.fromtimestamp(value, CHINA).strftime(profile.time_format)
    assert outcome(profiles._time_from, text, profile) == outcome(general_read, text, profile)


@settings(max_examples=600, deadline=None)
@given(texts, st.sampled_from(PROFILES))
def test_any_text_reads_as_the_general_path_reads_it(text, profile):
    assert outcome(profiles._time_from, text, profile) == outcome(general_read, text, profile)


def test_edge_texts():
    gbt, zj = PROFILES[0], PROFILES[1]
    for text, profile in (("20240610T141320", gbt), ("2024-06-10 14:13:20", zj),
                          ("20240230T141320", gbt), ("20241310T141320", gbt),
                          ("20240610T241320", gbt), ("20240610T146020", gbt),
                          ("09990610T141320", gbt), ("00000610T141320", gbt),
                          ("20240610 141320", gbt), ("2024-06-10T14:13:20", zj),
                          ("２０２４0610T141320", gbt), ("20240610T141320\n", gbt)):
        assert outcome(profiles._time_from, text, profile) == outcome(general_read, text, profile)
    assert profiles._time_from("20240610T141320", gbt) == 1718000000
