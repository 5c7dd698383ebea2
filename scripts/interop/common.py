"""Shared helpers of the interop tests: start `felhom pve-sim`, run named checks, print the summary."""
import os, re, socket, subprocess, tempfile, time


def stop_process(proc, timeout=30):
    """SIGTERM, then SIGKILL if `proc` has not ended within `timeout` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Simulator:
    """`felhom pve-sim` on a free loopback port with a fresh state dir; a context manager."""

    def __init__(self, felhom, extra=()):
        self.port = free_port()
        self.work = tempfile.mkdtemp(prefix="felhom-interop-")
        self.proc = subprocess.Popen(
            [felhom, "pve-sim", "--listen", f"127.0.0.1:{self.port}", "--state", os.path.join(self.work, "sim"), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.fingerprint = None
        self.tokens = {}  # "user@realm!name" -> secret
        deadline = time.time() + 60
        while time.time() < deadline and len(self.tokens) < 3:
            line = self.proc.stdout.readline()
            if not line:
                break
            m = re.match(r"certificate SHA-256 fingerprint: (\S+)", line)
            if m:
                self.fingerprint = m.group(1)
            m = re.match(r"PVEAPIToken=(\S+?!\S+?)=(\S+)$", line.strip())
            if m:
                self.tokens[m.group(1)] = m.group(2)
        if len(self.tokens) < 3 or not self.fingerprint:
            self.close()
            raise RuntimeError(f"felhom pve-sim did not print its fingerprint and tokens (got {sorted(self.tokens)})")

    def close(self):
        stop_process(self.proc, timeout=10)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class RootPVE:
    """The simulator's API as root (its own certificate trusted): what the box really holds."""

    def __init__(self, sim, node="pve1"):
        import requests
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.verify = os.path.join(sim.work, "sim", "cert.pem")
        root = "root@pam!felhom-root"
        self.session.headers["Authorization"] = f"PVEAPIToken={root}={sim.tokens[root]}"
        self.base = f"https://127.0.0.1:{sim.port}/api2/json"
        self.node = node

    def get(self, path):
        """`data` of a GET."""
        return self.session.get(f"{self.base}{path}").json()["data"]

    def containers(self):
        """vmid -> the container's status entry."""
        return {c["vmid"]: c for c in self.get(f"/nodes/{self.node}/lxc")}

    def disks(self):
        """The volids on local-lvm, sorted."""
        return sorted(v["volid"] for v in self.get(f"/nodes/{self.node}/storage/local-lvm/content"))


class Checks:
    """Runs named checks, prints PASS/FAIL per check and a closing `N passed, N failed` line."""

    def __init__(self, name):
        self.name, self.passed, self.failed = name, 0, 0

    def check(self, title, fn):
        try:
            fn()
            self.passed += 1
            print(f"PASS {title}")
        except Exception as e:  # noqa: BLE001 - every failure is reported, none stops the run
            self.failed += 1
            print(f"FAIL {title}: {e!r}")

    def finish(self):
        print(f"{self.name}: {self.passed} passed, {self.failed} failed")
        return 1 if self.failed else 0


class HubProcess:
    """`felhom-hub serve` on a free loopback port (or `port`), waited for until /healthz answers."""

    def __init__(self, hub_bin, database, operator_key, port=None, env=None):
        import json, urllib.request
        self._json, self._request = json, urllib.request
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.key = operator_key
        e = dict(os.environ, FELHOM_HUB_OPERATOR_KEY=operator_key)
        e.update(env or {})
        self.proc = subprocess.Popen([hub_bin, "serve", "--listen", f"127.0.0.1:{self.port}", "--database", database], env=e,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"{self.url}/healthz", timeout=1).read()
                return
            except Exception:
                time.sleep(0.2)
        self.proc.kill()
        raise RuntimeError(f"felhom-hub on port {self.port} did not come up: {self.proc.stdout.read() if self.proc.stdout else ''}")

    def call(self, method, path, body=None, key=None):
        """One API call with the operator key (or `key`); returns the parsed JSON answer."""
        req = self._request.Request(f"{self.url}{path}", method=method,
                                    data=self._json.dumps(body).encode() if body is not None else None,
                                    headers={"Authorization": f"Bearer {key or self.key}", "Content-Type": "application/json"})
        with self._request.urlopen(req, timeout=30) as r:
            return self._json.loads(r.read())

    def close(self):
        stop_process(self.proc)


def compose_state(project):
    """The sorted container states of a compose project (`docker compose ps --all --format json`)."""
    import json
    out = subprocess.run(["docker", "compose", "-p", project, "ps", "--all", "--format", "json"], capture_output=True, text=True, timeout=60)
    return sorted(json.loads(x)["State"] for x in out.stdout.splitlines() if x.strip())


