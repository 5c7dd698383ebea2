#!/usr/bin/env python3
"""A stand-in for cloudflared's metrics server in the tunnel supervision tests (cloudflared is not
packaged in Debian): `GET /ready` as cloudflared answers it — 200 {"status":200,"readyConnections":4}
when connected, 503 {"status":503,"readyConnections":0} while it has no edge connection.
What it says comes from the CONTROL file, read on each request: `ready`, `degraded`, or `exit`
(the process ends, as a crashed cloudflared would).
Usage: fake_cloudflared.py HOST:PORT CONTROL_FILE
"""
import json, os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

host, port = sys.argv[1].rsplit(":", 1)
control = sys.argv[2]


class Ready(BaseHTTPRequestHandler):
    def do_GET(self):
        mode = open(control).read().strip() if os.path.exists(control) else "ready"
        if mode == "exit":
            os._exit(1)
        if self.path != "/ready":
            self.send_response(404)
            self.end_headers()
            return
        status, conns = (200, 4) if mode == "ready" else (503, 0)
        body = json.dumps({"status": status, "readyConnections": conns, "connectorId": "6f1c0e4e-0000-4000-8000-000000000000"}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


HTTPServer((host, int(port)), Ready).serve_forever()
