#!/usr/bin/env python3
"""End-to-end test of the shipped executables, as an operator would run them.

Starts `felhom pve-sim` on a free loopback port, writes an agent config file, and runs
`felhom-agent selftest read` and `task` against it; checks a wrong certificate pin and a missing
config fail with clear messages; checks the token secret never appears in any output; runs
`felhom demo`. Prints `N passed, N failed`.
Usage: cli_test.py BIN_DIR
"""
import json, os, subprocess, sys, time, urllib.request

from common import Checks, Simulator

bin_dir = sys.argv[1]
felhom = os.path.join(bin_dir, "felhom")
agent = os.path.join(bin_dir, "felhom-agent")


def main(sim):
    checks = Checks("cli")
    check = checks.check
    work, port, fingerprint = sim.work, sim.port, sim.fingerprint
    secret = sim.tokens["felhom@pve!agent"]
    config = os.path.join(work, "agent.json")
    with open(config, "w") as f:
        json.dump({"pve": {"host": "127.0.0.1", "port": port, "node": "pve1", "token_id": "felhom@pve!agent",
                           "token_secret": secret, "fingerprint": fingerprint}, "selftest": {"vmid": 199}}, f)

    def run(*args, env=None, timeout=120):
        e = dict(os.environ); e.update(env or {})
        return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, env=e)

    def selftest_read():
        r = run(agent, "selftest", "read", "--config", config)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "all 8 checks passed" in r.stdout, r.stdout
        assert secret not in r.stdout + r.stderr

    def selftest_task():
        r = run(agent, "selftest", "task", "--config", config)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "snapshot rollback (task)" in r.stdout and "all 6 checks passed" in r.stdout, r.stdout
        assert secret not in r.stdout + r.stderr

    def wrong_pin_fails_clearly():
        r = run(agent, "selftest", "read", "--config", config,
                env={"FELHOM_AGENT_PVE_FINGERPRINT": ":".join(["00"] * 32)})
        assert r.returncode != 0
        assert "does not match the pinned" in r.stdout, r.stdout
        assert secret not in r.stdout + r.stderr

    def wrong_secret_fails_clearly():
        r = run(agent, "selftest", "read", "--config", config, env={"FELHOM_AGENT_PVE_TOKEN_SECRET": "wrong-secret"})
        assert r.returncode != 0
        assert "Authentication failed!" in r.stdout, r.stdout
        assert "wrong-secret" not in r.stdout + r.stderr

    def missing_config_is_named():
        r = run(agent, "selftest", "read", "--config", os.path.join(work, "nope.json"))
        assert r.returncode != 0
        assert "nope.json" in r.stderr, r.stderr

    def task_mode_needs_a_guest():
        cfg2 = os.path.join(work, "agent2.json")
        with open(config) as f: c = json.load(f)
        del c["selftest"]
        with open(cfg2, "w") as f: json.dump(c, f)
        r = run(agent, "selftest", "task", "--config", cfg2)
        assert r.returncode != 0 and "--vmid" in r.stderr, r.stderr

    # Every executable says its version; a runtime failure (hub unreachable) exits 1 with the
    # reason and without the usage text, which is for command-line mistakes (exit 64).
    def versions_and_exit_codes():
        versions = set()
        for exe in (felhom, agent, os.path.join(bin_dir, "felhom-hub")):
            r = run(exe, "--version")
            assert r.returncode == 0 and r.stdout.strip(), (exe, r.stdout, r.stderr)
            versions.add(r.stdout.strip().split()[-1])
        assert len(versions) == 1, versions
        d = os.path.join(work, "exitcodes")
        os.makedirs(d)
        signers = os.path.join(d, "allowed_signers")
        run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", os.path.join(d, "op"))
        r = run(felhom, "op", "signers-line", os.path.join(d, "op.pub"), "--role", "operational")
        assert r.returncode == 0, r.stderr
        with open(signers, "w") as f:
            f.write(r.stdout)
        cfg3 = os.path.join(d, "agent.json")
        with open(config) as f: c = json.load(f)
        c.update({"hub": {"url": "http://127.0.0.1:9", "enrollment_token": "fh_enroll_" + "x" * 43},
                  "state_dir": os.path.join(d, "state"), "signers_file": signers,
                  "provision": {"golden_template": "local:backup/vzdump-lxc-9000-2026_01_01-00_00_00.tar.zst"}})
        with open(cfg3, "w") as f: json.dump(c, f)
        r = run(agent, "run", "--config", cfg3, "--once")
        assert r.returncode == 1 and "127.0.0.1:9" in r.stderr and "Usage" not in r.stdout + r.stderr, (r.returncode, r.stdout, r.stderr)
        r = run(agent, "run", "--no-such-flag")
        assert r.returncode == 64 and "Usage" in r.stdout + r.stderr, (r.returncode, r.stdout, r.stderr)

    # `felhom secrets export FILE` evaluated by a real sh gives each value exactly; a bad file names the line.
    def secrets_export():
        import base64
        d = os.path.join(work, "secrets")
        os.makedirs(d)
        multi = "line one\n  line 'two'  "
        good = os.path.join(d, "platform.env")
        with open(good, "w") as f:
            f.write("# TRC_SECRETS_V1\nPLAIN=  spaced $HOME `id` \nMULTI=base64:" + base64.b64encode(multi.encode()).decode() + "\n")
        r = subprocess.run(["sh", "-c", f'eval "$("{felhom}" secrets export "{good}")" && printf "%s|%s" "$PLAIN" "$MULTI"'],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and r.stdout == "  spaced $HOME `id` |" + multi, (r.stdout, r.stderr)
        r = run(felhom, "secrets", "check", good)
        assert r.returncode == 0 and "PLAIN, MULTI" in r.stdout and "spaced" not in r.stdout, r.stdout + r.stderr
        bad = os.path.join(d, "bad.env")
        with open(bad, "w") as f:
            f.write("# TRC_SECRETS_V1\nOK=1\nlower=2\n")
        r = run(felhom, "secrets", "export", bad)
        assert r.returncode == 1 and "line 3" in r.stderr and "Usage" not in r.stderr and r.stdout == "", (r.stdout, r.stderr)

    # `felhom secrets render --env NAME` prints the exact file, from a bundles file (both forms) or
    # from a real hub with the guest's key; the operator's key gets a clear "names only" refusal.
    def secrets_render():
        import base64
        from common import HubProcess
        d = os.path.join(work, "render")
        os.makedirs(d)
        multi = "line one\n  two  "
        bundles = os.path.join(d, "bundles.json")
        with open(bundles, "w") as f:
            json.dump({"prod": {"B_KEY": "  spaced ", "A_KEY": multi, "BIN": {"base64": base64.b64encode(b"\x01\xff").decode()}},
                       "other": {"X": "1"}, "shell": {"A_KEY": multi, "B_KEY": "  spaced "}}, f)
        want = ("# TRC_SECRETS_V1\nA_KEY=base64:" + base64.b64encode(multi.encode()).decode() + "\nBIN=base64:Af8=\nB_KEY=  spaced \n").encode()
        r = subprocess.run([felhom, "secrets", "render", "--env", "prod", "--file", bundles], capture_output=True, timeout=60)
        assert r.returncode == 0 and r.stdout == want, (r.stdout, r.stderr)
        # A rendered file evaluates back to the exact values.
        out = os.path.join(d, "shell.env")
        with open(out, "wb") as f:
            f.write(subprocess.run([felhom, "secrets", "render", "--env", "shell", "--file", bundles], capture_output=True, timeout=60).stdout)
        r = subprocess.run(["sh", "-c", f'eval "$("{felhom}" secrets export "{out}")" && printf "%s|%s" "$A_KEY" "$B_KEY"'],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and r.stdout == multi + "|  spaced ", (r.stdout, r.stderr)
        r = run(felhom, "secrets", "render", "--env", "nope", "--file", bundles)
        assert r.returncode == 1 and "no bundle 'nope'" in r.stderr and "other, prod, shell" in r.stderr and r.stdout == "", r.stderr
        with open(bundles, "w") as f:
            json.dump({"prod": {"lower": "secret-value-xyz"}}, f)
        r = run(felhom, "secrets", "render", "--env", "prod", "--file", bundles)
        assert r.returncode == 1 and "lower" in r.stderr and "secret-value-xyz" not in r.stderr + r.stdout, r.stderr
        r = run(felhom, "secrets", "render", "--env", "prod")
        assert r.returncode == 64 and "--file" in r.stderr, r.stderr
        # From a real hub: the guest's key gets the bytes; the operator's key only names.
        OP = "render-test-operator-key-0123456789abc"
        hub = HubProcess(os.path.join(bin_dir, "felhom-hub"), f"sqlite:{d}/hub.sqlite", OP,
                         env={"FELHOM_HUB_SECRETS_KEY": base64.b64encode(os.urandom(32)).decode()})
        try:
            cid = hub.call("POST", "/api/v1/customers", {"name": "A", "email": "a@example.hu", "domain": "a.example.hu"})["id"]
            host = hub.call("POST", "/api/v1/hosts", {"customer_id": cid, "name": "box"})["id"]
            guest = hub.call("POST", f"/api/v1/hosts/{host}/guests", {"name": "apps"})
            hub.call("PUT", f"/api/v1/guests/{guest['id']}/secrets/prod",
                     {"secrets": {"B_KEY": "  spaced ", "A_KEY": multi, "BIN": {"base64": "Af8="}}})
            r = subprocess.run([felhom, "secrets", "render", "--env", "prod", "--hub", hub.url, "--guest", guest["id"]],
                               capture_output=True, timeout=60, env=dict(os.environ, FELHOM_GUEST_KEY=guest["api_key"]))
            assert r.returncode == 0 and r.stdout == want, (r.stdout, r.stderr)
            r = run(felhom, "secrets", "render", "--env", "prod", "--hub", hub.url, "--guest", guest["id"], env={"FELHOM_GUEST_KEY": OP})
            assert r.returncode == 1 and "key names only" in r.stderr, r.stderr
            r = run(felhom, "secrets", "render", "--env", "prod", "--hub", hub.url, "--guest", guest["id"], env={"FELHOM_GUEST_KEY": ""})
            assert r.returncode == 64 and "FELHOM_GUEST_KEY" in r.stderr, r.stderr
        finally:
            hub.close()

    def demo_runs():
        report = os.path.join(work, "demo-report.json")
        r = run(felhom, "demo", "--dir", os.path.join(work, "demo"), "--scenario-only", "--report", report, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "demo finished: everything worked." in r.stdout, r.stdout
        with open(report) as f:
            seen = json.load(f)
        for k in ["converged", "provisioned_by_restore", "signed_op_applied", "unsigned_destroy_refused", "replay_rejected", "controller",
                  "backup_encrypted", "restore_test_passed", "unencrypted_backup_refused", "storage_manifest_reported",
                  "bulk_rule_enforced", "escrow_verified", "dr_recovered"]:
            assert seen.get(k) is True, f"{k}: {seen}"
        # scripts/test runs a Docker engine: the demo's controller must use it, not the simulation.
        if os.environ.get("FELHOM_TEST_DOCKER") == "1":
            assert seen.get("controller_runtime") == "docker" and "real Docker engine" in r.stdout, seen
        assert "Traceback" not in r.stdout + r.stderr and "Fatal error" not in r.stdout + r.stderr

    def bootstrap_dry_run():
        # On any machine (this one is not Proxmox VE, not necessarily root): prints, touches nothing.
        r = subprocess.run([agent, "bootstrap", "--hub", "https://hub.example:8443", "--enrollment-token", "fh_enroll_x",
                            "--node", "pve1", "--dry-run"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "  run    pveum role add FelhomAgent --privs VM.Audit,VM.Allocate," in r.stdout, r.stdout
        assert "pveum user token add felhom@pve agent --privsep 1" in r.stdout and "pct create 9000 " in r.stdout, r.stdout
        r = subprocess.run([agent, "bootstrap", "--hub", "ftp://x", "--enrollment-token", "t", "--dry-run"], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode != 0 and "--hub must be an https:// URL" in r.stderr, r.stderr

    check("felhom-agent bootstrap --dry-run prints every command, on any machine", bootstrap_dry_run)
    check("felhom-agent selftest read", selftest_read)
    check("felhom-agent selftest task", selftest_task)
    check("wrong certificate pin fails clearly", wrong_pin_fails_clearly)
    check("wrong token secret fails clearly", wrong_secret_fails_clearly)
    check("missing config file is named", missing_config_is_named)
    check("task mode asks for a scratch guest", task_mode_needs_a_guest)
    def demo_dr_runs():
        report = os.path.join(work, "demo-dr-report.json")
        r = run(felhom, "demo", "--scenario", "dr", "--stack-runtime", "simulated", "--dir", os.path.join(work, "demo-dr"), "--scenario-only",
                "--report", report, timeout=300)
        assert r.returncode == 0 and "demo finished: everything worked." in r.stdout, r.stdout + r.stderr
        with open(report) as f:
            seen = json.load(f)
        assert seen.get("scenario") == "dr", seen
        for k in ["storage_manifest_reported", "bulk_rule_enforced", "escrow_verified", "dr_recovered", "backup_encrypted"]:
            assert seen.get(k) is True, f"{k}: {seen}"
        assert "recovery code for the sheet" in r.stdout and "recovered: every guest restored" in r.stdout, r.stdout

    check("felhom demo", demo_runs)
    check("felhom demo --scenario dr", demo_dr_runs)
    check("felhom secrets export evaluated by sh; a bad file names the line", secrets_export)
    check("felhom secrets render from a bundles file and from a real hub", secrets_render)
    check("--version on every executable; runtime failures exit 1 without usage", versions_and_exit_codes)

    # Operator-signed ops with keys made by ssh-keygen.
    def op_roundtrip(keytype, extra):
        d = os.path.join(work, "op-" + keytype)
        os.makedirs(d)
        key = os.path.join(d, "id")
        r = run("ssh-keygen", "-q", "-t", keytype, *extra, "-N", "", "-C", f"{keytype}@felhom", "-f", key)
        assert r.returncode == 0, r.stderr
        with open(key + ".pub") as f:
            pub = " ".join(f.read().split()[:2])
        signers = os.path.join(d, "allowed_signers")
        with open(signers, "w") as f:
            f.write(f'alice@felhom namespaces="felhom-op-v1" {pub}\n')
        blob, sig = os.path.join(d, "op.json"), os.path.join(d, "op.sig")
        r = run(felhom, "op", "new", "--op", "guest.rollback", "--host", "box-7", "--guest", "101",
                "--params", '{"snapshot": "before-upgrade"}', "--ttl", "15m")
        assert r.returncode == 0, r.stderr
        assert not r.stdout.endswith("\n") and '"op":"guest.rollback"' in r.stdout, r.stdout
        with open(blob, "w") as f:
            f.write(r.stdout)
        r = run(felhom, "op", "sign", "--key", key, blob)
        assert r.returncode == 0 and r.stdout.startswith("-----BEGIN SSH SIGNATURE-----\n"), r.stderr
        with open(sig, "w") as f:
            f.write(r.stdout)
        with open(blob, "rb") as f:
            data = f.read()
        v = subprocess.run(["ssh-keygen", "-Y", "verify", "-f", signers, "-I", "alice@felhom", "-n", "felhom-op-v1", "-s", sig],
                           input=data, capture_output=True)
        assert v.returncode == 0, v.stdout + v.stderr
        store = os.path.join(d, "nonces.log")
        r = run(felhom, "op", "verify", "--signers", signers, "--host", "box-7", "--nonce-store", store, blob, sig)
        assert r.returncode == 0 and r.stdout.startswith("OK: guest.rollback"), r.stdout + r.stderr
        assert "snapshot=before-upgrade" in r.stdout, r.stdout
        r = run(felhom, "op", "verify", "--signers", signers, "--host", "box-7", "--nonce-store", store, blob, sig)
        assert r.returncode == 1 and r.stderr.startswith("rejected: replay:"), r.stderr
        r = run(felhom, "op", "verify", "--signers", signers, "--host", "box-8", blob, sig)
        assert r.returncode == 1 and r.stderr.startswith("rejected: target:"), r.stderr
        # A signature made by ssh-keygen itself verifies too.
        r = run(felhom, "op", "sign", "--ssh-keygen", "--key", key, blob)
        assert r.returncode == 0, r.stderr
        with open(sig, "w") as f:
            f.write(r.stdout)
        r = run(felhom, "op", "verify", "--signers", signers, "--host", "box-7", blob, sig)
        assert r.returncode == 0, r.stderr

    check("op new/sign/verify with an ed25519 key", lambda: op_roundtrip("ed25519", []))
    check("op new/sign/verify with an ecdsa key", lambda: op_roundtrip("ecdsa", ["-b", "256"]))
    check("op new/sign/verify with an rsa key", lambda: op_roundtrip("rsa", ["-b", "3072"]))

    def op_bad_input():
        r = run(felhom, "op", "new", "--op", "guest.explode", "--host", "h")
        assert r.returncode != 0 and "unknown op 'guest.explode'" in r.stderr, r.stderr
        r = run(felhom, "op", "new", "--op", "guest.rollback", "--host", "h", "--guest", "101")
        assert r.returncode != 0 and "params.snapshot" in r.stderr, r.stderr
        r = run(felhom, "op", "new", "--op", "guest.destroy", "--host", "h", "--guest", "1")
        assert r.returncode != 0 and "target.guest_id" in r.stderr and "vmid" in r.stderr, r.stderr
        r = run(felhom, "op", "new", "--op", "guest.destroy", "--host", "h", "--guest", "101", "--params", '{"force": "1"}')
        assert r.returncode != 0 and "params.force" in r.stderr, r.stderr
        r = subprocess.run([felhom, "jcs"], input=b'{"a":1,"a":2}', capture_output=True)
        assert r.returncode == 1 and b"duplicate property name" in r.stderr, r.stderr
        r = subprocess.run([felhom, "jcs"], input=b'{"b":[1E2,"\\u00e9"],"a":0.1}', capture_output=True)
        assert r.returncode == 0 and r.stdout == '{"a":0.1,"b":[100,"é"]}'.encode(), r.stdout

    check("op and jcs refuse bad input clearly", op_bad_input)

    # `felhom op signers-line` prints the signers_file line; ssh-keygen -Y verify accepts a signature
    # with it (the same file serves OpenSSH and the agent), and a wrong role is refused.
    def signers_line():
        d = os.path.join(work, "signers")
        os.makedirs(d)
        key = os.path.join(d, "op")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "laptop", "-f", key], check=True)
        r = run(felhom, "op", "signers-line", key + ".pub", "--role", "recovery")
        assert r.returncode == 0, r.stderr
        line = r.stdout.strip()
        assert line.startswith('operator@felhom namespaces="felhom-op-v1" ssh-ed25519 ') and line.endswith(" role=recovery laptop"), line
        signers = os.path.join(d, "allowed_signers")
        with open(signers, "w") as f:
            f.write(line + "\n")
        msg = os.path.join(d, "msg")
        with open(msg, "wb") as f:
            f.write(b"hello")
        subprocess.run(["ssh-keygen", "-q", "-Y", "sign", "-n", "felhom-op-v1", "-f", key, msg], check=True, capture_output=True)
        with open(msg, "rb") as f:
            v = subprocess.run(["ssh-keygen", "-Y", "verify", "-f", signers, "-I", "operator@felhom", "-n", "felhom-op-v1", "-s", msg + ".sig"],
                               stdin=f, capture_output=True, text=True)
        assert v.returncode == 0, v.stdout + v.stderr
        r = run(felhom, "op", "signers-line", key + ".pub", "--role", "admin")
        assert r.returncode != 0 and "operational or recovery" in r.stderr, r.stderr

    check("op signers-line prints a line OpenSSH and the agent accept", signers_line)

    # `felhom sign` against a real felhom-hub on SQLite, with a key made by ssh-keygen.
    def sign_against_hub():
        from common import HubProcess
        OP = "cli-test-operator-key-0123456789abcdef"
        d = os.path.join(work, "sign")
        os.makedirs(d)
        hub = HubProcess(os.path.join(bin_dir, "felhom-hub"), f"sqlite:{d}/hub.sqlite", OP)
        call = hub.call
        try:
            key = os.path.join(d, "id")
            r = run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ops@felhom", "-f", key)
            assert r.returncode == 0, r.stderr
            with open(key + ".pub") as f:
                call("POST", "/api/v1/operator-keys", {"public_key": f.read().strip()})
            cid = call("POST", "/api/v1/customers", {"name": "Kiss Anna", "email": "a@example.hu", "domain": "kiss.example.hu"})["id"]
            host = call("POST", "/api/v1/hosts", {"customer_id": cid, "name": "nappali"})["id"]
            first = call("POST", "/api/v1/signed-ops", {"host_id": host, "guest_id": "101", "op": "guest.destroy"})["id"]
            hub_url = hub.url
            # --pending lists in plain words and signs nothing.
            r = run(felhom, "sign", "--hub", hub_url, "--pending", env={"FELHOM_OPERATOR_KEY": OP})
            assert r.returncode == 0 and "DESTROY guest" in r.stdout and "vmid 101" in r.stdout and "Kiss Anna" in r.stdout, r.stdout + r.stderr
            # Answering anything but yes skips.
            e = dict(os.environ, FELHOM_OPERATOR_KEY=OP)
            r = subprocess.run([felhom, "sign", "--hub", hub_url, "--key", key], input="no\n", capture_output=True, text=True, env=e, timeout=60)
            assert r.returncode == 0 and "skipped" in r.stdout, r.stdout + r.stderr
            assert call("GET", f"/api/v1/signed-ops/{first}")["status"] == "pending_signature"
            # yes signs and uploads; the hub checked the signature against the registered key.
            r = subprocess.run([felhom, "sign", "--hub", hub_url, "--key", key], input="yes\n", capture_output=True, text=True, env=e, timeout=60)
            assert r.returncode == 0 and "signed and uploaded" in r.stdout, r.stdout + r.stderr
            assert call("GET", f"/api/v1/signed-ops/{first}")["status"] == "signed"
            # An op bound to another key (key_id) is not offered: the box would only reject it.
            other = os.path.join(d, "other")
            run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", other)
            with open(other + ".pub") as f:
                other_key = call("POST", "/api/v1/operator-keys", {"public_key": f.read().strip(), "name": "second"})
            second = call("POST", "/api/v1/signed-ops",
                          {"host_id": host, "guest_id": "102", "op": "guest.destroy", "key_id": other_key["fingerprint"]})["id"]
            r = run(felhom, "sign", "--hub", hub_url, "--key", key, "--op", second, env={"FELHOM_OPERATOR_KEY": OP})
            assert r.returncode == 1 and "not offered" in r.stdout and other_key["fingerprint"] in r.stdout, r.stdout + r.stderr
            r = subprocess.run([felhom, "sign", "--hub", hub_url, "--key", key], input="", capture_output=True, text=True, env=e, timeout=60)
            assert r.returncode == 0 and "1 bound to another key" in r.stdout and "Sign this op?" not in r.stdout, r.stdout + r.stderr
            # A key removed from the hub is refused with the hub's reason; exit status 1.
            req = urllib.request.Request(f"{hub_url}/api/v1/operator-keys/{other_key['id']}", method="DELETE",
                                         headers={"Authorization": f"Bearer {OP}"})
            urllib.request.urlopen(req, timeout=30).read()
            r = run(felhom, "sign", "--hub", hub_url, "--key", other, "--op", second, env={"FELHOM_OPERATOR_KEY": OP})
            assert r.returncode == 1 and "not a registered operator key" in r.stdout, r.stdout + r.stderr
            assert "sha256 " in r.stdout, r.stdout
            # The blanket --yes is gone: ops are named one by one.
            r = run(felhom, "sign", "--hub", hub_url, "--key", key, "--yes", env={"FELHOM_OPERATOR_KEY": OP})
            assert r.returncode != 0 and "--op ID" in r.stdout + r.stderr, r.stdout + r.stderr
            # --op signs exactly the named op and leaves the others pending.
            third = call("POST", "/api/v1/signed-ops", {"host_id": host, "guest_id": "103", "op": "guest.destroy"})["id"]
            r = run(felhom, "sign", "--hub", hub_url, "--key", key, "--op", third, env={"FELHOM_OPERATOR_KEY": OP})
            assert r.returncode == 0 and "signed and uploaded" in r.stdout, r.stdout + r.stderr
            assert call("GET", f"/api/v1/signed-ops/{third}")["status"] == "signed"
            assert call("GET", f"/api/v1/signed-ops/{second}")["status"] == "pending_signature"
            # An id that is not pending is an error naming it.
            r = run(felhom, "sign", "--hub", hub_url, "--key", key, "--op", "sop_nosuchop", env={"FELHOM_OPERATOR_KEY": OP})
            assert r.returncode == 1 and "sop_nosuchop" in r.stdout, r.stdout + r.stderr
            assert OP not in r.stdout + r.stderr
            # Names from the hub are escaped: a bidi override cannot reorder what the operator reads.
            cid2 = call("POST", "/api/v1/customers", {"name": "Evil \u202e121 tseug", "email": "e@example.hu", "domain": "evil.example.hu"})["id"]
            host2 = call("POST", "/api/v1/hosts", {"customer_id": cid2, "name": "box\u202e"})["id"]
            call("POST", "/api/v1/signed-ops", {"host_id": host2, "guest_id": "120", "op": "guest.destroy"})
            r = run(felhom, "sign", "--hub", hub_url, "--pending", env={"FELHOM_OPERATOR_KEY": OP})
            assert r.returncode == 0 and "\\u{202E}" in r.stdout and "\u202e" not in r.stdout, r.stdout
            # A wrong operator key is a clear error.
            r = run(felhom, "sign", "--hub", hub_url, "--pending", env={"FELHOM_OPERATOR_KEY": "wrong-key-000000000000000000"})
            assert r.returncode != 0 and "401" in r.stdout + r.stderr, r.stdout + r.stderr
        finally:
            hub.close()

    check("felhom sign against a real hub", sign_against_hub)

    # SIGTERM closes the store (the debug build asserted on an unclosed SQLite connection) and the
    # database files are private (mode 0600).
    def hub_stops_cleanly():
        from common import HubProcess
        d = os.path.join(work, "hubstop")
        os.makedirs(d)
        hub = HubProcess(os.path.join(bin_dir, "felhom-hub"), f"sqlite:{d}/hub.sqlite", "stop-test-operator-key-0123456789")
        hub.call("POST", "/api/v1/customers", {"name": "A", "email": "a@example.hu", "domain": "a.example.hu"})
        hub.proc.terminate()
        out, _ = hub.proc.communicate(timeout=30)
        assert hub.proc.returncode == 0, out
        assert "Assertion" not in out and "felhom-hub stopped" in out, out
        for f in os.listdir(d):
            mode = os.stat(os.path.join(d, f)).st_mode & 0o777
            assert mode == 0o600, f"{f} has mode {oct(mode)}"
        # A missing directory is named, not "cantOpen".
        r = run(os.path.join(bin_dir, "felhom-hub"), "serve", "--database", f"sqlite:{d}/missing/hub.sqlite",
                env={"FELHOM_HUB_OPERATOR_KEY": "stop-test-operator-key-0123456789"})
        assert r.returncode != 0 and "does not exist" in r.stderr and f"{d}/missing" in r.stderr, r.stderr
        # A typo in the config file is an error naming the key and the file (not a silent default).
        cfg = os.path.join(d, "hub.json")
        with open(cfg, "w") as f:
            f.write('{"databse": "sqlite:/tmp/x.sqlite"}')
        r = run(os.path.join(bin_dir, "felhom-hub"), "serve", "--config", cfg, env={"FELHOM_HUB_OPERATOR_KEY": "stop-test-operator-key-0123456789"})
        assert r.returncode != 0 and "$.databse" in r.stderr and cfg in r.stderr, r.stderr
        # SMTP in clear text only to a relay on loopback.
        r = run(os.path.join(bin_dir, "felhom-hub"), "serve", "--database", f"sqlite:{d}/hub2.sqlite",
                env={"FELHOM_HUB_OPERATOR_KEY": "stop-test-operator-key-0123456789", "FELHOM_HUB_SMTP_HOST": "mail.example.com",
                     "FELHOM_HUB_SMTP_SECURITY": "none"})
        assert r.returncode != 0 and "loopback" in r.stderr and "mail.example.com" in r.stderr, r.stderr

    check("felhom-hub stops cleanly on SIGTERM; private files; strict config", hub_stops_cleanly)

    # The hub terminates TLS itself with a certificate and key from its config; dashboard cookies
    # are then Secure by default.
    def hub_serves_tls():
        import ssl, urllib.request, urllib.parse, http.client
        from common import free_port
        d = os.path.join(work, "hubtls")
        os.makedirs(d)
        cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
        r = run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                "-subj", "/CN=felhom-hub", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert)
        assert r.returncode == 0, r.stderr
        port = free_port()
        op = "tls-test-operator-key-0123456789abc"
        e = dict(os.environ, FELHOM_HUB_OPERATOR_KEY=op, FELHOM_HUB_TLS_CERTIFICATE_FILE=cert, FELHOM_HUB_TLS_KEY_FILE=key)
        p = subprocess.Popen([os.path.join(bin_dir, "felhom-hub"), "serve", "--listen", f"127.0.0.1:{port}", "--database", f"sqlite:{d}/hub.sqlite"],
                             env=e, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            ctx = ssl.create_default_context(cafile=cert)
            deadline = time.time() + 30
            while True:
                try:
                    with urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", context=ctx, timeout=2) as resp:
                        assert resp.status == 200
                    break
                except Exception:
                    if time.time() > deadline:
                        raise
                    time.sleep(0.2)
            # Plain HTTP to the TLS port is not served.
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=3).read()
                raise AssertionError("plain HTTP answered on the TLS port")
            except AssertionError:
                raise
            except Exception:
                pass
            # ... and our clients say why in words, both ways round.
            r = run(felhom, "sign", "--hub", f"http://127.0.0.1:{port}", "--pending", env={"FELHOM_OPERATOR_KEY": op})
            assert r.returncode == 1 and "use an https:// URL" in r.stderr, r.stdout + r.stderr
            plain = free_port()
            q = subprocess.Popen([os.path.join(bin_dir, "felhom-hub"), "serve", "--listen", f"127.0.0.1:{plain}", "--database",
                                  f"sqlite:{d}/plain.sqlite"], env=dict(os.environ, FELHOM_HUB_OPERATOR_KEY=op),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                for _ in range(100):
                    try:
                        urllib.request.urlopen(f"http://127.0.0.1:{plain}/healthz", timeout=1).read()
                        break
                    except Exception:
                        time.sleep(0.2)
                r = run(felhom, "sign", "--hub", f"https://127.0.0.1:{plain}", "--hub-ca", cert, "--pending", env={"FELHOM_OPERATOR_KEY": op})
                assert r.returncode == 1 and "answered in plain HTTP, not TLS" in r.stderr, r.stdout + r.stderr
            finally:
                q.terminate()
                q.wait(timeout=30)
            c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
            c.request("POST", "/login", body=urllib.parse.urlencode({"key": op}), headers={"Content-Type": "application/x-www-form-urlencoded"})
            resp = c.getresponse()
            cookie = resp.getheader("Set-Cookie") or ""
            assert resp.status == 303 and "Secure" in cookie and "HttpOnly" in cookie, (resp.status, cookie)
        finally:
            p.terminate()
            p.wait(timeout=30)

    check("felhom-hub terminates TLS with its own certificate; Secure cookies", hub_serves_tls)

    # An online backup of a running hub holds its latest writes (they live in the WAL; a file copy
    # would not), restores only to a new path, and a hub started on the restored copy serves them.
    def hub_backup_and_restore():
        from common import HubProcess
        hub_bin = os.path.join(bin_dir, "felhom-hub")
        d = os.path.join(work, "hubbackup")
        os.makedirs(d)
        op = "backup-test-operator-key-0123456789"
        hub = HubProcess(hub_bin, f"sqlite:{d}/hub.sqlite", op)
        try:
            for i in range(20):
                hub.call("POST", "/api/v1/customers", {"name": f"C{i}", "email": f"c{i}@example.hu", "domain": f"c{i}.example.hu"})
            backup = os.path.join(d, "hub-backup.sqlite")
            r = run(hub_bin, "backup", "--database", f"sqlite:{d}/hub.sqlite", "--to", backup)
            assert r.returncode == 0 and "verified" in r.stdout, r.stdout + r.stderr
            assert os.stat(backup).st_mode & 0o777 == 0o600
            # Never overwrites.
            r = run(hub_bin, "backup", "--database", f"sqlite:{d}/hub.sqlite", "--to", backup)
            assert r.returncode == 1 and "already exists" in r.stderr and "Usage" not in r.stderr, r.stderr
        finally:
            hub.proc.terminate()
            hub.proc.communicate(timeout=30)
        # Restore refuses to replace a database, then restores to a fresh path.
        r = run(hub_bin, "restore", "--from", backup, "--database", f"sqlite:{d}/hub.sqlite")
        assert r.returncode == 1 and "move the current database" in r.stderr, r.stderr
        not_a_db = os.path.join(d, "junk.sqlite")
        with open(not_a_db, "wb") as f:
            f.write(b"not a database at all" * 100)
        r = run(hub_bin, "restore", "--from", not_a_db, "--database", f"sqlite:{d}/other.sqlite")
        assert r.returncode == 1 and not os.path.exists(f"{d}/other.sqlite"), r.stderr
        r = run(hub_bin, "restore", "--from", backup, "--database", f"sqlite:{d}/restored.sqlite")
        assert r.returncode == 0 and "restored" in r.stdout, r.stdout + r.stderr
        again = HubProcess(hub_bin, f"sqlite:{d}/restored.sqlite", op)
        try:
            names = sorted(c["name"] for c in again.call("GET", "/api/v1/customers")["customers"])
            assert names == sorted(f"C{i}" for i in range(20)), names
        finally:
            again.proc.terminate()
            again.proc.communicate(timeout=30)
        r = run(hub_bin, "--version")
        assert r.returncode == 0 and r.stdout.strip(), r.stdout

    check("felhom-hub backup while serving, restore to a new path", hub_backup_and_restore)
    return checks.finish()


with Simulator(felhom) as simulator:
    status = main(simulator)
sys.exit(status)
