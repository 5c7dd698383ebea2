"""An independent reader and writer of the felhom-snap-v1 volume snapshot object, written from
docs/formats.md (not from the Swift code), with the `cryptography` package's AES-GCM and HKDF.

Usage:
  snapshot_format.py decrypt KEYFILE OBJECT OUT     (exit 1 and no OUT on any failure)
  snapshot_format.py encrypt KEYFILE ID IN OUT [CHUNK] [SALT_HEX]
"""
import os
import struct
import sys

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAGIC = b"FELSNAP1"
TAG = 16


class FormatError(Exception):
    pass


def read_key(path):
    raw = open(path, "rb").read()
    if len(raw) == 32:
        return raw
    text = raw.decode().strip()
    if len(text) != 64:
        raise FormatError("bad key file")
    return bytes.fromhex(text)


def chunk_key(data_key, salt, snapshot_id):
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=b"felhom-snap-v1" + snapshot_id).derive(data_key)


def nonce(i, last):
    return i.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


def header(snapshot_id, chunk, salt):
    return MAGIC + bytes([1, 1]) + struct.pack(">I", chunk) + salt + bytes([len(snapshot_id)]) + snapshot_id


def encrypt(data_key, snapshot_id, plaintext, chunk=1 << 20, salt=None):
    salt = salt if salt is not None else os.urandom(32)
    head = header(snapshot_id, chunk, salt)
    aead = AESGCM(chunk_key(data_key, salt, snapshot_id))
    pieces = [plaintext[i:i + chunk] for i in range(0, len(plaintext), chunk)] or [b""]
    out = [head]
    for i, piece in enumerate(pieces):
        out.append(aead.encrypt(nonce(i, i == len(pieces) - 1), piece, head))
    return b"".join(out)


def decrypt(data_key, obj):
    if len(obj) < 8 or obj[:8] != MAGIC:
        raise FormatError("not_snapshot")
    if len(obj) < 47:
        raise FormatError("truncated")
    if obj[8] != 1:
        raise FormatError("not_snapshot: version")
    if obj[9] != 1:
        raise FormatError("bad_header: algorithm")
    (chunk,) = struct.unpack(">I", obj[10:14])
    if not (4096 <= chunk <= 16 << 20):
        raise FormatError("bad_header: chunk size")
    salt = obj[14:46]
    n = obj[46]
    if len(obj) < 47 + n:
        raise FormatError("truncated")
    snapshot_id = obj[47:47 + n]
    head = obj[:47 + n]
    aead = AESGCM(chunk_key(data_key, salt, snapshot_id))
    body = obj[47 + n:]
    full = chunk + TAG
    out = []
    i = 0
    pos = 0
    while True:
        piece = body[pos:pos + full]
        last = pos + full >= len(body)
        if len(piece) < TAG:
            raise FormatError("truncated")
        try:
            plain = aead.decrypt(nonce(i, last), piece, head)
        except Exception:
            try:
                aead.decrypt(nonce(i, False), piece, head)
                raise FormatError("truncated")
            except FormatError:
                raise
            except Exception:
                raise FormatError("authentication_failed")
        if last and i > 0 and not plain:
            raise FormatError("authentication_failed")
        out.append(plain)
        pos += full
        i += 1
        if last:
            return snapshot_id.decode(), b"".join(out)


def main(argv):
    if argv[1] == "decrypt":
        key, src, dst = read_key(argv[2]), argv[3], argv[4]
        try:
            _, plain = decrypt(key, open(src, "rb").read())
        except FormatError as e:
            print(f"snapshot_format: {e}", file=sys.stderr)
            return 1
        with open(dst, "wb") as f:
            f.write(plain)
        return 0
    if argv[1] == "encrypt":
        key, sid, src, dst = read_key(argv[2]), argv[3].encode(), argv[4], argv[5]
        chunk = int(argv[6]) if len(argv) > 6 else 1 << 20
        salt = bytes.fromhex(argv[7]) if len(argv) > 7 else None
        with open(dst, "wb") as f:
            f.write(encrypt(key, sid, open(src, "rb").read(), chunk, salt))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
