#!/usr/bin/env python3
"""Fault injection: the real agent killed -9 at random moments across provision, reconcile, signed
ops, backups and restore tests, KILLS times; after each kill a clean run must converge.

`felhom pve-sim` and `felhom-hub serve` (SQLite) run as processes. Each round makes one change on
the hub, chosen at random: a new guest (provision), a changed guest (memory, run state: reconcile),
a guest taken out of the desired state and destroyed by an operator-signed `guest.destroy`
(signed with a key made by ssh-keygen, through `felhom sign --op`), an operator's backup request
(`POST /requests` kind backup) or restore-test request (kind restore_test). The storage policy
backs every running guest up daily to the simulated PBS storage (crash-consistent at once:
`app_bound_seconds` 0), and a guest's first backup is restore-tested. Restore tests read the scratch
guest's apps through scripts/interop/fake_pct.py from the real felhom-controller over the real
Docker engine (one stack). Then `felhom-agent run --once` starts and is sent SIGKILL after a random
delay up to the length of the last clean run, and a clean `run --once` follows. After every round:

- the box's guests are exactly the desired ones, each once, in its run state, unlocked, with the
  desired memory, and exactly one disk each: no duplicate, no orphan;
- every operation in the journal is finished, and no provision restored twice;
- every signed op is applied exactly once (never replayed: one journal operation per op) and the
  hub's drift view is in sync;
- backups: per guest, the backups PBS holds are exactly the journal's finished backups (none
  twice, none unrecorded), `backup_completed` posted exactly once for each, every backup request
  answered by exactly one journaled backup;
- restore tests: no scratch guest or disk left, none queued or in flight, each restore-test request
  (and each interrupted test) ends in exactly one more passed test of that guest, and
  `restore_test_passed` is posted exactly once for each (a kill before the post: the next run says it
  again, under the journal op as its idempotency key).

Prints the kills that landed mid-run and `N passed, N failed`.
Usage: agent_random_kill_soak.py BIN_DIR [KILLS=200] [SEED]
(Docker must be running: scripts/docker-engine.)
"""
import json, os, random, signal, subprocess, sys, time, uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import Checks, HubProcess, RootPVE, Simulator, compose_state  # noqa: E402

bin_dir = sys.argv[1]
kills = int(sys.argv[2]) if len(sys.argv) > 2 else 200
seed = int(sys.argv[3]) if len(sys.argv) > 3 else int(time.time())
rng = random.Random(seed)
felhom, agent_bin, hub_bin, controller_bin = (os.path.join(bin_dir, n) for n in ("felhom", "felhom-agent", "felhom-hub", "felhom-controller"))
IMAGE = os.environ.get("FELHOM_TEST_IMAGE", "felhom/busybox:1")
POLICY = {"backup_storage": "pbs-felhom", "backup_hour": 0, "keep_last": 1000}
OP = "soak-operator-key-0123456789abcdef01"


