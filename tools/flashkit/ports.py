"""Serial ports that look like evaluators: USB bridges found on ESP32 boards."""

from serial.tools import list_ports

# (vid, pid) -> bridge name
KNOWN = {
    (0x10C4, 0xEA60): "CP210x",
    (0x10C4, 0xEA70): "CP2105",
    (0x1A86, 0x7523): "CH340",
    (0x1A86, 0x55D4): "CH9102",
    (0x1A86, 0x55D3): "CH343",
    (0x0403, 0x6001): "FT232R",
    (0x0403, 0x6015): "FT231X",
    (0x303A, 0x1001): "ESP32-S3/C3 native USB",
    (0x303A, 0x4001): "ESP32-S2/S3 TinyUSB (MicroPython)",
    (0x303A, 0x0002): "ESP32-S2 native USB",
}


def evaluator_ports(ports=None):
    """[(device path, bridge name, description)] of ports whose USB ids match a known bridge."""
    found = []
    for p in list_ports.comports() if ports is None else ports:
        if p.vid is None:
            continue
        name = KNOWN.get((p.vid, p.pid))
        if name:
            found.append((p.device, name, "%04X:%04X %s" % (p.vid, p.pid, p.serial_number or "")))
    return sorted(found)
