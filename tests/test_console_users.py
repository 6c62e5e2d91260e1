"""The console's users and sessions without a network (gateway.console_users,
gateway.console_sessions, the `hall-gateway user` commands): the users file is private, holds
scrypt hashes with their parameters and never a password, a check costs one scrypt whether the
name exists or not, sessions end on time, on removal and on a password change, and the login
limits and tables stay bounded."""

import asyncio
import hashlib
import io
import logging
import os
import stat
import tomllib

import pytest
from hypothesis import given, settings, strategies as st

from gateway import cli, config as config_mod, console_sessions, console_users
from gateway.console_sessions import LoginRefused, Sessions
from gateway.console_users import UsersError, Users
from gateway.text_rules import is_text

RARE = "王䶮明"        # U+4DAE
ASTRAL = "𠈌丽"        # U+2020C
GOOD = "正确的密码-correct-1"


@pytest.fixture
def scrypt_calls(monkeypatch):
    calls = []
    real = hashlib.scrypt

    def counting(*args, **kw):
        calls.append(kw)
        return real(*args, **kw)
    monkeypatch.setattr(hashlib, "scrypt", counting)
    return calls


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_first_start_creates_admin_privately_and_never_logs_the_password(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    users = Users.open(str(tmp_path))
    initial = tmp_path / console_users.INITIAL_PASSWORD_FILE
    password = initial.read_text().strip()
    assert len(password) >= 16
    assert mode(tmp_path / console_users.USERS_FILE) == 0o600 and mode(initial) == 0o600
    assert str(initial) in caplog.text and password not in caplog.text
    assert users.list() == [("admin", "operator")]
    assert users.verify("admin", password) == "operator"
    assert users.verify("admin", password + "x") is None
    text = (tmp_path / console_users.USERS_FILE).read_text()
    assert password not in text
    rec = tomllib.loads(text)["user"][0]      # the scrypt parameters stored with the hash
    assert (rec["kdf"], rec["n"], rec["r"], rec["p"]) == ("scrypt", 2 ** 14, 8, 1)
    assert len(bytes.fromhex(rec["salt"])) == 16 and len(bytes.fromhex(rec["hash"])) == 32
    # a second start reads the file: the same admin, no new password
    again = Users.open(str(tmp_path))
    assert again.verify("admin", password) == "operator" and initial.read_text().strip() == password
    # once admin's password is changed the initial one is gone, from the file and for logins
    again.passwd("admin", GOOD)
    assert not initial.exists() and again.verify("admin", password) is None
    assert again.verify("admin", GOOD) == "operator"


def test_every_check_costs_one_scrypt_whether_the_name_exists_or_not(tmp_path, scrypt_calls):
    users = Users.open(str(tmp_path))
    users.add(RARE, "technician", GOOD)
    scrypt_calls.clear()
    for name, password in ((RARE, GOOD), (RARE, "wrong-password"), ("nobody", GOOD), (ASTRAL, "x" * 5000),
                           (None, None)):
        before = len(scrypt_calls)
        users.verify(name, password)
        assert len(scrypt_calls) == before + 1, name
        assert scrypt_calls[-1]["n"] == 2 ** 14 and scrypt_calls[-1]["r"] == 8
    assert users.verify(RARE, GOOD) == "technician"
    assert users.verify("nobody", GOOD) is None


def test_two_users_with_one_password_get_different_salts_and_hashes(tmp_path):
    users = Users.open(str(tmp_path))
    users.add(RARE, "viewer", GOOD)
    users.add(ASTRAL, "viewer", GOOD)
    recs = dict((u["name"], u) for u in tomllib.loads((tmp_path / "console-users.toml").read_text())["user"])
    assert recs[RARE]["salt"] != recs[ASTRAL]["salt"] and recs[RARE]["hash"] != recs[ASTRAL]["hash"]


def test_changes_are_checked(tmp_path):
    users = Users.open(str(tmp_path))
    for bad in (lambda: users.add("", "viewer", GOOD), lambda: users.add(" admin", "viewer", GOOD),
                lambda: users.add("a\x00b", "viewer", GOOD), lambda: users.add("x" * 65, "viewer", GOOD),
                lambda: users.add("bob", "queue", GOOD), lambda: users.add("bob", "viewer", "short"),
                lambda: users.add("admin", "viewer", GOOD), lambda: users.passwd("nobody", GOOD),
                lambda: users.remove("nobody"), lambda: users.remove("admin")):   # the last operator
        with pytest.raises(UsersError):
            bad()
    assert users.list() == [("admin", "operator")]


@pytest.mark.parametrize("edit", [
    lambda t: t.replace("n = 16384", "n = 1048576"),          # 1 GiB of scrypt memory a login
    lambda t: t.replace("n = 16384", "n = 1000"),             # not a power of two
    lambda t: t.replace('role = "operator"', 'role = "root"'),
    lambda t: t.replace('kdf = "scrypt"', 'kdf = "md5"'),
    lambda t: t + t[t.index("[[user]]"):],                   # the same name twice
    lambda t: t.replace("p = 1", 'p = "1"'),
    lambda t: t[:-20],
])
def test_a_broken_users_file_stops_the_start_and_locks_everyone_out_at_run_time(tmp_path, edit):
    users = Users.open(str(tmp_path))
    password = (tmp_path / console_users.INITIAL_PASSWORD_FILE).read_text().strip()
    path = tmp_path / console_users.USERS_FILE
    path.write_text(edit(path.read_text()))
    with pytest.raises(UsersError):
        Users.open(str(tmp_path))
    assert users.verify("admin", password) is None and users.stamp("admin") is None


def test_a_users_file_readable_by_others_is_made_private(tmp_path):
    Users.open(str(tmp_path))
    path = tmp_path / console_users.USERS_FILE
    os.chmod(path, 0o644)
    Users.open(str(tmp_path))
    assert mode(path) == 0o600


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands files to another user")
def test_run_as_root_the_files_belong_to_the_gateway_user(tmp_path):
    os.chown(tmp_path, 4321, 4321)              # the data directory of the gateway's user
    users = Users.open(str(tmp_path))
    users.add(RARE, "viewer", GOOD)
    for name in (console_users.USERS_FILE, console_users.INITIAL_PASSWORD_FILE):
        st_ = os.stat(tmp_path / name)
        assert (st_.st_uid, st_.st_gid, mode(tmp_path / name)) == (4321, 4321, 0o600)


names = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=64).filter(
    lambda s: is_text(s, 64, allow_empty=False) and s == s.strip())
