#!/usr/bin/env python3
"""The route proxy (`felhom-agent route-proxy`, issue 16) against real PROXY protocol receivers.

HAProxy 2.6 (`accept-proxy`, an HTTP frontend that answers with what it read from the header) and
nginx (`listen … proxy_protocol`) sit behind the agent's proxy; clients connect over IPv4 and IPv6
from known ports and must see their own address and port in the answer. HAProxy verifies the
CRC32C TLV (it resets on a wrong one) and exposes the UNIQUE_ID. A plain capture backend checks the
header byte for byte with an independent decoder (proxy_v2.py) and that it arrives in one piece
before the payload; an `off` route relays bytes unchanged; a slow reader keeps the proxy's memory
bounded while a fast backend pushes (back-pressure); 1 GiB goes through each way. End to end, a
route published on the hub is run by the real agent (against the simulator, whose guest lives at
127.0.0.1) and a client's address reaches HAProxy; its probe reports a plain echo backend behind a
v2 route as `backend_does_not_expect_proxy_protocol` in the host report.
Usage: routes_test.py BIN_DIR
"""
import os, shutil, socket, subprocess, sys, tempfile, threading, time

sys.path.insert(0, os.path.dirname(__file__))
from common import Checks, HubProcess, Simulator, free_port, wait_for  # noqa: E402
from proxy_v2 import decode_v2  # noqa: E402

bin_dir = os.path.abspath(sys.argv[1])
agent_bin = os.path.join(bin_dir, "felhom-agent")
felhom_bin = os.path.join(bin_dir, "felhom")
hub_bin = os.path.join(bin_dir, "felhom-hub")


def start_proxy(listen, backend, *extra):
    """`felhom-agent route-proxy`, waited for until it says where it listens; returns (proc, port)."""
    proc = subprocess.Popen([agent_bin, "route-proxy", "--listen", listen, "--backend", backend, *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = proc.stdout.readline()
    if "listening on" not in line:
        proc.kill()
        raise RuntimeError(f"route-proxy did not start: {line}{proc.stdout.read()}")
    port = int(line.split("listening on ")[1].split(" ")[0].rsplit(":", 1)[1])
    return proc, port


def read_all(s):
    """Everything a socket sends until it closes its side."""
    data = b""
    while True:
        chunk = s.recv(1 << 20)
        if not chunk:
            return data
        data += chunk


def http_get(host, port, source_port, family=socket.AF_INET):
    """GET / from a chosen source port; returns (answer text, the source port used)."""
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1" if family == socket.AF_INET else "::1", source_port))
    s.settimeout(10)
    s.connect((host, port))
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = read_all(s)
    s.close()
    return data.decode(errors="replace")


class Capture:
    """A backend that keeps each connection's first bytes and echoes everything back."""

    def __init__(self):
        self.sock = listener()
        self.port = self.sock.getsockname()[1]
        self.first_reads = []
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.echo, args=(conn,), daemon=True).start()

    def echo(self, conn):
        first = True
        while True:
            data = conn.recv(65536)
            if not data:
                break
            if first:
                self.first_reads.append(data)
                first = False
            conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)
        conn.close()


def listener(backlog=16):
    """A listening TCP socket on 127.0.0.1 and a free port."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(backlog)
    return s


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    checks = Checks("routes")
    work = tempfile.mkdtemp(prefix="felhom-routes-")
    procs = []
    try:
        # HAProxy: accept-proxy on IPv4 and IPv6, answers with what the header said.
        hp, hp_plain = free_port(), free_port()
        with open(os.path.join(work, "haproxy.cfg"), "w") as f:
            f.write(f"""global
    log stderr format raw local0 info
defaults
    log global
    timeout connect 2s
    timeout client 5s
    timeout server 5s
frontend fe
    mode http
    bind 127.0.0.1:{hp} accept-proxy
    bind [::1]:{hp} accept-proxy
    http-request return status 200 content-type text/plain lf-string "pp=%[fc_rcvd_proxy] src=%[src] sport=%[src_port] dst=%[dst] dport=%[dst_port] uid=%[fc_pp_unique_id]\\n"
frontend plain
    mode http
    bind 127.0.0.1:{hp_plain}
    http-request return status 200 content-type text/plain string "plain\\n"
""")
        haproxy = subprocess.Popen(["haproxy", "-f", os.path.join(work, "haproxy.cfg"), "-db"], stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        procs.append(haproxy)
        # nginx: proxy_protocol listeners, answers with the PROXY addresses.
        ng = free_port()
        nroot = os.path.join(work, "nginx")
        os.makedirs(os.path.join(nroot, "tmp"))
        with open(os.path.join(nroot, "nginx.conf"), "w") as f:
            f.write(f"""daemon off;
