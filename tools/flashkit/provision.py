"""provision: turn a board running MicroPython into a configured, registered evaluator.

Order (each step skipped when the device already has it, so re-running resumes):
  1. identity from machine.unique_id() -> device id
  2. layout: a MicroPython image with a ROMFS partition big enough gets the bundle's code as the
     ROMFS image (written with vfs.rom_ioctl unless the partition already holds it, then checked
     by sha256); one without gets it as .mpy files on the filesystem (session.layout)
  3. sums of the device's files; copy only the files whose sha256 differs (bundle.json, the
     version marker, is removed first and written last, so a cut copy never claims a version)
  4. remove stale files in firmware/ and protocol/ (old modules, *.part leftovers; with the
     code in ROMFS, those folders go from the filesystem entirely, so they cannot shadow /rom)
  5. device config (the key is kept from the device's config unless a new one is asked for);
     config and outbox always live on the filesystem
  6. register device + key with the gateway
  7. reset, so the firmware boots with its config (MicroPython mounts the ROMFS at /rom)
"""

import time

from tools.flashkit import bundle as bundle_mod
from tools.flashkit import devconfig, registration, romfs, session
from tools.flashkit.errors import DeviceError, NotAnswering, ToolError, TransferError
from tools.flashkit.report import Result


def provision(port, bundle, settings, reporter, registry=None, token=None, new_key=False, reset=True,
              baud=115200, timeout=5.0):
    res = Result(port)
    t0 = time.monotonic()
    try:
        _provision(res, port, bundle, settings, reporter, registry, token, new_key, reset, baud, timeout)
    except ToolError as exc:
        res.code = exc.code
        res.detail = reporter.clean(str(exc))
        reporter.progress(port, "FAILED", what=res.detail)
    res.seconds = time.monotonic() - t0
    return res


