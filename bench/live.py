#!/usr/bin/env python3
"""Many live clients following one log.

Starts a master and a worker, forces a build whose step writes a line every 10 ms for a while,
connects N clients that follow that log as kiln's log page does (its events on /sse/listen, and
after each one the new lines from /api/v2/logs/N/contents), and reports
what the master spent serving them: CPU seconds, RSS before and at the end, the events each
client received, the lines each read, and how long after the log finished the last client heard
of it.

    python3 bench/live.py --kiln-bin-dir target/release [--clients 1000] [--lines 2000]

Standard library only; Linux only (reads /proc).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def get(port: int, path: str) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", path)
    return json.loads(conn.getresponse().read())


def post(port: int, path: str, body: dict) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    return json.loads(conn.getresponse().read())


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def get_json(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str) -> dict:
    """One GET on a kept-alive HTTP/1.1 connection; the answer may be streamed in chunks."""
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\n\r\n".encode())
    await writer.drain()
    head = (await reader.readuntil(b"\r\n\r\n")).lower()
    if b"transfer-encoding: chunked" in head:
        body = b""
        while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
            body += (await reader.readexactly(size + 2))[:-2]
        await reader.readuntil(b"\r\n")
    else:
        length = next((int(l.split(b":", 1)[1]) for l in head.split(b"\r\n")
                       if l.startswith(b"content-length:")), 0)
        body = await reader.readexactly(length)
    if not head.startswith(b"http/1.1 200"):
        raise RuntimeError(f"GET {path}: {head.splitlines()[0]!r} {body[:200]!r}")
    return json.loads(body)


async def client(port: int, logid: int, done: dict, index: int, fetch: bool) -> None:
    """Follows the log as kiln's log page does: its events on /sse/listen and, after each one that
    says the log grew, the new lines from the contents API (unless `fetch` is off)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    api = await asyncio.open_connection("127.0.0.1", port, limit=1 << 22) if fetch else None
    writer.write(
        f"GET /sse/listen?path=logs/{logid}/* HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n".encode()
    )
    await writer.drain()
    events = 0
    lines = 0
    buffer = b""
    while True:
        chunk = await reader.read(65536)
        if not chunk:
            break
        buffer += chunk
        while b"\n\n" in buffer:
            block, buffer = buffer.split(b"\n\n", 1)
            if b"event: event" not in block:
                continue
            events += 1
            if api is not None:
                data = next(l for l in block.split(b"\n") if l.startswith(b"data:"))
                log = json.loads(data[5:])["message"]
                if log.get("num_lines", 0) > lines:
                    path = f"/api/v2/logs/{logid}/contents?offset={lines}&limit={log['num_lines'] - lines}"
                    body = await get_json(*api, path)
                    for c in body.get("logchunks", []):
                        lines += c["content"].count("\n")
            if b'"finished"' in block:
                done[index] = (events, time.time(), lines)
                writer.close()
                if api is not None:
                    api[1].close()
                return
    done[index] = (events, None, lines)


