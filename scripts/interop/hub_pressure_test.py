#!/usr/bin/env python3
"""Slow clients and long-polls against a real felhom-hub (issue 10 item 14).

200 idle sockets and 200 long-polls from one host key are opened at once. The hub must keep
answering /healthz, keep storing another host's reports, let at most 2 of the key's long-polls wait
(the rest answer 429 with Retry-After), wake a waiting poll when the operator publishes, and close
the idle sockets after idle_timeout_seconds. Bounded: a few seconds of load on 127.0.0.1 only.
"""
import json
import os
import socket
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
from common import Checks, HubProcess  # noqa: E402

bin_dir = sys.argv[1]
OP = "pressure-test-operator-key-0123456789"
REPORT_FILE = os.path.join(os.path.dirname(__file__), "..", "..", "Tests", "FelhomCoreTests", "Fixtures", "contracts", "host-report.golden.json")


def request(url, method="GET", key=None, body=None, timeout=30):
    req = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def main():
    work = tempfile.mkdtemp(prefix="felhom-pressure-")
    hub = HubProcess(os.path.join(bin_dir, "felhom-hub"), f"sqlite:{work}/hub.sqlite", OP,
                     env={"FELHOM_HUB_IDLE_TIMEOUT_SECONDS": "3", "FELHOM_HUB_MAX_CONNECTIONS": "1000"})
    try:
        cid = hub.call("POST", "/api/v1/customers", {"name": "P", "email": "p@example.hu", "domain": "p.example.hu"})["id"]
        polled = hub.call("POST", "/api/v1/hosts", {"customer_id": cid, "name": "polled"})
        other = hub.call("POST", "/api/v1/hosts", {"customer_id": cid, "name": "reporting"})
        with open(REPORT_FILE) as f:
            report = json.load(f)

        idle = []
        polls = []
        results = []
        lock = threading.Lock()

        def long_poll():
            r = request(f"{hub.url}/api/v1/control?after_generation=0&wait=20", key=polled["api_key"], timeout=60)
            with lock:
                results.append((time.time(), r[0], r[1].get("Retry-After")))

        def idle_sockets_and_polls():
            for _ in range(200):
                s = socket.create_connection(("127.0.0.1", hub.port))
                idle.append(s)
            started = time.time()
            for _ in range(200):
                t = threading.Thread(target=long_poll)
                t.start()
                polls.append(t)
            # The hub keeps answering while all of that is open.
            time.sleep(1)
            st, _, body = request(f"{hub.url}/healthz", timeout=5)
            assert st == 200, (st, body)
            for i in range(5):
                st, _, body = request(f"{hub.url}/api/v1/host-report", "POST", other["api_key"], report, timeout=5)
                assert st == 200, (st, body)
            # All but 2 long-polls were answered 429 at once, with Retry-After.
            deadline = time.time() + 15
            while time.time() < deadline:
                with lock:
                    if len(results) >= 198:
                        break
                time.sleep(0.1)
            with lock:
                limited = [r for r in results if r[1] == 429]
                assert len(limited) == 198, f"{len(limited)} limited of {len(results)} answered"
                assert all(r[2] == "1" for r in limited), limited[:3]
                assert all(r[0] - started < 15 for r in limited)
            # A publish wakes the two waiting polls at once.
            hub.call("PUT", f"/api/v1/hosts/{polled['id']}/desired", {"guests": []})
            hub.call("POST", f"/api/v1/hosts/{polled['id']}/desired/publish")
            for t in polls:
                t.join(timeout=30)
            with lock:
                woken = [r for r in results if r[1] == 200]
                assert len(woken) == 2, results
            stored = hub.call("GET", f"/api/v1/hosts/{other['id']}")
            assert stored["last_report_at"] is not None, stored

        def idle_sockets_are_closed():
            # idle_timeout_seconds = 3: the server closes sockets that never sent a request.
            time.sleep(4)
            closed = 0
            for s in idle:
                s.settimeout(5)
                try:
                    if s.recv(1) == b"":  # orderly close by the hub
                        closed += 1
                except ConnectionResetError:
                    closed += 1
                except socket.timeout:
                    pass  # still open: counted as not closed
                s.close()
            assert closed == 200, f"{closed} of 200 idle sockets closed by the hub"
            st, _, _ = request(f"{hub.url}/healthz", timeout=5)
            assert st == 200

        checks = Checks("pressure")
        checks.check("200 idle sockets and 200 long-polls from one key: healthz answers, reports land, 2 polls wait", idle_sockets_and_polls)
        checks.check("idle sockets are closed after idle_timeout_seconds", idle_sockets_are_closed)
    finally:
        hub.close()
    return checks.finish()


if __name__ == "__main__":
    sys.exit(main())
