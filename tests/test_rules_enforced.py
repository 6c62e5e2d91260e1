"""The rating rules hold at every step: the device asks only what the case's node allows, the
gateway refuses at intake (a dead letter with its reason) whatever the central side would reject,
and the 7-day rating window comes from the configuration."""

import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

sys.path.insert(0, str(Path(__file__).parent))
import fw_support  # noqa: E402
from gateway import config as config_mod  # noqa: E402
from gateway.cases import Cases  # noqa: E402
from gateway.registry import Registry  # noqa: E402
from gateway.store import Store  # noqa: E402
from gw_support import HALL, device_key, make_rating  # noqa: E402
from hall_simulator.central_store import CentralStore, Rejected  # noqa: E402
from protocol import auth, errors, vocab  # noqa: E402
from protocol.errors import ProtocolError  # noqa: E402

ALL = vocab.IND_OVERALL | vocab.IND_BUSINESS | vocab.IND_SERVICE


def signed(device, counter, **fields):
    """A rating as device `device` signs it, with exactly the levels given (no default overall)."""
    rating = {"device": device, "counter": counter, "case_id": 7, "serials": ["SN20240001"],
              "node": vocab.NODE_COMPLETION, "source": vocab.SRC_PRESS, "window": "A01",
              "staff_id": "1001", "uptime_ms": 1000 + counter}
    rating.update(fields)
    rating = dict((k, v) for k, v in rating.items() if v is not None)
    return auth.sign(device_key(device), rating)


def registry(*devices):
    return Registry([{"id": d, "window": "A01", "key": device_key(d).hex()} for d in devices or ("dev-a",)])


# --- the device: a receipt rates the service alone, whatever the CONTEXT offers ---------------
@pytest.mark.parametrize("profile", ["five_button", "touch"])
def test_a_receipt_context_offering_every_indicator_asks_for_the_service_only(profile, tmp_path):
    rig = fw_support.Rig(profile, base=str(tmp_path))
    rig.context(61, node=vocab.NODE_RECEIPT, indicators=ALL)
    assert rig.dev.app.ask == ("service",)
    rig.wait(1000)
    for name in ("overall", "business"):
        rig.act("rate", name, vocab.SATISFIED)          # offered by the CONTEXT, not by the node
    assert rig.state == "case" and rig.ratings == []
    rig.act("rate", "service", vocab.SATISFIED)
    if profile == "touch":
        rig.act("submit")
    assert rig.state == "thanks"
    (r,) = rig.ratings
    assert r["service"] == vocab.SATISFIED and "overall" not in r and "business" not in r
    fw_device = Registry([{"id": "win07", "window": "07", "key": fw_support.KEY_HEX}])
    assert fw_device.check_rating(r, "win07") is None    # and the gateway takes it


# --- the gateway: the node's indicators and the central side's other rules at intake -----------
def test_check_rating_refuses_what_the_receipt_node_does_not_allow():
    reg = registry()
    receipt = vocab.NODE_RECEIPT
    assert reg.check_rating(signed("dev-a", 1, node=receipt, service=2), "dev-a") is None
    for n, levels in enumerate(({"overall": 2}, {"business": 1, "service": 1},
                                {"overall": 1, "business": 1, "service": 1}), 2):
        reason, detail = reg.check_rating(signed("dev-a", n, node=receipt, **levels), "dev-a")
        assert reason == errors.R_BAD_STATE and "may not be rated at this node" in detail
    assert reg.check_rating(signed("dev-a", 9, overall=1, business=1, service=1), "dev-a") is None
    # what the central side requires besides: the case's serials and node
    assert reg.check_rating(signed("dev-a", 10, overall=2, serials=None), "dev-a")[0] == errors.R_MISSING
    assert reg.check_rating(signed("dev-a", 11, overall=2, node=None), "dev-a")[0] == errors.R_MISSING
    # a rule broken under a MAC that does not verify is a forgery first
    forged = signed("dev-a", 12, node=receipt, overall=2)
    forged["mac"] = bytes(16)
    assert reg.check_rating(forged, "dev-a")[0] == errors.R_BAD_MAC


def _central_accepts(rating):
    record = dict(rating, rating_id="%s:%d" % (rating["device"], rating["counter"]), gateway_time=1)
    try:
        CentralStore._check_rating(record["rating_id"], record)
    except (Rejected, ProtocolError):
        return False
    return True


_level = st.one_of(st.none(), st.sampled_from(vocab.LEVELS))


@settings(max_examples=400, deadline=None)
@given(node=st.integers(0, 4), source=st.sampled_from([vocab.SRC_PRESS, vocab.SRC_NOT_RATED,
                                                         vocab.SRC_SYSTEM_DEFAULT]),
       overall=_level, business=_level, service=_level,
       tags=st.one_of(st.none(), st.lists(st.integers(1, 9999), min_size=1, max_size=3)),
       items=st.one_of(st.none(), st.lists(st.fixed_dictionaries(
           {"code": st.sampled_from(["T1", "T2"]), "level": st.sampled_from(vocab.LEVELS)}),
           min_size=1, max_size=2)),
       serials=st.sampled_from([None, ["SN1"], ["SN1", "SN2"]]), text=st.sampled_from([None, "排队久"]))
