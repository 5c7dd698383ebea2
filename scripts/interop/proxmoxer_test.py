#!/usr/bin/env python3
"""Interop test: proxmoxer (a third-party Proxmox client from PyPI) against `felhom pve-sim`.

Starts the simulator binary on a free loopback port, then with proxmoxer: lists guests, starts a
stopped guest and waits for its task with proxmoxer's own task helper, checks the guest runs, and
checks that a read-only (PVEAuditor) token is refused with 403. Prints `N passed, N failed`.
Usage: proxmoxer_test.py PATH-TO-felhom
"""
import os, re, socket, subprocess, sys, tempfile, time

import urllib3
from proxmoxer import ProxmoxAPI
from proxmoxer.core import ResourceException
from proxmoxer.tools import Tasks

urllib3.disable_warnings()

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

binary = sys.argv[1]
port = free_port()
state = tempfile.mkdtemp(prefix="felhom-proxmoxer-")
proc = subprocess.Popen([binary, "pve-sim", "--listen", f"127.0.0.1:{port}", "--state", state],
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
tokens = {}
try:
    deadline = time.time() + 30
    while time.time() < deadline and len(tokens) < 3:
        line = proc.stdout.readline()
        if not line:
            break
        m = re.match(r"PVEAPIToken=(\S+?)!(\S+?)=(\S+)$", line.strip())
        if m:
            tokens[f"{m.group(1)}!{m.group(2)}"] = (m.group(1), m.group(2), m.group(3))
    assert len(tokens) == 3, f"simulator did not print its tokens (got {tokens.keys()})"

    def api(tokenid):
        user, name, secret = tokens[tokenid]
        return ProxmoxAPI("127.0.0.1", port=port, user=user, token_name=name, token_value=secret,
                          verify_ssl=False, timeout=10)

    passed, failed = 0, 0
    def check(name, fn):
        global passed, failed
        try:
            fn(); passed += 1; print(f"PASS {name}")
        except Exception as e:  # noqa: BLE001 - report every failure
            failed += 1; print(f"FAIL {name}: {e!r}")

    agent = api("felhom@pve!agent")
    ro = api("auditor@pve!readonly")

    def lists_guests():
        guests = agent.nodes("pve1").lxc.get()
        ids = sorted(g["vmid"] for g in guests)
        assert 100 in ids and 101 in ids, ids
        assert all(isinstance(g["vmid"], int) for g in guests)
        assert {g["vmid"]: g["status"] for g in guests}[101] == "stopped"

    def starts_and_waits():
        upid = agent.nodes("pve1").lxc(101).status.start.post()
        assert upid.startswith("UPID:pve1:"), upid
        decoded = Tasks.decode_upid(upid)
        assert decoded["type"] == "vzstart" and decoded["id"] == "101", decoded
        status = Tasks.blocking_status(agent, upid, timeout=30, polling_interval=0.1)
        assert status["status"] == "stopped" and status["exitstatus"] == "OK", status
        assert status["user"] == "felhom@pve" and status["tokenid"] == "agent", status
        log = agent.nodes("pve1").tasks(upid).log.get()
        assert log[-1]["t"] == "TASK OK", log
        current = agent.nodes("pve1").lxc(101).status.current.get()
        assert current["status"] == "running", current

    def start_twice_is_refused():
        try:
            agent.nodes("pve1").lxc(101).status.start.post()
        except ResourceException as e:
            assert e.status_code == 500 and e.content == "CT 101 already running", (e.status_code, e.content)
            return
        raise AssertionError("second start was accepted")

    def read_only_refused():
        try:
            ro.nodes("pve1").lxc(101).status.stop.post()
        except ResourceException as e:
            assert e.status_code == 403, e.status_code
            assert e.content == "Permission check failed (/vms/101, VM.PowerMgmt)", e.content
            return
        raise AssertionError("read-only token was allowed to stop a guest")

    def bad_param_errors_map():
        try:
            agent.nodes("pve1").lxc(101).status.start.post(skiplock="true")
        except ResourceException as e:
            assert e.status_code == 400 and "skiplock" in (e.errors or {}), (e.status_code, e.errors)
            return
        raise AssertionError("invalid boolean accepted")

    check("lists guests with integer vmids", lists_guests)
    check("starts a guest and waits for its task", starts_and_waits)
    check("second start refused with PVE's text", start_twice_is_refused)
    check("read-only token refused with 403", read_only_refused)
    check("parameter errors come back per parameter", bad_param_errors_map)
    print(f"proxmoxer: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)
finally:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
