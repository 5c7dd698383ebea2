#!/usr/bin/env python3
"""Crash safety of the real agent process: kill -9 at every step of a provision, restart, converge.

Runs `felhom pve-sim` and `felhom-hub serve` (SQLite) as processes, enrolls an agent, then for
each provision step publishes one new guest and runs `felhom-agent run --once` with
FELHOM_AGENT_FAILPOINT set to that step: the agent SIGKILLs itself right after journaling it.
A second `run --once` must finish the operation: the guest exists exactly once, running, with the
desired config and no lock; no other guest or disk appeared (no orphan); the journal shows the
operation done; the hub's drift view is in sync. Prints `N passed, N failed`.
Usage: agent_crash_test.py BIN_DIR
"""
import json, os, subprocess, sys

from common import Checks, HubProcess, RootPVE, Simulator

bin_dir = sys.argv[1]
felhom, agent_bin, hub_bin = (os.path.join(bin_dir, n) for n in ("felhom", "felhom-agent", "felhom-hub"))
OP = "crash-test-operator-key-0123456789abcdef"
STEPS = ["provision.after_begin", "provision.after_restore_started", "provision.after_restored",
         "provision.after_configured", "provision.after_started", "provision.after_token"]


def main(sim):
    checks = Checks("agent crash")
    work = sim.work
    # The agent is started again and again within seconds (each run reports, and reports again
    # once it applied the generation): more than an agent's per-key report budget of 12 a minute.
    hub = HubProcess(hub_bin, f"sqlite:{work}/hub.sqlite", OP, env={"FELHOM_HUB_RATE_LIMIT_REPORTS_PER_MINUTE": "0"})
    hport, call = hub.port, hub.call
    try:
        pve = RootPVE(sim)
        containers, disks = pve.containers, pve.disks

        cid = call("POST", "/api/v1/customers", {"name": "Kiss Anna", "email": "a@example.hu", "domain": "kiss.example.hu"})["id"]
        host = call("POST", "/api/v1/hosts", {"customer_id": cid, "name": "nappali"})["id"]
        token = call("POST", f"/api/v1/hosts/{host}/enrollment")["token"]
        key = os.path.join(work, "operator")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
        with open(key + ".pub") as f:
            pub = " ".join(f.read().split()[:2])
        signers = os.path.join(work, "allowed_signers")
        with open(signers, "w") as f:
            f.write(f"operator@felhom {pub}\n")
        state = os.path.join(work, "agent-state")
        config = os.path.join(work, "agent.json")
        with open(config, "w") as f:
            json.dump({"pve": {"host": "127.0.0.1", "port": sim.port, "node": "pve1", "token_id": "felhom@pve!agent",
                               "token_secret": sim.tokens["felhom@pve!agent"], "fingerprint": sim.fingerprint},
                       "hub": {"url": f"http://127.0.0.1:{hport}", "enrollment_token": token},
                       "state_dir": state, "signers_file": signers,
                       "provision": {"golden_template": "local:backup/vzdump-lxc-9000-2026_01_01-00_00_00.tar.zst"}}, f)

        guests = [{"vmid": 100, "name": "web", "cpu": 2, "memory_mb": 2048, "disk_gb": 8, "run_state": "running",
                   "description": "customer apps: photos, passwords"},
                  {"vmid": 101, "name": "db", "cpu": 1, "memory_mb": 1024, "disk_gb": 8, "run_state": "stopped"}]

        def publish():
            call("PUT", f"/api/v1/hosts/{host}/desired", {"guests": guests})
            return call("POST", f"/api/v1/hosts/{host}/desired/publish")["generation"]

        def agent(failpoint=None):
            env = dict(os.environ)
            env.pop("FELHOM_AGENT_FAILPOINT", None)
            if failpoint:
                env["FELHOM_AGENT_FAILPOINT"] = failpoint
            return subprocess.run([agent_bin, "run", "--once", "--config", config], capture_output=True, text=True, timeout=300, env=env)

        def journal():
            ops = {}
            with open(os.path.join(state, "journal.jsonl")) as f:
                for line in f:
                    e = json.loads(line)
                    ops.setdefault(e["op"], []).append(e)
            return ops

        def enroll_and_converge():
            publish()
            r = agent()
            assert r.returncode == 0, r.stdout + r.stderr
            assert "enrolled as host" in r.stdout + r.stderr
            assert sim.tokens["felhom@pve!agent"] not in r.stdout + r.stderr
            assert call("GET", f"/api/v1/hosts/{host}/drift")["in_sync"] is True

        checks.check("enroll and converge with nothing to do", enroll_and_converge)

        for i, step in enumerate(STEPS):
            vmid = 130 + i

            def crash_and_resume(step=step, vmid=vmid):
                before = set(containers())
                disks_before = disks()
                guests.append({"vmid": vmid, "name": f"app{i}", "cpu": 1, "memory_mb": 768, "disk_gb": 4, "run_state": "running",
                               "description": f"crash test {step}"})
                publish()
                r = agent(step)
                assert r.returncode == -9, f"expected SIGKILL at {step}, got {r.returncode}: {r.stderr[-500:]}"
                ops = [op for op, es in journal().items() if es[0]["data"].get("vmid") == str(vmid)]
                assert len(ops) == 1 and journal()[ops[0]][-1]["step"] not in ("done", "compensated", "failed"), journal()[ops[0]]
                r = agent()
                assert r.returncode == 0, r.stdout + r.stderr
                cs = containers()
                assert set(cs) == before | {vmid}, f"guests {sorted(cs)} (expected {sorted(before | {vmid})})"
                c = cs[vmid]
                assert c["status"] == "running" and not c.get("lock"), c
                cfg = pve.get(f"/nodes/pve1/lxc/{vmid}/config")
                assert int(cfg["memory"]) == 768 and cfg["hostname"] == f"app{i}" and "nesting=1" in cfg.get("features", ""), cfg
                assert cfg["description"].rstrip("\n") == f"crash test {step}", cfg
                new_disks = sorted(set(disks()) - set(disks_before))
                assert new_disks == [f"local-lvm:vm-{vmid}-disk-0"], f"disks added: {new_disks}"
                entries = journal()[ops[0]]
                assert entries[-1]["step"] == "done", entries
                assert [e["step"] for e in entries].count("restore_started") <= 1, "restore ran twice"
                assert os.path.exists(os.path.join(state, "guest-tokens", f"{vmid}.token"))
                assert call("GET", f"/api/v1/hosts/{host}/drift")["in_sync"] is True

            checks.check(f"kill -9 at {step}: resumed, one guest, no orphan", crash_and_resume)

        def torn_journal_line():
            with open(os.path.join(state, "journal.jsonl"), "a") as f:
                f.write('{"op":"provision-999-x","kind":"provision","st')
            r = agent()
            assert r.returncode == 0, r.stdout + r.stderr
            with open(os.path.join(state, "journal.jsonl")) as f:
                assert all(line.endswith("\n") for line in f), "torn line kept"

        checks.check("a torn journal line is skipped", torn_journal_line)

        def sigterm_stops_cleanly():
            import signal, time
            p = subprocess.Popen([agent_bin, "run", "--config", config], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            time.sleep(3)  # one cycle, then it sits in a long-poll
            assert p.poll() is None, p.stdout.read()
            t = time.time()
            p.send_signal(signal.SIGTERM)
            out, _ = p.communicate(timeout=20)
            assert p.returncode == 0, out
            assert time.time() - t < 10, "took too long to stop"
            assert "agent stopped" in out, out

        checks.check("SIGTERM stops the running agent cleanly", sigterm_stops_cleanly)
    finally:
        hub.close()
    return checks.finish()


with Simulator(felhom) as simulator:
    status = main(simulator)
sys.exit(status)
