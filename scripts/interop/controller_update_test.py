#!/usr/bin/env python3
"""Controller updates end to end (issue 19): felhom-hub (SQLite), felhom pve-sim, felhom-agent run,
and the guest's felhom-controller on the real Docker engine, reached through
scripts/interop/fake_pct.py as a real host reaches it through `pct`.

The guest's controller is an executable at GUESTS/100/usr/local/bin/felhom-controller: each
release is a small launcher that answers `--version` with its release version and otherwise execs
the real felhom-controller (a broken release exits at start). Releases are signed with OpenSSH's
`ssh-keygen -Y sign -n felhom-release-v1` by the pinned release key and rolled out to the canary host.
Checks: a good release is backed up, snapshotted, pushed, restarted and committed (the new
controller calls the local API again; the app stack keeps running); a release that cannot start
is rolled back to the previous binary (`update_reverted`); with the PBS key removed the pre-update
backup fails and the update is cancelled (`update_refused`, nothing pushed, no snapshot).
Prints `N passed, N failed`. Usage: controller_update_test.py BIN_DIR
"""
import hashlib, json, os, signal, subprocess, sys, time, uuid

import requests

sys.path.insert(0, os.path.dirname(__file__))
from common import Checks, HubProcess, Simulator, compose_state, free_port, wait_for  # noqa: E402

bin_dir = os.path.abspath(sys.argv[1])
felhom, agent_bin, hub_bin, controller_bin = (os.path.join(bin_dir, n) for n in ("felhom", "felhom-agent", "felhom-hub", "felhom-controller"))
OP = "controller-update-operator-key-0123456789abcdef"
IMAGE = os.environ.get("FELHOM_TEST_IMAGE", "felhom/busybox:1")
WINDOW = 30
FAKE_PCT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fake_pct.py")


def launcher(version, broken=False):
    """A controller release: answers --version, otherwise runs the real controller (or dies)."""
    run = "echo 'felhom-controller: cannot start' >&2\nexit 1" if broken else f'exec "{controller_bin}" "$@"'
    return f'#!/bin/sh\nif [ "$1" = "--version" ]; then echo {version}; exit 0; fi\n{run}\n'.encode()


