#!/usr/bin/env python3
"""Backups end to end with the real executables (issue 14): felhom pve-sim, felhom-hub,
felhom-agent run (backup + local API) and felhom-controller run on the real Docker engine.

The desired state's storage policy makes the running guest due; the controller polls the agent's
local API (HTTPS, pinned, its own token), quiesces its app stacks, calls POST /backup; the agent
backs the guest up to the simulated PBS storage under the box's key; the controller starts exactly
the stacks it stopped; the hub receives backup_completed with consistency "app". A kill -9 of the
agent mid-backup is finished once after the restart; with the PBS key removed from the storage,
the operator's backup request is refused (encryption_key_missing), nothing stored. Restore tests
run through scripts/interop/fake_pct.py (the real controller answers for the scratch guest); a
kill -9 mid restore test leaves no orphan and the test runs again.
Usage: backup_e2e_test.py BIN_DIR
"""
import json, os, signal, subprocess, sys, time, uuid

import requests

sys.path.insert(0, os.path.dirname(__file__))
from common import Checks, HubProcess, Simulator, compose_state, free_port, wait_for  # noqa: E402

bin_dir = os.path.abspath(sys.argv[1])
felhom, agent_bin, hub_bin, controller_bin = (os.path.join(bin_dir, n) for n in ("felhom", "felhom-agent", "felhom-hub", "felhom-controller"))
OP = "backup-e2e-operator-key-0123456789abcdef"
IMAGE = os.environ.get("FELHOM_TEST_IMAGE", "felhom/busybox:1")


