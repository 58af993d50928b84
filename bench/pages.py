#!/usr/bin/env python3
"""Server time of kiln's pages with a large history.

Builds a master with B builders and W workers, fills its SQLite database with N finished builds
(each with three steps and a log), C changes and their buildsets, then asks every page a number
of times and reports each page's median and 90th percentile time, and the master's RSS.

    python3 bench/pages.py --kiln-bin-dir target/release [--builds 100000] [--builders 200]
        [--workers 1000] [--changes 10000] [--runs 20] [--keep DIR]

Standard library only; Linux only (reads /proc).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STEP_NAMES = ["worker_preparation", "compile", "test"]


def master_star(builders: int, workers: int, www_port: int, worker_port: int) -> str:
    per = max(1, workers // builders)
    names = [f"w{i:04d}" for i in range(workers)]
    lines = [
        "BuildmasterConfig = {}",
        "c = BuildmasterConfig",
        "c['db'] = {'db_url': 'sqlite:///state.sqlite'}",
        f"c['protocols'] = {{'msgpack_experimental_v7': {{'port': {worker_port}}}}}",
        f"c['www'] = {{'port': {www_port}, 'logfileName': ''}}",
        f"c['buildbotURL'] = 'http://127.0.0.1:{www_port}/'",
        f"c['workers'] = [worker.Worker(n, 'pass') for n in {names!r}]",
        "f = util.BuildFactory([steps.ShellCommand(name='compile', command=['true']),"
        " steps.ShellCommand(name='test', command=['true'])])",
        "c['builders'] = []",
    ]
    for i in range(builders):
        mine = [names[(i * per + k) % workers] for k in range(per)]
        lines.append(
            f"c['builders'].append(util.BuilderConfig(name='b{i:03d}', tags=['t{i % 10}'], workernames={mine!r}, factory=f))"
        )
    lines.append("c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=[b.name for b in c['builders']])]")
    return "\n".join(lines) + "\n"


def wait_http(port: int, path: str, deadline: float) -> None:
    while time.time() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"the master did not answer {path} in time")


def start(bin_dir: Path, master: Path, port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        # In the foreground, so that this process is the master whose memory is read and stopped.
        [str(bin_dir / "kiln"), "start", "--nodaemon", str(master)],
        stdout=subprocess.DEVNULL,
        stderr=open(master / "bench.log", "a"),
    )
    wait_http(port, "/api/v2/masters", time.time() + 120)
    return proc


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)


def fill(db: Path, builds: int, changes: int) -> dict:
    """Adds the history, as the master would have written it, in one transaction; the same
    statements fill Buildbot's own database, whose tables kiln's share."""
    con = sqlite3.connect(db)
    cur = con.cursor()
    builders = [r[0] for r in cur.execute("SELECT id FROM builders ORDER BY id")]
    workers = [r[0] for r in cur.execute("SELECT id FROM workers ORDER BY id")]
    master = cur.execute("SELECT id FROM masters").fetchone()[0]
    t0 = int(time.time()) - builds * 60
    cur.execute("BEGIN")
    for i in range(1, changes + 1):
        cur.execute(
            "INSERT INTO sourcestamps (id, ss_hash, branch, revision, repository, codebase, project, created_at)"
            " VALUES (?, ?, 'main', ?, 'https://github.com/o/r', '', 'p', ?)",
            (i, f"ss{i}", f"{i:040x}", t0 + i),
        )
        cur.execute(
            "INSERT INTO changes (changeid, author, comments, branch, revision, when_timestamp, repository,"
            " codebase, project, sourcestampid) VALUES (?, ?, ?, 'main', ?, ?, 'https://github.com/o/r', '', 'p', ?)",
            (i, f"dev{i % 50} <dev{i % 50}@example.org>", f"change {i}, fixes #{i}", f"{i:040x}", t0 + i, i),
        )
    numbers: dict[int, int] = {}
    for i in range(1, builds + 1):
        builder = builders[i % len(builders)]
        numbers[builder] = numbers.get(builder, 0) + 1
        start_at = t0 + i * 60
        result = 2 if i % 17 == 0 else 0
        cur.execute(
            "INSERT INTO buildsets (id, reason, submitted_at, complete, complete_at, results)"
            " VALUES (?, 'bench', ?, 1, ?, ?)",
            (i, start_at, start_at + 30, result),
        )
        cur.execute(
            "INSERT INTO buildset_sourcestamps (buildsetid, sourcestampid) VALUES (?, ?)",
            (i, 1 + i * changes // builds if i * changes // builds < changes else changes),
        )
        cur.execute(
            "INSERT INTO buildrequests (id, buildsetid, builderid, complete, results, submitted_at, complete_at)"
            " VALUES (?, ?, ?, 1, ?, ?, ?)",
            (i, i, builder, result, start_at, start_at + 30),
        )
        cur.execute(
            "INSERT INTO builds (id, number, builderid, buildrequestid, workerid, masterid, started_at,"
            " complete_at, locks_duration_s, state_string, results) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?)",
            (i, numbers[builder], builder, i, workers[i % len(workers)], master, start_at, start_at + 30,
             "failed test" if result else "build successful", result),
        )
        for n, name in enumerate(STEP_NAMES):
            step = (i - 1) * len(STEP_NAMES) + n + 1
            cur.execute(
                "INSERT INTO steps (id, number, name, buildid, started_at, complete_at, state_string, results,"
                " urls_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, '[]')",
                (step, n, name, i, start_at + n * 10, start_at + n * 10 + 10, name, result if n == 2 else 0),
            )
            if n > 0:
                cur.execute(
                    "INSERT INTO logs (id, name, slug, stepid, complete, num_lines, type)"
                    " VALUES (?, 'stdio', 'stdio', ?, 1, 2, 's')",
                    (step, step),
                )
                cur.execute(
                    "INSERT INTO logchunks (logid, first_line, last_line, content, compressed)"
                    " VALUES (?, 0, 1, ?, 0)",
                    (step, b"hrunning\nodone"),
                )
    con.commit()
    con.close()
    return {"builds": builds, "changes": changes, "builders": len(builders), "workers": len(workers)}


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def time_page(port: int, path: str, runs: int) -> tuple[float, float, int]:
    times = []
    size = 0
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    for _ in range(runs):
        t = time.perf_counter()
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        times.append((time.perf_counter() - t) * 1000)
        if response.status != 200:
            raise SystemExit(f"{path}: {response.status} {body[:300]!r}")
        size = len(body)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.9) - 1 if len(times) >= 10 else -1], size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kiln-bin-dir", type=Path, default=Path("target/release"))
    ap.add_argument("--builds", type=int, default=100_000)
    ap.add_argument("--builders", type=int, default=200)
    ap.add_argument("--workers", type=int, default=1000)
    ap.add_argument("--changes", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--www-port", type=int, default=18811)
    ap.add_argument("--worker-port", type=int, default=18812)
    ap.add_argument("--keep", type=Path, help="use (or fill once) this master directory")
    args = ap.parse_args()

    master = args.keep or Path(tempfile.mkdtemp(prefix="kiln-pages-"))
    master.mkdir(parents=True, exist_ok=True)
    (master / "master.star").write_text(master_star(args.builders, args.workers, args.www_port, args.worker_port))
    filled = (master / "filled.json")
    if not filled.exists():
        proc = start(args.kiln_bin_dir, master, args.www_port)
        stop(proc)
        t = time.time()
        facts = fill(master / "state.sqlite", args.builds, args.changes)
        facts["fill_s"] = round(time.time() - t, 1)
        filled.write_text(json.dumps(facts))
    facts = json.loads(filled.read_text())
    print(f"history: {facts}", file=sys.stderr)

    proc = start(args.kiln_bin_dir, master, args.www_port)
    try:
        idle = rss_kib(proc.pid)
        last = args.builds // args.builders
        pages = [
            "/", "/builders", "/builders/1", f"/builders/1/builds/{last}",
            f"/builders/1/builds/{last}/steps/1/logs/stdio", "/waterfall",
            "/waterfall?" + "&".join(f"builder=b{i:03d}" for i in range(50)),
            "/grid", "/tgrid", "/console", "/workers", "/workers/1", "/changes", "/changes/5000",
            "/one_line_per_build", "/rss", "/atom", "/badges/b001.svg", "/users", "/schedulers", "/about",
        ]
        results = []
        for path in pages:
            time_page(args.www_port, path, 2)  # warm the caches
            median, p90, size = time_page(args.www_port, path, args.runs)
            results.append({"page": path if len(path) < 60 else path[:57] + "...", "median_ms": round(median, 2),
                            "p90_ms": round(p90, 2), "bytes": size})
        busy = rss_kib(proc.pid)
    finally:
        stop(proc)
    print(json.dumps({"history": facts, "rss_idle_kib": idle, "rss_after_kib": busy, "pages": results}, indent=1))
    width = max(len(r["page"]) for r in results)
    for r in results:
        print(f"{r['page']:<{width}}  median {r['median_ms']:8.2f} ms  p90 {r['p90_ms']:8.2f} ms  {r['bytes']:>8} bytes",
              file=sys.stderr)


if __name__ == "__main__":
    main()
