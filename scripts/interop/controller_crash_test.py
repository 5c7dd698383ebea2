#!/usr/bin/env python3
"""The real felhom-controller on a real Docker engine, killed mid-quiesce.

Usage: controller_crash_test.py BIN_DIR

A small stand-in for the agent's local API (plain HTTP on loopback, the guest token checked) says a
backup is due and keeps the backup "running". The controller stops the app stacks (never the
protected one) after writing its marker; it is killed with SIGKILL while they are stopped. Started
again, it must start exactly the stacks it had stopped and clear the marker. A second round ends
with SIGTERM instead: the stacks are started before the process exits 0.
"""
import json, os, signal, subprocess, sys, tempfile, threading, time, uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(__file__))
from common import Checks, HubProcess, compose_state, wait_for  # noqa: E402

IMAGE = os.environ.get("FELHOM_TEST_IMAGE", "felhom/busybox:1")
TOKEN = "guest-token-" + uuid.uuid4().hex


class FakeAgent(BaseHTTPRequestHandler):
    due = True
    runs = {}
    tokens_ok = True

    def log_message(self, *args):
        pass

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def authorized(self):
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            FakeAgent.tokens_ok = False
            self.answer(401, {"error": {"code": "unauthorized", "message": "bad token"}})
            return False
        return True

    def do_GET(self):
        if not self.authorized():
            return
        if self.path == "/backup/due":
            self.answer(200, {"due": FakeAgent.due})
        elif self.path.startswith("/backup/status?id="):
            rid = self.path.split("=", 1)[1]
            self.answer(200, {"id": rid, "status": FakeAgent.runs.get(rid, "running")})
        else:
            self.answer(404, {"error": {"code": "not_found", "message": self.path}})

    def do_POST(self):
        if not self.authorized():
            return
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        rid = f"run-{len(FakeAgent.runs) + 1}"
        FakeAgent.runs[rid] = "running"
        FakeAgent.due = False  # one backup per due window
        self.answer(202, {"id": rid, "status": "running"})


