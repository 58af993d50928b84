"""A real SMTP server for the mail tests: aiosmtpd on the loopback address.

Each accepted mail is written to OUT_DIR/<n>.json with its envelope, its raw data, the user who
logged in, whether the session was encrypted, how many mails its session carried with it and how
many NOOPs the server was sent before it. Options: --tls CERT KEY offers STARTTLS (and requires
it), --smtps CERT KEY speaks TLS from the start, --user NAME:PASSWORD requires that login,
--refuse ADDRESS answers 550 to that recipient, --one-mail-per-session ends a session that
starts a second mail, as a relay does that closed an idle session. Prints "ready PORT" once it
listens.
"""

import argparse
import asyncio
import json
import os
import socket
import ssl

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Recorder:
    def __init__(self, out_dir, refuse, one_mail_per_session):
        self.out_dir = out_dir
        self.refuse = refuse
        self.one_mail_per_session = one_mail_per_session
        self.count = 0
        self.noops = 0

    async def handle_NOOP(self, server, session, envelope, arg):
        self.noops += 1
        return "250 OK"

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.one_mail_per_session and getattr(session, "mails", 0) > 0:
            # The reply is written before the loop runs the close, which sends it first.
            asyncio.get_running_loop().call_soon(server.transport.close)
            return "421 4.4.2 closing the session"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        session.mails = getattr(session, "mails", 0) + 1
        record = {
            "session_mail": session.mails,
            "noops": self.noops,
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "data": envelope.content.decode("utf-8", "replace"),
            "auth": session.auth_data.decode() if isinstance(session.auth_data, bytes) else None,
            # After STARTTLS the session knows; with TLS from the start only the transport does.
            "tls": session.ssl is not None
            or server.transport.get_extra_info("ssl_object") is not None,
        }
        path = os.path.join(self.out_dir, f"{self.count}.json")
        with open(path + ".tmp", "w") as f:
            json.dump(record, f)
        os.rename(path + ".tmp", path)
        return "250 Message accepted"


class Users:
    def __init__(self, user, password):
        self.user = user.encode()
        self.password = password.encode()

    def __call__(self, server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == self.user
            and auth_data.password == self.password
        )
        return AuthResult(success=ok, auth_data=auth_data.login if ok else None)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out_dir")
    p.add_argument("--tls", nargs=2)
    p.add_argument("--smtps", nargs=2)
    p.add_argument("--user")
    p.add_argument("--refuse", action="append", default=[])
    p.add_argument("--one-mail-per-session", action="store_true")
    args = p.parse_args()
    kwargs = {}
    if args.tls:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(args.tls[0], args.tls[1])
        kwargs.update(tls_context=ctx, require_starttls=True)
    if args.smtps:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(args.smtps[0], args.smtps[1])
        kwargs.update(ssl_context=ctx)
    if args.user:
        user, password = args.user.split(":", 1)
        kwargs.update(authenticator=Users(user, password), auth_required=True)
    # A free port, found by binding one: aiosmtpd's controller checks its server by connecting
    # to the port it was given, so it needs a real one.
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    controller = Controller(
        Recorder(args.out_dir, args.refuse, args.one_mail_per_session), hostname="127.0.0.1", port=port, **kwargs
    )
    controller.start()
    print("ready", port, flush=True)
    try:
        asyncio.new_event_loop().run_forever()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