records = st.fixed_dictionaries({
    "role": st.sampled_from(console_users.ROLES), "kdf": st.just("scrypt"),
    "n": st.sampled_from([2 ** 10, 2 ** 14, 2 ** 16]), "r": st.integers(1, 8), "p": st.integers(1, 4),
    "salt": st.binary(min_size=16, max_size=16).map(bytes.hex),
    "hash": st.binary(min_size=32, max_size=32).map(bytes.hex)})


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.one_of(names, st.sampled_from([RARE, ASTRAL, 'a"b\\c', "名 with spaces"])),
                       records, max_size=6))
def test_the_users_file_round_trips(users):
    assert console_users.loads(console_users.dumps(users)) == users


# --- sessions -------------------------------------------------------------------------------
class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


@pytest.fixture
def people(tmp_path):
    users = Users.open(str(tmp_path))
    users.add(RARE, "technician", GOOD)
    users.add("viewer-1", "viewer", GOOD)
    return users


def login(sessions, address, name, password):
    return asyncio.run(sessions.login(address, name, password))


def test_sessions_end_when_idle_at_their_age_limit_and_at_logout(people):
    clock = Clock()
    sessions = Sessions(people, idle_s=1800, max_s=43200, clock=clock)
    token, s = login(sessions, "10.0.0.1", RARE, GOOD)
    assert s.role == "technician" and s.csrf and s.csrf != token
    clock.t += 1799
    assert sessions.get(token) is s                     # used: the idle time starts again
    clock.t += 1799
    assert sessions.get(token) is s and sessions.valid(s)
    clock.t += 1800
    assert not sessions.valid(s)                        # an event stream of it closes
    assert sessions.get(token) is None and len(sessions) == 0
    token, s = login(sessions, "10.0.0.1", RARE, GOOD)
    for _ in range(43200 // 1500):
        clock.t += 1500
        assert sessions.get(token) is s
    clock.t += 1500
    assert sessions.get(token) is None                  # 12 h after the login, however busy
    token, s = login(sessions, "10.0.0.1", RARE, GOOD)
    sessions.end(s)
    assert sessions.get(token) is None
    assert sessions.get("made-up-token") is None


def test_a_removed_user_or_a_changed_password_ends_the_sessions(people, tmp_path):
    sessions = Sessions(people)
    token, _ = login(sessions, "10.0.0.1", RARE, GOOD)
    viewer, _ = login(sessions, "10.0.0.1", "viewer-1", GOOD)
    other = Users.open(str(tmp_path))            # another process (the CLI) changes the file
    session = sessions.get(token)
    other.passwd(RARE, "a-new-password-1")
    assert not sessions.valid(session)
    assert sessions.get(token) is None
    assert sessions.get(viewer) is not None
    other.remove("viewer-1")
    assert sessions.get(viewer) is None
    assert login(sessions, "10.0.0.1", "viewer-1", GOOD) is None


def test_failed_logins_are_limited_per_address_and_per_name_and_alarmed_once(people):
    clock = Clock()
    alarms = []
    sessions = Sessions(people, clock=clock, alarm=lambda name, detail: alarms.append((name, detail)))
    for i in range(5):            # one address trying names
        assert login(sessions, "10.0.0.9", "guess-%d" % i, "password-%d" % i) is None
    assert [a[0] for a in alarms] == ["console_login_flood"] and "10.0.0.9" in alarms[0][1]
    assert not any("guess" in a[1] for a in alarms)
    with pytest.raises(LoginRefused) as refused:
        login(sessions, "10.0.0.9", RARE, GOOD)        # even the right password: no oracle
    assert 1 <= refused.value.retry_after <= 60
    assert login(sessions, "10.0.0.10", RARE, GOOD) is not None   # another address may
    for i in range(5):            # one name tried from many addresses
        assert login(sessions, "10.1.0.%d" % i, RARE, "wrong-%d" % i) is None
    with pytest.raises(LoginRefused):
        login(sessions, "10.2.0.1", RARE, GOOD)
    assert len(alarms) == 2
    clock.t += 60
    assert login(sessions, "10.2.0.1", RARE, GOOD) is not None    # the minute is over


def test_memory_stays_bounded(people, monkeypatch):
    sessions = Sessions(people, capacity=3)
    tokens = [sessions.create("viewer-1", "viewer")[0] for _ in range(5)]
    assert len(sessions) == 3 and sessions.get(tokens[0]) is None and sessions.get(tokens[-1]) is not None
    monkeypatch.setattr(console_sessions, "FAIL_KEYS", 10)
    for i in range(50):
        sessions._failed("10.3.%d.%d" % (i // 250, i % 250), "name-%d" % i)
    assert all(len(t) <= 10 for t in sessions._fails.values())


def test_console_settings():
    assert console_sessions.settings(None) == {"idle_s": 1800.0, "max_s": 43200.0, "secure_cookies": False}
    assert console_sessions.settings({"session_idle_s": 60, "secure_cookies": True})["secure_cookies"] is True
    for bad in ({"session_idle_s": 0}, {"session_max_s": True}, {"session_max_s": "1h"},
                {"secure_cookies": "yes"}):
        with pytest.raises(console_sessions.SettingsError):
            console_sessions.settings(bad)


# --- the CLI ----------------------------------------------------------------------------------
def run_cli(monkeypatch, capsys, tmp_path, *argv, stdin=""):
    cfg = config_mod.from_dict({"gateway": {"hall": "h", "data_dir": str(tmp_path)}})
    monkeypatch.setattr(config_mod, "load", lambda path: cfg)
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = cli.main(["user", *argv, "--config", str(tmp_path / "gateway.toml")])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def test_the_user_commands(monkeypatch, capsys, tmp_path, caplog):
    code, out, err = run_cli(monkeypatch, capsys, tmp_path, "add", RARE, "--role", "technician",
                             "--password-stdin", stdin=GOOD + "\n")
    assert code == 0 and GOOD not in out + err
    assert console_users.INITIAL_PASSWORD_FILE in err + caplog.text   # the first use made admin, named its file
    code, out, _ = run_cli(monkeypatch, capsys, tmp_path, "add", "lobby", "--role", "viewer")
    assert code == 0
    generated = out.strip().rsplit(" ", 1)[1]
    users = Users.open(str(tmp_path))
    assert users.verify("lobby", generated) == "viewer" and users.verify(RARE, GOOD) == "technician"
    code, out, _ = run_cli(monkeypatch, capsys, tmp_path, "list")
    assert code == 0 and out.splitlines() == ["admin\toperator", "lobby\tviewer", RARE + "\ttechnician"]
    code, out, _ = run_cli(monkeypatch, capsys, tmp_path, "passwd", RARE, "--password-stdin",
                           stdin="another-password\n")
    assert code == 0 and users.verify(RARE, "another-password") == "technician"
    assert run_cli(monkeypatch, capsys, tmp_path, "remove", "lobby")[0] == 0
    assert users.verify("lobby", generated) is None
    for argv, stdin, words in ((("add", RARE, "--role", "viewer"), "", "exists"),
                               (("passwd", "nobody"), "", "no user"),
                               (("remove", "admin"), "", "last operator"),
                               (("add", "bob", "--role", "viewer", "--password-stdin"), "short\n", "password"),
                               (("add", "a\x01b", "--role", "viewer"), "", "user name")):
        code, out, err = run_cli(monkeypatch, capsys, tmp_path, *argv, stdin=stdin)
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1, (argv, err)
    with pytest.raises(SystemExit) as e:
        run_cli(monkeypatch, capsys, tmp_path, "add", "bob", "--role", "queue")
    assert e.value.code == 2


def test_the_example_config_and_check_read_the_console_settings(monkeypatch, capsys, tmp_path):
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    example = config_mod.load(os.path.join(here, "docs", "gateway.example.toml"))
    assert console_sessions.settings(example.raw.get("console")) == {
        "idle_s": 1800.0, "max_s": 43200.0, "secure_cookies": False}
    cfg = config_mod.from_dict({"gateway": {"hall": "h", "data_dir": str(tmp_path)},
                                "console": {"session_idle_s": -1}})
    monkeypatch.setattr(config_mod, "load", lambda path: cfg)
    assert cli.main(["check", "--config", "gateway.toml"]) == 2
    err = capsys.readouterr().err
    assert "session_idle_s" in err and "Traceback" not in err
