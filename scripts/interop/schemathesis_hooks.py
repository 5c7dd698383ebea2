"""Schemathesis hooks for the hub's OpenAPI document: the `openssh-public-key` string format.

A schema cannot say "a valid OpenSSH public key", so the format is registered here with real keys
made by ssh-keygen when the run starts (ed25519, ECDSA P-256, RSA)."""
import os
import subprocess
import tempfile

import schemathesis
from hypothesis import strategies as st


def _keys():
    d = tempfile.mkdtemp(prefix="felhom-st-keys-")
    out = []
    for name, args in [("ed", ["-t", "ed25519"]), ("ec", ["-t", "ecdsa", "-b", "256"]), ("rsa", ["-t", "rsa", "-b", "2048"])]:
        path = os.path.join(d, name)
        subprocess.run(["ssh-keygen", "-q", *args, "-N", "", "-C", f"{name}@schemathesis", "-f", path], check=True)
        with open(path + ".pub") as f:
            out.append(f.read().strip())
    return out


schemathesis.openapi.format("openssh-public-key", st.sampled_from(_keys()))
