"""A real SMTP server (aiosmtpd) for the hub's mail tests.

Writes each accepted message as NNN.json ({"mail_from", "rcpt_tos", "data"}) into --dir and prints
"READY <port>" once listening. Options: --starttls CERT KEY (TLS required before AUTH/MAIL),
--auth USER PASS (AUTH PLAIN/LOGIN required), --fail-first N (answer 451 to the first N messages).
"""
import argparse, json, os, socket, ssl, sys

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

p = argparse.ArgumentParser()
p.add_argument("--dir", required=True)
p.add_argument("--starttls", nargs=2, metavar=("CERT", "KEY"))
p.add_argument("--auth", nargs=2, metavar=("USER", "PASS"))
p.add_argument("--fail-first", type=int, default=0)
a = p.parse_args()


class Sink:
    def __init__(self):
        self.count = 0
        self.failures = a.fail_first

    async def handle_DATA(self, server, session, envelope):
        if self.failures > 0:
            self.failures -= 1
            return "451 4.3.0 try again later (test sink)"
        self.count += 1
        with open(os.path.join(a.dir, f"{self.count:03d}.json.tmp"), "w") as f:
            json.dump({"mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos,
                       "data": envelope.original_content.decode("utf-8", "replace"),
                       "tls": session.ssl is not None,
                       "auth": session.authenticated}, f)
        os.rename(os.path.join(a.dir, f"{self.count:03d}.json.tmp"), os.path.join(a.dir, f"{self.count:03d}.json"))
        return "250 OK"


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and \
        auth_data.login.decode() == a.auth[0] and auth_data.password.decode() == a.auth[1]
    return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself


kwargs = {}
if a.starttls:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(a.starttls[0], a.starttls[1])
    kwargs.update(tls_context=ctx, require_starttls=True)
if a.auth:
    kwargs.update(authenticator=authenticator, auth_required=True, auth_require_tls=bool(a.starttls))

s = socket.socket()
s.bind(("127.0.0.1", 0))
port = s.getsockname()[1]
s.close()
c = Controller(Sink(), hostname="127.0.0.1", port=port, **kwargs)
c.start()
print(f"READY {c.port}", flush=True)
try:
    sys.stdin.read()  # runs until the test closes our stdin or kills us
finally:
    c.stop()
