#!/usr/bin/env python3
"""The REST API with a large history: time, size and master memory of each documented query.

Fills a master's SQLite database (as bench/pages.py does) with N finished builds and C changes,
each change with two files, starts the master (release build), and asks each query a number of
times, one connection: its median time, time to the first byte and size. Then it asks the
expensive ones four at a time while it times a cheap one, and reports the master's memory
(RSS, its anonymous and file-mapped parts, and the peak) idle, after the queries, 5 s later,
and once more after --rest-seconds (75 by default), when it should be back to idle.

    python3 bench/api.py --kiln-bin-dir target/release [--builds 100000] [--changes 100000]
        [--runs 10] [--keep DIR]

With --target buildbot it does the same against Buildbot's master from bench/.venv-buildbot
(bench/setup-buildbot.sh): the same builders and workers in its master.cfg, the same history
written into its own database by the same statements, the same queries. A query Buildbot does
not answer with 200 is reported with its status rather than stopping the run, and the whole
collections are asked once, without a warm-up, since one answer takes Buildbot minutes.

With --postgres URL the kiln master runs on that PostgreSQL database instead: the history is filled
into SQLite as usual, the master creates its schema at URL, and every row is copied over with
psql's \\copy (psql must be on the PATH).

Standard library only; Linux only (reads /proc).
"""

from __future__ import annotations

import argparse
import http.client
import json
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pages  # noqa: E402  (the same master and history as the pages benchmark)


def add_files(db: Path, changes: int) -> None:
    """Gives every change two files, as a push would have named them, and every finished request
    the claim of the master that built it."""
    con = sqlite3.connect(db)
    con.execute("BEGIN")
    con.execute(
        "INSERT INTO buildrequest_claims (brid, masterid, claimed_at)"
        " SELECT r.id, (SELECT id FROM masters), r.submitted_at FROM buildrequests r"
    )
    con.executemany(
        "INSERT INTO change_files (changeid, filename) VALUES (?, ?)",
        ((i, name) for i in range(1, changes + 1) for name in (f"src/m{i % 997}/f{i}.c", "README")),
    )
    con.commit()
    con.close()


def csv_field(value) -> str:
    """One field of PostgreSQL's CSV format: NULL unquoted and empty, text quoted, bytes as bytea
    in hex."""
    if value is None:
        return ""
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, bytes):
        return '"\\x' + value.hex() + '"'
    return '"' + str(value).replace('"', '""') + '"'


def copy_to_postgres(sqlite_db: Path, url: str, work: Path) -> None:
    """Puts every row of the filled SQLite database into the PostgreSQL database at `url`, which a
    master has just created: the same tables with the same columns. The rows it wrote are
    replaced, foreign keys are not checked while loading (the rows are consistent already), and
    each identity column continues after its largest id."""
    con = sqlite3.connect(sqlite_db)
    tables = [r[0] for r in con.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        " AND name <> 'kiln_migrations' ORDER BY name")]
    script = ["\\set ON_ERROR_STOP on", "SET session_replication_role = replica;",
              f"TRUNCATE {', '.join(tables)};"]
    for table in tables:
        cursor = con.execute(f"SELECT * FROM {table}")
        columns = [d[0] for d in cursor.description]
        path = work / f"{table}.csv"
        with open(path, "w") as out:
            for row in cursor:
                out.write(",".join(csv_field(v) for v in row) + "\n")
        script.append(f"\\copy {table} ({', '.join(columns)}) FROM '{path}' WITH (FORMAT csv)")
    con.close()
    script.append("""DO $$
DECLARE r record; m bigint;
BEGIN
  FOR r IN SELECT table_name, column_name FROM information_schema.columns
           WHERE table_schema = 'public' AND is_identity = 'YES' LOOP
    EXECUTE format('SELECT max(%I) FROM %I', r.column_name, r.table_name) INTO m;
    IF m IS NOT NULL THEN
      PERFORM setval(pg_get_serial_sequence(r.table_name, r.column_name), m);
    END IF;
  END LOOP;
END $$;""")
    script.append("ANALYZE;")
    (work / "copy.sql").write_text("\n".join(script) + "\n")
    subprocess.run(["psql", "-q", url, "-f", str(work / "copy.sql")], check=True, stdout=subprocess.DEVNULL)
    for table in tables:
        (work / f"{table}.csv").unlink()


