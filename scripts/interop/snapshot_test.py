#!/usr/bin/env python3
"""`felhom snapshot encrypt|decrypt` against the independent implementation of docs/formats.md
(scripts/interop/snapshot_format.py): each reads what the other wrote, at the chunk edges; every
tampering is refused by the CLI with a non-zero exit, a reason, and no output file.

Usage: snapshot_test.py BIN_DIR
"""
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from common import Checks  # noqa: E402
import snapshot_format as ref  # noqa: E402


def main():
    felhom = os.path.join(sys.argv[1], "felhom")
    checks = Checks("snapshot")
    work = tempfile.mkdtemp(prefix="felhom-snapshot-")
    try:
        key = os.urandom(32)
        keyfile = os.path.join(work, "key.hex")
        with open(keyfile, "w") as f:
            f.write(key.hex() + "\n")

        def path(name):
            return os.path.join(work, name)

        def cli(*args):
            return subprocess.run([felhom, "snapshot", *args], capture_output=True, text=True)

        chunk = 4096
        sizes = [0, 1, chunk, chunk + 1, 3 * chunk, 5 * chunk + 17]

        def cli_writes_python_reads():
            for size in sizes:
                plain = os.urandom(size)
                with open(path("in"), "wb") as f:
                    f.write(plain)
                r = cli("encrypt", "--key-file", keyfile, "--snapshot-id", f"vol-{size}", "--in", path("in"), "--out", path("obj"),
                        "--chunk-size", str(chunk))
                assert r.returncode == 0, r.stderr
                sid, back = ref.decrypt(key, open(path("obj"), "rb").read())
                assert sid == f"vol-{size}" and back == plain, size
                expected = 47 + len(sid) + max(size, 0) + 16 * max(1, -(-size // chunk))
                assert os.path.getsize(path("obj")) == expected, (size, os.path.getsize(path("obj")), expected)

        def python_writes_cli_reads():
            for size in sizes + [(1 << 20) + 5]:
                plain = os.urandom(size)
                c = 1 << 20 if size > 3 * chunk + 100 else chunk
                with open(path("obj"), "wb") as f:
                    f.write(ref.encrypt(key, b"py-1", plain, c))
                r = cli("decrypt", "--key-file", keyfile, "--in", path("obj"), "--out", path("out"))
                assert r.returncode == 0, r.stderr
                assert open(path("out"), "rb").read() == plain, size
                os.remove(path("out"))

        def tampering_is_refused_and_nothing_is_written():
            plain = os.urandom(4 * chunk + 10)
            good = ref.encrypt(key, b"t-1", plain, chunk)
            other = ref.encrypt(key, b"t-2", plain, chunk)
            head = 47 + 3
            full = chunk + 16

            def span(i):
                return slice(head + i * full, head + (i + 1) * full)
            cases = {
                "a flipped byte": good[:head + 100] + bytes([good[head + 100] ^ 1]) + good[head + 101:],
                "the last chunk cut short": good[:-1],
                "the last chunk dropped": good[:head + 4 * full],
                "a middle chunk dropped": good[:head + full] + good[head + 2 * full:],
                "two chunks swapped": good[:head] + good[span(1)] + good[span(0)] + good[head + 2 * full:],
                "a chunk from another snapshot": good[:head + full] + other[span(1)] + good[head + 2 * full:],
                "bytes appended": good + b"\0",
                "another magic": b"X" + good[1:],
            }
            for name, data in cases.items():
                with open(path("bad"), "wb") as f:
                    f.write(data)
                r = cli("decrypt", "--key-file", keyfile, "--in", path("bad"), "--out", path("never"))
                assert r.returncode != 0, name
                assert "failed (" in r.stderr and "no output was written" in r.stderr, (name, r.stderr)
                leftovers = [n for n in os.listdir(work) if n.startswith(".never") or n == "never"]
                assert not leftovers, (name, leftovers)
            # A wrong key (a replaced wrapped key unwraps to another data key).
            with open(path("good"), "wb") as f:
                f.write(good)
            with open(path("otherkey"), "wb") as f:
                f.write(os.urandom(32))
            r = cli("decrypt", "--key-file", path("otherkey"), "--in", path("good"), "--out", path("never"))
            assert r.returncode != 0 and "authentication_failed" in r.stderr and not os.path.exists(path("never")), r.stderr

        def bad_arguments_are_named():
            r = cli("decrypt", "--key-file", path("missing"), "--in", path("good"), "--out", path("x"))
            assert r.returncode != 0 and "--key-file" in r.stderr, r.stderr
            with open(path("short"), "w") as f:
                f.write("abcd")
            r = cli("decrypt", "--key-file", path("short"), "--in", path("good"), "--out", path("x"))
            assert r.returncode != 0 and "32 raw bytes or 64 hex digits" in r.stderr, r.stderr
            r = cli("encrypt", "--key-file", keyfile, "--snapshot-id", "bad id!", "--in", path("good"), "--out", path("x"))
            assert r.returncode != 0 and "snapshot id" in r.stderr, r.stderr
            assert not os.path.exists(path("x"))

        def same_volume_twice_gives_two_objects():
            with open(path("in"), "wb") as f:
                f.write(b"same")
            digests = set()
            for _ in range(2):
                assert cli("encrypt", "--key-file", keyfile, "--snapshot-id", "s", "--in", path("in"), "--out", path("obj")).returncode == 0
                digests.add(hashlib.sha256(open(path("obj"), "rb").read()).hexdigest())
            assert len(digests) == 2, "a fresh salt per object"

        checks.check("the CLI writes, the independent implementation reads (empty, 1 byte, chunk edges)", cli_writes_python_reads)
        checks.check("the independent implementation writes, the CLI reads", python_writes_cli_reads)
        checks.check("tampering and a wrong key are refused with the reason, and no output file appears",
                     tampering_is_refused_and_nothing_is_written)
        checks.check("bad arguments are refused naming what is wrong", bad_arguments_are_named)
        checks.check("encrypting the same volume twice gives two different objects (fresh salt)", same_volume_twice_gives_two_objects)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return checks.finish()


if __name__ == "__main__":
    sys.exit(main())
