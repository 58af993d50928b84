"""Receivers for the reporters scenario of bench.py: an SMTP server (aiosmtpd, in a Python that
has it), an HTTP endpoint that counts POSTs, and an IRC server (ngIRCd) with a client in the
reporters' channel that counts the lines it hears. Each counts what arrives, so the scenario can
wait until every report of its builds was delivered before it stops measuring.
"""

import http.server
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HttpSink:
    """Counts POSTs; answers 200."""

    def __init__(self):
        self.count = 0
        self.lock = threading.Lock()
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            # Keep-alive, as the forges and chat services that receive statuses offer.
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(n)
                with sink.lock:
                    sink.count += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()


SMTP_SCRIPT = r'''
import asyncio, sys
from aiosmtpd.controller import Controller
count = 0
class H:
    async def handle_DATA(self, server, session, envelope):
        global count
        count += 1
        with open(sys.argv[2], "w") as f:
            f.write(str(count))
        return "250 OK"
c = Controller(H(), hostname="127.0.0.1", port=int(sys.argv[1]))
c.start()
print("ready", flush=True)
asyncio.new_event_loop().run_forever()
'''


class SmtpSink:
    """aiosmtpd, counting the mails it accepts in a file."""

    def __init__(self, python: str, workdir: Path):
        self.port = free_port()
        self.count_file = workdir / "smtp-count"
        script = workdir / "smtp_sink.py"
        script.write_text(SMTP_SCRIPT)
        self.proc = subprocess.Popen([python, str(script), str(self.port), str(self.count_file)],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("ready"):
            raise RuntimeError(f"the SMTP sink did not start with {python}: {line!r}")

    @property
    def count(self) -> int:
        try:
            return int(self.count_file.read_text() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def stop(self):
        self.proc.kill()
        self.proc.wait()


class IrcSink:
    """ngIRCd, and a client in #bench that counts the messages the bot says there."""

    def __init__(self, ngircd: str, workdir: Path, nick: str = "benchbot"):
        self.port = free_port()
        conf = workdir / "ngircd.conf"
        conf.write_text(
            f"[Global]\nName = irc.bench.test\nInfo = bench\nListen = 127.0.0.1\nPorts = {self.port}\n"
            # No penalty pacing: the server would otherwise let the bot say about three lines
            # a second, which measures the server, not the master.
            f"PidFile = {workdir / 'ngircd.pid'}\n[Limits]\nMaxNickLength = 30\nMaxPenaltyTime = 0\n"
            "[Options]\nPAM = no\nIdent = no\nDNS = no\n")
        self.proc = subprocess.Popen([ngircd, "-n", "-f", str(conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.sock = socket.create_connection(("127.0.0.1", self.port))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.bot = nick
        self.count = 0
        self.sock.sendall(b"NICK listener\r\nUSER listener 0 * :listener\r\nJOIN #bench\r\n")
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        buf = b""
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            buf += data
            *lines, buf = buf.split(b"\r\n")
            for line in lines:
                if line.startswith(b"PING "):
                    self.sock.sendall(b"PONG " + line[5:] + b"\r\n")
                elif line.startswith(b":" + self.bot.encode() + b"!") and b" #bench :" in line:
                    self.count += 1

    def stop(self):
        try:
            self.sock.close()
        finally:
            self.proc.kill()
            self.proc.wait()


def reporters_config(smtp: int | None, http: int | None, irc: int | None, buildbot: bool) -> str:
    """The reporters the scenario configures: the same text is Python and Starlark."""
    text = "from buildbot.plugins import reporters\n" if buildbot else ""
    text += "\nc['services'] = [\n"
    if smtp is not None:
        text += f"""    reporters.MailNotifier(fromaddr='bench@example.org', relayhost='127.0.0.1', smtpPort={smtp},
        sendToInterestedUsers=False, extraRecipients=['builds@example.org'],
        generators=[reporters.BuildStatusGenerator(mode='all')]),
"""
    if http is not None:
        text += f"    reporters.HttpStatusPush(serverUrl='http://127.0.0.1:{http}/status'),\n"
    if irc is not None:
        text += f"""    reporters.IRC(host='127.0.0.1', port={irc}, nick='benchbot', channels=['#bench'],
        notify_events=['finished'], useColors=False),
"""
    return text + "]\n"


def tool(name: str) -> str | None:
    return shutil.which(name) or (f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None)


if __name__ == "__main__":
    # A quick self-check: start the sinks and print their ports.
    d = Path(tempfile.mkdtemp())
    h = HttpSink()
    s = SmtpSink(sys.argv[1] if len(sys.argv) > 1 else sys.executable, d)
    print(h.port, s.port)
    h.stop()
    s.stop()
