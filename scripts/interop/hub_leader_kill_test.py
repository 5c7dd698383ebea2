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

Deadline transitions too: two more hosts owe backups (their published state names a backup storage)
and were created three days ago (`created_at` moved back in the database), with
`backup_overdue_days` 1 and `backup_deadline_hour` 0. Each round, before the kill, each posts a
`backup_completed` that is then moved two days back in the database, so a new `backup_overdue`
(one per last success) is due while leaders die. Afterwards each host has exactly one
`backup_overdue` per last success it had (never, then each moved-back one) and one
`expected_backup_missed` per local day: none missed, none twice.

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
       "FELHOM_HUB_DOWN_AFTER_SECONDS": "120", "FELHOM_HUB_RATE_LIMIT_REPORTS_PER_MINUTE": "0",
       "FELHOM_HUB_BACKUP_OVERDUE_DAYS": "1", "FELHOM_HUB_BACKUP_DEADLINE_HOUR": "0"}
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
owing_stop = threading.Event()


def psql(sql):
    return subprocess.run(["psql", db_url, "-At", "-c", sql], check=True, capture_output=True, text=True).stdout


def keep_reporting(hosts):
    """The owing hosts stay alive (only an alive host is checked for overdue backups)."""
    while not owing_stop.is_set():
        for host in hosts:
            send(host)
        time.sleep(0.5)


def backup_completed(host):
    """A `backup_completed` from the host, then moved two days back: its last success is old again."""
    import json, urllib.request
    for h in random.sample(hubs, len(hubs)):
        req = urllib.request.Request(h.url + "/api/v1/events", data=json.dumps({"type": "backup_completed"}).encode(), method="POST",
                                     headers={"Authorization": f"Bearer {host['api_key']}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                event_id = json.loads(r.read())["id"]
            break
        except OSError:
            continue
    else:
        raise AssertionError("no replica took the backup event")
    psql(f"UPDATE events SET at = at - 2 * 86400 WHERE id = '{event_id}'")


def send(host):
    for h in random.sample(hubs, len(hubs)):
        status = post_report(h.url, host["api_key"], host_report("2026-12-01T12:00:00Z"))
        if status != 0:
            return status
    return 0


try:
    cid = hubs[0].call("POST", "/api/v1/customers", {"name": "Leader Test", "email": "l@example.hu", "domain": "leader.example.hu"})["id"]
    created = time.time()
    hosts = [hubs[0].call("POST", "/api/v1/hosts", {"customer_id": cid, "name": f"box-{i}"}) for i in range(4)]
    owing = [hubs[0].call("POST", "/api/v1/hosts", {"customer_id": cid, "name": f"owing-{i}"}) for i in range(2)]
    for host in owing:
        hubs[0].call("PUT", f"/api/v1/hosts/{host['id']}/desired", {
            "guests": [{"vmid": 100, "name": "web", "cpu": 1, "memory_mb": 512, "disk_gb": 4, "run_state": "running"}],
            "storage_policy": {"backup_storage": "pbs-felhom", "backup_hour": 0, "keep_last": 7}})
        hubs[0].call("POST", f"/api/v1/hosts/{host['id']}/desired/publish")
    psql("UPDATE hosts SET created_at = created_at - 3 * 86400 WHERE id IN (" + ",".join(f"'{h['id']}'" for h in owing) + ")")
    reporter = threading.Thread(target=keep_reporting, args=(owing,), daemon=True)
    reporter.start()
    pausing = PausingHosts(hosts, send, STALE + CHECK + 6, STALE, since=created)  # past the stale threshold plus a takeover (the lease's 3 s)
    for _ in range(rounds):
        time.sleep(round_seconds / 2)
        for host in owing:
            backup_completed(host)
        time.sleep(round_seconds / 2)
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

    def deadline_transitions_are_emitted_once_each():
        time.sleep(CHECK * 4)  # the last moved-back success is seen by the leader
        for host in owing:
            events = hubs[-1].call("GET", f"/api/v1/events?host_id={host['id']}&limit=500")["events"]
            successes = sorted(e["at"] for e in events if e["type"] == "backup_completed")
            overdue = [e["data"]["last_at"] for e in events if e["type"] == "backup_overdue"]
            missed = [e["data"]["local_day"] for e in events if e["type"] == "expected_backup_missed"]
            print(f"  {host['id']}: {len(successes)} moved-back successes, {len(overdue)} backup_overdue, {len(missed)} expected_backup_missed")
            assert len(successes) == rounds, f"{len(successes)} successes stored of {rounds}"
            assert len(overdue) == len(set(overdue)), f"a backup_overdue twice for one last success: {sorted(overdue)}"
            assert len(overdue) == rounds + 1, f"one backup_overdue per last success (never + {rounds}): got {sorted(overdue)} for {successes}"
            assert "never" in overdue, overdue
            assert missed and len(missed) == len(set(missed)), f"expected_backup_missed per local day: {missed}"

    checks.check("after each kill -9 of the leader another replica takes the checkers over", another_replica_takes_over_after_each_kill)
    checks.check("each stale and recovery transition is emitted exactly once across leader kills", transitions_are_emitted_once_each)
    checks.check("each backup deadline transition is emitted exactly once across leader kills", deadline_transitions_are_emitted_once_each)
finally:
    owing_stop.set()
    if pausing:
        pausing.close()
    for h in hubs:
        if h.proc.poll() is None:
            h.close()
    subprocess.run(["psql", base_url, "-q", "-c", f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)"], capture_output=True)
sys.exit(checks.finish())
