#!/usr/bin/env python3
"""Fault injection: the real agent killed -9 at random moments across provision, reconcile and
signed ops, KILLS times; after each kill a clean run must converge.

`felhom pve-sim` and `felhom-hub serve` (SQLite) run as processes. Each round makes one change on
the hub, chosen at random: a new guest (provision), a changed guest (memory, run state: reconcile),
or a guest taken out of the desired state and destroyed by an operator-signed `guest.destroy`
(signed with a key made by ssh-keygen, through `felhom sign --op`). Then `felhom-agent run --once`
starts and is sent SIGKILL after a random delay up to the length of the last clean run, and a clean
`run --once` follows. After every round:

- the box's guests are exactly the desired ones, each once, in its run state, unlocked, with the
  desired memory, and exactly one disk each: no duplicate, no orphan;
- every operation in the journal is finished, and no provision restored twice;
- every signed op is applied exactly once (never replayed: one journal operation per op) and the
  hub's drift view is in sync.

Prints the kills that landed mid-run and `N passed, N failed`.
Usage: agent_random_kill_soak.py BIN_DIR [KILLS=200] [SEED]
"""
import json, os, random, signal, subprocess, sys, time

from common import Checks, HubProcess, RootPVE, Simulator

bin_dir = sys.argv[1]
kills = int(sys.argv[2]) if len(sys.argv) > 2 else 200
seed = int(sys.argv[3]) if len(sys.argv) > 3 else int(time.time())
rng = random.Random(seed)
felhom, agent_bin, hub_bin = (os.path.join(bin_dir, n) for n in ("felhom", "felhom-agent", "felhom-hub"))
OP = "soak-operator-key-0123456789abcdef01"


