#!/usr/bin/env python3
"""Fault injection: PostgreSQL crashes (`pg_ctl restart -m immediate`) under sustained report ingest.

Two `felhom-hub serve` replicas on a PostgreSQL cluster of their own; worker threads post host
reports for 20 hosts without pause, each report carrying a unique `reported_at`; four further hosts pause past
the stale threshold and come back, again and again, so the liveness checker has transitions to
emit while the database dies under it. PostgreSQL is crashed RESTARTS times. Afterwards:

- every report the hub acknowledged (200) is in `host_reports`, and none is stored twice;
- the hub stores reports again after the crashes (its pool reconnects);
- after the crashes, the leader is killed -9 and the other replica takes the checkers over (a
  replica whose lock connection died with PostgreSQL asks for the lock again on a new one);
- each pausing host has one `node_stale` and one `node_recovered` per pause the checker saw, in
  alternation: no transition emitted twice across the crashes (a pause inside an outage may go
  unseen, at most one per crash: liveness is sampled).

Prints `N passed, N failed`. Usage: pg_restart_test.py BIN_DIR [SECONDS=24] [RESTARTS=3]
"""
import collections, os, subprocess, sys, tempfile, threading, time

from common import Checks, HubProcess, PausingHosts, free_port, host_report, post_report

bin_dir = sys.argv[1]
seconds = int(sys.argv[2]) if len(sys.argv) > 2 else 24
restarts = int(sys.argv[3]) if len(sys.argv) > 3 else 3
root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
pg_script = os.path.join(root, "scripts", "postgres")
OP = "pg-restart-operator-key-0123456789ab"
STALE, CHECK = 2, 1
ENV = {"FELHOM_HUB_RATE_LIMIT_REPORTS_PER_MINUTE": "0", "FELHOM_HUB_CHECK_INTERVAL_SECONDS": str(CHECK),
       "FELHOM_HUB_STALE_AFTER_SECONDS": str(STALE), "FELHOM_HUB_DOWN_AFTER_SECONDS": "120",
       # Every acknowledged report is looked up in the history: keep each one there (by default an
       # unchanged report adds a history row only once per heartbeat).
       "FELHOM_HUB_REPORT_HISTORY_HEARTBEAT_SECONDS": "0"}

work = tempfile.mkdtemp(prefix="felhom-pg-restart-")
os.chmod(work, 0o755)  # the postgres user must reach its data dir
pgdir = os.path.join(work, "pg")
db_url = subprocess.run([pg_script, "start", pgdir, str(free_port())], check=True, capture_output=True, text=True).stdout.strip()
checks = Checks("postgres crash under ingest")


