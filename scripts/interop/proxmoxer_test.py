#!/usr/bin/env python3
"""Interop test: proxmoxer (a third-party Proxmox client from PyPI) against `felhom pve-sim`.

Starts the simulator binary on a free loopback port, then with proxmoxer: lists guests, starts a
stopped guest and waits for its task with proxmoxer's own task helper, checks the guest runs, and
checks that a read-only (PVEAuditor) token is refused with 403. TLS is verified against the
certificate the simulator keeps in its state dir. Prints `N passed, N failed`.
Usage: proxmoxer_test.py PATH-TO-felhom
"""
import os, sys

from proxmoxer import ProxmoxAPI
from proxmoxer.core import ResourceException
from proxmoxer.tools import Tasks

from common import Checks, Simulator


def main(sim):
    def api(tokenid):
        user, name = tokenid.split("!")
        return ProxmoxAPI("127.0.0.1", port=sim.port, user=user, token_name=name, token_value=sim.tokens[tokenid],
                          verify_ssl=os.path.join(sim.work, "sim", "cert.pem"), timeout=10)

    checks = Checks("proxmoxer")
    check = checks.check
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
    return checks.finish()


with Simulator(sys.argv[1]) as simulator:
    status = main(simulator)
sys.exit(status)