def main(sim):
    checks = Checks(f"agent random kill -9 (seed {seed})")
    work = sim.work
    hub = HubProcess(hub_bin, f"sqlite:{work}/hub.sqlite", OP, env={"FELHOM_HUB_RATE_LIMIT_REPORTS_PER_MINUTE": "0"})
    call = hub.call
    try:
        pve = RootPVE(sim)
        containers, disks = pve.containers, pve.disks

        cid = call("POST", "/api/v1/customers", {"name": "Soak", "email": "s@example.hu", "domain": "soak.example.hu"})["id"]
        host = call("POST", "/api/v1/hosts", {"customer_id": cid, "name": "soak"})["id"]
        token = call("POST", f"/api/v1/hosts/{host}/enrollment")["token"]
        key = os.path.join(work, "operator")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "soak@felhom", "-f", key], check=True)
        with open(key + ".pub") as f:
            pub = f.read().strip()
        call("POST", "/api/v1/operator-keys", {"public_key": pub})
        signers = os.path.join(work, "allowed_signers")
        with open(signers, "w") as f:
            f.write(f"operator@felhom {' '.join(pub.split()[:2])}\n")
        state = os.path.join(work, "agent-state")
        config = os.path.join(work, "agent.json")
        with open(config, "w") as f:
            json.dump({"pve": {"host": "127.0.0.1", "port": sim.port, "node": "pve1", "token_id": "felhom@pve!agent",
                               "token_secret": sim.tokens["felhom@pve!agent"], "fingerprint": sim.fingerprint},
                       "hub": {"url": hub.url, "enrollment_token": token},
                       "state_dir": state, "signers_file": signers,
                       "provision": {"golden_template": "local:backup/vzdump-lxc-9000-2026_01_01-00_00_00.tar.zst"}}, f)
        preexisting = set(containers())  # the simulator's own guests, not Felhom's
        guests = {}  # vmid -> desired guest
        signed_ops = []  # ids of signed destroy ops
        landed = {"provision": 0, "reconcile": 0, "destroy": 0}
        last_clean = [3.0]

        def publish():
            call("PUT", f"/api/v1/hosts/{host}/desired", {"guests": sorted(guests.values(), key=lambda g: g["vmid"])})
            return call("POST", f"/api/v1/hosts/{host}/desired/publish")["generation"]

        def agent(kill_after=None):
            started = time.time()
            p = subprocess.Popen([agent_bin, "run", "--once", "--config", config], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            try:
                out, _ = p.communicate(timeout=kill_after) if kill_after is not None else p.communicate(timeout=300)
            except subprocess.TimeoutExpired:
                p.send_signal(signal.SIGKILL)
                out, _ = p.communicate()
            return p.returncode, out, time.time() - started

        def journal():
            ops = {}
            path = os.path.join(state, "journal.jsonl")
            if os.path.exists(path):
                with open(path) as f:
                    for line in f:
                        e = json.loads(line)
                        ops.setdefault(e["op"], []).append(e)
            return ops

        def converged():
            cs = {v: c for v, c in containers().items() if v not in preexisting}
            assert set(cs) == set(guests), f"guests on the box {sorted(cs)}, desired {sorted(guests)}"
            for vmid, g in guests.items():
                c = cs[vmid]
                assert c["status"] == g["run_state"] and not c.get("lock"), (vmid, c)
                cfg = pve.get(f"/nodes/pve1/lxc/{vmid}/config")
                assert int(cfg["memory"]) == g["memory_mb"], (vmid, cfg["memory"], g["memory_mb"])
            ours = [d for d in disks() if not any(d.startswith(f"local-lvm:vm-{v}-") for v in preexisting)]
            assert ours == sorted(f"local-lvm:vm-{v}-disk-0" for v in guests), f"disks {ours}"
            ops = journal()
            unfinished = {op: es[-1]["step"] for op, es in ops.items() if es[-1]["step"] not in ("done", "compensated", "failed")}
            assert not unfinished, f"operations left in flight: {unfinished}"
            for op, es in ops.items():
                assert [e["step"] for e in es].count("restore_started") <= 1, f"{op} restored twice"
            for op_id in signed_ops:
                st = call("GET", f"/api/v1/signed-ops/{op_id}")
                assert st["status"] == "applied", (op_id, st["status"], st.get("reason"))
                assert len([op for op in ops if op_id in op]) == 1, f"signed op {op_id} has {len([op for op in ops if op_id in op])} journal operations"
            assert call("GET", f"/api/v1/hosts/{host}/drift")["in_sync"] is True, "drift view not in sync"

        def first_run():
            publish()
            code, out, took = agent()
            assert code == 0, out[-2000:]
            last_clean[0] = max(1.0, took)
            converged()

        checks.check("enroll and converge", first_run)
        next_vmid = 200
        for round_no in range(kills):
            kind = rng.choice(["provision", "reconcile", "reconcile", "destroy"])
            if not guests or kind == "destroy" and len(guests) < 2:
                kind = "provision"
            if kind == "provision" and len(guests) >= 6:  # keep the box small: a destroy instead
                kind = "destroy"

            def round_(kind=kind, round_no=round_no):
                nonlocal next_vmid
                op_id = None
                if kind == "provision":
                    guests[next_vmid] = {"vmid": next_vmid, "name": f"g{next_vmid}", "cpu": 1, "memory_mb": 512, "disk_gb": 4,
                                         "run_state": "running", "description": f"soak {round_no}"}
                    next_vmid += 1
                    publish()
                elif kind == "reconcile":
                    g = guests[rng.choice(sorted(guests))]
                    g["memory_mb"] = rng.choice([256, 384, 512, 640, 768])
                    g["run_state"] = rng.choice(["running", "stopped"])
                    publish()
                else:
                    vmid = rng.choice(sorted(guests))
                    del guests[vmid]
                    publish()
                    code, out, _ = agent()  # the box learns it is no longer desired (kept until signed)
                    assert code == 0, out[-2000:]
                    op_id = call("POST", "/api/v1/signed-ops", {"host_id": host, "guest_id": str(vmid), "op": "guest.destroy"})["id"]
                    r = subprocess.run([felhom, "sign", "--hub", hub.url, "--key", key, "--op", op_id], capture_output=True, text=True,
                                       env=dict(os.environ, FELHOM_OPERATOR_KEY=OP), timeout=60)
                    assert r.returncode == 0, r.stdout + r.stderr
                    signed_ops.append(op_id)
                code, out, _ = agent(kill_after=rng.uniform(0, last_clean[0]))
                if code == -9:
                    landed[kind] += 1
                code, out, took = agent()
                assert code == 0, out[-2000:]
                if took > 0.5:
                    last_clean[0] = took
                if op_id and call("GET", f"/api/v1/signed-ops/{op_id}")["status"] != "applied":
                    code, out, _ = agent()  # a kill after the destroy but before the report: the next run reports it
                    assert code == 0, out[-2000:]
                converged()

            checks.check(f"round {round_no + 1}: {kind}, kill -9, converge", round_)
            if checks.failed:
                break
        print(f"  kills that landed mid-run: {landed} of {kills} rounds")
    finally:
        hub.close()
    return checks.finish()


with Simulator(felhom) as simulator:
    status = main(simulator)
sys.exit(status)
