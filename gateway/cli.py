"""hall-gateway: `hall-gateway run --config gateway.toml` starts the gateway in the foreground
(systemd runs it like that); `hall-gateway check --config gateway.toml` validates everything `run`
needs (gateway.config_check: one line per problem on stderr, exit 2; else a summary, exit 0);
`hall-gateway reload --config gateway.toml` sends SIGHUP to the running gateway (its pid from
<data_dir>/hall-gateway.pid; under systemd `systemctl reload hall-gateway` does the same through
ExecReload and $MAINPID), which re-reads the file and applies the devices' config live
(gateway.live_config; what needs a restart is logged, an error keeps the running config);
`hall-gateway acl --config gateway.toml` writes the Mosquitto password and ACL files into
[mqtt] broker_files and asks the broker to reload (as the running gateway does after each device
change); `--out DIR` writes them elsewhere (no reload), `--gateway-password` overrides [mqtt]
password. Logs go to stderr as JSON lines or text (`--log-format`, gateway.logjson).

The console's users (gateway.console_users; the running gateway picks changes up at once):
    hall-gateway user add NAME --role operator|technician|viewer [--password-stdin] --config ...
    hall-gateway user passwd NAME [--password-stdin] --config ...
    hall-gateway user remove NAME --config ...
    hall-gateway user list --config ...
Without --password-stdin a password is generated and printed once. A removed user, or one whose
password changed, is logged out of the console."""

import argparse
import asyncio
import json
import logging
import secrets
import sys

from gateway import config as config_mod
from gateway import logjson


def _logging(level, requested=None, configured="auto"):
    """Root logging to stderr as JSON lines or text (gateway.logjson.choose), identity filtered."""
    logjson.setup(level, logjson.choose(requested, configured))


def _acl(cfg, args):
    from gateway import mosquitto_acl
    from gateway.registry import Registry
    password = args.gateway_password or cfg.mqtt.password
    out = args.out or (cfg.path(cfg.mqtt.broker_files) if cfg.mqtt.broker_files else "")
    if not out or not password:
        print("hall-gateway: acl needs [mqtt] broker_files (or --out) and [mqtt] password "
              "(or --gateway-password)", file=sys.stderr)
        return 2
    try:
        registry = Registry(cfg.devices, cfg.registry_path)
    except (OSError, ValueError) as e:     # a damaged registry file: one line, `check` says more
        print("hall-gateway: registry %s: %s" % (cfg.registry_path, e), file=sys.stderr)
        return 2
    user = cfg.mqtt.username or cfg.mqtt.client_id
    try:
        if args.out:
            paths = mosquitto_acl.write_files(out, cfg.hall, registry, user, password)
            reloaded = False
        else:
            files = mosquitto_acl.BrokerFiles(
                out, cfg.hall, registry, user, password,
                pid_file=cfg.path(cfg.mqtt.broker_pid_file) if cfg.mqtt.broker_pid_file else "")
            mosquitto_acl.write_files(out, cfg.hall, registry, user, password)
            paths = mosquitto_acl.file_paths(out)
            reloaded = files.request_reload()
    except OSError as e:
        print("hall-gateway: %s" % e, file=sys.stderr)
        return 2
    print(json.dumps(dict(paths, reload=reloaded)))
    return 0


def _user(cfg, args):
    from gateway import console_users
    try:
        users = console_users.Users.open(cfg.data_dir)
        if args.action == "list":
            for name, role in users.list():
                print("%s\t%s" % (name, role))
            return 0
        if args.action == "remove":
            users.remove(args.name)
            print("removed %s" % args.name)
            return 0
        if args.password_stdin:
            password, generated = sys.stdin.readline().rstrip("\r\n"), False
        else:
            password, generated = secrets.token_urlsafe(12), True
        if args.action == "add":
            users.add(args.name, args.role, password)
        else:
            users.passwd(args.name, password)
    except (OSError, console_users.UsersError) as e:
        print("hall-gateway: %s" % e, file=sys.stderr)
        return 2
    if generated:     # shown once, here only: never logged, never kept in clear
        print("password for %s: %s" % (args.name, password))
    else:
        print("%s %s" % ("added" if args.action == "add" else "changed the password of", args.name))
    return 0


