"""Privacy: sealed identities, masks, and logs that never show an identity in clear."""

import logging

import pytest

from gateway import privacy
from gateway.privacy import SealError, Sealer

KEY = "11" * 32
ID = "44030119900101123X"
APPLICANT = {"name": "李堃", "id_number": ID, "phone": "13812345678", "kind": 1}


def test_seal_opens_only_with_the_same_key_and_hall():
    sealed = Sealer(KEY, context="sz-futian").seal(APPLICANT)
    assert privacy.is_sealed(sealed)
    assert ID not in sealed and "李堃" not in sealed
    assert Sealer(KEY, context="sz-futian").open(sealed) == APPLICANT
    with pytest.raises(SealError):
        Sealer("22" * 32, context="sz-futian").open(sealed)
    with pytest.raises(SealError):
        Sealer(KEY, context="sz-nanshan").open(sealed)
    tampered = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    with pytest.raises(SealError):
        Sealer(KEY, context="sz-futian").open(tampered)
    with pytest.raises(SealError):
        Sealer(KEY).open("not sealed")


def test_two_seals_differ_and_key_is_not_shown():
    sealer = Sealer(KEY)
    assert sealer.seal(APPLICANT) != sealer.seal(APPLICANT)   # fresh nonce each time
    assert "11" * 8 not in repr(sealer)
    with pytest.raises(ValueError):
        Sealer("abcd")


def test_masks():
    assert privacy.mask_id("440301199001011234") == "440301********1234"
    assert privacy.mask_id("440301900101123") == "440301*****1123"
    assert privacy.mask_name("王喆") == "王*"
    assert privacy.mask_phone("13812345678") == "138****5678"
    masked = privacy.masked_applicant(APPLICANT)
    assert masked == {"name": "李*", "id_number": "440301********123X", "phone": "138****5678",
                      "kind": 1}


def test_mask_text_leaves_serials_and_timestamps_alone():
    text = "serial SZ2024060001 ts 1718000000123 id %s tel 13812345678" % ID
    masked = privacy.mask_text(text)
    assert ID not in masked and "13812345678" not in masked
    assert "SZ2024060001" in masked and "1718000000123" in masked
    assert "440301********123X" in masked


def test_log_filter_masks_messages_args_and_tracebacks(caplog):
    log = logging.getLogger("gateway.test_privacy")
    flt = privacy.IdentityLogFilter()
    caplog.handler.addFilter(flt)
    try:
        with caplog.at_level(logging.INFO):
            log.info("case for %s (%s)", APPLICANT["id_number"], "13812345678")
            log.warning("plain mention %s in text" % ID)
            try:
                raise ValueError("bad id " + ID)
            except ValueError:
                log.exception("failed")
    finally:
        caplog.handler.removeFilter(flt)
    assert len(caplog.records) == 3
    assert ID not in caplog.text and "13812345678" not in caplog.text
    assert caplog.text.count("440301********123X") == 3
