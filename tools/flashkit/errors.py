"""Failures the tool reports, each with the exit-code bit that names its kind.

Exit codes are bit flags so that one run over a box of boards can say every kind of failure
at once (codes of all failed ports are OR-ed together):

    0   everything asked for succeeded
    1   bad input: wrong arguments, a missing or corrupt bundle, invalid settings (nothing touched)
    2   port: no such serial port, port busy (another program has it), permission denied
    4   device not answering: no MicroPython raw REPL on the port, or it stopped answering
    8   transfer: a copy to the device did not finish (re-run provision to resume)
    16  verify: a device file differs from the bundle, is missing or is unexpected
    32  gateway: registering the device with the gateway failed
    64  flash: esptool failed (wrong chip, no bootloader answer, write error)
"""

OK = 0
BAD_INPUT = 1
PORT = 2
NOT_ANSWERING = 4
TRANSFER = 8
VERIFY = 16
GATEWAY = 32
FLASH = 64

NAMES = {
    BAD_INPUT: "bad input",
    PORT: "port",
    NOT_ANSWERING: "not answering",
    TRANSFER: "transfer",
    VERIFY: "verify",
    GATEWAY: "gateway",
    FLASH: "flash",
}


class ToolError(Exception):
    """A failure with a message for the technician and an exit-code bit."""

    code = BAD_INPUT

    def __init__(self, message, code=None):
        Exception.__init__(self, message)
        if code is not None:
            self.code = code


class BadInput(ToolError):
    code = BAD_INPUT


class PortError(ToolError):
    code = PORT


class NotAnswering(ToolError):
    code = NOT_ANSWERING


class TransferError(ToolError):
    code = TRANSFER


class VerifyFailed(ToolError):
    code = VERIFY


class GatewayError(ToolError):
    code = GATEWAY


class FlashError(ToolError):
    code = FLASH


class DeviceError(ToolError):
    """Code we sent raised on the device; .remote holds the device's traceback text."""

    code = TRANSFER

    def __init__(self, message, remote=""):
        ToolError.__init__(self, message)
        self.remote = remote


def describe(code):
    """'port, verify' for an OR-ed exit code."""
    return ", ".join(NAMES[bit] for bit in sorted(NAMES) if code & bit) or "ok"
