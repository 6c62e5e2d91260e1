"""`hall-gateway check` (gateway.config_check): each class of problem `run` would trip over is one
line on stderr and exit 2; never a traceback, whatever the file holds."""

import logging
import os
import socket
import sys
from pathlib import Path

import pytest

from hypothesis import HealthCheck, given, settings, strategies as st

sys.path.insert(0, str(Path(__file__).parent))
from conftest import free_port  # noqa: E402

from gateway import cli, config_check, live_config  # noqa: E402

KEY = "ab" * 32


@pytest.fixture(autouse=True)
def _root_logging_kept():
    """cli.main sets up root logging; other tests' logging stays as it was."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def write(tmp_path, text, name="gateway.toml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def base(tmp_path, broker_port, extra="", http_port=0, gateway=""):
    return ('[gateway]\nhall = "sz-futian"\ndata_dir = "%s"\n%s\n[http]\nport = %d\n'
            '[mqtt]\nhost = "127.0.0.1"\nport = %d\n[glyphs]\nfonts = []\n%s\n'
            % (tmp_path / "data", gateway, http_port, broker_port, extra))


def run_check(path, capsys):
    code = cli.main(["check", "--config", path, "--log-level", "ERROR"])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, [ln for ln in err.splitlines() if ln]


def test_a_good_config_passes_with_a_summary(tmp_path, capsys, mosquitto_broker):
    code, out, err = run_check(write(tmp_path, base(tmp_path, mosquitto_broker.port)), capsys)
    assert (code, err) == (0, []) and '"hall": "sz-futian"' in out


def test_syntax_and_values_one_line_each(tmp_path, capsys):
    for text, named in (("[gateway\nhall=1", "not TOML"), ('[gateway]\nhall = "h"\n[http]\nport = "x"', "port"),
                        ('[gateway]\nhall = "h"\n[device_config]\nvolume = 99', "volume"),
                        ('[gateway]\nhall = "h"\n[windows.A05]\ncolour = "red"', "A05"),
                        ("[gateway]\n", "hall"), ('gateway = "flat"', "gateway")):
        code, _, err = run_check(write(tmp_path, text), capsys)
        assert code == 2 and len(err) == 1 and named in err[0], (text, err)
    code, _, err = run_check(str(tmp_path / "missing.toml"), capsys)
    assert code == 2 and err == ["hall-gateway: %s: cannot be read (No such file or directory)"
                                 % (tmp_path / "missing.toml")]


def test_secrets_of_the_wrong_length(tmp_path, capsys):
    port = free_port()
    extra = ('[ota]\nrelease_key = "abcd"\n[qr]\nsecret = "short"\n[uplink]\nurl = "https://c.example"\n'
             'hmac_secret = "tiny"\ntoken = "1234"\n')
    text = base(tmp_path, port, extra, gateway='privacy_key = "%s"' % KEY[:40]).replace(
        '[mqtt]\n', '[mqtt]\nusername = "gw"\npassword = "pw"\n')
    _, problems = config_check.problems(write(tmp_path, text), broker_timeout=0.5)
    wanted = ("privacy_key", "release_key", "[qr] secret", "hmac_secret", "[uplink] token", "[mqtt] password")
    for name in wanted:
        assert sum(name in p for p in problems) == 1, (name, problems)
    good = base(tmp_path, port, '[ota]\nrelease_key = "%s"\n[qr]\nsecret = "%s"\n' % (KEY, "s" * 16),
                gateway='privacy_key = "%s"' % KEY)
    _, problems = config_check.problems(write(tmp_path, good), broker_timeout=0.5)
    assert not any(name in p for p in problems for name in wanted), problems


def test_registry_file_and_devices(tmp_path, mosquitto_broker):
    path = write(tmp_path, base(tmp_path, mosquitto_broker.port))
    os.makedirs(tmp_path / "data", exist_ok=True)
    registry = tmp_path / "data" / "registry.json"
    for content, named in ((b"\xff{not json", "is not valid"), (b'{"devices": [{"id": "x y"}]}', "is not valid"),
                           (b"[1, 2]", "not {")):
        registry.write_bytes(content)
        assert [p for p in config_check.problems(path)[1] if "registry" in p and named in p], content
    registry.unlink()
    bad_key = base(tmp_path, mosquitto_broker.port, '[[devices]]\nid = "ev-1"\nwindow = "A1"\nkey = "00"\n')
    assert any("[[devices]]" in p for p in config_check.problems(write(tmp_path, bad_key, "bad.toml"))[1])
    assert config_check.problems(path)[1] == []


def test_http_port_taken_by_another_program_but_not_by_the_gateway_itself(tmp_path, mosquitto_broker):
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        path = write(tmp_path, base(tmp_path, mosquitto_broker.port, http_port=port))
        cfg, problems = config_check.problems(path)
        assert problems == ["[http] port %d on 127.0.0.1 is in use by another program" % port]
        live_config.write_pid(cfg)                 # a live gateway holds it: no problem
        try:
            assert config_check.problems(path)[1] == []
        finally:
            live_config.remove_pid(cfg)


def test_fonts_serial_devices_data_dir(tmp_path, mosquitto_broker):
    (tmp_path / "afile").write_text("x")
    extra = ('[[rs485]]\nurl = "/dev/ttyNOPE9"\n[[rs485]]\nurl = "socket://no-such-host.invalid:5000"\n'
             '[[rs485]]\nurl = "bogus://x"\n[[rs485]]\nurl = "socket://127.0.0.1:5000"\n')
    text = base(tmp_path, mosquitto_broker.port, extra).replace(
        "fonts = []", 'fonts = ["/usr/share/fonts/none.otf"]\ndevice_font = "/nope/unifont16.bin"')
    text = text.replace('data_dir = "%s"' % (tmp_path / "data"), 'data_dir = "%s"' % (tmp_path / "afile"))
    problems = config_check.problems(write(tmp_path, text))[1]
    for named in ("none.otf is missing", "unifont16.bin is missing", "ttyNOPE9: no such serial device",
                  "no-such-host.invalid' does not resolve", "bogus://x", "data_dir"):
        assert sum(named in p for p in problems) == 1, (named, problems)
    assert not any("127.0.0.1:5000" in p for p in problems)


def test_broker_down_or_refusing_the_login(tmp_path, mosquitto_factory):
    problems = config_check.problems(write(tmp_path, base(tmp_path, free_port())), broker_timeout=1)[1]
    assert len(problems) == 1 and "does not answer" in problems[0]
    assert config_check.problems(str(tmp_path / "gateway.toml"), offline=True)[1] == []   # the file only
    secured = mosquitto_factory(users={"gw": "right-password"})
    login = base(tmp_path, secured.port).replace('[mqtt]\n', '[mqtt]\nusername = "gw"\npassword = "%s"\n')
    assert config_check.problems(write(tmp_path, login % "right-password"), broker_timeout=3)[1] == []
    problems = config_check.problems(write(tmp_path, login % "wrong-password"), broker_timeout=3)[1]
    assert len(problems) == 1 and "refused the gateway's login" in problems[0], problems


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(st.binary(max_size=400),
                      st.text(alphabet="[]=\"'.\n abc0123王䶮𠈌{},#", max_size=200).map(str.encode)))
def test_no_traceback_for_a_garbage_file(tmp_path, capsys, data):
    path = tmp_path / "garbage.toml"
    path.write_bytes(data)
    code, out, err = run_check(str(path), capsys)
    assert code == 2 and err and all(ln.startswith("hall-gateway: ") for ln in err)
    for argv in (["run"], ["reload"], ["acl", "--out", str(tmp_path / "acl")], ["user", "list"]):
        assert cli.main(argv + ["--config", str(path), "--log-level", "ERROR"]) == 2
        assert "Traceback" not in capsys.readouterr().err


def test_acl_with_a_damaged_registry_is_one_line(tmp_path, capsys):
    path = write(tmp_path, base(tmp_path, free_port()))
    os.makedirs(tmp_path / "data")
    (tmp_path / "data" / "registry.json").write_bytes(b"\xff not json")
    assert cli.main(["acl", "--config", path, "--out", str(tmp_path / "m"), "--gateway-password", "x" * 8]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "registry" in err[0] and "Traceback" not in err[0]


def test_a_live_config_file_that_no_longer_fits_is_named(tmp_path, mosquitto_broker):
    path = write(tmp_path, base(tmp_path, mosquitto_broker.port))
    os.makedirs(tmp_path / "data")
    live = tmp_path / "data" / live_config.FILE_NAME
    for content in (b"\xff{", b'{"hall": {"volume": 99}}', b'{"windows": []}'):
        live.write_bytes(content)
        problems = config_check.problems(path)[1]
        assert len(problems) == 1 and live_config.FILE_NAME in problems[0], (content, problems)
    live.write_text('{"hall": {"volume": 9}, "windows": {"A05": {"texts": {"thanks": "谢谢 王䶮明"}}}}',
                    encoding="utf-8")
    assert config_check.problems(path)[1] == []