def test_the_gateway_refuses_exactly_what_the_central_side_rejects(node, source, overall, business,
                                                                   service, tags, items, serials, text):
    rating = signed("dev-a", 5, node=node or None, source=source, overall=overall, business=business,
                    service=service, tags=tags, items=items, serials=serials, text=text)
    gateway_takes = registry().check_rating(rating, "dev-a") is None
    assert gateway_takes == _central_accepts(rating), rating


def test_a_receipt_rating_beyond_the_service_is_dead_lettered_over_mqtt(gateway, device):
    device.rate(signed("dev-a", 1, node=vocab.NODE_RECEIPT, overall=2, business=2, service=2))
    ack = device.ack()
    assert (ack["counter"], ack["result"], ack["reason"]) == (1, vocab.ACK_DEAD_LETTER, errors.R_BAD_STATE)
    device.rate(signed("dev-a", 2, node=vocab.NODE_RECEIPT, service=2))
    assert device.ack()["result"] == vocab.ACK_STORED
    (dead,) = gateway.store.dead_letters()
    assert (dead["key"], dead["reason"]) == ("dev-a:1", "bad_state")
    assert [i["item_id"] for i in gateway.store.upload_batch(10)] == ["dev-a:2"]    # never uploaded
    assert gateway.rejections_.count("mqtt", errors.R_BAD_STATE) == 1


def test_a_receipt_rating_beyond_the_service_is_dead_lettered_over_rs485(rig):
    acks = []
    r = rig([1], on_ack=lambda address, ack: acks.append((ack["counter"], ack.get("result", 0),
                                                          ack.get("reason", 0))))
    r["fake"].outbox[1] = [signed("dev-1", 1, node=vocab.NODE_RECEIPT, overall=1, service=1),
                           signed("dev-1", 2, node=vocab.NODE_RECEIPT, service=1)]
    for _ in range(4):
        r["master"].round()
    assert acks == [(1, vocab.ACK_DEAD_LETTER, errors.R_BAD_STATE), (2, vocab.ACK_STORED, 0)]
    assert r["fake"].outbox[1] == []
    assert [d["key"] for d in r["store"].dead_letters()] == ["dev-1:1"]
    assert [i["item_id"] for i in r["store"].upload_batch(10)] == ["dev-1:2"]
    assert r["rejections"].count("rs485", errors.R_BAD_STATE) == 1


# --- the 7-day window: configuration, never a default of its own --------------------------------
def test_cases_take_the_rating_window_from_the_configuration_only(tmp_path):
    store = Store(str(tmp_path / "outbox.db"))
    try:
        with pytest.raises(TypeError):
            Cases(HALL, store, registry(), lambda device, ctx: None)      # no default of its own
        cfg = config_mod.from_dict({"gateway": {"hall": HALL, "data_dir": str(tmp_path / "gw")}})
        assert cfg.rating_days == 7                                        # rules Art. 17-18
        pushed = []
        reg = Registry([{"id": "dev-a", "window": "A01", "key": device_key("dev-a").hex()}])
        for days, serial in ((cfg.rating_days, "SN1"), (10, "SN2")):
            cases = Cases(HALL, store, reg, lambda device, ctx: pushed.append(ctx), rating_days=days)
            cases.sign_in("A01", {"staff_id": "1001", "staff_name": "王喆"})
            completed = int(time.time()) - 3600
            status, answer = cases.event({"window": "A01", "node": "completion", "serials": [serial],
                                          "matter_name": "企业开办", "completed_at": completed})
            assert status == 201 and answer["deadline"] == completed + days * 86400
            assert pushed[-1]["deadline"] == completed + days * 86400      # what the device shows
        records = dict((i["item_id"], i["record"]) for i in store.upload_batch(10))
        assert records["SN1#3"]["deadline"] - records["SN1#3"]["completed_at"] == 7 * 86400
        assert records["SN2#3"]["deadline"] - records["SN2#3"]["completed_at"] == 10 * 86400
    finally:
        store.close()


def test_the_gateway_hands_its_configured_rating_window_to_the_cases(tmp_path):
    from gateway.app import Gateway
    for days in (7, 15):
        gw_conf = {"hall": HALL, "data_dir": str(tmp_path / ("gw%d" % days))}
        if days != 7:
            gw_conf["rating_days"] = days
        gw = Gateway(config_mod.from_dict({"gateway": gw_conf}))
        try:
            assert gw.cases.rating_days == days
        finally:
            gw.committer.close()
            gw.store.close()


from test_gw_mqtt import device, gateway  # noqa: E402,F401  (fixtures: the real bridge on Mosquitto)
from test_gw_rs485 import rig  # noqa: E402,F401  (fixture: the real master and fake devices)
