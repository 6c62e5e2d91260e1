"""hall-gateway: `hall-gateway run --config gateway.toml` starts the gateway in the foreground
(systemd runs it like that); `hall-gateway check --config gateway.toml` validates the config;
`hall-gateway acl --config gateway.toml --out DIR` writes the Mosquitto password and ACL files."""

import argparse
import asyncio
import json
import logging
import sys

from gateway import config as config_mod


def _logging(level):
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(
        '{"t":"%(asctime)s","level":"%(levelname)s","logger":"%(name)s","msg":%(message)r}'))
    try:
        from gateway.privacy import IdentityLogFilter
        handler.addFilter(IdentityLogFilter())   # identity numbers never reach a log line
    except ImportError:
        pass
    logging.basicConfig(level=level, handlers=[handler])


def main(argv=None):
    parser = argparse.ArgumentParser(prog="hall-gateway", description="Hall rating gateway")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("run", "run the gateway"), ("check", "validate the config"),
                       ("acl", "write Mosquitto password + ACL files from the registry")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--config", required=True)
        p.add_argument("--log-level", default="INFO")
        if name == "acl":
            p.add_argument("--out", required=True, help="directory for passwords and acl")
            p.add_argument("--gateway-password", required=True)
    args = parser.parse_args(argv)
    _logging(getattr(logging, args.log_level.upper(), logging.INFO))
    try:
        cfg = config_mod.load(args.config)
    except (OSError, config_mod.ConfigError) as e:
        print("hall-gateway: %s" % e, file=sys.stderr)
        return 2
    if args.command == "check":
        from gateway.registry import Registry
        registry = Registry(cfg.devices)
        print(json.dumps({"hall": cfg.hall, "devices": len(registry.all()), "buses": len(cfg.buses)}))
        return 0
    if args.command == "acl":
        from gateway.mosquitto_acl import write_files
        from gateway.registry import Registry
        registry = Registry(cfg.devices, cfg.registry_path)
        paths = write_files(args.out, cfg.hall, registry, cfg.mqtt.username or cfg.mqtt.client_id,
                            args.gateway_password)
        print(json.dumps(paths))
        return 0
    from gateway.app import Gateway
    asyncio.run(Gateway(cfg).run_forever())
    return 0


if __name__ == "__main__":
    sys.exit(main())
