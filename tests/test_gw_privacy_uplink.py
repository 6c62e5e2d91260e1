"""The applicant's identity on its way out: sealed in the outbox, sent only as the profile says,
never in a log line."""

import asyncio
import logging

import pytest

from gateway import builtin_profiles, upstream_auth
from gateway.privacy import Sealer
from gateway.uplink import Uplink
from protocol import vocab
from tests.uplink_support import SECRET, FakeClock, Sleeps, central, enrichment, outbox, rating

ID = "44030119851231002X"
APPLICANT = {"name": "朱镕", "id_number": ID, "kind": 1}


def stored_with_applicant(tmp_path, sealer):
    store = outbox(tmp_path)
    extra = dict(enrichment(), applicant=sealer.seal(APPLICANT))
    store.commit_ratings([(rating("win-p", 1, vocab.VERY_DISSATISFIED), extra),
                          (rating("win-p", 2), extra)])
    return store


@pytest.mark.parametrize("mode", ["omit", "masked", "clear"])
def test_profile_decides_what_leaves(tmp_path, mode):
    sealer = Sealer("ab" * 32, context="futian-1")
    store = stored_with_applicant(tmp_path, sealer)
    items = store.upload_batch(10)
    assert ID not in str(items) and items[0]["record"]["applicant"].startswith("v1.")
    spec = dict(builtin_profiles.GBT39046, applicant=mode)
    uplink = Uplink(store, "http://127.0.0.1:9", "gw", "futian-1", profile=spec, sealer=sealer)
    _, wire = uplink._map(items)
    rater = wire[0]["data"].get("rater")
    if mode == "omit":
        assert rater is None
    elif mode == "masked":
        assert rater == {"name": "朱*", "id_number": "440301********002X", "kind": 1}
    else:
        assert rater == APPLICANT           # over verified TLS only, as the profile demands


def test_sending_profile_without_a_sealer_is_refused(tmp_path):
    with pytest.raises(ValueError):
        Uplink(outbox(tmp_path), "http://x", "gw", "h",
               profile=dict(builtin_profiles.GBT39046, applicant="clear"))


def test_wrong_key_is_a_dead_letter_and_logs_stay_clean(tmp_path, caplog):
    async def main():
        store = stored_with_applicant(tmp_path, Sealer("ab" * 32, context="futian-1"))
        async with central(tmp_path) as server:
            server.faults.set(fail_next=1)
            clock = FakeClock()
            uplink = Uplink(store, server.url, "gw", "futian-1", clock=clock, sleep=Sleeps(clock),
                            profile=dict(builtin_profiles.GBT39046, applicant="masked"),
                            sealer=Sealer("cd" * 32, context="futian-1"),
                            auth=upstream_auth.HmacAuth("gw", SECRET))
            await uplink.drain()
            await uplink.close()
        return store
    with caplog.at_level(logging.DEBUG):
        store = asyncio.run(main())
    dead = store.dead_letters()
    assert len(dead) == 2 and all("sealed identity does not open" in d["reason"] for d in dead)
    assert caplog.records and ID not in caplog.text and "朱镕" not in caplog.text
