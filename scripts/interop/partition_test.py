#!/usr/bin/env python3
"""Fault injection: the box and its hub cut apart for PARTITION seconds by a network partition.

The hub (`felhom-hub serve`, SQLite) runs in a network namespace of its own with two veth links to
the host: the agent's link, which is cut with `ip link set … down` (packets vanish, as when a home
internet line fails), and the operator's link, which stays up so the test can watch and publish.
The box is `felhom pve-sim` and the real `felhom-agent run` in the host's namespace. Checks:

- before: the agent applies the published state (one running guest);
- during: a guest stopped behind the agent's back is started again from the last published state
  (`desired-last.json`) while every try to reach the hub fails; the tries back off (the wait
  grows, capped by `hub.max_backoff_seconds`); a generation published meanwhile does not reach
  the box; the hub raises `node_stale` once, and not before `stale_after_seconds` of silence;
- after the link comes back: the agent converges to what was published meanwhile, the hub says
  `node_recovered` once, and nothing was duplicated (one container per vmid).

Needs root (ip netns). Prints `N passed, N failed`.
Usage: partition_test.py BIN_DIR [PARTITION_SECONDS=120]
"""
import json, os, re, subprocess, sys, threading, time, urllib.request

from common import Checks, RootPVE, Simulator, free_port, stop_process, wait_for

bin_dir = sys.argv[1]
partition = float(sys.argv[2]) if len(sys.argv) > 2 else 120
felhom, agent_bin, hub_bin = (os.path.join(bin_dir, n) for n in ("felhom", "felhom-agent", "felhom-hub"))
OP = "partition-operator-key-0123456789abcd"
STALE, CHECK, MAX_BACKOFF = 75, 2, 15  # the agent reports every 60 s: stale needs a longer silence
tag = str(os.getpid() % 100000)
ns = f"felhom-part-{tag}"
net = 16 + os.getpid() % 200  # 10.<net>.1.0/30 agent link, 10.<net>.2.0/30 operator link
agent_if, op_if = f"fpa{tag}", f"fpo{tag}"
checks = Checks(f"agent and hub partitioned for {int(partition)} s (network namespace, veth link down)")


def sh(*args):
    subprocess.run(args, check=True, capture_output=True, text=True)


def setup_network():
    sh("ip", "netns", "add", ns)
    sh("ip", "-n", ns, "link", "set", "lo", "up")
    for name, sub in ((agent_if, 1), (op_if, 2)):
        sh("ip", "link", "add", name, "type", "veth", "peer", "name", name + "n", "netns", ns)
        sh("ip", "addr", "add", f"10.{net}.{sub}.2/30", "dev", name)
        sh("ip", "link", "set", name, "up")
        sh("ip", "-n", ns, "addr", "add", f"10.{net}.{sub}.1/30", "dev", name + "n")
        sh("ip", "-n", ns, "link", "set", name + "n", "up")


def teardown_network():
    for name in (agent_if, op_if):
        subprocess.run(["ip", "link", "del", name], capture_output=True)
    subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def link(up):
    """The agent's link, at the hub's end (the box's end stays up: its packets just vanish)."""
    sh("ip", "-n", ns, "link", "set", agent_if + "n", "up" if up else "down")