def _provision(res, port, bundle, settings, reporter, registry, token, new_key, reset, baud, timeout):
    board = settings["board"]
    if bundle.boards and board not in bundle.boards:
        raise ToolError("bundle %s has no %s board (has %s)" % (bundle.version, board, ", ".join(bundle.boards)))
    _config("ev-000000000000", "00" * 32, settings)  # bad settings fail before the device is touched
    reporter.progress(port, "connect")
    with session.device(port, baud, timeout) as (fs, ident):
        dev_id = settings.get("device") or devconfig.device_id(ident["uid"])
        res.device = dev_id
        cfg_file = devconfig.device_file()
        rom = fs.rom_info()
        where, why = session.layout(bundle, rom)
        rom_sha = (bundle.meta.get("romfs") or {}).get("sha256")
        rom_todo = where == "romfs" and rom["sha256"] != rom_sha
        sums = session.device_sums(fs, bundle, cfg_file)
        files = bundle.device_files(where)
        marker = bundle_mod.DEVICE_MANIFEST
        missing, different, unexpected = session.compare(bundle, sums, where)
        todo = [p for p in sorted(files) if p in missing + different and p != marker]
        reporter.progress(port, "plan", what="%s: %s; %s%d of %d files to copy, %d stale"
                          % (dev_id, why, "ROMFS image to write, " if rom_todo else "", len(todo),
                             len(files), len(unexpected)))
        if (todo or rom_todo) and marker in sums:
            fs.remove(marker)
            del sums[marker]
        if rom_todo:
            try:
                fs.rom_write(bundle.romfs, rom_sha, _every_percent(
                    lambda done, total: reporter.progress(port, "romfs", done, total, "ROMFS partition")))
            except (NotAnswering, DeviceError) as exc:
                raise TransferError("writing the ROMFS image stopped: %s - re-run provision to resume" % exc) from None
        total = sum(len(files[p]) for p in todo)
        done = 0
        # one line per 1 % of all the bytes, counted within files: the 684 KB font takes a minute at
        # 115,200 baud, and the technician sees it move
        report = _every_percent(lambda now, whole, where: reporter.progress(port, "copy", now, whole, where))
        for n, path in enumerate(todo):
            try:
                fs.write(path, files[path], bundle_mod.sha256(files[path]),
                         progress=lambda part, _size, path=path, before=done: report(before + part, total, path))
            except (NotAnswering, DeviceError) as exc:
                raise TransferError("copy stopped at %s (%d of %d files copied): %s - re-run provision to resume"
                                    % (path, n, len(todo), exc)) from None
            done += len(files[path])
        for path in unexpected:
            fs.remove(path)
        if where == "romfs":
            for tree in romfs.TREES:
                fs.rmtree(tree)

        old = devconfig.decode(fs.read(cfg_file))
        kept = bool(old) and old.get("device") == dev_id
        key = old.get("key") if kept and not new_key else None
        if not _valid_key(key):
            key = devconfig.new_key()
        # the counter floor stays with the device's flash; a config made anew gets a fresh one
        floor = old.get("counter_floor", 0) if kept else devconfig.new_counter_floor(time.time())
        # a re-run without the gateway's config keeps the release key the device has
        release = settings.get("release_key") or (old.get("release_key") if kept else None)
        cfg = _config(dev_id, key, dict(settings, release_key=release), floor)
        reporter.secret(cfg["key"])
        cfg_bytes = devconfig.encode(cfg)
        wrote_cfg = old != cfg
        if wrote_cfg:
            _write(fs, cfg_file, cfg_bytes, len(todo), len(todo))
        if sums.get(marker) != bundle_mod.sha256(files[marker]):
            _write(fs, marker, files[marker], len(todo), len(todo))
        res.version = bundle.version
        reporter.progress(port, "device", what="%s files in place, config %s"
                          % (dev_id, "written" if wrote_cfg else "unchanged"))

        how = "not registered"
        if registry:
            how = "registered (%s)" % registration.register(registry, registration.spec_for(cfg, bundle.version, settings.get("bus")),
                                                      token)
            reporter.progress(port, "gateway", what=how)
        if reset:
            fs.reset()
            reporter.progress(port, "reset")
    rom_note = ("ROMFS image %s" % ("written" if rom_todo else "unchanged")) if where == "romfs" else \
        "no ROMFS: .mpy files on the filesystem"
    res.detail = "copied %d, removed %d, config %s, %s; %s" % (
        len(todo), len(unexpected), "written" if wrote_cfg else "unchanged", how, rom_note)
    reporter.progress(port, "done", what=res.detail)


def _every_percent(progress):
    """A progress callback (done, total) that passes on one call per 1 % of total (and the last)."""
    last = [-1]

    def call(done, total, *what):
        step = done * 100 // total if total else 100
        if step != last[0] or done == total:
            last[0] = step
            progress(done, total, *what)
    return call


def _valid_key(key):
    try:
        return isinstance(key, str) and len(bytes.fromhex(key)) == 32
    except ValueError:
        return False


def _config(dev_id, key, s, counter_floor=0):
    return devconfig.build(
        dev_id, key, s["board"], s["transport"], window=s.get("window"), hall=s.get("hall"),
        address=s.get("address"), baud=s.get("baud"), wifi_ssid=s.get("wifi_ssid"),
        wifi_password=s.get("wifi_password"), mqtt_host=s.get("mqtt_host"), mqtt_port=s.get("mqtt_port", 1883),
        mqtt_user=s.get("mqtt_user"), mqtt_password=s.get("mqtt_password"), counter_floor=counter_floor,
        amp=s.get("amp", False), release_key=s.get("release_key"))


def _write(fs, path, data, n, total):
    try:
        fs.write(path, data, bundle_mod.sha256(data))
    except (NotAnswering, DeviceError) as exc:
        raise TransferError("writing %s stopped (%d of %d files copied): %s - re-run provision to resume"
                            % (path, n, total, exc)) from None
