#!/usr/bin/env python3
"""A/B self-update with the real binaries: felhom-hub (SQLite), felhom pve-sim, felhom-agent
installed in a temp A/B root, and felhom-agent-gate deciding from outside it.

Releases are signed with `ssh-keygen -Y sign -n felhom-release-v1` (OpenSSH itself), registered and
uploaded on the hub, and rolled out to the canary host. Checks: a good release commits (the new
binary reports its version, the gate commits, `update_committed` reaches the hub); a release that
crashes at start is reverted by the gate alone (`update_reverted`, the roll-out to the rest is
refused); a downgrade without a signed rollback and a release signed by an unpinned key are refused
(`update_refused`); kill -9 at each step of the update journal ends on a working agent; a full disk
(a real 1 MiB tmpfs under the inactive slot) is refused with the running agent untouched.
Prints `N passed, N failed`. Usage: self_update_test.py BIN_DIR
"""
import hashlib, json, os, shutil, subprocess, sys, time

import requests

from common import Checks, HubProcess, Simulator

bin_dir = sys.argv[1]
felhom, agent_bin, hub_bin, gate_bin = (os.path.join(bin_dir, n) for n in ("felhom", "felhom-agent", "felhom-hub", "felhom-agent-gate"))
OP = "self-update-operator-key-0123456789abcdef"
WINDOW = 30