class Hub:
    """The hub in its namespace, listening on its end of both links; called over the operator's."""

    def __init__(self, work):
        import ssl
        self.port = free_port()
        self.url = f"https://10.{net}.2.1:{self.port}"
        self.agent_url = f"https://10.{net}.1.1:{self.port}"
        # Off loopback the agent speaks TLS only: a certificate for both of the hub's addresses.
        self.cert, key = os.path.join(work, "hub-cert.pem"), os.path.join(work, "hub-key.pem")
        sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
           "-subj", "/CN=felhom-hub", "-addext", f"subjectAltName=IP:10.{net}.1.1,IP:10.{net}.2.1", "-keyout", key, "-out", self.cert)
        self.tls = ssl.create_default_context(cafile=self.cert)
        env = dict(os.environ, FELHOM_HUB_OPERATOR_KEY=OP, FELHOM_HUB_STALE_AFTER_SECONDS=str(STALE),
                   FELHOM_HUB_DOWN_AFTER_SECONDS="3600", FELHOM_HUB_CHECK_INTERVAL_SECONDS=str(CHECK),
                   FELHOM_HUB_TLS_CERTIFICATE_FILE=self.cert, FELHOM_HUB_TLS_KEY_FILE=key)
        # In its own namespace the hub is reached over the veth links: it serves on all of the
        # namespace's addresses (lo and the hub's end of both links, nothing else).
        self.proc = subprocess.Popen(["ip", "netns", "exec", ns, hub_bin, "serve", "--listen", f"0.0.0.0:{self.port}",
                                      "--database", f"sqlite:{work}/hub.sqlite"], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines = []
        threading.Thread(target=lambda: [self.lines.append(x) for x in self.proc.stdout], daemon=True).start()
        if not wait_for(lambda: self._up(), timeout=30):
            raise RuntimeError("the hub did not come up in its namespace: " + "".join(self.lines[-20:]))

    def _up(self):
        try:
            urllib.request.urlopen(self.url + "/healthz", timeout=1, context=self.tls).read()
            return True
        except OSError:
            return False

    def call(self, method, path, body=None):
        req = urllib.request.Request(self.url + path, method=method, data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Authorization": f"Bearer {OP}", "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30, context=self.tls) as r:
            return json.loads(r.read())

    def close(self):
        stop_process(self.proc)


def main(sim, work):
    hub = Hub(work)
    agent = None
    try:
        pve = RootPVE(sim)
        cid = hub.call("POST", "/api/v1/customers", {"name": "Part", "email": "p@example.hu", "domain": "part.example.hu"})["id"]
        host = hub.call("POST", "/api/v1/hosts", {"customer_id": cid, "name": "part"})["id"]
        token = hub.call("POST", f"/api/v1/hosts/{host}/enrollment")["token"]
        web = {"vmid": 150, "name": "web", "cpu": 1, "memory_mb": 512, "disk_gb": 4, "run_state": "running"}
        photos = {"vmid": 151, "name": "photos", "cpu": 1, "memory_mb": 512, "disk_gb": 4, "run_state": "running"}

        def publish(guests):
            hub.call("PUT", f"/api/v1/hosts/{host}/desired", {"guests": guests})
            return hub.call("POST", f"/api/v1/hosts/{host}/desired/publish")["generation"]

        def events(kind):
            return hub.call("GET", f"/api/v1/events?host_id={host}&type={kind}&limit=1000")["events"]

        def view():
            return hub.call("GET", f"/api/v1/hosts/{host}")

        first = publish([web])
        config = os.path.join(work, "agent.json")
        with open(config, "w") as f:
            json.dump({"pve": {"host": "127.0.0.1", "port": sim.port, "node": "pve1", "token_id": "felhom@pve!agent",
                               "token_secret": sim.tokens["felhom@pve!agent"], "fingerprint": sim.fingerprint},
                       "hub": {"url": hub.agent_url, "ca_file": hub.cert, "enrollment_token": token, "long_poll_seconds": 25,
                               "max_backoff_seconds": MAX_BACKOFF},
                       "state_dir": os.path.join(work, "agent-state"), "signers_file": os.path.join(work, "allowed_signers"),
                       "provision": {"golden_template": "local:backup/vzdump-lxc-9000-2026_01_01-00_00_00.tar.zst"}}, f)
        key = os.path.join(work, "operator")
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "partition@felhom", "-f", key)
        with open(key + ".pub") as f, open(os.path.join(work, "allowed_signers"), "w") as out:
            out.write(f"operator@felhom {' '.join(f.read().split()[:2])}\n")
        agent_lines = []
        agent = subprocess.Popen([agent_bin, "run", "--config", config], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        threading.Thread(target=lambda: [agent_lines.append(x) for x in agent.stdout], daemon=True).start()

        def before():
            assert wait_for(lambda: view().get("applied_generation") == first, timeout=90), \
                f"not applied: {view()}\n{''.join(agent_lines[-20:])}"
            assert pve.containers()[150]["status"] == "running"
        checks.check("before: the agent applies the published state", before)
        if checks.failed:
            return

        # The last report before the cut: liveness counts from it.
        last_report = view()["last_report_at"]
        link(False)
        cut = time.time()
        print(f"  link down at {time.strftime('%H:%M:%S')}, last report {last_report}", flush=True)

        def keeps_reconciling():
            # Once the agent has noticed (its in-flight long-poll times out), stop the guest.
            assert wait_for(lambda: any("cycle failed" in x for x in agent_lines), timeout=100), "the agent never noticed the partition"
            pve.session.post(f"{pve.base}/nodes/pve1/lxc/150/status/stop").raise_for_status()
            assert wait_for(lambda: pve.containers()[150]["status"] == "stopped", timeout=30)
            stopped = time.time()
            assert wait_for(lambda: pve.containers()[150]["status"] == "running", timeout=MAX_BACKOFF * 1.5 + 30), \
                f"not started again offline:\n{''.join(agent_lines[-20:])}"
            print(f"  the stopped guest ran again {time.time() - stopped:.0f} s later, without the hub", flush=True)
            assert wait_for(lambda: any("the hub is unreachable: reconciled the last published state" in x for x in agent_lines), timeout=30), \
                "".join(agent_lines[-20:])
        checks.check("during: a guest stopped behind the agent's back is started from the last published state", keeps_reconciling)

        second = publish([web, photos])  # over the operator's link: the box cannot see it

        time.sleep(max(0.0, cut + partition - time.time()))
        during = {"photos": 151 in pve.containers(), "stale": events("node_stale")}
        link(True)
        healed = time.time()
        print(f"  link up after {healed - cut:.0f} s", flush=True)

        def not_applied_during():
            assert not during["photos"], "the generation published during the partition reached the box"
        checks.check("during: what is published meanwhile does not reach the box (it cannot)", not_applied_during)

        def backs_off():
            waits = [int(m.group(1)) for x in agent_lines if (m := re.search(r"cycle failed: .*retrying in (\d+) s", x))]
            assert len(waits) >= 3, f"only {len(waits)} tries: {waits}"
            assert max(waits) <= MAX_BACKOFF * 1.5 + 1, f"a wait above the cap: {waits}"
            assert max(waits) >= MAX_BACKOFF * 0.5 - 1 and waits[0] <= 2, f"the wait does not grow: {waits}"
            print(f"  {len(waits)} tries, waits {waits} s", flush=True)
        checks.check("during: the agent's tries back off, capped by hub.max_backoff_seconds", backs_off)

        def stale_once_past_threshold():
            stale = during["stale"]
            assert len(stale) == 1, f"node_stale {len(stale)} times during the partition: {stale}"
            at, last = stale[0]["at"], last_report
            to_s = lambda t: time.mktime(time.strptime(t, "%Y-%m-%dT%H:%M:%SZ"))
            silence = to_s(at) - to_s(last)
            assert STALE <= silence <= STALE + 3 * CHECK + 2, f"node_stale after {silence:.0f} s of silence (threshold {STALE} s)"
            print(f"  node_stale after {silence:.0f} s of silence (threshold {STALE} s)", flush=True)
        checks.check("the hub raises node_stale once, only past stale_after_seconds", stale_once_past_threshold)

        def converges():
            assert wait_for(lambda: view().get("applied_generation") == second, timeout=MAX_BACKOFF * 1.5 + 60), \
                f"not converged: {view()}\n{''.join(agent_lines[-20:])}"
            print(f"  converged to generation {second} {time.time() - healed:.0f} s after the link came back", flush=True)
            c = pve.containers()
            assert c[150]["status"] == "running" and c[151]["status"] == "running", c
            assert sum(1 for v in c if v in (150, 151)) == 2
            assert any("the hub is reachable again" in x for x in agent_lines)
            assert wait_for(lambda: len(events("node_recovered")) == 1, timeout=30), events("node_recovered")
            assert len(events("node_stale")) == 1, events("node_stale")
        checks.check("after: the agent converges to what was published meanwhile; node_recovered once", converges)
    finally:
        if agent:
            stop_process(agent, timeout=60)
        hub.close()


if __name__ == "__main__":
    if os.geteuid() != 0:
        print("partition test: needs root for ip netns")
        sys.exit(2)
    teardown_network()
    setup_network()
    try:
        with Simulator(felhom) as sim:
            main(sim, sim.work)
    finally:
        teardown_network()
    sys.exit(checks.finish())