def main(sim):
    checks = Checks("backup e2e")
    work = sim.work
    hub = HubProcess(hub_bin, f"sqlite:{work}/hub.sqlite", OP)
    call = hub.call
    procs, logs = [], []
    prefix = "e" + uuid.uuid4().hex[:5]
    names = [f"{prefix}-photos", f"{prefix}-traefik"]
    stacks_dir = os.path.join(work, "stacks")
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
        signers = os.path.join(work, "allowed_signers")
        key = os.path.join(work, "operator")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
        with open(key + ".pub") as f, open(signers, "w") as out:
            out.write("operator@felhom " + " ".join(f.read().split()[:2]) + "\n")
        state = os.path.join(work, "agent-state")
        api_port = free_port()
        config = os.path.join(work, "agent.json")
        with open(config, "w") as f:
            json.dump({"pve": {"host": "127.0.0.1", "port": sim.port, "node": "pve1", "token_id": "felhom@pve!agent",
                               "token_secret": sim.tokens["felhom@pve!agent"], "fingerprint": sim.fingerprint},
                       "hub": {"url": hub.url, "enrollment_token": token, "long_poll_seconds": 2},
                       "state_dir": state, "signers_file": signers,
                       "provision": {"golden_template": "local:backup/vzdump-lxc-9000-2026_01_01-00_00_00.tar.zst"},
                       "backup": {"key_fingerprint": box_key, "app_bound_seconds": 600},
                       "restore_test": {"every_days": 7, "health_timeout_seconds": 90},
                       "local_api": {"listen": "127.0.0.1", "port": api_port}}, f)
        # The agent's fenced root commands go through `pct`: here scripts/interop/fake_pct.py, which
        # asks the simulator whether the guest runs and lets the real controller answer for it.
        cenv_base = {"FELHOM_CONTROLLER_STACKS_DIR": stacks_dir, "FELHOM_CONTROLLER_STATE_DIR": os.path.join(work, "ctl-state"),
                     "FELHOM_CONTROLLER_STACKS_PROTECTED": names[1]}
        fake_bin = os.path.join(work, "bin")
        os.makedirs(fake_bin)
        for tool in ("pct", "pvesm"):
            os.symlink(os.path.join(os.path.dirname(os.path.abspath(__file__)), "fake_pct.py"), os.path.join(fake_bin, tool))
        fake_cfg = os.path.join(work, "fake-pct.json")
        with open(fake_cfg, "w") as f:
            json.dump({"sim_url": base, "sim_token": f"{root}={sim.tokens[root]}", "sim_cert": pve.verify,
                       "controller": controller_bin, "controller_env": cenv_base, "pushed_dir": os.path.join(work, "pushed")}, f)
        agent_env = dict(os.environ, PATH=fake_bin + os.pathsep + os.environ["PATH"], FELHOM_FAKE_PCT=fake_cfg)

        def scratch_guests():
            return [g["vmid"] for g in pve.get(f"{base}/nodes/pve1/lxc").json()["data"] if int(g["vmid"]) >= 9900]

        def events(kind, vmid):
            return [e for e in call("GET", f"/api/v1/events?host_id={host}&type={kind}")["events"] if e["data"].get("vmid") == vmid]

        for n in names:
            os.makedirs(os.path.join(stacks_dir, n))
            with open(os.path.join(stacks_dir, n, "compose.yaml"), "w") as f:
                f.write(f"services:\n  app:\n    image: {IMAGE}\n    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; sleep 3600 & wait\"]\n"
                        "    stop_grace_period: 1s\n")

        def start(args, env, name):
            log = open(os.path.join(work, name + ".log"), "w")
            logs.append(log.name)
            p = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
            procs.append(p)
            return p

        def tail():
            return "".join(f"--- {n}\n" + open(n).read()[-2500:] for n in logs)

        def app_consistent_backup():
            r = subprocess.run([agent_bin, "local-api", "token", "100", "--config", config], capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, r.stderr
            agent_settings = json.loads(r.stdout)
            assert agent_settings["agent.url"] == f"https://127.0.0.1:{api_port}"
            stored = open(os.path.join(state, "local-api-tokens.json")).read()
            assert agent_settings["agent.token"] not in stored, "tokens are stored hashed"
            start([agent_bin, "run", "--config", config], agent_env, "agent")
            cenv = dict(os.environ, **cenv_base, FELHOM_CONTROLLER_AGENT_URL=agent_settings["agent.url"],
                        FELHOM_CONTROLLER_AGENT_FINGERPRINT=agent_settings["agent.fingerprint"],
                        FELHOM_CONTROLLER_AGENT_TOKEN=agent_settings["agent.token"], FELHOM_CONTROLLER_QUIESCE_POLL_SECONDS="1",
                        FELHOM_CONTROLLER_WATCHDOG_INTERVAL_SECONDS="600")
            for n in names:
                r = subprocess.run([controller_bin, "stacks", "deploy", n], env=cenv, capture_output=True, text=True, timeout=120)
                assert r.returncode == 0, r.stderr
            start([controller_bin, "run"], cenv, "controller")
            assert wait_for(lambda: "local API on https://" in open(logs[0]).read(), timeout=60), tail()
            call("PUT", f"/api/v1/hosts/{host}/desired", {
                "guests": [{"vmid": 100, "name": "web", "cpu": 2, "memory_mb": 2048, "disk_gb": 8, "run_state": "running",
                            "description": "customer apps: photos, passwords"},
                           {"vmid": 101, "name": "db", "cpu": 1, "memory_mb": 1024, "disk_gb": 8, "run_state": "stopped"}],
                "storage_policy": {"backup_storage": "pbs-felhom", "backup_hour": 0, "keep_last": 7}})
            call("POST", f"/api/v1/hosts/{host}/desired/publish")

            def completed():
                return [e for e in call("GET", f"/api/v1/events?host_id={host}&type=backup_completed")["events"]]
            assert wait_for(lambda: len(completed()) == 1, timeout=120), tail()
            event = completed()[0]
            assert event["data"]["vmid"] == 100 and event["data"]["consistency"] == "app", event
            assert event["data"]["encrypted"] == box_key, event
            ctl = open(logs[1]).read()
            assert f"quiesce: stopped {names[0]}" in ctl and f"quiesce: stopped {names[1]}" not in ctl, tail()
            assert wait_for(lambda: compose_state(names[0]) == ["running"], timeout=60), tail()
            assert compose_state(names[1]) == ["running"]
            content = pve.get(f"{base}/nodes/pve1/storage/pbs-felhom/content", params={"vmid": 100}).json()["data"]
            assert len(content) == 2 and all(c.get("encrypted") == box_key for c in content), content

        # Then the guest's first restore test: its backup restored into an isolated scratch guest,
        # the controller's stacks read through `pct exec`, the scratch guest destroyed.
        def restore_test_passes():
            assert wait_for(lambda: len(events("restore_test_passed", 100)) == 1, timeout=180), tail()
            data = events("restore_test_passed", 100)[0]["data"]
            assert data["restore_seconds"] >= 0 and data["healthy_seconds"] >= 0, data
            assert wait_for(lambda: scratch_guests() == [], timeout=30), scratch_guests()

        # kill -9 of the real agent while vzdump runs: started again, it finishes that backup (one
        # backup in the window, no second one) and the hub hears it once.
        def kill9_mid_backup_then_resume():
            for p in procs:
                p.send_signal(signal.SIGTERM)
                p.wait(timeout=60)
            procs.clear()
            call("PUT", f"/api/v1/hosts/{host}/desired", {
                "guests": [{"vmid": 100, "name": "web", "cpu": 2, "memory_mb": 2048, "disk_gb": 8, "run_state": "running",
                            "description": "customer apps: photos, passwords"},
                           {"vmid": 101, "name": "db", "cpu": 1, "memory_mb": 1024, "disk_gb": 8, "run_state": "running"}],
                "storage_policy": {"backup_storage": "pbs-felhom", "backup_hour": 0, "keep_last": 7}})
            call("POST", f"/api/v1/hosts/{host}/desired/publish")
            env = dict(agent_env, FELHOM_AGENT_BACKUP_APP_BOUND_SECONDS="0", FELHOM_AGENT_FAILPOINT="backup.after_vzdump_started")
            r = subprocess.run([agent_bin, "run", "--once", "--config", config], capture_output=True, text=True, timeout=300, env=env)
            assert r.returncode == -9, f"expected SIGKILL at backup.after_vzdump_started, got {r.returncode}: {r.stderr[-800:]}"
            ops = {}
            with open(os.path.join(state, "journal.jsonl")) as f:
                for line in f:
                    e = json.loads(line)
                    ops.setdefault(e["op"], []).append(e)
            open_ops = [op for op, es in ops.items() if es[0]["kind"] == "backup" and es[-1]["step"] not in ("done", "failed")]
            assert len(open_ops) == 1 and ops[open_ops[0]][-1]["step"] == "vzdump", ops
            env = dict(agent_env, FELHOM_AGENT_BACKUP_APP_BOUND_SECONDS="0")
            r = subprocess.run([agent_bin, "run", "--once", "--config", config], capture_output=True, text=True, timeout=300, env=env)
            assert r.returncode == 0, r.stdout + r.stderr
            assert "finished after a restart" in r.stdout + r.stderr, r.stdout + r.stderr

            def completed(vmid):
                return [e for e in call("GET", f"/api/v1/events?host_id={host}&type=backup_completed")["events"] if e["data"]["vmid"] == vmid]
            assert wait_for(lambda: len(completed(101)) == 1, timeout=30), call("GET", f"/api/v1/events?host_id={host}")
            content = pve.get(f"{base}/nodes/pve1/storage/pbs-felhom/content", params={"vmid": 101}).json()["data"]
            assert len(content) == 1 and content[0]["encrypted"] == box_key, content
            assert len(completed(100)) == 1, "100 was not backed up again in the same window"

        # The operator removes the PBS key from the storage (pvesm set --delete encryption-key) and asks
        # for a backup now (POST /requests): the agent refuses it, fail closed, and says why.
        def key_removed_backup_refused():
            r = pve.put(f"{base}/storage/pbs-felhom", data={"delete": "encryption-key"})
            assert r.status_code == 200, r.text
            asked = call("POST", f"/api/v1/hosts/{host}/requests", {"kind": "backup", "vmid": 100})
            assert asked["id"].startswith("req-") and asked["kind"] == "backup", asked
            env = dict(agent_env, FELHOM_AGENT_BACKUP_APP_BOUND_SECONDS="0")
            r = subprocess.run([agent_bin, "run", "--once", "--config", config], capture_output=True, text=True, timeout=300, env=env)
            assert r.returncode == 0, r.stdout + r.stderr

            def failed():
                return [e for e in call("GET", f"/api/v1/events?host_id={host}&type=backup_failed")["events"] if e["data"]["vmid"] == 100]
            assert wait_for(lambda: len(failed()) == 1, timeout=30), r.stdout + r.stderr
            assert failed()[0]["data"]["reason"] == "encryption_key_missing" and failed()[0]["severity"] == "critical", failed()
            content = pve.get(f"{base}/nodes/pve1/storage/pbs-felhom/content", params={"vmid": 100}).json()["data"]
            assert len(content) == 2 and all(c.get("encrypted") == box_key for c in content), "nothing unencrypted was stored"
            # Asked once, acted on once: another run does not try again.
            r = subprocess.run([agent_bin, "run", "--once", "--config", config], capture_output=True, text=True, timeout=300, env=env)
            assert r.returncode == 0 and len(failed()) == 1, r.stdout + r.stderr

        # kill -9 of the agent while a restore test's scratch guest is being restored: the restart
        # destroys the orphan (proved by its journal), reports the interrupted test and runs it again.
        def kill9_mid_restore_test():
            passed_before = len(events("restore_test_passed", 100))
            call("POST", f"/api/v1/hosts/{host}/requests", {"kind": "restore_test", "vmid": 100})
            env = dict(agent_env, FELHOM_AGENT_FAILPOINT="restore_test.after_restore_started")
            r = subprocess.run([agent_bin, "run", "--once", "--config", config], capture_output=True, text=True, timeout=300, env=env)
            assert r.returncode == -9, f"expected SIGKILL at restore_test.after_restore_started, got {r.returncode}: {r.stderr[-800:]}"
            assert len(scratch_guests()) == 1, "the killed test left its scratch guest behind"
            r = subprocess.run([agent_bin, "run", "--once", "--config", config], capture_output=True, text=True, timeout=300, env=agent_env)
            assert r.returncode == 0, r.stdout + r.stderr
            failed = events("restore_test_failed", 100)
            assert wait_for(lambda: len(events("restore_test_failed", 100)) == 1, timeout=30), r.stdout + r.stderr
            assert "interrupted" in events("restore_test_failed", 100)[0]["data"]["reason"], failed
            assert wait_for(lambda: len(events("restore_test_passed", 100)) == passed_before + 1, timeout=30), r.stdout + r.stderr
            assert scratch_guests() == [], scratch_guests()

        # Escrow on the box (issue 15): `escrow init` makes the key, gives it to the PBS storage (through
        # pvesm), shows the recovery code once; the hub holds only the wrapped key; the drill verifies.
        def escrow_init_and_drill():
            import re
            esc = dict(json.load(open(config)))
            esc["backup"] = {"key_file": os.path.join(work, "pbs-felhom.enc")}
            esc_config = os.path.join(work, "agent-escrow.json")
            with open(esc_config, "w") as f:
                json.dump(esc, f)
            r = subprocess.run([agent_bin, "escrow", "init", "--config", esc_config], capture_output=True, text=True, timeout=120, env=agent_env)
            assert r.returncode == 0, r.stdout + r.stderr
            codes = re.findall(r"\b(?:[0-9A-Z]{4}-){4}[0-9A-Z]{4}\b", r.stdout)
            assert len(codes) == 1 and "shown only this once" in r.stdout, r.stdout
            fp = pve.get(f"{base}/storage/pbs-felhom").json()["data"].get("encryption-key")
            assert fp and fp in r.stdout, (fp, r.stdout)
            again = subprocess.run([agent_bin, "escrow", "init", "--config", esc_config], capture_output=True, text=True, timeout=120, env=agent_env)
            assert again.returncode == 0 and "holds the wrapped key already" in again.stdout, again.stdout + again.stderr
            assert not re.search(r"(?:[0-9A-Z]{4}-){4}[0-9A-Z]{4}", again.stdout), "a code is shown only when it is made"
            sheet = os.path.join(work, "recovery-sheet.txt")
            rot = subprocess.run([agent_bin, "escrow", "init", "--rotate", "--sheet", sheet, "--config", esc_config],
                                 capture_output=True, text=True, timeout=120, env=agent_env)
            assert rot.returncode == 0, rot.stdout + rot.stderr
            assert oct(os.stat(sheet).st_mode & 0o777) == "0o400", oct(os.stat(sheet).st_mode)
            sheet_code = re.findall(r"(?:[0-9A-Z]{4}-){4}[0-9A-Z]{4}", open(sheet).read())
            assert len(sheet_code) == 1 and sheet_code[0] not in rot.stdout and sheet_code[0] != codes[0]
            drill = subprocess.run([agent_bin, "escrow", "drill", "--config", esc_config], capture_output=True, text=True, timeout=120, env=agent_env)
            assert drill.returncode == 0 and "verified" in drill.stdout, drill.stdout + drill.stderr
            assert wait_for(lambda: call("GET", f"/api/v1/events?host_id={host}&type=escrow_verified")["events"], timeout=30)
            bundle = call("GET", f"/api/v1/recovery/{host}")
            assert bundle["box_reported"]["wrapped_escrow_key"]["format"] == "felhom-escrow-v1", bundle
            stored = open(f"{work}/hub.sqlite", "rb").read() + (open(f"{work}/hub.sqlite-wal", "rb").read() if os.path.exists(f"{work}/hub.sqlite-wal") else b"")
            key_data = json.load(open(esc["backup"]["key_file"]))["data"]
            for secret in codes + sheet_code + [key_data]:
                assert secret.encode() not in stored and secret.replace("-", "").encode() not in stored, "a secret reached the hub's database"
                assert secret not in json.dumps(bundle)
            for log in logs:
                assert all(secret not in open(log).read() for secret in codes + sheet_code + [key_data]), log

        checks.check("the controller quiesces, the agent backs up encrypted to PBS, the hub hears app-consistent", app_consistent_backup)
        checks.check("then a restore test passes in an isolated scratch guest, which is destroyed", restore_test_passes)
        checks.check("kill -9 of the agent mid-backup: the restart finishes it, once", kill9_mid_backup_then_resume)
        checks.check("PBS key removed: the operator's backup request is refused with encryption_key_missing", key_removed_backup_refused)
        checks.check("kill -9 of the agent mid restore test: the orphan is destroyed, the test runs again", kill9_mid_restore_test)
        checks.check("escrow init on the box: the code shown once, only the wrapped key on the hub, the drill verifies", escrow_init_and_drill)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
        for n in names:
            subprocess.run(["docker", "compose", "-p", n, "down"], capture_output=True, timeout=120)
        hub.close()
    return checks.finish()


if __name__ == "__main__":
    with Simulator(os.path.join(bin_dir, "felhom")) as sim:
        sys.exit(main(sim))
