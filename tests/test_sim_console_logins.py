"""hall-sim prints the console's logins: each one must really log in with the role it names."""

from gateway import console_users
from hall_simulator import hall, hall_run


def test_the_printed_logins_are_the_gateways_users_with_their_roles(tmp_path):
    logins = hall.console_logins(str(tmp_path))
    assert sorted(role for _, role, _ in logins) == ["operator", "technician", "viewer"]
    users = console_users.Users.open(str(tmp_path))
    for name, role, password in logins:
        assert users.verify(name, password) == role
        assert users.verify(name, password + "x") is None
    # a second start of the same data directory invents nothing new
    assert [n for n, _, _ in hall.console_logins(str(tmp_path))] == ["admin"]


def test_where_names_the_console_and_every_login():
    class Part:
        url = "x://part"
        http_url = "http://127.0.0.1:8080"

    class FakeHall:
        broker = central = gateway = Part()
        console_logins = [("admin", "operator", "pw-one-1234"), ("lobby", "viewer", "pw-two-5678")]

    text = hall_run.where(FakeHall())
    assert "console http://127.0.0.1:8080/" in text
    assert "pw-one-1234" in text and "pw-two-5678" in text and "viewer" in text