def main(sim):
    checks = Checks("self-update")
    work = sim.work
    hub = HubProcess(hub_bin, f"sqlite:{work}/hub.sqlite", OP, env={"FELHOM_HUB_RATE_LIMIT_REPORTS_PER_MINUTE": "0"})
    call = hub.call
    try:
        cid = call("POST", "/api/v1/customers", {"name": "Kiss Anna", "email": "a@example.hu", "domain": "kiss.example.hu"})["id"]
        host = call("POST", "/api/v1/hosts", {"customer_id": cid, "name": "nappali"})["id"]
        other = call("POST", "/api/v1/hosts", {"customer_id": cid, "name": "pince"})["id"]
        token = call("POST", f"/api/v1/hosts/{host}/enrollment")["token"]
        keys = {}
        for name in ("operator", "release", "stranger"):
            keys[name] = os.path.join(work, name)
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", keys[name]], check=True)

        def allowed(name, path):
            with open(keys[name] + ".pub") as f:
                pub = " ".join(f.read().split()[:2])
            with open(path, "w") as f:
                f.write(f"{name}@felhom {pub}\n")
            return path

        signers = allowed("operator", os.path.join(work, "allowed_signers"))
        release_signers = allowed("release", os.path.join(work, "release_signers"))
        root = os.path.join(work, "agent")
        state = os.path.join(work, "agent-state")
        config = os.path.join(work, "agent.json")
        with open(config, "w") as f:
            json.dump({"pve": {"host": "127.0.0.1", "port": sim.port, "node": "pve1", "token_id": "felhom@pve!agent",
                               "token_secret": sim.tokens["felhom@pve!agent"], "fingerprint": sim.fingerprint},
                       "hub": {"url": hub.url, "enrollment_token": token},
                       "state_dir": state, "signers_file": signers,
                       "update": {"root": root, "release_signers_file": release_signers, "window_seconds": WINDOW, "settle_seconds": 0},
                       "provision": {"golden_template": "local:backup/vzdump-lxc-9000-2026_01_01-00_00_00.tar.zst"}}, f)

        def manifest(version, asset):
            m = {"component": "agent", "created_at": "2026-12-01T00:00:00Z", "sha256": hashlib.sha256(asset).hexdigest(),
                 "size": len(asset), "version": version}
            return json.dumps(m, sort_keys=True, separators=(",", ":"))  # RFC 8785 for these values

        def sign(text, key="release"):
            path = os.path.join(work, f"manifest-{time.time_ns()}.json")
            with open(path, "w") as f:
                f.write(text)
            subprocess.run(["ssh-keygen", "-Y", "sign", "-q", "-f", keys[key], "-n", "felhom-release-v1", path], check=True,
                           capture_output=True)
            with open(path + ".sig") as f:
                return f.read()

        def publish_release(version, asset, key="release"):
            text = manifest(version, asset)
            call("POST", "/api/v1/releases", {"manifest": text, "signature": sign(text, key)})
            r = requests.put(f"{hub.url}/api/v1/releases/agent/{version}/asset", data=asset,
                             headers={"Authorization": f"Bearer {OP}", "Content-Type": "application/octet-stream"}, timeout=120)
            assert r.status_code == 200, r.text
            out = call("POST", f"/api/v1/releases/agent/{version}/rollout", {"stage": "canary", "hosts": [host]})
            assert [p["host_id"] for p in out["published"]] == [host], out

        with open(agent_bin, "rb") as f:
            real = f.read()
        # Slot a holds the real agent as release 0.1.0 (its signed manifest next to it).
        os.makedirs(os.path.join(root, "a"))
        shutil.copy(agent_bin, os.path.join(root, "a", "felhom-agent"))
        text = manifest("0.1.0", real)
        with open(os.path.join(root, "a", "release.json"), "w") as f:
            json.dump({"manifest": text, "signature": sign(text)}, f)
        os.symlink("a", os.path.join(root, "current"))

        def agent(failpoint=None):
            env = {k: v for k, v in os.environ.items() if k != "FELHOM_AGENT_FAILPOINT"}
            if failpoint:
                env["FELHOM_AGENT_FAILPOINT"] = failpoint
            return subprocess.run([os.path.join(root, "current", "felhom-agent"), "run", "--once", "--config", config],
                                  capture_output=True, text=True, timeout=300, env=env)

        def gate():
            r = subprocess.run([gate_bin, "check", "--root", root, "--restart-command", "true"], capture_output=True, text=True, timeout=30)
            assert r.returncode == 0, r.stdout + r.stderr
            return r.stdout.strip()

        def current():
            return os.readlink(os.path.join(root, "current"))

        def reported_version():
            return call("GET", f"/api/v1/hosts/{host}/report")["agent_version"]

        def events(kind):
            return [e for e in call("GET", f"/api/v1/events?host_id={host}&type={kind}")["events"]]

        def journal_ops():
            ops = {}
            with open(os.path.join(state, "journal.jsonl")) as f:
                for line in f:
                    e = json.loads(line)
                    ops.setdefault(e["op"], []).append(e["step"])
            return ops

        def runs_cleanly():
            r = agent()
            assert r.returncode == 0, r.stdout + r.stderr
            return r

        def enroll():
            call("PUT", f"/api/v1/hosts/{host}/desired", {"guests": []})
            call("POST", f"/api/v1/hosts/{host}/desired/publish")
            runs_cleanly()
            assert reported_version() == "0.1.0", reported_version()

        checks.check("the agent in slot a reports its release, 0.1.0", enroll)

        def commit(version, slot):
            r = runs_cleanly()  # the new binary's first cycle: reports, writes health
            assert reported_version() == version, (reported_version(), r.stderr[-800:])
            assert gate() == f"committed {version}", gate()
            runs_cleanly()  # reports the verdict
            assert any(e["data"].get("version") == version for e in events("update_committed")), events("update_committed")
            assert current() == slot

        def good_release():
            # Published with the operator CLI: it signs the manifest with the release key itself.
            r = subprocess.run([felhom, "release", "publish", "--hub", hub.url, "--component", "agent", "--version", "0.2.0",
                                "--file", agent_bin, "--key", keys["release"], "--canary", host],
                               capture_output=True, text=True, timeout=300, env=dict(os.environ, FELHOM_OPERATOR_KEY=OP))
            assert r.returncode == 0 and f"canary {host}: desired generation" in r.stdout, r.stdout + r.stderr
            r = runs_cleanly()
            assert current() == "b", (current(), r.stderr[-800:])
            assert "exiting so the new binary starts" in r.stderr + r.stdout
            commit("0.2.0", "b")
            rollout = [x for x in call("GET", "/api/v1/releases")["releases"] if x["version"] == "0.2.0"][0]["rollout"]
            assert rollout == [{"host_id": host, "stage": "canary", "state": "running"}], rollout

        checks.check("a good release is installed in slot b, started, committed by the gate, reported", good_release)

        def crashing_release():
            publish_release("0.3.0", b"#!/bin/sh\necho 'felhom-agent 0.3.0: segfault' >&2\nexit 139\n")
            runs_cleanly()
            assert current() == "a"
            r = agent()  # systemd would start it: it crashes at once
            assert r.returncode == 139, r.returncode
            assert gate() == "waiting"
            time.sleep(WINDOW + 1)
            verdict = gate()
            assert verdict.startswith("reverted 0.3.0 to slot b"), verdict
            assert current() == "b"
            runs_cleanly()  # the last good agent runs again and reports the verdict
            assert reported_version() == "0.2.0"
            ev = [e for e in events("update_reverted") if e["data"].get("version") == "0.3.0"]
            assert ev and "did not report healthy" in ev[0]["data"]["reason"], ev
            r = requests.post(f"{hub.url}/api/v1/releases/agent/0.3.0/rollout", json={"stage": "all"},
                              headers={"Authorization": f"Bearer {OP}"}, timeout=30)
            assert r.status_code == 409 and r.json()["error"]["code"] == "canary_failed", r.text
            assert call("GET", f"/api/v1/hosts/{other}/desired").get("spec") is None  # the rest never got it
            runs_cleanly()
            assert current() == "b" and "agent-update-0.3.0#2" not in journal_ops(), "a reverted release is not retried"

        checks.check("a release that crashes at start is reverted by the gate alone; the roll-out stops", crashing_release)

        def refused(version, words):
            runs_cleanly()
            assert current() == "b" and reported_version() == "0.2.0"
            ev = [e for e in events("update_refused") if e["data"].get("version") == version]
            assert ev and words in ev[0]["data"]["reason"], ev

        def downgrade():
            publish_release("0.1.5", b"#!/bin/sh\nexit 0\n")  # older than the committed 0.2.0
            refused("0.1.5", "agent.rollback")

        def stranger():
            publish_release("0.5.0", real, key="stranger")
            refused("0.5.0", "not a pinned key")

        checks.check("a downgrade without a signed agent.rollback is refused", downgrade)
        checks.check("a release signed by an unpinned key is refused", stranger)

        for n, (failpoint, version) in enumerate([("update.after_download", "0.6.0"), ("update.before_flip", "0.7.0"),
                                                  ("update.after_flip", "0.8.0")]):
            def crash(failpoint=failpoint, version=version):
                before = current()
                publish_release(version, real)
                r = agent(failpoint)
                assert r.returncode == -9, f"expected SIGKILL at {failpoint}, got {r.returncode}: {r.stderr[-500:]}"
                if failpoint != "update.after_flip":
                    r = runs_cleanly()  # resumes: discards, tries again, flips
                target = "a" if before == "b" else "b"
                assert current() == target, current()
                commit(version, target)
                steps = [s for op, s in journal_ops().items() if op.startswith(f"agent-update-{version}#")]
                assert steps[-1][-1] == "done", steps

            checks.check(f"kill -9 at {failpoint}: ends on a working agent running {version}", crash)

        # A full disk, for real: the inactive slot is a 1 MiB tmpfs (the agent binary is far larger).
        def full_disk():
            before, version = current(), "0.9.0"
            slot = os.path.join(root, "a" if before == "b" else "b")
            r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", slot], capture_output=True, text=True)
            assert r.returncode == 0, f"mounting a tmpfs needs root: {r.stderr}"
            try:
                publish_release(version, real)
                runs_cleanly()
                ev = [e for e in events("update_refused") if e["data"].get("version") == version]
                assert ev and "not enough space in " + slot in ev[0]["data"]["reason"], ev
                assert current() == before and os.listdir(slot) == [], os.listdir(slot)
            finally:
                subprocess.run(["umount", slot], check=True)
            assert current() == before and reported_version() != version

        checks.check("a full disk (the inactive slot on a 1 MiB tmpfs): refused, the running agent untouched", full_disk)
    finally:
        hub.close()
    return checks.finish()


with Simulator(felhom) as simulator:
    status = main(simulator)
sys.exit(status)
