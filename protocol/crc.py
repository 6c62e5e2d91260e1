"""Checksums of the RS-485 frame.

CRC-16/MODBUS (poly 0x8005 reflected = 0xA001, init 0xFFFF, no final xor; check value of
b"123456789" is 0x4B37) protects the frame: the same CRC hall technicians' Modbus tools show.
CRC-8/SMBUS (poly 0x07, init 0x00; check 0xF4) protects the 5 header bytes alone, so a
corrupted length is caught at once instead of making the receiver wait for bytes that never come.
"""


from array import array


def _table16():
    table = array("H", bytes(512))   # 512 bytes; a list of 256 ints takes twice that on a device
    for n in range(256):
        crc = n
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table[n] = crc
    return table


_T16 = _table16()


def crc16(data, crc=0xFFFF):
    t = _T16
    for b in data:
        crc = (crc >> 8) ^ t[(crc ^ b) & 0xFF]
    return crc


def crc8(data, crc=0):
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc
