#!/usr/bin/env python3
"""The disaster-recovery drill with the real executables (issue 15): two `felhom pve-sim` hosts on
one simulated PBS datastore (`--pbs-datastore`, by namespace), `felhom-hub`, `felhom-agent`.

Box A enrolls, sets up its escrow (`escrow init`: the key made on the box, the recovery code shown
once), backs its guests up encrypted, and is lost: the hub (test thresholds) raises node_stale and
node_down. Box B — an empty host on the same customer namespace — enrolls as the same host with a
recovery enrollment token and holds back provisioning (no guest built empty), is refused with a
wrong code (nothing changed), is killed mid-restore, and with the right code restores both guests
from A's backups exactly once; its first agent cycle then finds the desired state in sync.
Usage: dr_drill_test.py BIN_DIR
"""
import json, os, re, subprocess, sys, tempfile

import requests

sys.path.insert(0, os.path.dirname(__file__))
from common import Checks, HubProcess, Simulator, wait_for  # noqa: E402

bin_dir = os.path.abspath(sys.argv[1])
felhom, agent_bin, hub_bin = (os.path.join(bin_dir, n) for n in ("felhom", "felhom-agent", "felhom-hub"))
OP = "dr-drill-operator-key-0123456789abcdef"
NS = "customers/nappali"
HERE = os.path.dirname(os.path.abspath(__file__))


def foreign_code():
    """A valid recovery code (docs/formats.md): 16 random Crockford base32 characters and the first
    20 bits of SHA-256("felhom-recovery-code:" + body) as four more."""
    import hashlib, secrets
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    body = "".join(secrets.choice(alphabet) for _ in range(16))
    d = hashlib.sha256(("felhom-recovery-code:" + body).encode()).digest()
    bits = (d[0] << 12) | (d[1] << 4) | (d[2] >> 4)
    full = body + "".join(alphabet[(bits >> (15 - 5 * i)) & 31] for i in range(4))
    return "-".join(full[i:i + 4] for i in range(0, 20, 4))


def seed(path, keep_guests):
    """The default seed on the customer's namespace, with no PBS key and no backups (and, for the
    replacement box, without the guests)."""
    s = json.loads(subprocess.run([felhom, "pve-sim", "--print-default-seed"], capture_output=True, text=True, check=True).stdout)
    for st in s["storages"]:
        if st["id"] == "pbs-felhom":
            st["namespace"] = NS
            st.pop("encryptionKeyFingerprint", None)
    s["volumes"] = [v for v in s["volumes"] if v["storage"] != "pbs-felhom"]
    if not keep_guests:
        for vmid in ("100", "101"):
            s["containers"].pop(vmid, None)
        s["volumes"] = [v for v in s["volumes"] if not (v.get("vmid") in (100, 101) and v["content"] == "rootdir")]
    with open(path, "w") as f:
        json.dump(s, f)


def main():
    checks = Checks("dr drill")
    work = tempfile.mkdtemp(prefix="felhom-dr-")
    datastore = os.path.join(work, "pbs-datastore.json")
    seed(os.path.join(work, "seed-a.json"), True)
    seed(os.path.join(work, "seed-b.json"), False)
    sim_a = Simulator(felhom, ["--seed", os.path.join(work, "seed-a.json"), "--pbs-datastore", f"felhom={datastore}"])
    sim_b = Simulator(felhom, ["--seed", os.path.join(work, "seed-b.json"), "--pbs-datastore", f"felhom={datastore}"])
    hub = HubProcess(hub_bin, f"sqlite:{work}/hub.sqlite", OP, env={
        "FELHOM_HUB_CHECK_INTERVAL_SECONDS": "1", "FELHOM_HUB_STALE_AFTER_SECONDS": "4", "FELHOM_HUB_DOWN_AFTER_SECONDS": "8"})
    call = hub.call
    state = {}
    try:
        cid = call("POST", "/api/v1/customers", {"name": "Kiss Anna", "email": "a@example.hu", "domain": "kiss.example.hu"})["id"]
        host = call("POST", "/api/v1/hosts", {"customer_id": cid, "name": "nappali"})["id"]
        guests = [{"vmid": 100, "name": "web", "cpu": 2, "memory_mb": 2048, "disk_gb": 8, "run_state": "running"},
                  {"vmid": 101, "name": "db", "cpu": 1, "memory_mb": 1024, "disk_gb": 8, "run_state": "running"}]
        call("PUT", f"/api/v1/hosts/{host}/desired", {"guests": guests, "storage_policy": {"backup_storage": "pbs-felhom", "backup_hour": 0}})
        call("POST", f"/api/v1/hosts/{host}/desired/publish")
        signers = os.path.join(work, "allowed_signers")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", os.path.join(work, "op")], check=True)
        with open(os.path.join(work, "op.pub")) as f, open(signers, "w") as out:
            out.write("operator@felhom " + " ".join(f.read().split()[:2]) + "\n")

        def box(name, sim, recovery=False):
            """A box's directory, agent config (enrollment token for the host) and fake pct/pvesm."""
            d = os.path.join(work, name)
            os.makedirs(os.path.join(d, "bin"))
            root = "root@pam!felhom-root"
            fake = os.path.join(d, "fake-pct.json")
            with open(fake, "w") as f:
                json.dump({"sim_url": f"https://127.0.0.1:{sim.port}/api2/json", "sim_token": f"{root}={sim.tokens[root]}",
                           "sim_cert": os.path.join(sim.work, "sim", "cert.pem"), "controller": "/bin/false", "controller_env": {},
                           "pushed_dir": os.path.join(d, "pushed")}, f)
            for tool in ("pct", "pvesm"):
                os.symlink(os.path.join(HERE, "fake_pct.py"), os.path.join(d, "bin", tool))
            answer = call("POST", f"/api/v1/hosts/{host}/enrollment", {"recovery": True} if recovery else {})
            assert answer.get("recovery") is (True if recovery else None), answer
            token = answer["token"]
            config = os.path.join(d, "agent.json")
            with open(config, "w") as f:
                json.dump({"pve": {"host": "127.0.0.1", "port": sim.port, "node": "pve1", "token_id": "felhom@pve!agent",
                                   "token_secret": sim.tokens["felhom@pve!agent"], "fingerprint": sim.fingerprint},
                           "hub": {"url": hub.url, "enrollment_token": token, "long_poll_seconds": 1},
                           "state_dir": os.path.join(d, "state"), "signers_file": signers, "storage_manifest": False,
                           "provision": {"golden_template": "local:backup/vzdump-lxc-9000-2026_01_01-00_00_00.tar.zst"},
                           "backup": {"key_file": os.path.join(d, "pbs-felhom.enc"), "app_bound_seconds": 0},
                           "restore_test": {"enabled": False}}, f)
            env = dict(os.environ, PATH=os.path.join(d, "bin") + os.pathsep + os.environ["PATH"], FELHOM_FAKE_PCT=fake)
            return d, config, env

        def pve(sim):
            s = requests.Session()
            s.trust_env = False
            s.verify = os.path.join(sim.work, "sim", "cert.pem")
            root = "root@pam!felhom-root"
            s.headers["Authorization"] = f"PVEAPIToken={root}={sim.tokens[root]}"
            return s, f"https://127.0.0.1:{sim.port}/api2/json"

        def agent(config, env, *args, **kw):
            return subprocess.run([agent_bin, *args, "--config", config], capture_output=True, text=True, timeout=300, env=dict(env, **kw))

        def box_a_backs_up_under_its_own_key():
            d, config, env = box("a", sim_a)
            r = agent(config, env, "escrow", "init")
            assert r.returncode == 0, r.stdout + r.stderr
            codes = re.findall(r"\b(?:[0-9A-Z]{4}-){4}[0-9A-Z]{4}\b", r.stdout)
            assert len(codes) == 1, r.stdout
            state["code"] = codes[0]
            r = agent(config, env, "run", "--once")
            assert r.returncode == 0, r.stdout + r.stderr
            s, base = pve(sim_a)
            content = s.get(f"{base}/nodes/pve1/storage/pbs-felhom/content").json()["data"]
            fp = s.get(f"{base}/storage/pbs-felhom").json()["data"]["encryption-key"]
            assert sorted(c["vmid"] for c in content) == [100, 101] and all(c["encrypted"] == fp for c in content), (content, r.stdout + r.stderr)
            stored = json.load(open(datastore))["snapshots"]
            assert {x["namespace"] for x in stored} == {NS} and len(stored) == 2, stored
            state["fingerprint"] = fp
            def count(kind):
                return len(call("GET", f"/api/v1/events?host_id={host}&type={kind}")["events"])
            before = {kind: count(kind) for kind in ("node_stale", "node_down")}
            sim_a.close()  # box A is lost: the hub notices (test thresholds: stale 4 s, down 8 s)
            for kind in ("node_stale", "node_down"):
                assert wait_for(lambda: count(kind) > before[kind], timeout=30), f"no new {kind} after the box was lost"

        def box_b_enrolled_for_recovery_holds_back():
            d, config, env = box("b", sim_b, recovery=True)
            state["b"] = (d, config, env)
            # Started before `recover` (with no backup section: no PBS key yet on this box).
            early = os.path.join(d, "agent-early.json")
            with open(config) as f, open(early, "w") as out:
                c = json.load(f)
                c.pop("backup")
                json.dump(c, out)
            r = agent(early, env, "run", "--once")
            assert r.returncode == 0, r.stdout + r.stderr
            s, base = pve(sim_b)
            assert [g for g in s.get(f"{base}/nodes/pve1/lxc").json()["data"] if g["vmid"] in (100, 101)] == [], "nothing built empty"
            events = call("GET", f"/api/v1/events?host_id={host}&type=recovery_pending")["events"]
            assert len(events) == 1, events
            enrolled = call("GET", f"/api/v1/events?host_id={host}&type=host_enrolled")["events"]
            assert any(e["data"].get("recovery") is True for e in enrolled), enrolled

        def wrong_code_changes_nothing():
            d, config, env = state["b"]
            wrong = os.path.join(d, "wrong-code")
            with open(wrong, "w") as f:
                f.write("0000-0000-0000-0000-0000\n")
            r = agent(config, env, "recover", "--code-file", wrong)
            assert r.returncode == 1 and "recovery code" in r.stderr, r.stdout + r.stderr
            # A well-formed code (its check characters right) that is not the customer's: it passes
            # the typo check, then the envelope does not open.
            other = os.path.join(d, "other-code")
            with open(other, "w") as f:
                f.write(foreign_code() + "\n")
            r = agent(config, env, "recover", "--code-file", other)
            assert r.returncode == 1 and "unwrap_failed" in r.stderr, r.stdout + r.stderr
            assert not os.path.exists(os.path.join(d, "pbs-felhom.enc"))
            s, base = pve(sim_b)
            assert [g for g in s.get(f"{base}/nodes/pve1/lxc").json()["data"] if g["vmid"] in (100, 101)] == []
            assert "encryption-key" not in s.get(f"{base}/storage/pbs-felhom").json()["data"]

        def killed_mid_restore_then_recovered_once():
            d, config, env = state["b"]
            right = os.path.join(d, "code")
            with open(right, "w") as f:
                f.write(state["code"].lower().replace("-", " ") + "\n")  # typed carelessly: still read
            r = agent(config, env, "recover", "--code-file", right, FELHOM_AGENT_FAILPOINT="dr.after_restore_started")
            assert r.returncode == -9, f"expected SIGKILL at dr.after_restore_started, got {r.returncode}: {r.stdout}{r.stderr}"
            r = agent(config, env, "recover", "--code-file", right)
            assert r.returncode == 0 and "every guest came back" in r.stdout, r.stdout + r.stderr
            s, base = pve(sim_b)
            running = {g["vmid"]: g["status"] for g in s.get(f"{base}/nodes/pve1/lxc").json()["data"]}
            assert running.get(100) == "running" and running.get(101) == "running", running
            tasks = s.get(f"{base}/nodes/pve1/tasks", params={"typefilter": "vzrestore", "limit": 100}).json()["data"]
            per_guest = sorted(t["id"] for t in tasks)
            assert per_guest == ["100", "101"], f"each guest restored once: {per_guest}"
            assert s.get(f"{base}/storage/pbs-felhom").json()["data"]["encryption-key"] == state["fingerprint"]
            events = call("GET", f"/api/v1/events?host_id={host}&type=dr_recovered")["events"]
            assert len(events) == 1 and events[0]["data"]["complete"] is True, events

        def the_new_box_runs_in_sync():
            d, config, env = state["b"]
            r = agent(config, env, "run", "--once")
            assert r.returncode == 0, r.stdout + r.stderr
            assert "provisioning" not in r.stdout + r.stderr, "no guest was provisioned empty"
            assert not os.path.exists(os.path.join(d, "state", "recovery-pending")), "recover lifted the hold"
            assert wait_for(lambda: call("GET", f"/api/v1/hosts/{host}/drift")["in_sync"], timeout=30), call("GET", f"/api/v1/hosts/{host}/drift")
            r = agent(config, env, "escrow", "drill")
            assert r.returncode == 0 and "verified" in r.stdout, r.stdout + r.stderr

        checks.check("box A: escrow init, encrypted backups of both guests to the shared datastore, then lost (node_stale, node_down)", box_a_backs_up_under_its_own_key)
        checks.check("box B: enrolled with a recovery token, it builds nothing until recovered", box_b_enrolled_for_recovery_holds_back)
        checks.check("box B: a wrong or another code is refused and changes nothing", wrong_code_changes_nothing)
        checks.check("box B: kill -9 mid-restore, then every guest restored exactly once", killed_mid_restore_then_recovered_once)
        checks.check("box B: the agent's first cycle finds the desired state in sync; the escrow drill verifies", the_new_box_runs_in_sync)
    finally:
        hub.close()
        sim_a.close()
        sim_b.close()
    return checks.finish()


if __name__ == "__main__":
    sys.exit(main())