def main(sim):
    checks = Checks(f"agent random kill -9 (seed {seed})")
    work = sim.work
    stack = "k" + uuid.uuid4().hex[:6]
    lost_events = [0]
    last_output = [""]
    hub = HubProcess(hub_bin, f"sqlite:{work}/hub.sqlite", OP, env={"FELHOM_HUB_RATE_LIMIT_REPORTS_PER_MINUTE": "0",
                                                                        # every run is a new process: op_refused, backups, restore tests
                                                                        "FELHOM_HUB_RATE_LIMIT_EVENTS_PER_MINUTE": "0"})
    call = hub.call
    pve = RootPVE(sim)
    try:
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
        box_key = pve.get("/storage/pbs-felhom")["encryption-key"]
        with open(config, "w") as f:
            json.dump({"pve": {"host": "127.0.0.1", "port": sim.port, "node": "pve1", "token_id": "felhom@pve!agent",
                               "token_secret": sim.tokens["felhom@pve!agent"], "fingerprint": sim.fingerprint},
                       "hub": {"url": hub.url, "enrollment_token": token},
                       "state_dir": state, "signers_file": signers,
                       "provision": {"golden_template": "local:backup/vzdump-lxc-9000-2026_01_01-00_00_00.tar.zst"},
                       "backup": {"key_fingerprint": box_key, "app_bound_seconds": 0},
                       "restore_test": {"every_days": 7, "health_timeout_seconds": 60}}, f)
        # Restore tests ask the scratch guest's controller through `pct exec`: fake_pct.py answers
        # with the real controller, whose one stack runs on the real Docker engine.
        stacks_dir = os.path.join(work, "stacks")
        os.makedirs(os.path.join(stacks_dir, stack))
        with open(os.path.join(stacks_dir, stack, "compose.yaml"), "w") as f:
            f.write(f"services:\n  app:\n    image: {IMAGE}\n    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; sleep 36000 & wait\"]\n"
                    "    stop_grace_period: 1s\n")
        cenv = {"FELHOM_CONTROLLER_STACKS_DIR": stacks_dir, "FELHOM_CONTROLLER_STATE_DIR": os.path.join(work, "ctl-state")}
        r = subprocess.run([controller_bin, "stacks", "deploy", stack], env=dict(os.environ, **cenv), capture_output=True, text=True, timeout=180)
        assert r.returncode == 0, r.stdout + r.stderr
        fake_bin = os.path.join(work, "bin")
        os.makedirs(fake_bin)
        os.symlink(os.path.join(os.path.dirname(os.path.abspath(__file__)), "fake_pct.py"), os.path.join(fake_bin, "pct"))
        fake_cfg = os.path.join(work, "fake-pct.json")
        with open(fake_cfg, "w") as f:
            json.dump({"sim_url": pve.base, "sim_token": pve.session.headers["Authorization"].split("=", 1)[1], "sim_cert": pve.session.verify,
                       "controller": controller_bin, "controller_env": cenv, "pushed_dir": os.path.join(work, "pushed")}, f)
        agent_env = dict(os.environ, PATH=fake_bin + os.pathsep + os.environ["PATH"], FELHOM_FAKE_PCT=fake_cfg)
        requests_made = {"backup": [], "restore_test": []}  # (request id, vmid)
        tests_expected = {}  # vmid -> passed restore tests the journal must hold
        preexisting = set(containers())  # the simulator's own guests, not Felhom's
        guests = {}  # vmid -> desired guest
        signed_ops = []  # ids of signed destroy ops
        landed = {"provision": 0, "reconcile": 0, "destroy": 0, "backup": 0, "restore_test": 0}
        last_clean = [3.0]

        def publish():
            call("PUT", f"/api/v1/hosts/{host}/desired", {"guests": sorted(guests.values(), key=lambda g: g["vmid"]), "storage_policy": POLICY})
            return call("POST", f"/api/v1/hosts/{host}/desired/publish")["generation"]

        def agent(kill_after=None):
            started = time.time()
            p = subprocess.Popen([agent_bin, "run", "--once", "--config", config], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                 env=agent_env)
            try:
                out, _ = p.communicate(timeout=kill_after) if kill_after is not None else p.communicate(timeout=300)
            except subprocess.TimeoutExpired:
                p.send_signal(signal.SIGKILL)
                out, _ = p.communicate()
            if kill_after is None:
                last_output[0] = out
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
            drift = call("GET", f"/api/v1/hosts/{host}/drift")
            assert drift["in_sync"] is True, f"drift view not in sync: {[g for g in drift['guests'] if g['state'] not in ('in_sync', 'unexpected')]}" \
                f"\n--- the last clean run ---\n{last_output[0][-3000:]}"
            # Backups: PBS holds exactly the journal's finished backups, each posted at most once.
            stored = {}
            for v in pve.get("/nodes/pve1/storage/pbs-felhom/content"):
                if v.get("vmid") is not None and int(v["vmid"]) not in preexisting:
                    stored[int(v["vmid"])] = stored.get(int(v["vmid"]), 0) + 1
            finished = {}
            for op, es in ops.items():
                if es[0]["kind"] == "backup" and es[-1]["step"] == "done":
                    vmid = int(op.split("-")[1])
                    finished[vmid] = finished.get(vmid, 0) + 1
            assert stored == finished, f"backups on PBS {stored}, finished in the journal {finished}"
            posted = {}
            for e in call("GET", f"/api/v1/events?host_id={host}&type=backup_completed&limit=1000")["events"]:
                posted[int(e["data"]["vmid"])] = posted.get(int(e["data"]["vmid"]), 0) + 1
            twice = {v: n for v, n in posted.items() if n > finished.get(v, 0)}
            assert not twice, f"backup_completed posted more often than backups were made: {twice} vs {finished}"
            # Exactly once: a kill between the journal's done and the post is said again by the next
            # run (the event's idempotency_key is the journal op), never lost.
            lost_events[0] = sum(finished.values()) - sum(posted.values())
            assert posted == finished, f"backup_completed posted {posted}, backups finished {finished}"
            for req, vmid in requests_made["backup"]:
                answered = [op for op in ops if op == f"backup-{vmid}-{req}"]
                assert len(answered) == 1 or vmid not in guests, f"backup request {req} of {vmid}: journal operations {answered}"
            # Restore tests: nothing queued, every requested or interrupted test passed exactly once more.
            queued = os.path.join(state, "restore-tests-queued.json")
            assert not os.path.exists(queued) or json.load(open(queued)) == [], f"restore tests still queued: {open(queued).read()}"
            passed = {}
            for op, es in ops.items():
                if es[0]["kind"] == "restore-test" and es[-1]["step"] == "done" and es[-1]["data"].get("passed") == "1":
                    vmid = int(es[-1]["data"]["vmid"])
                    passed[vmid] = passed.get(vmid, 0) + 1
            for vmid, n in tests_expected.items():
                assert passed.get(vmid, 0) == n, f"guest {vmid}: {passed.get(vmid, 0)} passed restore tests, expected {n}"
            said = {}
            for e in call("GET", f"/api/v1/events?host_id={host}&type=restore_test_passed&limit=1000")["events"]:
                said[int(e["data"]["vmid"])] = said.get(int(e["data"]["vmid"]), 0) + 1
            assert said == passed, f"restore_test_passed posted {said}, restore tests passed {passed} (each exactly once)"

        def passed_tests():
            out = {}
            for op, es in journal().items():
                if es[0]["kind"] == "restore-test" and es[-1]["step"] == "done" and es[-1]["data"].get("passed") == "1":
                    out[int(es[-1]["data"]["vmid"])] = out.get(int(es[-1]["data"]["vmid"]), 0) + 1
            return out

        def backed_up(vmid):
            return any(es[0]["kind"] == "backup" and es[-1]["step"] == "done" and op.startswith(f"backup-{vmid}-") for op, es in journal().items())

        def first_run():
            publish()
            code, out, took = agent()
            assert code == 0, out[-2000:]
            last_clean[0] = max(1.0, took)
            converged()

        checks.check("enroll and converge", first_run)
        next_vmid = 200
        for round_no in range(kills):
            kind = rng.choice(["provision", "reconcile", "reconcile", "destroy", "backup", "restore_test"])
            running = sorted(v for v, g in guests.items() if g["run_state"] == "running")
            if kind == "backup" and not running or kind == "restore_test" and not [v for v in guests if backed_up(v)]:
                kind = "reconcile"
            if not guests or kind == "destroy" and len(guests) < 2:
                kind = "provision"
            if kind == "provision" and len(guests) >= 6:  # keep the box small: a destroy instead
                kind = "destroy"

            def round_(kind=kind, round_no=round_no):
                nonlocal next_vmid
                op_id = None
                before = passed_tests()
                first_backup = {v for v in guests if not backed_up(v)}
                if kind == "backup":
                    vmid = rng.choice(running)
                    req = call("POST", f"/api/v1/hosts/{host}/requests", {"kind": "backup", "vmid": vmid})
                    requests_made["backup"].append((req["id"], vmid))
                elif kind == "restore_test":
                    vmid = rng.choice(sorted(v for v in guests if backed_up(v)))
                    req = call("POST", f"/api/v1/hosts/{host}/requests", {"kind": "restore_test", "vmid": vmid})
                    requests_made["restore_test"].append((req["id"], vmid))
                    tests_expected[vmid] = before.get(vmid, 0) + 1
                elif kind == "provision":
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
                # A guest's first backup is restore-tested once (a kill mid-test: once more, after the interrupted one).
                for v in first_backup:
                    if v in guests and backed_up(v):
                        tests_expected[v] = before.get(v, 0) + 1
                converged()

            checks.check(f"round {round_no + 1}: {kind}, kill -9, converge", round_)
            if checks.failed:
                break
        print(f"  kills that landed mid-run: {landed} of {kills} rounds")
        print(f"  backups made {sum(1 for es in journal().values() if es[0]['kind'] == 'backup' and es[-1]['step'] == 'done')}, "
              f"restore tests passed {sum(passed_tests().values())}, backup_completed events missing {lost_events[0]}")
    finally:
        hub.close()
        subprocess.run(["docker", "compose", "-p", stack, "down"], capture_output=True, timeout=120)
    return checks.finish()


with Simulator(felhom) as simulator:
    status = main(simulator)
sys.exit(status)
