#!/usr/bin/env python3
"""Two real `felhom-hub serve` processes on one PostgreSQL database.

Checks that the liveness checker runs in one process only (each transition is emitted once),
and that when a replica is killed with SIGKILL the survivor carries on (a recovery after the
kill is still announced exactly once, once the dead replica's lease ran out). Prints `N passed, N failed`.
Usage: hub_replicas_test.py BIN_DIR POSTGRES_URL
"""
import os, signal, subprocess, sys, time, uuid
from urllib.parse import urlsplit, urlunsplit

from common import Checks, HubProcess

bin_dir, base_url = sys.argv[1], sys.argv[2]
hub_bin = os.path.join(bin_dir, "felhom-hub")
OP = "replica-test-operator-key-0123456789"

# A database of our own for this test.
parts = urlsplit(base_url)
dbname = "felhom_replicas_" + uuid.uuid4().hex[:10]
subprocess.run(["psql", base_url, "-q", "-c", f"CREATE DATABASE {dbname}"], check=True, capture_output=True)
db_url = urlunsplit((parts.scheme, parts.netloc, "/" + dbname, parts.query, ""))

ENV = {"FELHOM_HUB_CHECK_INTERVAL_SECONDS": "1", "FELHOM_HUB_STALE_AFTER_SECONDS": "3", "FELHOM_HUB_DOWN_AFTER_SECONDS": "6"}

REPORT = {"reported_at": "2026-11-23T12:00:00Z", "agent_version": "0.1.0",
          "host": {"cpu": 0.1, "memory_total": 1, "memory_used": 1, "disk_total": 1, "disk_used": 1, "uptime": 1,
                   "load": [0.1], "kernel": "k", "pve_version": "9.1.3"},
          "guests": [], "cloudflared": "running", "storage_targets": [], "backups": [], "restore_tests": [],
          "pbs_snapshots": [], "audit_tail": [], "journal_in_flight": []}

checks = Checks("hub replicas")
a, b = HubProcess(hub_bin, db_url, OP, env=ENV), HubProcess(hub_bin, db_url, OP, env=ENV)
p1, p2 = a.port, b.port
hubs = {p1: a, p2: b}


def call(port, method, path, key, body=None):
    return hubs[port].call(method, path, body, key=key)


try:
    cid = call(p1, "POST", "/api/v1/customers", OP, {"name": "Kiss Anna", "email": "a@example.hu", "domain": "kiss.example.hu"})["id"]
    host = call(p2, "POST", "/api/v1/hosts", OP, {"customer_id": cid, "name": "box"})
    call(p1, "POST", "/api/v1/host-report", host["api_key"], REPORT)

    def events(port, type_=None):
        q = f"/api/v1/events?host_id={host['id']}" + (f"&type={type_}" if type_ else "")
        return call(port, "GET", q, OP)["events"]

    def wait_for(port, type_, n, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if len(events(port, type_)) >= n:
                return
            time.sleep(0.5)

    def stale_and_down_once():
        wait_for(p1, "node_down", 1)
        time.sleep(2.5)  # more checker passes on both replicas
        types = [e["type"] for e in events(p2)]
        assert types.count("node_stale") == 1 and types.count("node_down") == 1, types

    def survivor_takes_over_after_kill9():
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait(timeout=10)
        # The box is back and keeps reporting while the survivor waits out the dead leader's lease.
        deadline = time.time() + 30
        while time.time() < deadline and not events(p2, "node_recovered"):
            call(p2, "POST", "/api/v1/host-report", host["api_key"], REPORT)
            time.sleep(0.5)
        time.sleep(2.5)
        types = [e["type"] for e in events(p2)]
        assert types.count("node_recovered") == 1, types

    checks.check("each transition is emitted once by two replicas", stale_and_down_once)
    checks.check("after kill -9 of a replica the other runs the checks", survivor_takes_over_after_kill9)
finally:
    for h in (a, b):
        if h.proc.poll() is None:
            h.close()
    subprocess.run(["psql", base_url, "-q", "-c", f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)"], capture_output=True)
sys.exit(checks.finish())