def memory(pid: int) -> dict:
    """The master's resident memory in MiB: all of it, its heap and stacks, its mapped files, its peak."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
            fields[key] = round(int(value.split()[0]) / 1024, 1)
    return fields


# How long one answer may take; past it the query is reported as timed out (status 0).
TIMEOUT_S = 300.0


def ask(port: int, path: str) -> tuple[float, float, int, int]:
    """One GET: total and first-byte milliseconds, status (0 when it timed out), bytes."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT_S)
    t = time.perf_counter()
    try:
        conn.request("GET", path, headers={"Accept": "application/json"})
        response = conn.getresponse()
        first = response.read(1)
    except TimeoutError:
        conn.close()
        return TIMEOUT_S * 1000, TIMEOUT_S * 1000, 0, 0
    ttfb = (time.perf_counter() - t) * 1000
    body = first + response.read()
    total = (time.perf_counter() - t) * 1000
    conn.close()
    if response.status == 200:
        json.loads(body)  # a cut answer would not parse
    return total, ttfb, response.status, len(body)


def time_query(port: int, path: str, runs: int, warm: bool = True, strict: bool = True) -> dict:
    if warm:
        ask(port, path)  # warm the caches
    samples = [ask(port, path)]
    # A query that timed out once is not asked again.
    while len(samples) < runs and samples[-1][2] != 0:
        samples.append(ask(port, path))
    statuses = {s[2] for s in samples}
    if statuses != {200} and strict:
        raise SystemExit(f"{path}: answered {statuses}")
    result = {
        "query": path,
        "median_ms": round(statistics.median(s[0] for s in samples), 2),
        "first_byte_ms": round(statistics.median(s[1] for s in samples), 2),
        "bytes": samples[-1][3],
    }
    if statuses != {200}:
        result["statuses"] = sorted(statuses)
    return result


def buildbot_master_cfg(builders: int, workers: int, www_port: int, worker_port: int) -> str:
    """The pages benchmark's master in Buildbot's own words: PB for the workers, Python imports."""
    star = pages.master_star(builders, workers, www_port, worker_port)
    star = star.replace(f"c['protocols'] = {{'msgpack_experimental_v7': {{'port': {worker_port}}}}}",
                        f"c['protocols'] = {{'pb': {{'port': {worker_port}}}}}")
    star = star.replace(", 'logfileName': ''", "")
    return "from buildbot.plugins import *\n" + star


def start_buildbot(venv: Path, master: Path, port: int, workers: int) -> subprocess.Popen:
    """Starts Buildbot in the foreground and waits until it has registered every worker."""
    proc = subprocess.Popen(
        [str(venv / "bin" / "buildbot"), "start", "--nodaemon", str(master)],
        stdout=subprocess.DEVNULL,
        stderr=open(master / "bench.log", "a"),
    )
    deadline = time.time() + 600
    pages.wait_http(port, "/api/v2/masters", deadline)
    while time.time() < deadline:
        con = sqlite3.connect(master / "state.sqlite", timeout=30)
        try:
            if con.execute("SELECT count(*) FROM workers").fetchone()[0] >= workers:
                return proc
        except sqlite3.OperationalError:
            pass
        finally:
            con.close()
        time.sleep(1)
    raise SystemExit("Buildbot did not register its workers in time")


def stop_buildbot(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)