def _check(path, offline=False):
    from gateway import config_check
    cfg, problems = config_check.problems(path, offline=offline)
    for line in problems:
        print("hall-gateway: %s" % line, file=sys.stderr)
    if problems:
        return 2
    print(json.dumps({"hall": cfg.hall, "devices": len(cfg.devices), "buses": len(cfg.buses)}))
    return 0


def _reload(cfg):
    import os
    import signal
    from gateway import live_config
    pid = live_config.running_pid(cfg)
    if pid is None:
        print("hall-gateway: no running gateway (no live pid in %s)" % live_config.pid_path(cfg),
              file=sys.stderr)
        return 2
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError as e:
        print("hall-gateway: cannot signal pid %d (%s)" % (pid, e.strerror), file=sys.stderr)
        return 2
    print("sent SIGHUP to the gateway (pid %d): it logs what it applied" % pid)
    return 0


def _user_parser(sub):
    user = sub.add_parser("user", help="the console's users").add_subparsers(dest="action", required=True)
    for action, text in (("add", "add a console user"), ("passwd", "set a user's password"),
                         ("remove", "remove a user (and end their sessions)"),
                         ("list", "user names and roles")):
        p = user.add_parser(action, help=text)
        p.add_argument("--config", required=True)
        p.add_argument("--log-level", default="WARNING")
        if action != "list":
            p.add_argument("name")
        if action == "add":
            p.add_argument("--role", required=True, choices=("operator", "technician", "viewer"))
        if action in ("add", "passwd"):
            p.add_argument("--password-stdin", action="store_true",
                           help="read the password from the first line of stdin (else one is generated)")


def _version():
    """The installed package's version (importlib.metadata), for --version."""
    from importlib import metadata
    try:
        return metadata.version("hall-rating")
    except metadata.PackageNotFoundError:
        return "unknown (not installed: pip install .)"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="hall-gateway", description="Hall rating gateway")
    parser.add_argument("--version", action="version", version="%(prog)s " + _version())
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("run", "run the gateway"), ("check", "validate everything run needs"),
                       ("reload", "make the running gateway re-read its config (SIGHUP)"),
                       ("acl", "write Mosquitto password + ACL files from the registry")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--config", required=True)
        p.add_argument("--log-level", default="INFO")
        p.add_argument("--log-format", choices=logjson.FORMATS,
                       help="json lines or text (default: [gateway] log_format, else json unless"
                            " on a terminal)")
        if name == "check":
            p.add_argument("--offline", action="store_true",
                           help="the file only: not the HTTP port, serial devices or broker of this machine")
        if name == "acl":
            p.add_argument("--out", help="directory for passwords and acl "
                                         "(default: [mqtt] broker_files, then reload the broker)")
            p.add_argument("--gateway-password", help="default: [mqtt] password")
    _user_parser(sub)
    args = parser.parse_args(argv)
    level = getattr(logging, args.log_level.upper(), logging.INFO)
    requested = getattr(args, "log_format", None)
    _logging(level, requested)
    if args.command == "check":
        return _check(args.config, args.offline)
    try:
        cfg = config_mod.load(args.config)
    except (OSError, config_mod.ConfigError) as e:
        print("hall-gateway: %s" % e, file=sys.stderr)
        return 2
    _logging(level, requested, cfg.log_format)    # the config may name the format
    if args.command == "reload":
        return _reload(cfg)
    if args.command == "acl":
        return _acl(cfg, args)
    if args.command == "user":
        return _user(cfg, args)
    from gateway.app import Gateway
    from gateway.http_auth import CredentialsError
    try:
        gateway = Gateway(cfg)
    except (CredentialsError, OSError, ValueError) as e:   # a broken credentials or registry file,
        print("hall-gateway: %s" % e, file=sys.stderr)     # a bad key, an unwritable data_dir:
        return 2                                           # one line (`check` names them all)
    try:
        asyncio.run(gateway.run_forever())
    except OSError as e:               # the HTTP port taken, say: one line, no traceback
        print("hall-gateway: %s" % e, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
