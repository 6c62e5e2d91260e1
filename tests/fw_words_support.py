"""The device side of per-window words (tests/test_gw_window_words.py), for CPython and real
MicroPython alike: a sim evaluator takes the binary CONFIG the gateway built for its window, and
the words its screens ask the UI for are recorded as they are drawn."""

import fw_support
from binascii import unhexlify

FONT = fw_support.__file__.rsplit("/", 2)[0] + "/firmware/fonts/unifont16.bin" \
    if "/" in fw_support.__file__ else "../firmware/fonts/unifont16.bin"


def drawn_words(rig):
    """{key: word} the screen's layout asked for while the current view was rendered."""
    ui = rig.dev.ui
    got = {}
    word, word_with = ui.word, ui.word_with

    def rec(view, key):
        got[key] = word(view, key)
        return got[key]

    def rec_with(view, key, value):
        got[key] = word_with(view, key, value)
        return got[key]
    ui.word, ui.word_with = rec, rec_with
    try:
        ui.render(rig.dev.app.view())
    finally:
        del ui.word, ui.word_with
    return got


def configure(rig, config_hex):
    """What a transport does with a CONFIG frame: decode it and hand it to the device."""
    from protocol import codec, schema
    rig.dev.on_config(codec.decode(schema.CONFIG, unhexlify(config_hex)))
    rig.dev.step()


def words_at(rig, config_hex, case_id):
    """The words of the case screen and of the tag screen after a bad rating, at this CONFIG
    (None: at the one the device has)."""
    if config_hex is not None:
        configure(rig, config_hex)
    rig.context(case_id)
    case = drawn_words(rig)
    rig.wait(1000)
    rig.act("rate", "overall", 5)
    assert rig.state == "tags", rig.state
    tags = drawn_words(rig)
    labels = [t["label"] for t in rig.dev.app.tags]
    rig.act("back")
    rig.dev.on_clear({"case_id": case_id})
    rig.dev.step()
    return case, tags, labels


def check(english_hex, chinese_hex, base="/tmp"):
    """One five-button evaluator at the English window, then moved to a Chinese one, then
    rebooted (the CONFIG it keeps in flash): what it showed at each step (the test compares)."""
    rig = fw_support.Rig("five_button", font=FONT, base=base)
    out = {"english": words_at(rig, english_hex, 51)}
    out["volume_en"] = rig.dev.app.cfg["volume"]
    out["large_en"] = rig.dev.app.cfg["large_text"]
    out["chinese"] = words_at(rig, chinese_hex, 52)
    out["volume_zh"] = rig.dev.app.cfg["volume"]
    rig.reboot()
    out["rebooted"] = words_at(rig, None, 53)
    return out