def main(sim):
    checks = Checks("controller update")
    work = sim.work
    hub = HubProcess(hub_bin, f"sqlite:{work}/hub.sqlite", OP, env={"FELHOM_HUB_RATE_LIMIT_REPORTS_PER_MINUTE": "0"})
    call = hub.call
    procs, logs = [], []
    stack = "u" + uuid.uuid4().hex[:6] + "-photos"
    stacks_dir = os.path.join(work, "stacks")
    guests = os.path.join(work, "guests")
    guest_bin = os.path.join(guests, "100", "usr", "local", "bin", "felhom-controller")
    try:
        pve = requests.Session()
        pve.trust_env = False
        pve.verify = os.path.join(work, "sim", "cert.pem")
        root = "root@pam!felhom-root"
        pve.headers["Authorization"] = f"PVEAPIToken={root}={sim.tokens[root]}"
        base = f"https://127.0.0.1:{sim.port}/api2/json"
        box_key = pve.get(f"{base}/storage/pbs-felhom").json()["data"]["encryption-key"]

        cid = call("POST", "/api/v1/customers", {"name": "Kiss Anna", "email": "a@example.hu", "domain": "kiss.example.hu"})["id"]
        host = call("POST", "/api/v1/hosts", {"customer_id": cid, "name": "nappali"})["id"]
        token = call("POST", f"/api/v1/hosts/{host}/enrollment")["token"]
        keys = {}
        for name in ("operator", "release"):
            keys[name] = os.path.join(work, name)
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", keys[name]], check=True)

        def allowed(name):
            with open(keys[name] + ".pub") as f, open(os.path.join(work, name + "_signers"), "w") as out:
                out.write(f"{name}@felhom " + " ".join(f.read().split()[:2]) + "\n")
            return out.name

        state = os.path.join(work, "agent-state")
        api_port = free_port()
        config = os.path.join(work, "agent.json")
        with open(config, "w") as f:
            json.dump({"pve": {"host": "127.0.0.1", "port": sim.port, "node": "pve1", "token_id": "felhom@pve!agent",
                               "token_secret": sim.tokens["felhom@pve!agent"], "fingerprint": sim.fingerprint},
                       "hub": {"url": hub.url, "enrollment_token": token, "long_poll_seconds": 2},
                       "state_dir": state, "signers_file": allowed("operator"),
                       "update": {"root": os.path.join(work, "agent-ab"), "release_signers_file": allowed("release"),
                                  "window_seconds": WINDOW, "settle_seconds": 0},
                       "provision": {"golden_template": "local:backup/vzdump-lxc-9000-2026_01_01-00_00_00.tar.zst"},
                       "backup": {"key_fingerprint": box_key},
                       "local_api": {"listen": "127.0.0.1", "port": api_port}}, f)
        os.makedirs(os.path.join(work, "agent-ab"))
        r = subprocess.run([agent_bin, "local-api", "token", "100", "--config", config], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        agent_settings = json.loads(r.stdout)
        cenv = {"FELHOM_CONTROLLER_STACKS_DIR": stacks_dir, "FELHOM_CONTROLLER_STATE_DIR": os.path.join(work, "ctl-state")}
        fake_bin = os.path.join(work, "bin")
        os.makedirs(fake_bin)
        for tool in ("pct", "pvesm"):
            os.symlink(FAKE_PCT, os.path.join(fake_bin, tool))
        fake_cfg = os.path.join(work, "fake-pct.json")
        with open(fake_cfg, "w") as f:
            json.dump({"sim_url": base, "sim_token": f"{root}={sim.tokens[root]}", "sim_cert": pve.verify,
                       "controller": controller_bin, "controller_env": cenv, "pushed_dir": os.path.join(work, "pushed"),
                       "guests_root": guests,
                       "controller_run_env": {"FELHOM_CONTROLLER_AGENT_URL": agent_settings["agent.url"],
                                              "FELHOM_CONTROLLER_AGENT_FINGERPRINT": agent_settings["agent.fingerprint"],
                                              "FELHOM_CONTROLLER_AGENT_TOKEN": agent_settings["agent.token"],
                                              "FELHOM_CONTROLLER_QUIESCE_POLL_SECONDS": "1",
                                              "FELHOM_CONTROLLER_WATCHDOG_INTERVAL_SECONDS": "600"}}, f)
        agent_env = dict(os.environ, PATH=fake_bin + os.pathsep + os.environ["PATH"], FELHOM_FAKE_PCT=fake_cfg)

        def pct(*args):
            r = subprocess.run([os.path.join(fake_bin, "pct"), *args], env=agent_env, capture_output=True, text=True, timeout=120)
            assert r.returncode == 0, r.stderr
            return r.stdout.strip()

        def tail():
            ctl = os.path.join(guests, "100", "controller.log")
            return "".join(f"--- {n}\n" + open(n).read()[-3000:] for n in logs + ([ctl] if os.path.exists(ctl) else []))

        def events(kind):
            return [e for e in call("GET", f"/api/v1/events?host_id={host}&type={kind}")["events"] if e["data"].get("component") == "controller"]

        def snapshots():
            return sorted(s["name"] for s in pve.get(f"{base}/nodes/pve1/lxc/100/snapshot").json()["data"] if s["name"] != "current")

        def backups():
            return len(pve.get(f"{base}/nodes/pve1/storage/pbs-felhom/content", params={"vmid": 100}).json()["data"])

        def sign(text):
            path = os.path.join(work, f"manifest-{time.time_ns()}.json")
            with open(path, "w") as f:
                f.write(text)
            subprocess.run(["ssh-keygen", "-Y", "sign", "-q", "-f", keys["release"], "-n", "felhom-release-v1", path], check=True,
                           capture_output=True)
            with open(path + ".sig") as f:
                return f.read()

        def publish(version, asset):
            m = json.dumps({"component": "controller", "created_at": "2026-12-01T00:00:00Z", "sha256": hashlib.sha256(asset).hexdigest(),
                            "size": len(asset), "version": version}, sort_keys=True, separators=(",", ":"))
            call("POST", "/api/v1/releases", {"manifest": m, "signature": sign(m)})
            r = requests.put(f"{hub.url}/api/v1/releases/controller/{version}/asset", data=asset,
                             headers={"Authorization": f"Bearer {OP}", "Content-Type": "application/octet-stream"}, timeout=120)
            assert r.status_code == 200, r.text
            out = call("POST", f"/api/v1/releases/controller/{version}/rollout", {"stage": "canary", "hosts": [host]})
            assert [p["host_id"] for p in out["published"]] == [host], out

        # The box: the guest runs controller 1.0.0 (deployed by the golden template) with one app stack.
        def box_runs_controller_100():
            os.makedirs(os.path.dirname(guest_bin))
            with open(guest_bin, "wb") as f:
                f.write(launcher("1.0.0"))
            os.chmod(guest_bin, 0o755)
            os.makedirs(os.path.join(stacks_dir, stack))
            with open(os.path.join(stacks_dir, stack, "compose.yaml"), "w") as f:
                f.write(f"services:\n  app:\n    image: {IMAGE}\n    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; sleep 3600 & wait\"]\n"
                        "    stop_grace_period: 1s\n")
            r = subprocess.run([controller_bin, "stacks", "deploy", stack], env=dict(os.environ, **cenv), capture_output=True, text=True,
                               timeout=180)
            assert r.returncode == 0, r.stderr
            log = open(os.path.join(work, "agent.log"), "w")
            logs.append(log.name)
            procs.append(subprocess.Popen([agent_bin, "run", "--config", config], env=agent_env, stdout=log, stderr=subprocess.STDOUT))
            assert wait_for(lambda: "local API on https://" in open(logs[0]).read(), timeout=60), tail()
            # The guest must run (PVE) before its controller can; `backup: false` keeps the nightly
            # backup out of the way: the pre-update backups below are the controller update's own.
            call("PUT", f"/api/v1/hosts/{host}/desired", {
                "guests": [{"vmid": 100, "name": "web", "cpu": 2, "memory_mb": 2048, "disk_gb": 8, "run_state": "running", "backup": False}],
                "storage_policy": {"backup_storage": "pbs-felhom", "backup_hour": 0, "keep_last": 7}})
            call("POST", f"/api/v1/hosts/{host}/desired/publish")
            assert wait_for(lambda: pve.get(f"{base}/nodes/pve1/lxc/100/status/current").json()["data"]["status"] == "running",
                            timeout=60), tail()
            pct("exec", "100", "--", "systemctl", "restart", "felhom-controller")
            assert pct("exec", "100", "--", "/usr/local/bin/felhom-controller", "--version") == "1.0.0"
            assert compose_state(stack) == ["running"]

        def good_release():
            asset = os.path.join(work, "controller-1.1.0")
            with open(asset, "wb") as f:
                f.write(launcher("1.1.0"))
            before = backups()
            # Published with the operator CLI, which signs the manifest with the release key.
            r = subprocess.run([felhom, "release", "publish", "--hub", hub.url, "--component", "controller", "--version", "1.1.0",
                                "--file", asset, "--key", keys["release"], "--canary", host],
                               capture_output=True, text=True, timeout=300, env=dict(os.environ, FELHOM_OPERATOR_KEY=OP))
            assert r.returncode == 0 and f"canary {host}: desired generation" in r.stdout, r.stdout + r.stderr
            assert wait_for(lambda: events("update_committed"), timeout=WINDOW + 60), tail()
            ev = events("update_committed")[0]["data"]
            assert ev["version"] == "1.1.0" and ev["previous_version"] == "1.0.0" and ev["vmid"] == 100, ev
            assert open(guest_bin, "rb").read() == launcher("1.1.0")
            assert pct("exec", "100", "--", "/usr/local/bin/felhom-controller", "--version") == "1.1.0"
            assert backups() == before + 1, "one pre-update backup"
            assert snapshots() == ["felhom-pre-1_1_0"], snapshots()
            assert compose_state(stack) == ["running"], "the app stack keeps running through a controller update"

        def broken_release():
            publish("1.2.0", launcher("1.2.0", broken=True))
            assert wait_for(lambda: [e for e in events("update_reverted") if e["data"]["version"] == "1.2.0"], timeout=WINDOW + 90), tail()
            ev = [e for e in events("update_reverted") if e["data"]["version"] == "1.2.0"][0]
            assert "did not become healthy" in ev["data"]["reason"] and ev["severity"] == "warning", ev
            assert ev["data"]["previous_version"] == "1.1.0", ev
            assert open(guest_bin, "rb").read() == launcher("1.1.0"), "the previous binary is back"
            assert pct("exec", "100", "--", "/usr/local/bin/felhom-controller", "--version") == "1.1.0"
            pid = int(open(os.path.join(guests, "100", "controller.pid")).read())
            os.kill(pid, 0)  # the restarted previous controller runs
            assert "felhom-pre-1_2_0" in snapshots(), "the snapshot is kept"
            assert compose_state(stack) == ["running"]

        def failing_backup_cancels():
            r = pve.put(f"{base}/storage/pbs-felhom", data={"delete": "encryption-key"})
            assert r.status_code == 200, r.text
            before = backups()
            publish("1.3.0", launcher("1.3.0"))
            assert wait_for(lambda: [e for e in call("GET", f"/api/v1/events?host_id={host}&type=update_refused")["events"]
                                     if e["data"].get("version") == "1.3.0"], timeout=90), tail()
            ev = [e for e in call("GET", f"/api/v1/events?host_id={host}&type=update_refused")["events"] if e["data"].get("version") == "1.3.0"][0]
            assert "pre-update backup" in ev["data"]["reason"] and "cancelled" in ev["data"]["reason"], ev
            assert open(guest_bin, "rb").read() == launcher("1.1.0"), "nothing was pushed"
            assert not os.path.exists(guest_bin + ".new")
            assert "felhom-pre-1_3_0" not in snapshots(), snapshots()
            assert backups() == before, "nothing unencrypted was stored"
            assert not [e for e in events("update_committed") if e["data"]["version"] == "1.3.0"]

        checks.check("the guest runs controller 1.0.0 with an app stack on the real Docker engine", box_runs_controller_100)
        checks.check("a good release: backed up, snapshotted, pushed, restarted, healthy, committed", good_release)
        checks.check("a release that cannot start is rolled back to the previous controller", broken_release)
        checks.check("a failing pre-update backup cancels the update: nothing pushed, no snapshot", failing_backup_cancels)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
        pidfile = os.path.join(guests, "100", "controller.pid")
        if os.path.exists(pidfile):
            try:
                os.kill(int(open(pidfile).read()), signal.SIGTERM)
            except ProcessLookupError:
                pass
        subprocess.run(["docker", "compose", "-p", stack, "down"], capture_output=True, timeout=120)
        hub.close()
    return checks.finish()


if __name__ == "__main__":
    with Simulator(felhom) as simulator:
        sys.exit(main(simulator))