master_process off;
worker_processes 1;
pid {nroot}/nginx.pid;
error_log {nroot}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {nroot}/tmp;
    proxy_temp_path {nroot}/tmp;
    fastcgi_temp_path {nroot}/tmp;
    uwsgi_temp_path {nroot}/tmp;
    scgi_temp_path {nroot}/tmp;
    server {{
        listen 127.0.0.1:{ng} proxy_protocol;
        listen [::1]:{ng} proxy_protocol;
        location / {{
            default_type text/plain;
            return 200 "pp_addr=$proxy_protocol_addr pp_port=$proxy_protocol_port pp_server_addr=$proxy_protocol_server_addr pp_server_port=$proxy_protocol_server_port\\n";
        }}
    }}
}}
""")
        nginx = subprocess.Popen(["nginx", "-p", nroot, "-c", os.path.join(nroot, "nginx.conf")], stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True)
        procs.append(nginx)
        deadline = time.time() + 10
        for port in (hp, hp_plain, ng):
            while time.time() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.1)

        to_haproxy, hport = start_proxy("[::]:0", f"127.0.0.1:{hp}", "--proxy-protocol", "v2", "--unique-id")
        procs.append(to_haproxy)
        to_nginx, nport = start_proxy("[::]:0", f"127.0.0.1:{ng}", "--proxy-protocol", "v2")
        procs.append(to_nginx)

        def haproxy_sees_the_client():
            for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
                sport = free_port()
                answer = http_get(host, hport, sport, family)
                assert "pp=1" in answer and f"src={host} sport={sport}" in answer and f"dport={hport}" in answer, answer
                uid = answer.split("uid=")[1].split()[0]
                assert uid.startswith("felhom-") and len(uid) == len("felhom-") + 16, answer

        def nginx_sees_the_client():
            for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
                sport = free_port()
                answer = http_get(host, nport, sport, family)
                assert f"pp_addr={host} pp_port={sport}" in answer and f"pp_server_port={nport}" in answer, answer

        def haproxy_rejects_a_wrong_crc():
            # The same HAProxy resets a header whose CRC32C is wrong: so the proxy's CRC is right.
            import proxy_v2
            header = bytearray(proxy_v2.encode_v2("127.0.0.1", 40000, "127.0.0.1", 443, crc=True))
            header[-1] ^= 1
            s = socket.create_connection(("127.0.0.1", hp), timeout=5)
            s.sendall(bytes(header) + b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                data = s.recv(1024)
            except ConnectionResetError:
                data = b""
            s.close()
            assert b"200" not in data, data

        capture = Capture()
        to_capture, cport = start_proxy("127.0.0.1:0", f"127.0.0.1:{capture.port}", "--proxy-protocol", "v2", "--unique-id")
        procs.append(to_capture)

        def header_is_byte_exact_and_first():
            sport = free_port()
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", sport))
            s.connect(("127.0.0.1", cport))
            s.sendall(b"hello")
            got = b""
            while len(got) < 5 or not got.endswith(b"hello"):
                got += s.recv(4096)
            s.close()
            decoded = decode_v2(got)
            assert decoded["src"] == ("127.0.0.1", sport) and decoded["dst"] == ("127.0.0.1", cport), decoded
            assert decoded["crc_ok"] is True and decoded["unique_id"].startswith(b"felhom-"), decoded
            assert got[decoded["length"]:] == b"hello", got
            first = capture.first_reads[-1]
            assert len(first) >= decoded["length"], f"the header was split: first read {len(first)} bytes of {decoded['length']}"

        plain, pport = start_proxy("127.0.0.1:0", f"127.0.0.1:{capture.port}")
        procs.append(plain)

        def off_route_relays_unchanged():
            payload = os.urandom(300_000)
            s = socket.create_connection(("127.0.0.1", pport), timeout=10)
            threading.Thread(target=lambda: (s.sendall(payload), s.shutdown(socket.SHUT_WR)), daemon=True).start()
            got = read_all(s)
            s.close()
            assert got == payload, (len(got), len(payload))

        def a_slow_reader_keeps_memory_bounded():
            # A backend that pushes as fast as it can; the client reads 64 KiB every 20 ms.
            src = listener(1)
            pusher, push_port = start_proxy("127.0.0.1:0", f"127.0.0.1:{src.getsockname()[1]}")
            procs.append(pusher)
            pushed = [0]
            stop = threading.Event()

            def push():
                conn, _ = src.accept()
                block = b"x" * 65536
                try:
                    while not stop.is_set():
                        conn.sendall(block)
                        pushed[0] += len(block)
                except OSError:
                    pass
                conn.close()
            threading.Thread(target=push, daemon=True).start()
            c = socket.create_connection(("127.0.0.1", push_port), timeout=10)
            c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            time.sleep(0.5)
            before = rss_kib(pusher.pid)
            read = 0
            t0 = time.time()
            while time.time() - t0 < 4:
                read += len(c.recv(65536))
                time.sleep(0.02)
            after = rss_kib(pusher.pid)
            stop.set()
            c.close()
            in_flight = pushed[0] - read
            # Without back-pressure the proxy would hold nearly everything pushed but not read.
            assert after - before < 16 * 1024, f"proxy RSS grew {after - before} KiB while {in_flight >> 20} MiB were unread"
            assert in_flight < 32 << 20, f"{in_flight >> 20} MiB pushed but not read: the backend was not slowed down"

        def one_gib_each_way():
            sink = listener(1)
            bulk, bport = start_proxy("127.0.0.1:0", f"127.0.0.1:{sink.getsockname()[1]}")
            procs.append(bulk)
            total = 1 << 30
            result = {}

            def backend():
                conn, _ = sink.accept()
                got = 0
                while got < total:
                    chunk = conn.recv(1 << 20)
                    if not chunk:
                        break
                    got += len(chunk)
                block = b"y" * (1 << 20)
                for _ in range(total >> 20):
                    conn.sendall(block)
                conn.shutdown(socket.SHUT_WR)
                result["up"] = got
                conn.close()
            t = threading.Thread(target=backend, daemon=True)
            t.start()
            c = socket.create_connection(("127.0.0.1", bport), timeout=60)
            block = b"z" * (1 << 20)
            t0 = time.time()
            for _ in range(total >> 20):
                c.sendall(block)
            down = 0
            while True:
                chunk = c.recv(1 << 20)
                if not chunk:
                    break
                down += len(chunk)
            seconds = time.time() - t0
            c.close()
            t.join(10)
            rss = rss_kib(bulk.pid)
            assert result.get("up") == total and down == total, (result, down)
            assert rss < 128 * 1024, f"proxy RSS {rss} KiB after 2 GiB"
            print(f"  2 GiB through the route in {seconds:.1f} s ({2 * 1024 / seconds:.0f} MiB/s), proxy RSS {rss // 1024} MiB")

        def port_in_use_is_named():
            busy = listener(1)
            r = subprocess.run([agent_bin, "route-proxy", "--listen", f"127.0.0.1:{busy.getsockname()[1]}", "--backend", "127.0.0.1:1"],
                               capture_output=True, text=True, timeout=20)
            busy.close()
            assert r.returncode == 1 and "listen_port_in_use" in r.stderr, r.stdout + r.stderr

        def garbage_and_silence_do_not_hurt():
            s = socket.create_connection(("127.0.0.1", pport), timeout=5)
            s.sendall(os.urandom(4096))
            s.close()
            quiet = socket.create_connection(("127.0.0.1", pport), timeout=5)
            off_route_relays_unchanged()  # still serving
            quiet.close()
            assert plain.poll() is None, "the proxy died"

        def published_route_end_to_end():
            import json
            seed = json.loads(subprocess.run([felhom_bin, "pve-sim", "--print-default-seed"], capture_output=True, text=True,
                                             check=True).stdout)
            seed["containers"]["100"]["address"] = "127.0.0.1"
            with open(os.path.join(work, "seed.json"), "w") as f:
                json.dump(seed, f)
            sim = Simulator(felhom_bin, ["--seed", os.path.join(work, "seed.json")])
            op = "routes-test-operator-key-0123456789ab"
            hub = HubProcess(hub_bin, f"sqlite:{work}/hub.sqlite", op)
            procs.extend([sim.proc, hub.proc])
            call = hub.call
            cid = call("POST", "/api/v1/customers", {"name": "R", "email": "r@example.hu", "domain": "r.example.hu"})["id"]
            host = call("POST", "/api/v1/hosts", {"customer_id": cid, "name": "routes"})["id"]
            token = call("POST", f"/api/v1/hosts/{host}/enrollment")["token"]
            signers = os.path.join(work, "allowed_signers")
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", os.path.join(work, "op")], check=True)
            with open(os.path.join(work, "op.pub")) as f, open(signers, "w") as out:
                out.write("operator@felhom " + " ".join(f.read().split()[:2]) + "\n")
            config = os.path.join(work, "agent.json")
            with open(config, "w") as f:
                json.dump({"pve": {"host": "127.0.0.1", "port": sim.port, "node": "pve1", "token_id": "felhom@pve!agent",
                                   "token_secret": sim.tokens["felhom@pve!agent"], "fingerprint": sim.fingerprint},
                           "hub": {"url": hub.url, "enrollment_token": token, "long_poll_seconds": 1},
                           "state_dir": os.path.join(work, "agent-state"), "signers_file": signers, "storage_manifest": False,
                           "provision": {"golden_template": "local:backup/vzdump-lxc-9000-2026_01_01-00_00_00.tar.zst"},
                           "restore_test": {"enabled": False}, "routes": {"listen": "127.0.0.1", "probe_seconds": 5}}, f)
            public, echo_public = free_port(), free_port()
            guests = [{"vmid": 100, "name": "web", "cpu": 2, "memory_mb": 2048, "disk_gb": 8, "run_state": "running"},
                      {"vmid": 101, "name": "db", "cpu": 1, "memory_mb": 1024, "disk_gb": 8, "run_state": "stopped"}]
            bad = {"guests": guests, "routes": [{"id": "web", "guest_vmid": 100, "listen_port": public, "target_port": hp,
                                                  "proxy_protocol": "v2"}]}
            import urllib.error
            try:
                call("PUT", f"/api/v1/hosts/{host}/desired", bad)
                raise AssertionError("a v2 route without the acknowledgement was accepted")
            except urllib.error.HTTPError as e:
                body = json.loads(e.read())
                assert e.code == 400 and body["error"]["path"] == "$.routes[0].backend_expects_proxy_protocol", body
            bad["routes"][0]["backend_expects_proxy_protocol"] = True
            # The probe's hello: HAProxy with accept-proxy answers it (healthy); without, it answers 400.
            hello = "GET / HTTP/1.0\r\n\r\n"
            bad["routes"][0]["probe_hello"] = hello
            bad["routes"].append({"id": "echo", "guest_vmid": 100, "listen_port": echo_public, "target_port": capture.port,
                                  "proxy_protocol": "v2", "backend_expects_proxy_protocol": True})
            bad["routes"].append({"id": "plain", "guest_vmid": 100, "listen_port": free_port(), "target_port": hp_plain,
                                  "proxy_protocol": "v2", "backend_expects_proxy_protocol": True, "probe_hello": hello})
            call("PUT", f"/api/v1/hosts/{host}/desired", bad)
            call("POST", f"/api/v1/hosts/{host}/desired/publish")
            run = subprocess.Popen([agent_bin, "run", "--config", config], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            procs.append(run)

            def answered():
                try:
                    return http_get("127.0.0.1", public, free_port())
                except OSError:
                    return ""
            assert wait_for(lambda: "pp=1" in answered(), timeout=60), "the published route never answered"
            sport = free_port()
            answer = http_get("127.0.0.1", public, sport)
            assert f"src=127.0.0.1 sport={sport}" in answer and answer.split("uid=")[1].startswith("web-"), answer

            def echo_reported():
                routes = call("GET", f"/api/v1/hosts/{host}/report").get("routes") or []
                return [r for r in routes if r["id"] == "echo" and r.get("reason") == "backend_does_not_expect_proxy_protocol"]
            assert wait_for(echo_reported, timeout=60), call("GET", f"/api/v1/hosts/{host}/report").get("routes")

            def hello_classified():
                routes = {r["id"]: r for r in call("GET", f"/api/v1/hosts/{host}/report").get("routes") or []}
                web, plain = routes.get("web", {}), routes.get("plain", {})
                return (web.get("state") == "healthy" and plain.get("state") == "unhealthy"
                        and plain.get("reason") == "backend_does_not_expect_proxy_protocol" and "400" in plain.get("message", "") and "hello" in plain.get("message", ""))
            assert wait_for(hello_classified, timeout=60), call("GET", f"/api/v1/hosts/{host}/report").get("routes")
            events = call("GET", f"/api/v1/events?host_id={host}&type=route_unhealthy")["events"]
            assert any(e["data"].get("route") == "echo" for e in events), events

        checks.check("HAProxy accept-proxy sees the client's address and port (IPv4, IPv6), UNIQUE_ID and CRC32C accepted",
                     haproxy_sees_the_client)
        checks.check("nginx proxy_protocol sees the client's address and port (IPv4, IPv6)", nginx_sees_the_client)
        checks.check("HAProxy resets a header with a wrong CRC32C (so the proxy's is right)", haproxy_rejects_a_wrong_crc)
        checks.check("the v2 header is byte-exact (independent decoder) and arrives in one piece before the payload",
                     header_is_byte_exact_and_first)
        checks.check("an off route relays bytes unchanged, half-close included", off_route_relays_unchanged)
        checks.check("a slow reader: the backend is slowed down, the proxy's memory stays bounded", a_slow_reader_keeps_memory_bounded)
        checks.check("1 GiB each way through a route", one_gib_each_way)
        checks.check("a listen port in use is refused as listen_port_in_use", port_in_use_is_named)
        checks.check("garbage and silent clients do not hurt the proxy", garbage_and_silence_do_not_hurt)
        checks.check("end to end: a published route runs in the agent, HAProxy sees the client; an echo backend and a hello answered "
                     "with 400 are reported unhealthy",
                     published_route_end_to_end)
    finally:
        for p in procs:
            p.kill()
        shutil.rmtree(work, ignore_errors=True)
    return checks.finish()


if __name__ == "__main__":
    sys.exit(main())