def stamp(n):
    """A distinct RFC 3339 time per report number."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(1_800_000_000 + n))


hub = pausing = None
hubs = []
stop = threading.Event()
try:
    def replica():
        """A replica whose log is drained as it comes (`.lines`: (time, line)), so it never blocks on a full pipe."""
        h = HubProcess(os.path.join(bin_dir, "felhom-hub"), db_url, OP, env=ENV)
        h.lines = []
        threading.Thread(target=lambda: [h.lines.append((time.time(), line)) for line in h.proc.stdout], daemon=True).start()
        return h

    hub = replica()
    time.sleep(1.5)  # the first takes the lock
    other = replica()
    hubs.extend([hub, other])
    hub_log = hub.lines
    cid = hub.call("POST", "/api/v1/customers", {"name": "Crash Test", "email": "c@example.hu", "domain": "crash.example.hu"})["id"]
    busy = [hub.call("POST", "/api/v1/hosts", {"customer_id": cid, "name": f"busy-{i}"}) for i in range(20)]
    created = time.time()  # the sleepy hosts' clock starts at their creation (a host that never reported is stale too)
    sleepy = [hub.call("POST", "/api/v1/hosts", {"customer_id": cid, "name": f"sleepy-{i}"}) for i in range(4)]
    acked = collections.defaultdict(set)  # host id -> reported_at values answered 200
    statuses = collections.Counter()
    lock = threading.Lock()
    counter = iter(range(10**9))

    def send(host):
        with lock:
            at = stamp(next(counter))
        status = 0
        for h in hubs:  # the first live replica that answers
            status = post_report(h.url, host["api_key"], host_report(at))
            if status != 0:
                break
        with lock:
            statuses[status] += 1
            if status == 200:
                acked[host["id"]].add(at)
        return status

    def busy_worker(hosts):
        i = 0
        while not stop.is_set():
            if send(hosts[i % len(hosts)]) != 200:
                time.sleep(0.05)
            i += 1

    threads = [threading.Thread(target=busy_worker, args=(busy[k::6],)) for k in range(6)]
    for t in threads:
        t.start()
    pausing = PausingHosts(sleepy, send, STALE + CHECK + 6, STALE, since=created)  # longer than a crash and its recovery, or a takeover
    crash_times = []
    for _ in range(restarts):
        time.sleep(seconds / (restarts + 1))
        subprocess.run([pg_script, "restart", pgdir], check=True, capture_output=True)
        crash_times.append(time.time())
    crashes = len(crash_times)
    time.sleep(seconds / (restarts + 1))
    stop.set()
    for t in threads:
        t.join(timeout=60)
    pausing.stop()

    def psql(sql):
        return subprocess.run(["psql", db_url, "-At", "-c", sql], check=True, capture_output=True, text=True).stdout

    def every_acknowledged_report_is_stored():
        # What was acknowledged before the query: the pausing hosts go on reporting meanwhile.
        with lock:
            acked_now = {h: set(ats) for h, ats in acked.items()}
            seen = dict(statuses)
        stored = collections.Counter()
        for line in psql("SELECT host_id || ' ' || (body::json->>'reported_at') FROM host_reports").splitlines():
            host_id, at = line.split(" ")
            stored[(host_id, at)] += 1
        total = sum(len(v) for v in acked_now.values())
        missing = [(h, at) for h, ats in acked_now.items() for at in ats if stored[(h, at)] == 0]
        twice = [k for k, n in stored.items() if n > 1]
        print(f"  {total} reports acknowledged, {sum(stored.values())} stored; statuses {seen}; {crashes} crashes")
        assert total > 200, f"too few reports got through to prove anything ({total})"
        assert seen.get(200, 0) < sum(seen.values()), "no report failed: the crashes did not happen under load"
        if missing:
            print("  hub log around the losses:", *[l.rstrip()[:300] for _, l in hub_log if "error" in l.lower()][:30], sep="\n    ")
        assert not missing, f"{len(missing)} acknowledged reports are not stored, e.g. {missing[:3]}"
        assert not twice, f"{len(twice)} reports stored twice, e.g. {twice[:3]}"

    def the_hub_answers_after_the_crashes():
        assert send(busy[0]) == 200, "the hub does not store reports after PostgreSQL came back"

    LEADER_LINE = "now runs the checkers (leader)"

    def leads(h):
        state = False
        for _, line in list(h.lines):
            state = True if LEADER_LINE in line else False if "stopped leading" in line else state
        return state

    def one_replica_leads_after_the_crashes():
        # A replica that cannot renew its lease says it stopped leading; once the database is back
        # the lease settles on one of them (within a lease and a pass: 3 intervals + 1).
        settled = lambda: sum(1 for h in hubs if leads(h)) == 1
        deadline = time.time() + CHECK * 4 + 10
        while time.time() < deadline and not settled():
            time.sleep(0.2)
        if not settled():
            for i, h in enumerate(hubs):
                print(f"  replica {i} checker lines:", *[l.rstrip()[:200] for _, l in h.lines if "lead" in l or "checker" in l][-8:], sep="\n    ")
        assert settled(), f"{sum(1 for h in hubs if leads(h))} replicas say they lead"

    def a_replica_killed_after_the_crashes_is_replaced():

        def announced_since(h, since):
            return any(LEADER_LINE in line and t >= since for t, line in list(h.lines))

        # Kill the first replica; the other must be running the checkers afterwards (it led
        # already, or it announces leadership once the dead one's lease has run out).
        victim, survivor = hub, other
        victim.proc.kill()
        victim.proc.wait(timeout=10)
        hubs.remove(victim)
        killed = time.time()
        deadline = killed + 20
        while time.time() < deadline and not (leads(survivor) or announced_since(survivor, killed)):
            time.sleep(0.2)
        assert leads(survivor) or announced_since(survivor, killed), "the surviving replica does not run the checkers"

    def transitions_are_emitted_once_each():
        time.sleep(STALE + CHECK * 3)  # the checker sees the last returns (the hosts keep reporting)
        # Liveness is sampled: a pause that falls entirely into an outage (PostgreSQL down, the
        # pool reconnecting, the lease running out) is never stale to the hub — at most one per
        # crash. What is seen is emitted once, in alternation.
        pausing.check(lambda host_id: hubs[0].call("GET", f"/api/v1/events?host_id={host_id}&limit=500")["events"], unobserved=crashes)

    checks.check("every report the hub acknowledged survives PostgreSQL crashes, none stored twice", every_acknowledged_report_is_stored)
    checks.check("the hub stores reports again after the crashes (its pool reconnects)", the_hub_answers_after_the_crashes)
    checks.check("after the crashes exactly one replica says it runs the checkers", one_replica_leads_after_the_crashes)
    checks.check("after the crashes a replica is killed -9 and the other runs the checkers", a_replica_killed_after_the_crashes_is_replaced)
    checks.check("each stale and recovery transition is emitted exactly once across the crashes", transitions_are_emitted_once_each)
finally:
    stop.set()
    if pausing:
        pausing.close()
    for h in hubs:
        if h.proc.poll() is None:
            h.close()
    subprocess.run([pg_script, "stop", pgdir], capture_output=True)
    subprocess.run(["rm", "-rf", work])
sys.exit(checks.finish())