def under_load(port: int, expensive: list[str], cheap: str, seconds: float) -> dict:
    """Four clients ask the expensive queries in turn while one times the cheap query."""
    stop = time.time() + seconds
    answered: list[tuple[str, int, float]] = []

    def hammer(k: int) -> None:
        n = k
        while time.time() < stop:
            path = expensive[n % len(expensive)]
            total, _, status, _ = ask(port, path)
            answered.append((path, status, total))
            n += 1

    threads = [threading.Thread(target=hammer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    cheap_ms = []
    while time.time() < stop:
        cheap_ms.append(ask(port, cheap)[0])
    for t in threads:
        t.join()
    cheap_ms.sort()
    return {
        "expensive_answered": len(answered),
        "expensive_statuses": sorted({a[1] for a in answered}),
        "expensive_median_ms": round(statistics.median(a[2] for a in answered), 1) if answered else None,
        "cheap_query": cheap,
        "cheap_median_ms": round(statistics.median(cheap_ms), 2),
        "cheap_p99_ms": round(cheap_ms[max(0, int(len(cheap_ms) * 0.99) - 1)], 2),
        "cheap_max_ms": round(cheap_ms[-1], 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kiln-bin-dir", type=Path, default=Path("target/release"))
    ap.add_argument("--builds", type=int, default=100_000)
    ap.add_argument("--changes", type=int, default=100_000)
    ap.add_argument("--builders", type=int, default=200)
    ap.add_argument("--workers", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--load-seconds", type=float, default=20)
    ap.add_argument("--www-port", type=int, default=18821)
    ap.add_argument("--worker-port", type=int, default=18822)
    ap.add_argument("--keep", type=Path, help="use (or fill once) this master directory")
    ap.add_argument("--target", choices=["kiln", "buildbot"], default="kiln")
    ap.add_argument("--buildbot-venv", type=Path, default=Path(__file__).resolve().parent / ".venv-buildbot")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds one answer may take")
    ap.add_argument("--postgres", metavar="URL",
                    help="kiln: run the master on this PostgreSQL database (emptied first), with the "
                         "history filled into SQLite and copied over")
    ap.add_argument("--rest-seconds", type=float, default=75.0,
                    help="how long after the load the memory is read the last time")
    args = ap.parse_args()
    global TIMEOUT_S
    TIMEOUT_S = args.timeout
    buildbot = args.target == "buildbot"

    def start() -> subprocess.Popen:
        if buildbot:
            return start_buildbot(args.buildbot_venv, master, args.www_port, args.workers)
        return pages.start(args.kiln_bin_dir, master, args.www_port)

    def stop(proc: subprocess.Popen) -> None:
        (stop_buildbot if buildbot else pages.stop)(proc)

    master = args.keep or Path(tempfile.mkdtemp(prefix=f"{args.target}-api-"))
    master.mkdir(parents=True, exist_ok=True)
    if buildbot:
        if not (master / "buildbot.tac").exists():
            subprocess.run([str(args.buildbot_venv / "bin" / "buildbot"), "create-master", "--quiet", str(master)],
                           check=True)
        (master / "master.cfg").write_text(
            buildbot_master_cfg(args.builders, args.workers, args.www_port, args.worker_port))
    else:
        (master / "master.star").write_text(
            pages.master_star(args.builders, args.workers, args.www_port, args.worker_port))
    filled = master / "filled.json"
    if not filled.exists():
        proc = start()
        stop(proc)
        t = time.time()
        facts = pages.fill(master / "state.sqlite", args.builds, args.changes)
        add_files(master / "state.sqlite", args.changes)
        facts["fill_s"] = round(time.time() - t, 1)
        filled.write_text(json.dumps(facts))
    facts = json.loads(filled.read_text())
    if args.postgres and not buildbot:
        star = master / "master.star"
        star.write_text(star.read_text().replace("sqlite:///state.sqlite", args.postgres))
        # The master creates the schema and registers itself, its builders and workers; then the
        # history replaces those rows, with the same ids and names.
        proc = start()
        stop(proc)
        t = time.time()
        copy_to_postgres(master / "state.sqlite", args.postgres, master)
        facts["copy_to_postgres_s"] = round(time.time() - t, 1)
        facts["database"] = "postgresql"
    print(f"history: {facts}", file=sys.stderr)

    mid = args.changes // 2
    build = args.builds // 2
    queries = [
        # What Buildbot's front-end asks on its pages.
        "/api/v2/builds?limit=200&order=-buildid&property=owners",
        "/api/v2/builders/5/builds?limit=100&order=-number",
        "/api/v2/builds?complete=false&order=-buildid",
        f"/api/v2/builds/{build}/steps",
        f"/api/v2/steps?buildid={build}",
        f"/api/v2/builds/{build}/changes",
        "/api/v2/buildrequests?claimed=false&order=-priority&order=submitted_at",
        "/api/v2/buildrequests?limit=50&order=-buildrequestid",
        "/api/v2/buildsets?limit=50&order=-bsid&complete=true",
        "/api/v2/changes?limit=50&order=-changeid",
        f"/api/v2/changes/{mid}",
        "/api/v2/sourcestamps?limit=50&order=-ssid",
        f"/api/v2/builds/{build}/steps/2/logs",
        "/api/v2/builders",
        "/api/v2/workers",
        # Filters on text and on a change's files, with and without a page.
        "/api/v2/changes?files__contains=README&limit=50",
        f"/api/v2/changes?files__contains=src/m7/f{7 + 997 * 3}.c",
        "/api/v2/changes?author__contains=dev7&limit=100&order=-changeid",
        "/api/v2/changes?comments__contains=fixes%20%2399&order=-when_timestamp",
        "/api/v2/builds?results=2&limit=100&order=-buildid",
        "/api/v2/builds?state_string__contains=failed&limit=100",
        # A filter on a computed field: every change is read and tested on the way out.
        "/api/v2/changes?parent_changeids__contains=1&limit=10",
        "/api/v2/changes?properties__contains=reviewer&limit=10",
        "/api/v2/buildsets?sourcestamps__contains=1&limit=10",
        # Whole collections: streamed.
        "/api/v2/changes",
        "/api/v2/builds",
        "/api/v2/steps?limit=100000",
    ]
    proc = start()
    pid = proc.pid
    peak = {"RssAnon": 0.0, "VmRSS": 0.0}
    sampling = threading.Event()

    def sample() -> None:
        # The heap's peak, which VmHWM (the peak of heap and mapped file together) does not tell.
        while not sampling.wait(0.05):
            try:
                now = memory(pid)
            except (FileNotFoundError, ProcessLookupError):
                return
            for key in peak:
                peak[key] = max(peak[key], now.get(key, 0.0))

    sampler = threading.Thread(target=sample, daemon=True)
    try:
        time.sleep(2)
        idle = memory(pid)
        sampler.start()
        results = []
        for path in queries:
            whole = path in ("/api/v2/changes", "/api/v2/builds") or "limit=100000" in path
            runs = (1 if buildbot else 3) if whole else args.runs
            results.append(time_query(args.www_port, path, runs, warm=not (whole and buildbot),
                                      strict=not buildbot))
            print(f"{results[-1]}", file=sys.stderr)
        after = memory(pid)
        load = under_load(
            args.www_port,
            ["/api/v2/changes", "/api/v2/builds", "/api/v2/changes?files__contains=README",
             "/api/v2/buildsets?sourcestamps__contains=1"],
            "/api/v2/builds?limit=10&order=-buildid",
            args.load_seconds,
        )
        loaded = memory(pid)
        time.sleep(5)
        rested = memory(pid)
        # The master replaces each reading connection once it is a minute old, and the allocator
        # gives freed pages back within seconds: the memory a burst took is back after that.
        time.sleep(max(args.rest_seconds - 5, 0))
        recovered = memory(pid)
        sampling.set()
    finally:
        stop(proc)
    report = {"target": args.target, "history": facts, "memory_mib": {"idle": idle, "after_queries": after, "after_load": loaded,
                                               "5_s_later": rested,
                                               f"{args.rest_seconds:g}_s_later": recovered, "peak_sampled": peak},
              "queries": results, "under_load": load}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
