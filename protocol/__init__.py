"""The hall rating wire protocol: one sans-IO code base for MicroPython devices and the CPython gateway.

Nothing here reads a clock, a random source, a socket or a file: callers pass time and randomness in.
See SPEC.md beside this file for the normative description.
"""

PROTOCOL_VERSION = 2
