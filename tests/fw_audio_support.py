"""Voice-prompt flows on the sim board, shared by the CPython and the MicroPython tests
(tests/test_fw_audio.py): a device built with the real prompt files and the sim board's recorder
(boards/sim.SimAudio), driven through fw_support's rig."""

import fw_support

_here = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
REPO = _here.rsplit("/", 1)[0] if "/" in _here else ".."
PROMPTS = REPO + "/firmware/prompts"
FONT = REPO + "/firmware/fonts/unifont16.bin"
BASE = "/tmp"          # where the rigs keep their files (the CPython tests set a fresh one)


class VoiceRig(fw_support.Rig):
    """fw_support.Rig with voice: its device gets the prompt files; amp=False takes the
    amplifier off the board (a board built without one)."""

    def __init__(self, profile="five_button", amp=True, prompts=PROMPTS, config=None, **kw):
        kw.setdefault("base", BASE)
        super().__init__(profile, **kw)
        if not amp:
            self.board.audio = None
        self.prompts = prompts
        self.reboot()
        if config:
            self.dev.on_config(config)
            self.dev.step()

    def reboot(self):
        from firmware.device import Device
        self.dev = Device(self.board, self.cfg, fs=self.fs, font_path=self.font, prompts=self.prompts)
        self.dev.step()

    @property
    def played(self):
        return self.board.audio.played if self.board.audio is not None else []


def _font(profile):
    return FONT if profile == "five_button" else None


def flow_greet_thanks(profile):
    rig = VoiceRig(profile, font=_font(profile))
    rig.context(41)
    assert rig.played == [("greet", 5)], rig.played          # the default volume is 5
    rig.wait(1000)
    rig.press_level(2)
    assert rig.state == "thanks"
    assert rig.played == [("greet", 5), ("thanks", 5)], rig.played


def flow_reason(profile):
    rig = VoiceRig(profile, font=_font(profile))
    rig.context(42)
    rig.wait(1000)
    rig.press_level(5)
    assert rig.state == "tags"
    assert rig.played == [("greet", 5), ("reason", 5)], rig.played
    rig.act("tag_pick", 702)
    rig.act("confirm")
    assert rig.state == "thanks"
    assert [p[0] for p in rig.played] == ["greet", "reason", "thanks"]


def flow_not_rated_is_silent(profile):
    rig = VoiceRig(profile)
    rig.context(43)
    rig.wait(31000)
    assert rig.state == "not_rated"
    assert rig.played == [("greet", 5)], rig.played          # no thank-you for a timeout


def flow_mute(profile):
    from protocol.supplement import volume_wire
    rig = VoiceRig(profile, config={"volume": volume_wire(0)})
    rig.context(44)
    rig.wait(1000)
    rig.press_level(1)
    assert rig.state == "thanks"
    assert rig.played == [] and rig.board.audio.samples == 0, rig.played


def flow_no_amplifier(profile):
    rig = VoiceRig(profile, amp=False)
    assert rig.dev.audio is None
    rig.context(45)
    rig.wait(1000)
    rig.press_level(1)
    assert rig.state == "thanks"                             # the flow does not notice
    assert [e for e in rig.dev.status()["errors"] if e["name"].startswith("audio")] == []


def flow_volume_and_real_time(profile):
    """A prompt is decoded chunk by chunk as the sink takes it (never all at once), at the
    configured volume; it ends after its real length; a quieter volume writes smaller samples."""
    from protocol.supplement import volume_wire
    peaks = {}
    for level in (10, 3):
        rig = VoiceRig(profile, config={"volume": volume_wire(level)})
        rig.context(46)
        audio = rig.board.audio
        assert audio.played == [("greet", level)]
        assert 0 < audio.samples <= 4 * 128                  # one turn: four chunks at most
        turns = 0
        while rig.dev.audio.playing:
            rig.wait(20)
            turns += 1
            assert turns < 400, "the prompt never ended"
        with open(PROMPTS + "/greet.ima", "rb") as f:
            total = 2 * (len(f.read()) - 6)
        assert audio.samples == total, (audio.samples, total)
        assert 100 < turns                                   # ~4 s of sound at 20 ms a turn
        peaks[level] = audio.peak
    assert peaks[3] * 8 < peaks[10], peaks                   # 7 steps of 4 dB quieter


def flow_missing_file(profile):
    rig = VoiceRig(profile, prompts=PROMPTS + "/absent")
    rig.context(47)
    assert rig.played == [] and rig.state == "case"
    assert {"name": "audio_missing", "count": 1} in rig.dev.status()["errors"]


FLOWS = {
    "greet_thanks": flow_greet_thanks,
    "reason": flow_reason,
    "not_rated_is_silent": flow_not_rated_is_silent,
    "mute": flow_mute,
    "no_amplifier": flow_no_amplifier,
    "volume_and_real_time": flow_volume_and_real_time,
    "missing_file": flow_missing_file,
}