async def follow(port: int, logid: int, clients: int, fetch: bool) -> dict:
    done: dict = {}
    tasks = [asyncio.create_task(client(port, logid, done, i, fetch)) for i in range(clients)]
    for outcome in await asyncio.gather(*tasks, return_exceptions=True):
        if isinstance(outcome, Exception):
            print(f"a client failed: {outcome!r}", file=sys.stderr)
    return done


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kiln-bin-dir", type=Path, default=Path("target/release"))
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--lines", type=int, default=2000)
    ap.add_argument("--events-only", action="store_true",
                    help="do not fetch the new lines after each event, as the log page does")
    ap.add_argument("--www-port", type=int, default=18821)
    ap.add_argument("--worker-port", type=int, default=18822)
    args = ap.parse_args()
    raise_fd_limit()
    base = Path(tempfile.mkdtemp(prefix="kiln-live-"))
    master = base / "master"
    master.mkdir()
    step = f"for i in $(seq 1 {args.lines}); do echo line $i; sleep 0.01; done"
    (master / "master.star").write_text(
        "BuildmasterConfig = {}\nc = BuildmasterConfig\n"
        "c['db'] = {'db_url': 'sqlite:///state.sqlite'}\n"
        f"c['protocols'] = {{'msgpack_experimental_v7': {{'port': {args.worker_port}}}}}\n"
        f"c['www'] = {{'port': {args.www_port}, 'logfileName': ''}}\n"
        "c['workers'] = [worker.Worker('w1', 'pass')]\n"
        f"c['builders'] = [util.BuilderConfig(name='b', workernames=['w1'], factory=util.BuildFactory("
        f"[steps.ShellCommand(name='talk', command=['sh', '-c', {step!r}])]))]\n"
        "c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['b'])]\n"
    )
    kiln = args.kiln_bin_dir / "kiln"
    worker_bin = args.kiln_bin_dir / "kiln-worker"
    m = subprocess.Popen([str(kiln), "start", str(master)], stdout=subprocess.DEVNULL,
                         stderr=open(base / "master.log", "w"), preexec_fn=raise_fd_limit)
    subprocess.run([str(worker_bin), "create-worker", str(base / "worker"), f"127.0.0.1:{args.worker_port}",
                    "w1", "pass"], check=True, stdout=subprocess.DEVNULL)
    w = subprocess.Popen([str(worker_bin), "start", str(base / "worker")], stdout=subprocess.DEVNULL,
                         stderr=open(base / "worker.log", "w"))
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if get(args.www_port, "/api/v2/workers")["workers"][0]["connected_to"]:
                    break
            except (OSError, KeyError, IndexError, ValueError):
                pass
            time.sleep(0.1)
        rss_idle = proc_rss_kib(m.pid)
        post(args.www_port, "/api/v2/forceschedulers/force",
             {"jsonrpc": "2.0", "method": "force", "params": {"builderid": 1}, "id": 1})
        logid = None
        while logid is None and time.time() < deadline:
            try:
                logs = get(args.www_port, "/api/v2/builds/1/steps/1/logs").get("logs", [])
            except (OSError, ValueError):
                logs = []
            talk = [l for l in logs if l["name"] == "stdio" and not l["complete"]]
            logid = talk[-1]["logid"] if talk else None
            time.sleep(0.05)
        if logid is None:
            raise SystemExit("the log never appeared")
        cpu0 = proc_cpu(m.pid)
        t0 = time.time()
        done = asyncio.run(follow(args.www_port, logid, args.clients, not args.events_only))
        elapsed = time.time() - t0
        cpu = proc_cpu(m.pid) - cpu0
        rss_end = proc_rss_kib(m.pid)
        finished = [t for (_, t, _) in done.values() if t]
        events = sorted(e for (e, _, _) in done.values())
        lines_read = sorted(n for (_, _, n) in done.values())
        log = get(args.www_port, f"/api/v2/logs/{logid}")["logs"][0]
        result = {
            "clients": args.clients,
            "clients_that_saw_the_end": len(finished),
            "log_lines": log["num_lines"],
            "events_per_client_median": events[len(events) // 2] if events else 0,
            "lines_fetched": "no" if args.events_only else {
                "fewest": lines_read[0] if lines_read else 0,
                "most": lines_read[-1] if lines_read else 0,
            },
            "seconds_followed": round(elapsed, 1),
            "master_cpu_s": round(cpu, 2),
            "master_cpu_share": round(cpu / elapsed, 3) if elapsed else None,
            "rss_idle_mib": round(rss_idle / 1024, 1),
            "rss_end_mib": round(rss_end / 1024, 1),
            "last_client_after_first_s": round(max(finished) - min(finished), 3) if finished else None,
        }
        print(json.dumps(result, indent=1))
    finally:
        w.send_signal(signal.SIGTERM)
        m.send_signal(signal.SIGTERM)
        m.wait(timeout=60)
        w.wait(timeout=60)


if __name__ == "__main__":
    main()
