"""Voice prompts: the files tools/build_prompts.py makes with espeak-ng, the decoder that plays
them (firmware/audio.py, against audioop's reference IMA-ADPCM decoder), and the flows on the sim
board under CPython and real MicroPython 1.29: a case shown greets, a rating thanks, a bad rating
asks for the reason, mute and a board without an amplifier play nothing."""

import array
import sys
import warnings
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import fw_audio_support  # noqa: E402

from firmware import audio  # noqa: E402
from tools import build_prompts  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

PROMPT_DIR = build_prompts.OUT_DIR


def test_prompt_files_are_small_and_decode_like_the_reference():
    total = 0
    for name in build_prompts.PROMPTS:
        data = (PROMPT_DIR / (name + ".ima")).read_bytes()
        total += len(data)
        assert data[:4] == audio.MAGIC and int.from_bytes(data[4:6], "little") == 8000
        body = data[6:]
        ref = array.array("h", audioop.adpcm2lin(body, 2, None)[0])
        out, state, got = array.array("h", range(256)), [0, 0], []
        for i in range(0, len(body), 128):
            chunk = body[i:i + 128]
            audio.decode(chunk, len(chunk), out, state, 256)
            got.extend(out[:2 * len(chunk)])
        assert got == list(ref), name
        rms = (sum(v * v for v in ref) / len(ref)) ** 0.5
        assert 1.5 < len(ref) / 8000 < 5 and rms > 2000, (name, len(ref), rms)   # speech, not silence
    assert total <= 41 * 1024, total


def test_volume_scales_the_samples():
    body = (PROMPT_DIR / "thanks.ima").read_bytes()[6:134]
    loud, quiet = array.array("h", range(256)), array.array("h", range(256))
    audio.decode(body, 128, loud, [0, 0], audio.gain(10))
    audio.decode(body, 128, quiet, [0, 0], audio.gain(5))
    assert [q for q in quiet] == [(v * audio.gain(5)) >> 8 for v in loud]
    assert audio.gain(0) == 0 and audio.gain(10) == 256
    assert [audio.gain(v) for v in range(11)] == sorted(audio.gain(v) for v in range(11))


def test_prompts_regenerate_byte_for_byte():
    """espeak-ng makes the same bytes on every run of one version: the committed files are what
    tools/build_prompts.py makes now. Another espeak-ng version cannot be compared (skipped)."""
    if build_prompts.espeak_version() != build_prompts.recorded_version():
        pytest.skip("prompts made with %s, installed: %s" % (build_prompts.recorded_version(),
                                                             build_prompts.espeak_version()))
    files = build_prompts.build()
    for name, data in files.items():
        assert (PROMPT_DIR / name).read_bytes() == data, name
    assert build_prompts.SUMS.read_text(encoding="utf-8") == build_prompts.sums_text(
        files, build_prompts.espeak_version())


def test_the_bundle_puts_the_prompts_beside_the_font(tmp_path):
    from tools.flashkit import bundle
    files = dict((dev, host) for dev, host in bundle.source_files(str(build_prompts.REPO)))
    for name in build_prompts.PROMPTS:
        assert "firmware/prompts/%s.ima" % name in files
    assert "firmware/prompts/SUMS.md" not in files


@pytest.mark.parametrize("profile", ("five_button", "touch"))
@pytest.mark.parametrize("name", sorted(fw_audio_support.FLOWS))
def test_voice_flow(name, profile, tmp_path, monkeypatch):
    monkeypatch.setattr(fw_audio_support, "BASE", str(tmp_path))
    fw_audio_support.FLOWS[name](profile)


MP_SCRIPT = """
import sys
sys.path.insert(0, "/repo/tests")
import fw_audio_support
for profile in ("five_button", "touch"):
    for name in sorted(fw_audio_support.FLOWS):
        try:
            fw_audio_support.FLOWS[name](profile)
            print("PASS", profile, name)
        except Exception as e:
            sys.print_exception(e)
            print("FAIL", profile, name, repr(e))
"""


def test_voice_flows_under_micropython(micropython):
    r = micropython(MP_SCRIPT, trees=("protocol", "firmware", "tests"), timeout=300).check()
    assert "FAIL" not in r.stdout, r.stdout
    assert r.stdout.count("PASS") == 2 * len(fw_audio_support.FLOWS), r.stdout


def test_the_flash_report_counts_what_goes_on_a_device():
    """tools/fw_heap.flash_bytes: data by folder as the bundle copies it (no .md, no test
    vectors), code without the host-only sim board."""
    from tools import fw_heap
    from tools.flashkit import romfs
    files = {"/repo/firmware/prompts/greet.ima": b"a" * 10, "/repo/firmware/prompts/SUMS.md": b"m",
             "/repo/firmware/fonts/unifont16.bin": b"f" * 7, "/repo/protocol/vectors/crc.json": b"{}",
             "/repo/firmware/audio.mpy": b"M" * 5, "/repo/firmware/boards/sim.mpy": b"S" * 9}
    got = fw_heap.flash_bytes(files)
    assert got["data"] == {"firmware/prompts": 10, "firmware/fonts": 7}
    assert got["code_mpy"] == 5
    assert got["code_romfs_image"] == len(romfs.image({"firmware/audio.mpy": b"M" * 5}))


def test_provisioning_with_amp_gives_the_board_its_amplifier():
    """flash.py provision --amp writes board.audio; the firmware hands it to the ESP32 board, which
    then makes its I2S sink (boards/esp32.py); without --amp the board has none."""
    from firmware.config import validate
    from firmware.main import board_config
    from tools.flashkit import cli, devconfig
    args = cli.parser().parse_args(["provision", "--port", "/dev/ttyUSB0", "--board", "five_button",
                                    "--transport", "rs485", "--window", "7", "--rs485-baud", "9600", "--amp"])
    (s,) = cli._settings(args, ["/dev/ttyUSB0"])
    assert s["amp"] is True
    cfg = devconfig.build("ev-0a0b0c0d0e0f", "00" * 32, s["board"], s["transport"], window="7",
                          address=7, baud=s["baud"], amp=s["amp"])
    assert board_config(validate(cfg), "/data")["audio"] is True
    plain = devconfig.build("ev-0a0b0c0d0e0f", "00" * 32, "touch", "rs485", window="7", address=7, baud=9600)
    assert "audio" not in board_config(validate(plain), "/data")
