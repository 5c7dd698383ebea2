#!/usr/bin/env python3
"""Fault injection: the leader of two `felhom-hub serve` replicas on one PostgreSQL is killed with
SIGKILL again and again while hosts fall stale and recover.

Two replicas share a database; the one holding the checkers' advisory lock (the leader) runs the
liveness checks. Every ROUND_SECONDS the leader (the replica that logged taking the lock) is
killed -9 and a fresh replica started, ROUNDS times; four hosts pause past the stale threshold and
come back throughout, reporting to whichever replica answers. Afterwards each host has exactly one
`node_stale` per pause and one `node_recovered` per return, in alternation (a transition in flight
when the leader died is emitted once, by the next leader), and after every kill another replica
took over.

Prints `N passed, N failed`. Usage: hub_leader_kill_test.py BIN_DIR POSTGRES_URL [ROUNDS=5] [ROUND_SECONDS=10]
"""
import os, random, signal, subprocess, sys, threading, time, uuid
from urllib.parse import urlsplit, urlunsplit

from common import Checks, HubProcess, PausingHosts, host_report, post_report

bin_dir, base_url = sys.argv[1], sys.argv[2]
rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 5
round_seconds = float(sys.argv[4]) if len(sys.argv) > 4 else 10
hub_bin = os.path.join(bin_dir, "felhom-hub")
OP = "leader-kill-operator-key-0123456789"
STALE, CHECK = 2, 1
ENV = {"FELHOM_HUB_CHECK_INTERVAL_SECONDS": str(CHECK), "FELHOM_HUB_STALE_AFTER_SECONDS": str(STALE),
       "FELHOM_HUB_DOWN_AFTER_SECONDS": "120", "FELHOM_HUB_RATE_LIMIT_REPORTS_PER_MINUTE": "0"}
LEADER_LINE = "now runs the checkers (leader)"
STOPPED_LINE = "stopped leading"

parts = urlsplit(base_url)
dbname = "felhom_leader_kill_" + uuid.uuid4().hex[:10]
subprocess.run(["psql", base_url, "-q", "-c", f"CREATE DATABASE {dbname}"], check=True, capture_output=True)
db_url = urlunsplit((parts.scheme, parts.netloc, "/" + dbname, parts.query, ""))
checks = Checks("hub leader killed repeatedly")


def replica():
    """A new replica whose log lines are collected as they come (`.lines`)."""
    h = HubProcess(hub_bin, db_url, OP, env=ENV)
    h.lines = []
    threading.Thread(target=lambda: [h.lines.append(line) for line in h.proc.stdout], daemon=True).start()
    return h


def leads(h):
    """Whether the replica's log says it leads now (announced, not stopped since)."""
    state = False
    for line in list(h.lines):
        if LEADER_LINE in line:
            state = True
        elif STOPPED_LINE in line:
            state = False
    return state


def leader(timeout=15):
    """The live replica that announced itself leader, once exactly one has (two would be split brain)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = [h for h in hubs if leads(h)]
        if len(found) > 1:
            split_brain.append(len(found))
        if len(found) == 1:
            return found[0]
        time.sleep(0.2)
    return None


hubs = [replica(), replica()]
split_brain = []  # moments two live replicas had both announced leadership
takeovers = []  # per kill: whether another replica announced itself leader afterwards
pausing = None


def send(host):
    for h in random.sample(hubs, len(hubs)):
        status = post_report(h.url, host["api_key"], host_report("2026-12-01T12:00:00Z"))
        if status != 0:
            return status
    return 0


try:
    cid = hubs[0].call("POST", "/api/v1/customers", {"name": "Leader Test", "email": "l@example.hu", "domain": "leader.example.hu"})["id"]
    hosts = [hubs[0].call("POST", "/api/v1/hosts", {"customer_id": cid, "name": f"box-{i}"}) for i in range(4)]
    pausing = PausingHosts(hosts, send, STALE + CHECK + 6)  # past the stale threshold plus a takeover (the lease's 3 s)
    for _ in range(rounds):
        time.sleep(round_seconds)
        current = leader()
        if current is None:
            takeovers.append(False)
            continue
        hubs.remove(current)
        current.proc.send_signal(signal.SIGKILL)
        current.proc.wait(timeout=10)
        hubs.append(replica())
        takeovers.append(leader() is not None)
    time.sleep(round_seconds)
    pausing.stop()

    def another_replica_takes_over_after_each_kill():
        print(f"  {len(takeovers)} leaders killed, {sum(takeovers)} taken over")
        assert len(takeovers) == rounds and all(takeovers), f"takeovers per kill: {takeovers}"
        assert not split_brain, "two live replicas both announced leadership"

    def transitions_are_emitted_once_each():
        time.sleep(STALE + CHECK * 3)
        # A pause that falls into a takeover gap (the dead leader's lease running out) may go
        # unseen: at most one per kill. What is seen is emitted once.
        pausing.check(lambda host_id: hubs[-1].call("GET", f"/api/v1/events?host_id={host_id}&limit=500")["events"], unobserved=rounds)

    checks.check("after each kill -9 of the leader another replica takes the checkers over", another_replica_takes_over_after_each_kill)
    checks.check("each stale and recovery transition is emitted exactly once across leader kills", transitions_are_emitted_once_each)
finally:
    if pausing:
        pausing.close()
    for h in hubs:
        if h.proc.poll() is None:
            h.close()
    subprocess.run(["psql", base_url, "-q", "-c", f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)"], capture_output=True)
sys.exit(checks.finish())