def main(bin_dir):
    controller = os.path.join(os.path.abspath(bin_dir), "felhom-controller")
    work = tempfile.mkdtemp(prefix="felhom-controller-")
    prefix = "c" + uuid.uuid4().hex[:6]
    stacks_dir, state_dir = os.path.join(work, "stacks"), os.path.join(work, "state")
    names = [f"{prefix}-photos", f"{prefix}-vault", f"{prefix}-proxy", f"{prefix}-media"]
    for n in names[:3]:
        os.makedirs(os.path.join(stacks_dir, n))
        with open(os.path.join(stacks_dir, n, "compose.yaml"), "w") as f:
            f.write(f"services:\n  app:\n    image: {IMAGE}\n    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; sleep 3600 & wait\"]\n"
                    "    stop_grace_period: 1s\n")
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeAgent)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = dict(os.environ, FELHOM_CONTROLLER_STACKS_DIR=stacks_dir, FELHOM_CONTROLLER_STATE_DIR=state_dir,
               FELHOM_CONTROLLER_STACKS_PROTECTED=names[2], FELHOM_CONTROLLER_AGENT_URL=f"http://127.0.0.1:{server.server_port}",
               FELHOM_CONTROLLER_AGENT_TOKEN=TOKEN, FELHOM_CONTROLLER_QUIESCE_POLL_SECONDS="1",
               FELHOM_CONTROLLER_WATCHDOG_INTERVAL_SECONDS="1")
    marker = os.path.join(state_dir, "quiesce-marker.json")
    checks = Checks("controller crash")
    logs = []

    def start():
        log = open(os.path.join(work, f"run-{len(logs)}.log"), "w")
        logs.append(log.name)
        return subprocess.Popen([controller, "run"], env=env, stdout=log, stderr=subprocess.STDOUT)

    def tail():
        text = ""
        for name in logs:
            with open(name) as f:
                text += f"--- {name}\n" + f.read()[-2000:]
        return text

    apps = names[:2]
    try:
        def deploy():
            for n in names[:3]:
                r = subprocess.run([controller, "stacks", "deploy", n], env=env, capture_output=True, text=True, timeout=120)
                assert r.returncode == 0, r.stderr
            assert all(compose_state(n) == ["running"] for n in names[:3])

        def kill9_mid_quiesce_then_recover():
            p = start()
            try:
                stopped = wait_for(lambda: os.path.exists(marker) and all(compose_state(n) == ["exited"] for n in apps))
                assert stopped, "the controller did not quiesce: " + tail()
                with open(marker) as f:
                    assert sorted(json.load(f)["stacks"]) == sorted(apps)
                assert oct(os.stat(marker).st_mode & 0o777) == "0o600"
                assert compose_state(names[2]) == ["running"], "the protected stack was touched"
            finally:
                p.send_signal(signal.SIGKILL)
                p.wait(timeout=30)
            assert all(compose_state(n) == ["exited"] for n in apps) and os.path.exists(marker), "state after kill -9"
            p = start()
            try:
                assert wait_for(lambda: all(compose_state(n) == ["running"] for n in apps) and not os.path.exists(marker)), tail()
                assert "recovered an interrupted quiesce" in open(logs[-1]).read(), tail()
            finally:
                p.send_signal(signal.SIGTERM)
                assert p.wait(timeout=60) == 0, tail()
            assert FakeAgent.tokens_ok

        def sigterm_mid_quiesce_restarts():
            FakeAgent.due = True
            p = start()
            assert wait_for(lambda: os.path.exists(marker) and all(compose_state(n) == ["exited"] for n in apps)), tail()
            p.send_signal(signal.SIGTERM)
            assert p.wait(timeout=90) == 0, tail()
            assert all(compose_state(n) == ["running"] for n in names[:3]) and not os.path.exists(marker), tail()

        def watchdog_restarts_a_killed_container():
            p = start()
            try:
                time.sleep(1)
                subprocess.run(["docker", "kill", f"{apps[0]}-app-1"], capture_output=True, timeout=60, check=True)
                assert wait_for(lambda: compose_state(apps[0]) == ["running"], timeout=30), tail()
                # Stopped on purpose through the CLI: it stays stopped.
                r = subprocess.run([controller, "stacks", "stop", apps[1]], env=env, capture_output=True, text=True, timeout=120)
                assert r.returncode == 0, r.stderr
                time.sleep(3)
                assert compose_state(apps[1]) == ["exited"], "the watchdog restarted a stack stopped on purpose"
                r = subprocess.run([controller, "stacks", "stop", names[2]], env=env, capture_output=True, text=True, timeout=120)
                assert r.returncode == 1 and names[2] in r.stderr and "protected" in r.stderr, r.stderr
            finally:
                p.send_signal(signal.SIGTERM)
                p.wait(timeout=60)

        # With a real hub: the guest's secret bundle lands in secrets.dir (0400); the storage CLI
        # registers a tmpfs path; unmounting it stops the stack using it and the hub receives
        # storage_disconnected from the guest key; mounting it again starts it (storage_reconnected).
        def with_a_real_hub():
            import base64
            op = "controller-test-operator-key-0123456789"
            hub = HubProcess(os.path.join(os.path.abspath(bin_dir), "felhom-hub"), f"sqlite:{work}/hub.sqlite", op,
                             env={"FELHOM_HUB_SECRETS_KEY": base64.b64encode(os.urandom(32)).decode()})
            media = os.path.join(work, "media")
            os.makedirs(media)
            subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "felhom-media", media], check=True, timeout=30)
            os.makedirs(os.path.join(stacks_dir, names[3]))
            with open(os.path.join(stacks_dir, names[3], "compose.yaml"), "w") as f:
                f.write(f"services:\n  app:\n    image: {IMAGE}\n    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; sleep 3600 & wait\"]\n"
                        f"    stop_grace_period: 1s\n    volumes: [\"{media}/library:/library\"]\n")
            p = None
            try:
                cid = hub.call("POST", "/api/v1/customers", {"name": "A", "email": "a@example.hu", "domain": "a.example.hu"})["id"]
                host = hub.call("POST", "/api/v1/hosts", {"customer_id": cid, "name": "box"})["id"]
                guest = hub.call("POST", f"/api/v1/hosts/{host}/guests", {"name": "apps"})
                hub.call("PUT", f"/api/v1/guests/{guest['id']}/secrets/platform", {"secrets": {"DB_PASSWORD": " exact value "}})
                e = dict(env, FELHOM_CONTROLLER_HUB_URL=hub.url, FELHOM_CONTROLLER_HUB_KEY=guest["api_key"],
                         FELHOM_CONTROLLER_HUB_GUEST_ID=guest["id"], FELHOM_CONTROLLER_SECRETS_DIR=os.path.join(work, "secrets"),
                         FELHOM_CONTROLLER_QUIESCE_ENABLED="false")
                def ctl(*args):
                    return subprocess.run([controller, *args], env=e, capture_output=True, text=True, timeout=120)
                r = ctl("storage", "add", media, "--label", "media disk", "--default")
                assert r.returncode == 0 and "tmpfs" in r.stdout, r.stdout + r.stderr
                r = ctl("storage", "list", "--json")
                assert r.returncode == 0 and json.loads(r.stdout)[0]["path"] == media and json.loads(r.stdout)[0]["default"] is True, r.stdout
                r = ctl("storage", "remove", "/nope")
                assert r.returncode == 1 and "/nope" in r.stderr, r.stderr
                r = ctl("secrets", "group", "no-such-stack", "daemon")
                assert r.returncode == 1 and "no-such-stack" in r.stderr, r.stderr
                r = ctl("stacks", "deploy", names[3])  # writes the bundle first
                assert r.returncode == 0, r.stderr
                secret_file = os.path.join(work, "secrets", "platform.env")
                with open(secret_file) as f:
                    assert f.read() == "# TRC_SECRETS_V1\nDB_PASSWORD= exact value \n"
                assert oct(os.stat(secret_file).st_mode & 0o777) == "0o400"
                log = open(os.path.join(work, "run-hub.log"), "w")
                logs.append(log.name)
                p = subprocess.Popen([controller, "run"], env=e, stdout=log, stderr=subprocess.STDOUT)
                def events(kind):
                    return [x for x in hub.call("GET", f"/api/v1/events?type={kind}")["events"] if x.get("guest_id") == guest["id"]]
                assert wait_for(lambda: "running: stacks.dir" in open(logs[-1]).read(), timeout=30), tail()
                time.sleep(2)  # a watchdog pass has seen the disk mounted
                subprocess.run(["umount", "-l", media], check=True, timeout=30)
                assert wait_for(lambda: compose_state(names[3]) == ["exited"], timeout=90), tail()
                assert wait_for(lambda: len(events("storage_disconnected")) == 1, timeout=90), tail()
                assert events("storage_disconnected")[0]["source"] == "guest"
                subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "felhom-media", media], check=True, timeout=30)
                # Generous bounds: seen once to time out at 30 s on a loaded 2-core machine.
                assert wait_for(lambda: compose_state(names[3]) == ["running"], timeout=90), tail()
                assert wait_for(lambda: len(events("storage_reconnected")) == 1, timeout=90), tail()
                assert compose_state(names[0]) == ["running"], "a stack not on the disk was touched"
            finally:
                if p:
                    p.send_signal(signal.SIGTERM)
                    p.wait(timeout=60)
                subprocess.run(["umount", "-l", media], capture_output=True, timeout=30)
                hub.close()

        checks.check("felhom-controller stacks deploy (3 stacks, one protected)", deploy)
        checks.check("kill -9 mid-quiesce: restarted, exactly the stopped stacks run again, marker gone", kill9_mid_quiesce_then_recover)
        checks.check("SIGTERM mid-quiesce: stacks started before the process exits 0", sigterm_mid_quiesce_restarts)
        checks.check("watchdog: a killed container is started; a stack stopped on purpose stays stopped", watchdog_restarts_a_killed_container)
        checks.check("with a real hub: secrets file written on deploy, storage CLI, disk events posted by the guest", with_a_real_hub)
    finally:
        for n in names:
            subprocess.run(["docker", "compose", "-p", n, "down"], capture_output=True, timeout=120)
        server.shutdown()
    return checks.finish()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
