"""Rigs in a given state of firmware.app.TRANSITIONS and what can be observed of them, for the
transition tests (a sim-board Device through fw_support.Rig). CPython only."""

import os
import shutil
import tempfile

import pytest

from firmware.app import TRANSITIONS
from fw_support import KEY_HEX, Rig
from protocol import vocab

STATES = sorted({state for state, _ in TRANSITIONS})
EVENTS = sorted({event for _, event in TRANSITIONS})
KEY = bytes.fromhex(KEY_HEX)
ITEMS = [{"code": "T1", "name": "营业执照变更"}, {"code": "T2", "name": "税务登记"}]
CASE = 11


# --- rigs in a given state ---------------------------------------------------------------------
_BASE = []


@pytest.fixture(scope="module", autouse=True)
def _flash_base():
    """One directory for every rig's flash in this module (each rig has its own under it)."""
    _BASE.append(tempfile.mkdtemp(prefix="fw-transitions-"))
    yield
    shutil.rmtree(_BASE.pop(), ignore_errors=True)


def new_rig(profile="five_button", capacity=10):
    return Rig(profile, base=_BASE[-1], capacity=capacity)


def open_case(rig, case_id=CASE, **extra):
    rig.context(case_id, **extra)
    rig.wait(1000)                                  # past the misuse guard (press_guard_ms 500)
    assert rig.state == "case"


def rate(rig, level):
    for name in rig.dev.app.ask:
        rig.act("rate", name, level)
    if rig.board.profile == "touch":
        rig.act("submit")


def fail_next_append(rig):
    outbox = rig.dev.outbox

    def append(counter, data):
        del outbox.append                           # the flash works again after this write
        raise OSError(5, "flash write failed")
    outbox.append = append


def _to_state(rig, state):
    if state == "no_case":
        rig.act("press")
    elif state in ("case", "tags", "busy", "thanks", "not_rated", "error"):
        open_case(rig, items=ITEMS)
        if state == "tags":
            rate(rig, vocab.DISSATISFIED)           # a bad level with tags on offer
        elif state == "busy":
            for _ in range(7):                      # more than MASH_PRESSES within a second
                rig.dev.app.input(("key", 0))
        elif state == "thanks":
            rate(rig, vocab.SATISFIED)
        elif state == "not_rated":
            rig.wait(30000)                         # the case's rating timeout (30 s)
        elif state == "error":
            fail_next_append(rig)
            rate(rig, vocab.SATISFIED)
    elif state == "storage_full":
        open_case(rig, 10)
        rate(rig, vocab.SATISFIED)                  # the outbox (capacity 1) is full now
        rig.context(CASE, items=ITEMS)
    assert rig.state == state, (rig.state, state)
    return rig


def rig_in(state, profile="five_button"):
    return _to_state(new_rig(profile, capacity=1 if state == "storage_full" else 10), state)


# --- what can be observed -----------------------------------------------------------------------
def flash(rig):
    """Every file under the device's flash root, with its bytes."""
    out = {}
    for top, _, files in os.walk(rig.root):
        for name in files:
            path = os.path.join(top, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, rig.root)] = f.read()
    return out


def snapshot(rig):
    app = rig.dev.app
    return (app.state, app.ctx, dict(app.levels), dict(app.item_levels), list(app.chosen),
            app.cursor, app.screen_until, app.expire_at, list(rig.dev.outbox.counters),
            list(app.recent), flash(rig))


def fire(rig, event, *args):
    """Fire `event` through App.fire; assert it ran the handler the table names, with args."""
    app = rig.dev.app
    name = TRANSITIONS[(app.state, event)]
    handler = getattr(app, name)
    calls = []

    def spy(*a):
        calls.append(a)
        return handler(*a)
    setattr(app, name, spy)
    try:
        assert app.fire(event, *args) is True
    finally:
        delattr(app, name)
    assert calls == [args]
    rig.dev.step()


def ctx(case_id, **extra):
    rec = {"case_id": case_id, "window": "07", "staff_id": "A0123", "staff_name": "王喆",
           "serials": ["SZ2024%05d" % case_id], "node": vocab.NODE_COMPLETION}
    rec.update(extra)
    return rec


def last_rating(rig):
    return rig.ratings[-1]
