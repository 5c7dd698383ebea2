"""An independent PROXY protocol v2 decoder and encoder for the route tests (written from the
specification, doc/proxy-protocol.txt; shares no code with the Swift implementation)."""
import ipaddress
import struct

SIG = bytes.fromhex("0d0a0d0a000d0a515549540a")


def crc32c(data: bytes) -> int:
    """CRC-32C, bit by bit (reflected polynomial 0x82F63B78)."""
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def decode_v2(buf: bytes) -> dict:
    """The header at the start of `buf`: addresses, TLVs, whether its CRC32C (if any) is right."""
    assert buf[:12] == SIG, "no v2 signature"
    ver_cmd, fam, length = buf[12], buf[13], struct.unpack(">H", buf[14:16])[0]
    header, body = buf[:16 + length], buf[16:16 + length]
    out = {"version": ver_cmd >> 4, "command": ver_cmd & 15, "family": fam, "length": 16 + length, "crc_ok": None, "unique_id": None}
    if fam == 0x11:
        alen = 12
        out["src"] = (str(ipaddress.IPv4Address(body[0:4])), struct.unpack(">H", body[8:10])[0])
        out["dst"] = (str(ipaddress.IPv4Address(body[4:8])), struct.unpack(">H", body[10:12])[0])
    elif fam == 0x21:
        alen = 36
        out["src"] = (str(ipaddress.IPv6Address(body[0:16])), struct.unpack(">H", body[32:34])[0])
        out["dst"] = (str(ipaddress.IPv6Address(body[16:32])), struct.unpack(">H", body[34:36])[0])
    else:
        alen = 0
    i = alen
    while i + 3 <= len(body):
        t, n = body[i], struct.unpack(">H", body[i + 1:i + 3])[0]
        value = body[i + 3:i + 3 + n]
        if t == 0x03:
            zeroed = bytearray(header)
            at = 16 + i + 3
            zeroed[at:at + 4] = b"\0\0\0\0"
            out["crc_ok"] = crc32c(bytes(zeroed)) == struct.unpack(">I", value)[0]
        elif t == 0x05:
            out["unique_id"] = bytes(value)
        i += 3 + n
    assert i == len(body), "TLVs do not end at the header's length"
    return out


def encode_v2(src, sport, dst, dport, crc=False) -> bytes:
    """A TCP4 PROXY header (with a CRC32C TLV when `crc`)."""
    body = ipaddress.IPv4Address(src).packed + ipaddress.IPv4Address(dst).packed + struct.pack(">HH", sport, dport)
    if crc:
        body += b"\x03\x00\x04\0\0\0\0"
    header = bytearray(SIG + bytes([0x21, 0x11]) + struct.pack(">H", len(body)) + body)
    if crc:
        header[-4:] = struct.pack(">I", crc32c(bytes(header)))
    return bytes(header)