def wait_for(predicate, timeout=60, step=0.2):
    """Polls `predicate` until it is true (True) or `timeout` seconds pass (False)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False


def host_report(at):
    """A minimal valid host report stamped `at` (RFC 3339)."""
    return {"reported_at": at, "agent_version": "0.1.0",
            "host": {"cpu": 0.1, "memory_total": 8 << 30, "memory_used": 1 << 30, "disk_total": 100 << 30, "disk_used": 10 << 30,
                     "uptime": 100, "load": [0.1], "kernel": "6.8.12-4-pve", "pve_version": "9.1.3"},
            "guests": [], "cloudflared": "running", "storage_targets": [], "backups": [], "restore_tests": [],
            "pbs_snapshots": [], "audit_tail": [], "journal_in_flight": []}


def post_report(url, key, body):
    """POSTs one host report; the HTTP status, or 0 when the connection failed."""
    import json, urllib.error, urllib.request
    req = urllib.request.Request(url + "/api/v1/host-report", data=json.dumps(body).encode(), method="POST",
                                 headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            r.read()
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


class PausingHosts:
    """Hosts that fall silent past the stale threshold and come back, again and again, so the
    liveness checker has transitions to emit while faults are injected.

    `send(host) -> status` posts one report (to whichever hub is up). Each host pauses
    `pause_seconds` between acknowledged reports until `stop()`, and has then made at least
    `min_pauses` pauses; it keeps reporting every half second until `close()`, so no transition
    follows its last return.

    The hub sees silences, not intentions: a report that took long under load, or a host created
    a moment before its first report, is a silence too. So every silence between two acknowledged
    reports is measured from this side (`since`: when the hosts were created, the hub's start of
    their clock): the shortest it can have been (end of one send to start of the next) and the
    longest (start to end). `check(events_of)` asserts the events alternate, one `node_recovered`
    per `node_stale`, at least one `node_stale` per deliberate pause (less `unobserved`), and no
    more than the silences that could have been stale (the hub's clock is whole seconds: a
    silence of `stale_after - 1` may already count)."""

    def __init__(self, hosts, send, pause_seconds, stale_after, since=None, min_pauses=2):
        import threading
        self.hosts, self.send, self.pause, self.stale_after = hosts, send, pause_seconds, stale_after
        self.min_pauses = min_pauses
        self.gaps = {h["id"]: [] for h in hosts}  # (shortest, longest) silence between acknowledged reports
        self.last = {h["id"]: (since, since) if since is not None else None for h in hosts}
        self.settled = set()
        self.lock = threading.Lock()
        self.stopping, self.done = threading.Event(), threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(h, i * 0.7), daemon=True) for i, h in enumerate(hosts)]
        for t in self.threads:
            t.start()

    def _send(self, host):
        start = time.time()
        status = self.send(host)
        end = time.time()
        if status == 200:
            with self.lock:
                prev = self.last[host["id"]]
                if prev is not None:
                    self.gaps[host["id"]].append((start - prev[1], end - prev[0]))
                self.last[host["id"]] = (start, end)
        return status

    def pauses(self, host_id):
        """Deliberate pauses so far: silences at least `pause_seconds` long for sure."""
        with self.lock:
            return sum(1 for shortest, _ in self.gaps[host_id] if shortest >= self.pause)

    def possible_stale(self, host_id):
        """Silences the hub may have seen as stale, the one going on now included."""
        with self.lock:
            gaps = list(self.gaps[host_id])
            last = self.last[host_id]
        if last is not None:
            gaps.append((0, time.time() - last[0]))
        return sum(1 for _, longest in gaps if longest >= self.stale_after - 1)

    def _run(self, host, offset):
        while self._send(host) != 200 and not self.done.is_set():
            time.sleep(0.2)
        time.sleep(offset)
        while not self.done.is_set() and not (self.stopping.is_set() and self.pauses(host["id"]) >= self.min_pauses):
            time.sleep(self.pause)
            while self._send(host) != 200 and not self.done.is_set():  # the return, retried until a hub answers
                time.sleep(0.2)
            time.sleep(0.3)
        with self.lock:
            self.settled.add(host["id"])
        while not self.done.is_set():  # alive from now on
            self._send(host)
            time.sleep(0.5)

    def stop(self, timeout=120):
        """Ends the pauses; returns once every host has made its last return."""
        self.stopping.set()
        wait_for(lambda: len(self.settled) == len(self.hosts), timeout=timeout)

    def close(self):
        self.done.set()

    def check(self, events_of, unobserved=0):
        """`events_of(host_id)` -> the host's events (dicts with `type` and `at`). Every silence the
        checker saw is one `node_stale` and one `node_recovered`, in alternation, never twice. With
        `unobserved`, that many deliberate pauses per host may go unseen (liveness is sampled: a
        pause that falls in an outage or a leader takeover gap is never stale to the hub)."""
        for h in self.hosts:
            types = [e["type"] for e in sorted(events_of(h["id"]), key=lambda e: e["at"])
                     if e["type"] in ("node_stale", "node_recovered")]
            n, most = self.pauses(h["id"]), self.possible_stale(h["id"])
            stale, recovered = types.count("node_stale"), types.count("node_recovered")
            assert n >= self.min_pauses, f"{h['id']} paused only {n} times"
            assert all(a != b for a, b in zip(types, types[1:])), f"{h['id']}: a transition twice in a row: {types}"
            assert stale == recovered, f"{h['id']}: {stale} node_stale but {recovered} node_recovered: {types}"
            assert n - unobserved <= stale <= most, f"{h['id']}: {n} deliberate pauses, {most} silences that may be stale, but events {types}"
