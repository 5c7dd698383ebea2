#!/usr/bin/env python3
"""End-to-end test of the shipped executables, as an operator would run them.

Starts `felhom pve-sim` on a free loopback port, writes an agent config file, and runs
`felhom-agent selftest read` and `task` against it; checks a wrong certificate pin and a missing
config fail with clear messages; checks the token secret never appears in any output; runs
`felhom demo`. Prints `N passed, N failed`.
Usage: cli_test.py BIN_DIR
"""
import json, os, subprocess, sys

from common import Checks, Simulator

bin_dir = sys.argv[1]
felhom = os.path.join(bin_dir, "felhom")
agent = os.path.join(bin_dir, "felhom-agent")


def main(sim):
    checks = Checks("cli")
    check = checks.check
    work, port, fingerprint = sim.work, sim.port, sim.fingerprint
    secret = sim.tokens["felhom@pve!agent"]
    config = os.path.join(work, "agent.json")
    with open(config, "w") as f:
        json.dump({"pve": {"host": "127.0.0.1", "port": port, "node": "pve1", "token_id": "felhom@pve!agent",
                           "token_secret": secret, "fingerprint": fingerprint}, "selftest": {"vmid": 199}}, f)

    def run(*args, env=None):
        e = dict(os.environ); e.update(env or {})
        return subprocess.run(list(args), capture_output=True, text=True, timeout=120, env=e)

    def selftest_read():
        r = run(agent, "selftest", "read", "--config", config)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "all 8 checks passed" in r.stdout, r.stdout
        assert secret not in r.stdout + r.stderr

    def selftest_task():
        r = run(agent, "selftest", "task", "--config", config)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "snapshot rollback (task)" in r.stdout and "all 6 checks passed" in r.stdout, r.stdout
        assert secret not in r.stdout + r.stderr

    def wrong_pin_fails_clearly():
        r = run(agent, "selftest", "read", "--config", config,
                env={"FELHOM_AGENT_PVE_FINGERPRINT": ":".join(["00"] * 32)})
        assert r.returncode != 0
        assert "does not match the pinned" in r.stdout, r.stdout
        assert secret not in r.stdout + r.stderr

    def wrong_secret_fails_clearly():
        r = run(agent, "selftest", "read", "--config", config, env={"FELHOM_AGENT_PVE_TOKEN_SECRET": "wrong-secret"})
        assert r.returncode != 0
        assert "Authentication failed!" in r.stdout, r.stdout
        assert "wrong-secret" not in r.stdout + r.stderr

    def missing_config_is_named():
        r = run(agent, "selftest", "read", "--config", os.path.join(work, "nope.json"))
        assert r.returncode != 0
        assert "nope.json" in r.stderr, r.stderr

    def task_mode_needs_a_guest():
        cfg2 = os.path.join(work, "agent2.json")
        with open(config) as f: c = json.load(f)
        del c["selftest"]
        with open(cfg2, "w") as f: json.dump(c, f)
        r = run(agent, "selftest", "task", "--config", cfg2)
        assert r.returncode != 0 and "--vmid" in r.stderr, r.stderr

    def demo_runs():
        r = run(felhom, "demo", "--dir", os.path.join(work, "demo"))
        assert r.returncode == 0, r.stdout + r.stderr
        assert "demo finished: everything worked." in r.stdout, r.stdout

    check("felhom-agent selftest read", selftest_read)
    check("felhom-agent selftest task", selftest_task)
    check("wrong certificate pin fails clearly", wrong_pin_fails_clearly)
    check("wrong token secret fails clearly", wrong_secret_fails_clearly)
    check("missing config file is named", missing_config_is_named)
    check("task mode asks for a scratch guest", task_mode_needs_a_guest)
    check("felhom demo", demo_runs)
    return checks.finish()


with Simulator(felhom) as simulator:
    status = main(simulator)
sys.exit(status)
