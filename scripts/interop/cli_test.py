#!/usr/bin/env python3
"""End-to-end test of the shipped executables, as an operator would run them.

Starts `felhom pve-sim` on a free loopback port, writes an agent config file, and runs
`felhom-agent selftest read` and `task` against it; checks a wrong certificate pin and a missing
config fail with clear messages; checks the token secret never appears in any output; runs
`felhom demo`. Prints `N passed, N failed`.
Usage: cli_test.py BIN_DIR
"""
import json, os, re, socket, subprocess, sys, tempfile, time

bin_dir = sys.argv[1]
felhom = os.path.join(bin_dir, "felhom")
agent = os.path.join(bin_dir, "felhom-agent")

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

port = free_port()
work = tempfile.mkdtemp(prefix="felhom-cli-")
proc = subprocess.Popen([felhom, "pve-sim", "--listen", f"127.0.0.1:{port}", "--state", os.path.join(work, "sim")],
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
passed, failed = 0, 0

def check(name, fn):
    global passed, failed
    try:
        fn(); passed += 1; print(f"PASS {name}")
    except Exception as e:  # noqa: BLE001
        failed += 1; print(f"FAIL {name}: {e}")

try:
    fingerprint, secret = None, None
    deadline = time.time() + 30
    while time.time() < deadline and secret is None:
        line = proc.stdout.readline()
        if not line:
            break
        m = re.match(r"certificate SHA-256 fingerprint: (\S+)", line)
        if m: fingerprint = m.group(1)
        m = re.match(r"PVEAPIToken=felhom@pve!agent=(\S+)", line.strip())
        if m: secret = m.group(1)
    assert fingerprint and secret, "simulator did not print its fingerprint and agent token"

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
finally:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()

print(f"cli: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
