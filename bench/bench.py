#!/usr/bin/env python3
"""Side-by-side benchmark of a CI master speaking the Buildbot REST API v2.

Targets: "buildbot" (Buildbot from PyPI, see setup-buildbot.sh) and "kiln".
Every target is driven the same way: a master with a fixed configuration
(templates/), a number of local workers using the msgpack_experimental_v7
protocol, builds started through the force scheduler's JSON-RPC "force"
method, and progress observed through REST queries.

Scenarios (all enabled by default, see --scenarios):
  startup     spawn the master, time until GET /api/v2/masters answers;
              idle RSS with all workers connected.
  throughput  N forced builds of a single `true` step on W workers:
              wall time, builds/s, master CPU per build, master peak RSS.
  latency     force -> finished build, sequential runs on an idle master.
  log         one build printing a large log: ingest MB/s, raw download MB/s.
  log_pages   (kiln only, not by default) that log paged in headless Chromium:
              each page's time, the master's memory while browsing.
  hooks       change hook POST -> build request; a burst of changes.
  checkout    incremental Git checkouts of an unchanged repository: time from
              force to finished build beyond the git commands' own time.

Standard library only; Linux only (reads /proc).  See README.md.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import http.client
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import statistics
import string
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
TEMPLATES = BENCH_DIR / "templates"

# ---------------------------------------------------------------------------
# Targets: everything that differs between the systems under test lives here.
#
# Command lists are formatted with str.format using these keys:
#   {master_dir} {worker_dir} {worker_port} {www_port} {worker_name}
#   {worker_pass} {venv} (--buildbot-venv) {bin} (--kiln-bin-dir)
#   {msgpack_debug} (True with --buildbot-msgpack-debug, else False)
# The process started by master_start must itself be the master (CPU and
# memory are read from its /proc entry), so it must run in the foreground.
# ---------------------------------------------------------------------------
TARGETS = {
    "buildbot": {
        "config_template": TEMPLATES / "buildbot-master.cfg",
        "config_name": "master.cfg",
        # create-master also creates the sqlite schema; it is not timed.
        "master_setup": [["{venv}/bin/buildbot", "create-master", "--quiet", "{master_dir}"]],
        # --nodaemon runs twistd in this very process.
        "master_start": ["{venv}/bin/buildbot", "start", "--nodaemon", "{master_dir}"],
        "master_logs": ["twistd.log"],
        "worker_setup": [[
            "{venv}/bin/buildbot-worker", "create-worker", "--quiet",
            "--protocol", "msgpack_experimental_v7",
            "{worker_dir}", "127.0.0.1:{worker_port}", "{worker_name}", "{worker_pass}",
        ]],
        "worker_start": ["{venv}/bin/buildbot-worker", "start", "--nodaemon", "{worker_dir}"],
        "worker_logs": ["twistd.log"],
        # Appended to files in each worker directory after worker_setup.
        "worker_append": {
            "buildbot.tac": (
                "\n# added by bench.py: msgpack per-message debug logging\n"
                "import buildbot_worker.msgpack as _bench_msgpack\n"
                "_bench_msgpack.BuildbotWebSocketClientProtocol.debug = {msgpack_debug}\n"
            ),
        },
        "version": ["{venv}/bin/buildbot", "--version"],
        "path_prepend": ["{venv}/bin"],
    },
    "kiln": {
        "config_template": TEMPLATES / "kiln-master.star",
        "config_name": "master.star",
        "master_setup": [],
        "master_start": ["{bin}/kiln", "start", "--nodaemon", "{master_dir}"],
        "master_logs": [],
        "worker_setup": [[
            "{bin}/kiln-worker", "create-worker",
            "{worker_dir}", "127.0.0.1:{worker_port}", "{worker_name}", "{worker_pass}",
        ]],
        "worker_start": ["{bin}/kiln-worker", "start", "--nodaemon", "{worker_dir}"],
        "worker_logs": [],
        "worker_append": {},
        "version": ["{bin}/kiln", "--version"],
        "path_prepend": [],
    },
}

FORCE_USER = "Bench <bench@example.com>"
LOG_LINE = "kiln bench log line: the quick brown fox jumps over the lazy dog 0123456789"
# A line of a step of builder 'b' with --step-lines (a `seq -f` format: %g is the number).
STEP_LINE = "compiling unit %g of the project: 3 warnings, 0 errors, 12 tests passed"
MB = 1_000_000  # all "MB" figures are decimal megabytes
SETUP_TIMEOUT = 180.0
STOP_TIMEOUT = 20.0


class BenchError(Exception):
    """A failure that aborts the run with a clear message."""


def log(msg: str) -> None:
    ts = time.strftime("%H:%M:%S")
    print(f"[{ts}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# /proc helpers
# ---------------------------------------------------------------------------
CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu_seconds(pid: int) -> float:
    """utime+stime of the process plus those of its reaped children."""
    with open(f"/proc/{pid}/stat", "rb") as fh:
        data = fh.read()
    fields = data[data.rindex(b")") + 2:].split()
    # fields[0] is field 3 ("state"); utime=14, stime=15, cutime=16, cstime=17
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime + cutime + cstime) / CLK_TCK


def proc_status_kb(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise BenchError(f"{key} not found in /proc/{pid}/status")


def host_busy_seconds() -> float:
    """CPU seconds spent non-idle on the whole host since boot (all CPUs)."""
    with open("/proc/stat", encoding="ascii") as fh:
        vals = [int(x) for x in fh.readline().split()[1:9]]
    # user nice system idle iowait irq softirq steal
    return (sum(vals) - vals[3] - vals[4]) / CLK_TCK


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def median(xs):
    return statistics.median(xs) if xs else None


def percentile(xs, p):
    if not xs:
        return None
    s = sorted(xs)
    k = (len(s) - 1) * p / 100.0
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


# ---------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------
_LIVE: list["Proc"] = []


class Proc:
    """A child process in its own process group, output sent to a file."""

    def __init__(self, name: str, argv: list[str], cwd: Path, out: Path, env: dict):
        self.name = name
        self.argv = argv
        self.out = out
        self._fh = open(out, "ab")
        try:
            self.popen = subprocess.Popen(
                argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                stdout=self._fh, stderr=subprocess.STDOUT, start_new_session=True,
            )
        except OSError as e:
            self._fh.close()
            raise BenchError(f"cannot start {name}: {shlex.join(argv)}: {e}") from e
        self.pid = self.popen.pid
        self.started = time.monotonic()
        _LIVE.append(self)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        if self.popen.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                log(f"{self.name} ignored SIGTERM for {timeout:.0f}s; sending SIGKILL")
        # Whatever is left in the group (the leader or stray children) is killed.
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:
            log(f"warning: {self.name} (pid {self.pid}) did not exit after SIGKILL")
        self._fh.close()
        if self in _LIVE:
            _LIVE.remove(self)


def stop_all() -> None:
    for p in list(reversed(_LIVE)):
        p.stop(timeout=5)


def run_setup(argv: list[str], cwd: Path, env: dict, what: str) -> None:
    try:
        r = subprocess.run(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=SETUP_TIMEOUT)
    except FileNotFoundError as e:
        raise BenchError(f"{what}: command not found: {argv[0]}") from e
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"{what}: timed out after {SETUP_TIMEOUT:.0f}s: {shlex.join(argv)}") from e
    if r.returncode != 0:
        out = (r.stdout + r.stderr).decode(errors="replace")[-3000:]
        raise BenchError(f"{what} failed (exit {r.returncode}): {shlex.join(argv)}\n{out}")


def tail(path: Path, n: int = 40) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


# ---------------------------------------------------------------------------
# REST / JSON-RPC client
# ---------------------------------------------------------------------------
class Api:
    """A keep-alive HTTP connection to the master (one per thread)."""

    def __init__(self, port: int, timeout: float):
        self.port = port
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def _request(self, method: str, path: str, body: bytes | None = None,
                 headers: dict | None = None, retry: bool = True):
        hdrs = {"Accept": "application/json"}
        if headers:
            hdrs.update(headers)
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            try:
                self.conn.request(method, path, body=body, headers=hdrs)
                return self.conn.getresponse()
            except (ConnectionError, http.client.RemoteDisconnected,
                    http.client.BadStatusLine) as e:
                # a keep-alive connection closed by the server: reconnect once
                self.close()
                if attempt or not retry:
                    raise BenchError(f"{method} {path}: {e}") from e
            except (socket.timeout, TimeoutError) as e:
                self.close()
                raise BenchError(f"{method} {path}: no answer within {self.timeout:.0f}s") from e
        raise AssertionError("unreachable")

    def get(self, path: str) -> tuple[int, bytes]:
        resp = self._request("GET", path)
        data = resp.read()
        if resp.getheader("connection", "").lower() == "close":
            self.close()
        return resp.status, data

    def get_json(self, path: str) -> dict:
        status, data = self.get(path)
        if status != 200:
            raise BenchError(f"GET {path}: HTTP {status}: {data[:500]!r}")
        try:
            return json.loads(data)
        except ValueError as e:
            raise BenchError(f"GET {path}: invalid JSON: {data[:200]!r}") from e

    def rpc(self, path: str, method: str, params: dict) -> object:
        body = json.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": 1})
        # Not retried: a lost answer must not turn into a duplicate build.
        resp = self._request("POST", path, body=body.encode(),
                             headers={"Content-Type": "application/json"}, retry=False)
        data = resp.read()
        try:
            obj = json.loads(data)
        except ValueError:
            obj = None
        if resp.status != 200 or not isinstance(obj, dict) or "error" in obj or "result" not in obj:
            raise BenchError(f"POST {path} {method}: HTTP {resp.status}: {data[:500]!r}")
        return obj["result"]

    def download(self, path: str, chunk: int = 1 << 20) -> int:
        """Stream a response body to nowhere; return its size in bytes."""
        resp = self._request("GET", path, headers={"Accept": "*/*"})
        if resp.status != 200:
            body = resp.read()
            raise BenchError(f"GET {path}: HTTP {resp.status}: {body[:500]!r}")
        n = 0
        while True:
            buf = resp.read(chunk)
            if not buf:
                break
            n += len(buf)
        self.close()
        return n


# ---------------------------------------------------------------------------
# A master with its workers, in a fresh temporary directory
# ---------------------------------------------------------------------------
class Master:
    def __init__(self, args, label: str):
        self.args = args
        self.spec = TARGETS[args.target]
        self.label = label
        parent = Path(args.workdir) if args.workdir else None
        if parent:
            parent.mkdir(parents=True, exist_ok=True)
        self.root = Path(tempfile.mkdtemp(prefix=f"bench-{args.target}-{label}-", dir=parent))
        self.master_dir = self.root / "master"
        self.www_port = free_port()
        self.worker_port = free_port()
        while self.worker_port == self.www_port:
            self.worker_port = free_port()
        self.worker_names = [f"w{i + 1}" for i in range(args.workers)]
        self.worker_pass = "pass"
        self.proc: Proc | None = None
        self.workers: list[Proc] = []
        self.api = Api(self.www_port, args.http_timeout)
        self.env = dict(os.environ)
        extra = [self.fmt(p) for p in self.spec["path_prepend"]]
        self.env["PATH"] = os.pathsep.join(extra + [self.env.get("PATH", "/usr/bin:/bin")])
        self.env.setdefault("LANG", "C.UTF-8")
        self.env.pop("PYTHONPATH", None)
        self.env.pop("VIRTUAL_ENV", None)
        self.builderids: dict[str, int] = {}

    # -- helpers -----------------------------------------------------------
    def fmt(self, s: str, **kw) -> str:
        return s.format(
            master_dir=self.master_dir, www_port=self.www_port, worker_port=self.worker_port,
            worker_pass=self.worker_pass, venv=self.args.buildbot_venv,
            bin=self.args.kiln_bin_dir, msgpack_debug=self.args.buildbot_msgpack_debug, **kw,
        )

    def fmt_argv(self, argv: list[str], **kw) -> list[str]:
        return [self.fmt(a, **kw) for a in argv]

    def worker_dir(self, name: str) -> Path:
        return self.root / "workers" / name

    def check_alive(self) -> None:
        if self.proc is not None and not self.proc.alive():
            raise BenchError(
                f"master exited unexpectedly (code {self.proc.popen.returncode})\n"
                + self.log_tails())
        for w in self.workers:
            if not w.alive():
                raise BenchError(
                    f"{w.name} exited unexpectedly (code {w.popen.returncode})\n"
                    + tail(w.out, 30))

    def log_tails(self) -> str:
        parts = []
        if self.proc is not None:
            parts.append(f"--- {self.proc.out} ---\n{tail(self.proc.out, 30)}")
        for name in self.spec["master_logs"]:
            p = self.master_dir / name
            if p.exists():
                parts.append(f"--- {p} ---\n{tail(p, 40)}")
        return "\n".join(parts)

    def wait_until(self, what: str, fn, timeout: float, interval: float):
        deadline = time.monotonic() + timeout
        last_err = None
        while True:
            self.check_alive()
            try:
                v = fn()
                if v:
                    return v
                last_err = None
            except BenchError as e:
                last_err = e
            if time.monotonic() >= deadline:
                msg = f"timed out after {timeout:.0f}s waiting for {what}"
                if last_err:
                    msg += f" (last error: {last_err})"
                raise BenchError(msg + "\n" + self.log_tails())
            time.sleep(interval)

    # -- lifecycle ---------------------------------------------------------
    def write_config(self) -> None:
        workers_py = ", ".join(
            f"worker.Worker({json.dumps(n)}, {json.dumps(self.worker_pass)})"
            for n in self.worker_names)
        log_bytes = int(self.args.log_mb * MB)
        log_cmd = ["sh", "-c", f"yes '{LOG_LINE}' | head -c {log_bytes}"]
        # Builder 'b' runs `true` once by default; --steps and --step-lines give it the
        # shape of a build that does some work and says so.
        if self.args.step_lines > 0:
            b_command = ["seq", "-f", STEP_LINE, str(self.args.step_lines)]
        else:
            b_command = ["true"]
        b_steps = "\n".join(
            f"f_true.addStep(steps.ShellCommand(command={json.dumps(b_command)}, name='step{i + 1}'))"
            if self.args.steps > 1 else
            f"f_true.addStep(steps.ShellCommand(command={json.dumps(b_command)}, name='true'))"
            for i in range(self.args.steps))
        tmpl = string.Template(Path(self.spec["config_template"]).read_text())
        text = tmpl.substitute(
            WWW_PORT=self.www_port, WORKER_PORT=self.worker_port, WORKERS=workers_py,
            WORKER_NAMES=json.dumps(self.worker_names), LOG_COMMAND=json.dumps(log_cmd),
            B_STEPS=b_steps,
            MSGPACK_DEBUG=self.args.buildbot_msgpack_debug,
            HOOKS=HOOKS_CONFIG.format(schedulers=self.args.hook_schedulers,
                                      timer=self.args.hook_burst_timer)
            if self.label == "hooks"
            else CHECKOUT_CONFIG.format(repo=str(self.root / "repo"))
            if self.label == "checkout"
            else getattr(self.args, "reporters_text", "")
            if self.label == "reporters" else "",
        )
        (self.master_dir / self.spec["config_name"]).write_text(text)

    def setup(self) -> None:
        """Untimed preparation of master and worker directories."""
        self.master_dir.mkdir(parents=True)
        for argv in self.spec["master_setup"]:
            run_setup(self.fmt_argv(argv), self.root, self.env, "master setup")
        self.write_config()
        for name in self.worker_names:
            wdir = self.worker_dir(name)
            wdir.parent.mkdir(parents=True, exist_ok=True)
            for argv in self.spec["worker_setup"]:
                run_setup(self.fmt_argv(argv, worker_dir=wdir, worker_name=name),
                          self.root, self.env, f"worker {name} setup")
            for fname, text in self.spec["worker_append"].items():
                with open(wdir / fname, "a", encoding="utf-8") as fh:
                    fh.write(self.fmt(text, worker_dir=wdir, worker_name=name))

    def start(self) -> float:
        """Spawn the master; return seconds until GET /api/v2/masters answers."""
        argv = self.fmt_argv(self.spec["master_start"])
        t0 = time.monotonic()
        self.proc = Proc("master", argv, self.master_dir, self.root / "master.out", self.env)
        probe = Api(self.www_port, 5.0)

        def ready():
            try:
                status, data = probe.get("/api/v2/masters")
            except (BenchError, OSError):
                probe.close()
                return False
            if status != 200:
                return False
            try:
                return "masters" in json.loads(data)
            except ValueError:
                return False

        self.wait_until("the REST API (GET /api/v2/masters)", ready,
                        self.args.start_timeout, 0.02)
        elapsed = time.monotonic() - t0
        probe.close()
        return elapsed

    def start_workers(self) -> float:
        """Spawn the workers; return seconds until all are connected."""
        t0 = time.monotonic()
        for name in self.worker_names:
            wdir = self.worker_dir(name)
            argv = self.fmt_argv(self.spec["worker_start"], worker_dir=wdir, worker_name=name)
            self.workers.append(Proc(f"worker {name}", argv, wdir, self.root / f"{name}.out", self.env))
        want = set(self.worker_names)

        def connected():
            ws = self.api.get_json("/api/v2/workers").get("workers", [])
            return want <= {w["name"] for w in ws if w.get("connected_to")}

        self.wait_until(f"{len(want)} workers to connect", connected, self.args.start_timeout, 0.1)
        return time.monotonic() - t0

    def load_builders(self) -> None:
        def have():
            bs = self.api.get_json("/api/v2/builders").get("builders", [])
            self.builderids = {b["name"]: b["builderid"] for b in bs}
            return {"b", "log"} <= set(self.builderids)

        self.wait_until("builders 'b' and 'log'", have, self.args.start_timeout, 0.1)

    def bring_up(self) -> dict:
        self.setup()
        t_api = self.start()
        t_workers = self.start_workers()
        self.load_builders()
        log(f"{self.label}: master up in {t_api:.2f}s, {len(self.workers)} workers in {t_workers:.2f}s"
            f" (www 127.0.0.1:{self.www_port}, workers 127.0.0.1:{self.worker_port}, dir {self.root})")
        return {"api_ready_s": t_api, "workers_connected_s": t_workers}

    def fill_history(self, builds: int) -> None:
        """Stops the master and its workers, adds `builds` finished builds (and as many changes)
        to its SQLite database as the master would have written them (bench/pages.py's
        filling), and brings them back up: the scenario then runs on a master with a past."""
        import pages
        for w in self.workers:
            w.stop()
        self.workers = []
        self.api.close()
        self.proc.stop()
        t0 = time.monotonic()
        pages.fill(self.master_dir / "state.sqlite", builds, builds)
        log(f"{self.label}: {builds} builds of history added in {time.monotonic() - t0:.0f}s")
        self.start()
        self.start_workers()
        self.load_builders()

    def stop(self) -> None:
        self.api.close()
        for w in self.workers:
            w.stop()
        if self.proc is not None:
            self.proc.stop()
        if not self.args.keep_dirs:
            shutil.rmtree(self.root, ignore_errors=True)
        else:
            log(f"kept {self.root}")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    # -- measurements --------------------------------------------------------
    def cpu(self) -> float:
        return proc_cpu_seconds(self.proc.pid)

    def workers_cpu(self) -> float:
        return sum(proc_cpu_seconds(w.pid) for w in self.workers)

    def cpu_window(self) -> "CpuWindow":
        return CpuWindow(self)

    def rss_kb(self) -> int:
        return proc_status_kb(self.proc.pid, "VmRSS")

    def hwm_kb(self) -> int:
        return proc_status_kb(self.proc.pid, "VmHWM")

    def force(self, api: Api, builder: str, scheduler: str) -> tuple[int, int]:
        bid = self.builderids[builder]
        res = api.rpc(f"/api/v2/forceschedulers/{scheduler}", "force",
                      {"builderid": bid, "username": FORCE_USER, "reason": "bench"})
        try:
            bsid, brids = res
            return int(bsid), int(brids[str(bid)])
        except (TypeError, ValueError, KeyError) as e:
            raise BenchError(f"unexpected force result: {res!r}") from e

    def build_for_request(self, brid: int) -> dict | None:
        bs = self.api.get_json(f"/api/v2/builds?buildrequestid={brid}").get("builds", [])
        return bs[0] if bs else None

    def wait_build(self, brid: int, timeout: float, interval: float,
                   seen: list | None = None) -> dict:
        """Poll until the build of request `brid` is complete.  If `seen` is
        given, the monotonic time the build was first seen is appended to it."""
        def done():
            b = self.build_for_request(brid)
            if b and seen is not None and not seen:
                seen.append(time.monotonic())
            return b if b and b.get("complete") else None

        return self.wait_until(f"build of request {brid} to finish", done, timeout, interval)


class CpuWindow:
    """CPU used by the master, by the workers (including the build commands
    they ran) and by everything else on the host between start and stop.
    "other" covers the bench client itself and any unrelated load; a large
    value means the run was disturbed."""

    def __init__(self, m: Master):
        self.m = m
        self.switches = SwitchCounter(m.proc.pid)
        self.t0 = time.monotonic()
        self.master0, self.workers0, self.host0 = m.cpu(), m.workers_cpu(), host_busy_seconds()

    def stop(self) -> dict:
        master = self.m.cpu() - self.master0
        workers = self.m.workers_cpu() - self.workers0
        host = host_busy_seconds() - self.host0
        wall = time.monotonic() - self.t0
        return {
            "master_cpu_s": master, "workers_cpu_s": workers,
            "other_cpu_s": max(0.0, host - master - workers),
            "host_cpu_busy_frac": host / (wall * (os.cpu_count() or 1)) if wall > 0 else None,
            "master_context_switches": self.switches.stop(),
        }


class SwitchCounter:
    """The context switches of a process's threads over a window, counted by `perf stat`
    (None without perf). On a virtual machine whose CPU time per unit of work drifts from one
    hour to the next, the count is exact: it compares two builds of the master where CPU time
    cannot, and each switch is a wake-up the master paid for. /proc cannot give it, since the
    counts of threads that ended during the window (SQLite's readers are replaced) are lost."""

    def __init__(self, pid: int):
        self.out = tempfile.NamedTemporaryFile(prefix="bench-switches-", suffix=".csv", delete=False)
        self.out.close()
        perf = shutil.which("perf")
        self.proc = None
        if perf:
            self.proc = subprocess.Popen(
                [perf, "stat", "-x", ",", "-e", "context-switches", "-p", str(pid),
                 "-o", self.out.name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> int | None:
        try:
            if self.proc is None:
                return None
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(10)
            for line in Path(self.out.name).read_text().splitlines():
                fields = line.split(",")
                if len(fields) > 2 and fields[2] == "context-switches" and fields[0].isdigit():
                    return int(fields[0])
            return None
        except (OSError, subprocess.TimeoutExpired):
            return None
        finally:
            Path(self.out.name).unlink(missing_ok=True)


# ---------------------------------------------------------------------------
# Scenarios
# ---------------------------------------------------------------------------
def scenario_startup(args) -> dict:
    api_s, workers_s, rss, hwm = [], [], [], []
    for i in range(args.startup_runs):
        with Master(args, f"startup{i + 1}") as m:
            m.setup()
            t_api = m.start()
            t_w = m.start_workers()
            time.sleep(args.settle)
            m.check_alive()
            api_s.append(t_api)
            workers_s.append(t_w)
            rss.append(m.rss_kb() / 1024)
            hwm.append(m.hwm_kb() / 1024)
            log(f"startup run {i + 1}: API after {t_api:.3f}s, workers after {t_w:.2f}s,"
                f" idle RSS {rss[-1]:.1f} MiB")
    return {
        "runs": args.startup_runs,
        "api_ready_s": api_s, "api_ready_median_s": median(api_s),
        "workers_connected_s": workers_s, "workers_connected_median_s": median(workers_s),
        "idle_rss_mib": rss, "idle_rss_median_mib": median(rss),
        "idle_hwm_mib": hwm,
    }


def scenario_throughput(args, label: str = "throughput", delivered=None) -> dict:
    """`delivered(n)` (reporters scenario) says whether every report of n builds has arrived;
    the CPU window then lasts until it has, so delivering the reports is counted."""
    n = args.builds
    with Master(args, label) as m:
        up = m.bring_up()
        if args.history:
            m.fill_history(args.history)
        time.sleep(args.settle)
        m.check_alive()
        bid = m.builderids["b"]
        # With a history, the scenario's builds come after the builds already complete.
        before = args.history
        b_before = max((b["number"] for b in m.api.get_json(
            f"/api/v2/builders/{bid}/builds?order=-number&limit=1").get("builds", [])), default=0)

        # Buildbot's /builds endpoint reports meta.total as the size of the
        # returned page when a limit is given, so counting with
        # ?complete=true&limit=1 does not work there.  Instead: the N-th
        # complete build exists iff ?complete=true&limit=1&offset=N-1 is
        # non-empty (the master is fresh and only builder "b" runs builds).
        def at_least_complete(k: int, api=m.api) -> bool:
            # With a history, the builds are counted among builder b's newer numbers, a short
            # range of its index, rather than past every complete build, which would cost the
            # master more with every build of the history.
            path = (f"/api/v2/builders/{bid}/builds?complete=true&number__gt={b_before}"
                    f"&limit=1&offset={k - 1}" if before
                    else f"/api/v2/builds?complete=true&limit=1&offset={k - 1}")
            return bool(api.get_json(path).get("builds"))

        def progress() -> int:
            """Approximate number of complete builds (for reports and stall detection)."""
            latest = m.api.get_json(f"/api/v2/builders/{bid}/builds?order=-number&limit=1")
            running = m.api.get_json(f"/api/v2/builders/{bid}/builds?complete=false")
            started = max((b["number"] for b in latest.get("builds", [])), default=0)
            return started - b_before - len(running.get("builds", []))

        if at_least_complete(1):
            raise BenchError("fresh master already has complete builds")

        results: list[tuple[int, int]] = []
        errors: list[BaseException] = []
        lock = threading.Lock()
        counter = iter(range(n))
        stop = threading.Event()
        submit_done = [0.0]

        def forcer():
            api = Api(m.www_port, args.http_timeout)
            try:
                while not stop.is_set():
                    with lock:
                        i = next(counter, None)
                    if i is None:
                        break
                    r = m.force(api, "b", "force")
                    with lock:
                        results.append(r)
                        if len(results) == n:
                            submit_done[0] = time.monotonic()
                    # Paced: the next build is forced once this one finished and the pause
                    # passed, so that builds end one at a time, as on most masters.
                    if args.pace:
                        while not stop.is_set() and not at_least_complete(i + 1, api):
                            time.sleep(args.poll_interval)
                        time.sleep(args.pace)
            except BaseException as e:  # noqa: BLE001 - reported by the main thread
                with lock:
                    errors.append(e)
                stop.set()
            finally:
                api.close()

        win = m.cpu_window()
        t0 = time.monotonic()
        forcers = 1 if args.pace else args.force_threads
        threads = [threading.Thread(target=forcer, daemon=True) for _ in range(forcers)]
        for t in threads:
            t.start()

        deadline = t0 + args.throughput_timeout
        last_count, last_change = -1, t0
        next_report = t0 + 10
        while True:
            time.sleep(args.poll_interval)
            if errors:
                stop.set()
                raise BenchError(f"force request failed: {errors[0]}")
            m.check_alive()
            if len(results) == n and at_least_complete(n):
                t_end = time.monotonic()
                break
            now = time.monotonic()
            if now >= next_report:
                count = progress()
                if count != last_count:
                    last_count, last_change = count, now
                log(f"throughput: {len(results)}/{n} forced, ~{count}/{n} builds complete"
                    f" after {now - t0:.0f}s")
                next_report = now + 10
                if now - last_change > args.stall_timeout:
                    stop.set()
                    raise BenchError(f"no build finished for {args.stall_timeout:.0f}s"
                                     f" (~{count}/{n} complete, {len(results)} forced)\n"
                                     + m.log_tails())
            if now >= deadline:
                stop.set()
                raise BenchError(f"throughput run exceeded {args.throughput_timeout:.0f}s"
                                 f" (~{last_count}/{n} complete)")
        for t in threads:
            t.join(5)
        reports_s = None
        if delivered is not None:
            limit = time.monotonic() + args.throughput_timeout
            while not delivered(n):
                m.check_alive()
                if time.monotonic() > limit:
                    raise BenchError("the reports of the builds were not all delivered in time")
                time.sleep(args.poll_interval)
            reports_s = time.monotonic() - t0
        cpu = win.stop()
        hwm = m.hwm_kb() / 1024
        wall = t_end - t0

        # Verification, outside the timed window.
        listed = f"/api/v2/builds?order=-buildid&limit={n}" if before else "/api/v2/builds"
        builds = m.api.get_json(listed).get("builds", [])
        brids = {brid for _, brid in results}
        ours = [b for b in builds if b.get("buildrequestid") in brids]
        bad = [b for b in ours if b.get("results") != 0 or not b.get("complete")]
        if len(ours) != n or len({b["buildrequestid"] for b in ours}) != n:
            raise BenchError(f"expected {n} builds for {n} requests, found {len(ours)}")
        if bad:
            raise BenchError(f"{len(bad)} builds did not succeed, e.g. {bad[0]!r}")

    return {
        "builds": n, "workers": args.workers, "force_threads": forcers, "pace_s": args.pace,
        "poll_interval_s": args.poll_interval, "all_reports_delivered_s": reports_s,
        "wall_s": wall, "builds_per_s": n / wall,
        "force_submit_s": submit_done[0] - t0 if submit_done[0] else None,
        **cpu,
        "master_cpu_ms_per_build": cpu["master_cpu_s"] * 1000 / n,
        "master_context_switches_per_build": (cpu["master_context_switches"] / n
                                              if cpu["master_context_switches"] is not None else None),
        "workers_cpu_ms_per_build": cpu["workers_cpu_s"] * 1000 / n,
        "master_peak_rss_mib": hwm, **up,
    }


def scenario_reporters(args) -> dict:
    """The throughput scenario with a MailNotifier (mode 'all'), an HttpStatusPush and an IRC
    bot configured, each delivering to a real receiver on loopback; CPU is counted until every
    mail, POST and IRC line of the builds has arrived."""
    import sinks
    work = Path(tempfile.mkdtemp(prefix="bench-sinks-"))
    kinds = set(args.reporter_kinds.split(","))
    http = sinks.HttpSink() if "http" in kinds else None
    smtp = sinks.SmtpSink(args.sink_python, work) if "mail" in kinds else None
    ngircd = sinks.tool("ngircd") if "irc" in kinds else None
    irc = sinks.IrcSink(ngircd, work) if ngircd else None
    try:
        args.reporters_text = sinks.reporters_config(
            smtp.port if smtp else None, http.port if http else None,
            irc.port if irc else None, buildbot=args.target == "buildbot")

        def delivered(n: int) -> bool:
            # HttpStatusPush posts when a build starts and when it finishes.
            return ((smtp is None or smtp.count >= n) and (http is None or http.count >= 2 * n)
                    and (irc is None or irc.count >= n))

        out = scenario_throughput(args, "reporters", delivered)
        out.update({"reporter_kinds": sorted(kinds),
                    "mails": smtp.count if smtp else None,
                    "http_posts": http.count if http else None,
                    "irc_lines": irc.count if irc else None})
        return out
    finally:
        for sink in (http, smtp, irc):
            if sink:
                sink.stop()
        args.reporters_text = ""


def scenario_latency(args) -> dict:
    with Master(args, "latency") as m:
        up = m.bring_up()
        time.sleep(args.settle)
        samples, force_rtt, to_start = [], [], []
        win = m.cpu_window()
        for i in range(args.latency_warmup + args.latency_runs):
            m.check_alive()
            seen: list[float] = []
            t0 = time.monotonic()
            _, brid = m.force(m.api, "b", "force")
            t1 = time.monotonic()
            b = m.wait_build(brid, args.latency_timeout, args.latency_poll, seen)
            t2 = time.monotonic()
            if b.get("results") != 0:
                raise BenchError(f"latency build failed: {b!r}")
            if i >= args.latency_warmup:
                samples.append(t2 - t0)
                force_rtt.append(t1 - t0)
                to_start.append(seen[0] - t0)
            time.sleep(args.latency_gap)
        cpu = win.stop()
        log(f"latency: median {median(samples) * 1000:.0f} ms over {len(samples)} runs"
            f" (build visible after {median(to_start) * 1000:.0f} ms)")
    return {
        "runs": args.latency_runs, "warmup": args.latency_warmup,
        "poll_interval_s": args.latency_poll,
        "median_s": median(samples), "min_s": min(samples), "p90_s": percentile(samples, 90),
        "max_s": max(samples), "samples_s": samples,
        "force_rpc_median_s": median(force_rtt),
        "build_visible_median_s": median(to_start),
        "other_cpu_s": cpu["other_cpu_s"], "host_cpu_busy_frac": cpu["host_cpu_busy_frac"], **up,
    }


def scenario_log(args) -> dict:
    expected = int(args.log_mb * MB)
    with Master(args, "log") as m:
        up = m.bring_up()
        time.sleep(args.settle)
        win = m.cpu_window()
        t0 = time.monotonic()
        _, brid = m.force(m.api, "log", "force-log")
        b = m.wait_build(brid, args.log_timeout, args.log_poll)
        t1 = time.monotonic()
        cpu_ingest = win.stop()
        hwm_ingest = m.hwm_kb() / 1024
        if b.get("results") != 0:
            raise BenchError(f"log build failed: {b!r}")
        ingest = t1 - t0
        server_s = None
        if isinstance(b.get("started_at"), (int, float)) and isinstance(b.get("complete_at"), (int, float)):
            server_s = b["complete_at"] - b["started_at"]

        steps = m.api.get_json(f"/api/v2/builds/{b['buildid']}/steps").get("steps", [])
        step = next((s for s in steps if s.get("name") == "log"), None)
        if step is None:
            raise BenchError(f"no step named 'log' in build {b['buildid']}: {[s.get('name') for s in steps]}")
        logs = m.api.get_json(f"/api/v2/steps/{step['stepid']}/logs").get("logs", [])
        stdio = next((lg for lg in logs if lg.get("slug") == "stdio" or lg.get("name") == "stdio"), None)
        if stdio is None:
            raise BenchError(f"no stdio log in step {step['stepid']}: {logs!r}")
        logid = stdio["logid"]

        dl_times, dl_bytes = [], None
        win = m.cpu_window()
        for _ in range(args.log_downloads):
            m.check_alive()
            api = Api(m.www_port, args.http_timeout)
            d0 = time.monotonic()
            n = api.download(f"/api/v2/logs/{logid}/raw")
            dl_times.append(time.monotonic() - d0)
            api.close()
            if n < expected:
                raise BenchError(f"raw log has {n} bytes, expected at least {expected}")
            dl_bytes = n
        cpu_dl = win.stop()
        hwm_all = m.hwm_kb() / 1024
        log(f"log: ingest {expected / MB / ingest:.1f} MB/s, download"
            f" {dl_bytes / MB / median(dl_times):.1f} MB/s")
    return {
        "log_bytes": expected, "poll_interval_s": args.log_poll, "command": f"yes '<{len(LOG_LINE)} chars>' | head -c {expected}",
        "log_lines": stdio.get("num_lines"),
        "ingest_s": ingest, "ingest_mb_per_s": expected / MB / ingest,
        "server_build_s": server_s,
        "ingest_master_cpu_s": cpu_ingest["master_cpu_s"],
        "ingest_workers_cpu_s": cpu_ingest["workers_cpu_s"],
        "ingest_other_cpu_s": cpu_ingest["other_cpu_s"],
        "ingest_host_cpu_busy_frac": cpu_ingest["host_cpu_busy_frac"],
        "ingest_master_peak_rss_mib": hwm_ingest,
        "download_bytes": dl_bytes, "download_s": dl_times,
        "download_mb_per_s": dl_bytes / MB / median(dl_times),
        "download_master_cpu_s_each": cpu_dl["master_cpu_s"] / args.log_downloads,
        "download_other_cpu_s": cpu_dl["other_cpu_s"],
        "master_peak_rss_mib": hwm_all, **up,
    }


def scenario_log_pages(args) -> dict:
    """kiln's own log page in headless Chromium, over a log of --log-mb: each visit's time, and
    the master's memory before the browsing and at its peak during it."""
    if args.target != "kiln":
        raise BenchError("log_pages measures kiln's own log page; run it with --target kiln")
    script = BENCH_DIR / "log_pages.mjs"
    env = dict(os.environ, KILN_NODE_MODULES=args.node_modules, KILN_CHROMIUM=args.chromium)
    with Master(args, "log") as m:
        up = m.bring_up()
        _, brid = m.force(m.api, "log", "force-log")
        b = m.wait_build(brid, args.log_timeout, args.log_poll)
        if b.get("results") != 0:
            raise BenchError(f"log build failed: {b!r}")
        steps = m.api.get_json(f"/api/v2/builds/{b['buildid']}/steps").get("steps", [])
        step = next((s for s in steps if s.get("name") == "log"), None)
        if step is None:
            raise BenchError(f"no step named 'log' in build {b['buildid']}")
        logs = m.api.get_json(f"/api/v2/steps/{step['stepid']}/logs").get("logs", [])
        stdio = next((lg for lg in logs if lg.get("slug") == "stdio"), None)
        if stdio is None:
            raise BenchError(f"no stdio log in step {step['stepid']}")
        url = (f"http://127.0.0.1:{m.www_port}/builders/{b['builderid']}/builds/{b['number']}"
               f"/steps/{step['number']}/logs/stdio")
        time.sleep(args.settle)
        rss_before = m.rss_kb() / 1024
        # Writing 5 to clear_refs resets VmHWM, so the peak below is the browsing's own.
        with open(f"/proc/{m.proc.pid}/clear_refs", "w") as f:
            f.write("5")
        win = m.cpu_window()
        out = subprocess.run(["node", str(script), url, str(stdio["num_lines"])], env=env,
                             capture_output=True, text=True, timeout=args.log_timeout)
        cpu = win.stop()
        if out.returncode != 0:
            raise BenchError(f"log_pages.mjs failed: {out.stderr[-2000:]}")
        visits = json.loads(out.stdout.strip().splitlines()[-1])
        peak = m.hwm_kb() / 1024
        rss_after = m.rss_kb() / 1024
        for v in visits:
            log(f"log_pages: {v['label']}: {v['ms']:.0f} ms, {v['lines']} lines in the page")
        log(f"log_pages: master RSS {rss_before:.0f} MiB before, peak {peak:.0f} MiB while"
            f" browsing, {rss_after:.0f} MiB after")
    return {
        "log_bytes": int(args.log_mb * MB), "log_lines": stdio.get("num_lines"),
        "visits": visits, "master_rss_before_mib": rss_before,
        "master_peak_rss_while_browsing_mib": peak, "master_rss_after_mib": rss_after,
        "browsing_master_cpu_s": cpu["master_cpu_s"], **up,
    }


# The hooks scenario's addition to both templates: the same text is Python and Starlark.
# Each of the N schedulers watches its own branch and builds at once (no tree-stable timer),
# so a change on one of them makes exactly one build request; the burst scheduler waits for
# its branch to be quiet, then builds the latest change.
HOOKS_CONFIG = """
c['www']['change_hook_dialects'] = {{'base': True}}
c['builders'].append(util.BuilderConfig(name='hooked', workernames=c['builders'][0].workernames, factory=f_true))
for i in range({schedulers}):
    c['schedulers'].append(schedulers.SingleBranchScheduler(name='hook-%d' % i, branch='hook-%d' % i,
        treeStableTimer=None, builderNames=['hooked']))
c['schedulers'].append(schedulers.SingleBranchScheduler(name='burst', branch='burst',
    treeStableTimer={timer}, builderNames=['hooked']))
"""


def post_change(api: "Api", branch: str, revision: str) -> None:
    body = urllib.parse.urlencode({
        "author": "bench <bench@example.org>", "branch": branch, "revision": revision,
        "repository": "https://example.org/bench.git", "project": "bench",
        "comments": "bench change", "files": json.dumps(["src/a.c"]),
    }).encode()
    resp = api._request("POST", "/change_hook/base", body=body,
                        headers={"Content-Type": "application/x-www-form-urlencoded"}, retry=False)
    data = resp.read()
    if resp.status != 200:
        raise BenchError(f"POST /change_hook/base: HTTP {resp.status}: {data[:300]!r}")


def last_buildrequest(api: "Api") -> int:
    reqs = api.get_json("/api/v2/buildrequests?order=-buildrequestid&limit=1")["buildrequests"]
    return reqs[0]["buildrequestid"] if reqs else 0


def scenario_hooks(args) -> dict:
    with Master(args, "hooks") as m:
        up = m.bring_up()
        time.sleep(args.settle)
        # 1. Latency: a POST until its build request is stored, with N schedulers looking.
        samples = []
        for i in range(args.hook_warmup + args.hook_runs):
            m.check_alive()
            before = last_buildrequest(m.api)
            t0 = time.monotonic()
            post_change(m.api, f"hook-{i % args.hook_schedulers}", f"lat-{i}")
            deadline = t0 + args.latency_timeout
            while last_buildrequest(m.api) <= before:
                if time.monotonic() > deadline:
                    raise BenchError("no build request for a posted change\n" + m.log_tails())
            t1 = time.monotonic()
            if i >= args.hook_warmup:
                samples.append(t1 - t0)
            time.sleep(args.latency_gap)
        log(f"hooks: POST -> build request median {median(samples) * 1000:.1f} ms"
            f" with {args.hook_schedulers} schedulers")
        # 2. A burst of changes on one branch, sent as fast as the threads can.
        n, threads = args.hook_changes, args.force_threads
        errors: list[str] = []
        win = m.cpu_window()
        t0 = time.monotonic()

        def sender(k: int) -> None:
            api = Api(m.www_port, args.http_timeout)
            try:
                for j in range(k, n, threads):
                    post_change(api, "burst", f"burst-{j}")
            except BenchError as e:
                errors.append(str(e))
            finally:
                api.close()

        ts = [threading.Thread(target=sender, args=(k,)) for k in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        burst_s = time.monotonic() - t0
        cpu = win.stop()
        if errors:
            raise BenchError(f"{len(errors)} burst senders failed: {errors[0]}")
        stored = m.api.get_json("/api/v2/changes?branch=burst&field=changeid&field=revision&field=branch")["changes"]
        if len(stored) != n or len({c["revision"] for c in stored}) != n:
            raise BenchError(f"{n} changes sent, {len(stored)} stored")
        # The burst scheduler builds the last change stored once the branch is quiet.
        last = max(stored, key=lambda c: c["changeid"])["revision"]

        def built():
            for bs in m.api.get_json("/api/v2/buildsets?order=-bsid&limit=5")["buildsets"]:
                if any(ss.get("revision") == last for ss in bs.get("sourcestamps", [])):
                    return True
            return False
        m.wait_until("the burst's buildset", built, args.latency_timeout + args.hook_burst_timer, 0.2)
        log(f"hooks: {n} changes in {burst_s:.1f}s ({n / burst_s:.0f}/s), all stored")
    return {
        "schedulers": args.hook_schedulers, "runs": args.hook_runs,
        "post_to_request_median_s": median(samples), "post_to_request_p90_s": percentile(samples, 90),
        "post_to_request_min_s": min(samples), "samples_s": samples,
        "burst_changes": n, "burst_s": burst_s, "burst_changes_per_s": n / burst_s,
        "burst_master_cpu_s": cpu["master_cpu_s"], **up,
    }


# The checkout scenario's addition: one builder whose only step is an incremental Git checkout.
CHECKOUT_CONFIG = """
c['builders'].append(util.BuilderConfig(name='checkout', workernames=c['builders'][0].workernames[:1],
    factory=util.BuildFactory([steps.Git(repourl={repo!r}, mode='incremental', name='git')])))
c['schedulers'].append(schedulers.ForceScheduler(name='force-checkout', builderNames=['checkout']))
"""


def make_repo(path: Path, files: int) -> None:
    """A git repository with `files` small files in one commit."""
    path.mkdir(parents=True)
    env = dict(os.environ, GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@x",
               GIT_COMMITTER_NAME="b", GIT_COMMITTER_EMAIL="b@x")
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=path, check=True, env=env)
    for i in range(files):
        d = path / f"src{i % 10}"
        d.mkdir(exist_ok=True)
        (d / f"f{i}.c").write_text(f"int f{i}(void) {{ return {i}; }}\n")
    subprocess.run(["git", "add", "-A"], cwd=path, check=True, env=env)
    subprocess.run(["git", "commit", "-q", "-m", "tree"], cwd=path, check=True, env=env)


def git_elapsed_s(m: "Master", buildid: int) -> tuple[float, int]:
    """The sum of the git step's commands' own times (the workers' `elapsedTime=` lines)."""
    steps = m.api.get_json(f"/api/v2/builds/{buildid}/steps").get("steps", [])
    step = next((s for s in steps if s.get("name") == "git"), None)
    if step is None:
        raise BenchError(f"no git step in build {buildid}")
    status, raw = m.api.get(f"/api/v2/steps/{step['stepid']}/logs/stdio/raw")
    if status != 200:
        raise BenchError(f"git step log: HTTP {status}")
    times = [float(line.split("=", 1)[1]) for line in raw.decode(errors="replace").splitlines()
             if line.startswith("elapsedTime=")]
    return sum(times), len(times)


def scenario_checkout(args) -> dict:
    with Master(args, "checkout") as m:
        make_repo(m.root / "repo", args.checkout_files)
        up = m.bring_up()
        time.sleep(args.settle)
        walls, gits, overheads, commands = [], [], [], []
        # The first build clones; the measured ones update an unchanged working copy.
        for i in range(args.latency_warmup + 1 + args.checkout_runs):
            m.check_alive()
            t0 = time.monotonic()
            _, brid = m.force(m.api, "checkout", "force-checkout")
            b = m.wait_build(brid, args.latency_timeout, args.checkout_poll)
            wall = time.monotonic() - t0
            if b.get("results") != 0:
                raise BenchError(f"checkout build failed: {b!r}\n" + m.log_tails())
            if i > args.latency_warmup:
                git_s, n = git_elapsed_s(m, b["buildid"])
                walls.append(wall)
                gits.append(git_s)
                overheads.append(wall - git_s)
                commands.append(n)
            time.sleep(args.latency_gap)
        log(f"checkout: force -> finished {median(walls) * 1000:.1f} ms, git commands"
            f" {median(gits) * 1000:.1f} ms ({median(commands)} commands), the rest"
            f" {median(overheads) * 1000:.1f} ms")
    return {
        "runs": args.checkout_runs, "files": args.checkout_files, "poll_interval_s": args.checkout_poll,
        "build_median_s": median(walls), "git_commands_median_s": median(gits),
        "git_commands": median(commands),
        "overhead_median_s": median(overheads), "overhead_p90_s": percentile(overheads, 90),
        "samples_overhead_s": overheads, **up,
    }


SCENARIOS = {
    "startup": scenario_startup,
    "throughput": scenario_throughput,
    "latency": scenario_latency,
    "log": scenario_log,
    "log_pages": scenario_log_pages,
    "hooks": scenario_hooks,
    "checkout": scenario_checkout,
    "reporters": scenario_reporters,
}

# (scenario, key, label, unit, format) rows shown in tables and comparisons.
METRICS = [
    ("reporters", "master_cpu_ms_per_build", "master CPU per build with the reporters", "ms", "{:.2f}"),
    ("reporters", "master_context_switches_per_build", "master context switches per build with the reporters", "", "{:.0f}"),
    ("reporters", "all_reports_delivered_s", "every report delivered after", "s", "{:.1f}"),
    ("startup", "api_ready_median_s", "start-up until REST answers (median)", "s", "{:.3f}"),
    ("startup", "workers_connected_median_s", "workers connected after spawn (median)", "s", "{:.2f}"),
    ("startup", "idle_rss_median_mib", "idle RSS, workers connected (median)", "MiB", "{:.1f}"),
    ("throughput", "wall_s", "wall time, first force to last build", "s", "{:.1f}"),
    ("throughput", "builds_per_s", "throughput", "builds/s", "{:.2f}"),
    ("throughput", "force_submit_s", "time to submit all forces", "s", "{:.1f}"),
    ("throughput", "master_cpu_ms_per_build", "master CPU per build", "ms", "{:.1f}"),
    ("throughput", "master_context_switches_per_build", "master context switches per build", "", "{:.0f}"),
    ("throughput", "workers_cpu_ms_per_build", "workers CPU per build (all workers)", "ms", "{:.1f}"),
    ("throughput", "master_peak_rss_mib", "master peak RSS (VmHWM)", "MiB", "{:.1f}"),
    ("throughput", "other_cpu_s", "other CPU on host during run (noise)", "s", "{:.1f}"),
    ("latency", "median_s", "force -> finished build (median)", "ms", "ms"),
    ("latency", "p90_s", "force -> finished build (p90)", "ms", "ms"),
    ("latency", "min_s", "force -> finished build (min)", "ms", "ms"),
    ("latency", "force_rpc_median_s", "force RPC round trip (median)", "ms", "ms"),
    ("latency", "build_visible_median_s", "force -> build started (median)", "ms", "ms"),
    ("latency", "other_cpu_s", "other CPU on host during runs (noise)", "s", "{:.1f}"),
    ("log", "ingest_mb_per_s", "log ingest", "MB/s", "{:.1f}"),
    ("log", "ingest_s", "log build duration (force to finished)", "s", "{:.1f}"),
    ("log", "ingest_master_cpu_s", "master CPU during ingest", "s", "{:.1f}"),
    ("log", "ingest_workers_cpu_s", "workers CPU during ingest (incl. command)", "s", "{:.1f}"),
    ("log", "ingest_other_cpu_s", "other CPU on host during ingest (noise)", "s", "{:.1f}"),
    ("log", "download_mb_per_s", "raw log download (median)", "MB/s", "{:.1f}"),
    ("log", "master_peak_rss_mib", "master peak RSS (VmHWM)", "MiB", "{:.1f}"),
    ("hooks", "post_to_request_median_s", "hook POST -> build request (median)", "ms", "ms"),
    ("hooks", "post_to_request_p90_s", "hook POST -> build request (p90)", "ms", "ms"),
    ("hooks", "burst_changes_per_s", "base hook burst, changes accepted", "changes/s", "{:.0f}"),
    ("hooks", "burst_s", "base hook burst duration", "s", "{:.1f}"),
    ("hooks", "burst_master_cpu_s", "master CPU during the burst", "s", "{:.1f}"),
    ("checkout", "build_median_s", "incremental git checkout build, force -> finished (median)", "ms", "ms"),
    ("checkout", "git_commands_median_s", "the git commands' own time (median)", "ms", "ms"),
    ("checkout", "git_commands", "git commands per checkout", "", "{:.0f}"),
    ("checkout", "overhead_median_s", "everything else: scheduling, protocol, polling (median)", "ms", "ms"),
    ("checkout", "overhead_p90_s", "everything else (p90)", "ms", "ms"),
]


def fmt_value(v, f: str) -> str:
    if v is None:
        return "-"
    if f == "ms":
        return f"{v * 1000:.0f}"
    return f.format(v)


def metric_rows(result: dict):
    for scen, key, label, unit, f in METRICS:
        s = result.get("scenarios", {}).get(scen)
        if s is None:
            continue
        yield scen, key, label, unit, f, s.get(key)


def print_table(result: dict) -> None:
    rows = [(scen, label, fmt_value(v, f), unit) for scen, _, label, unit, f, v in metric_rows(result)]
    head = ("scenario", "metric", result.get("version_short", result["target"]), "unit")
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(4)]
    line = "  ".join("{:<%d}" % w for w in widths[:2]) + "  {:>%d}  {:<%d}" % (widths[2], widths[3])
    print(line.format(*head))
    print(line.format(*("-" * w for w in widths)))
    for r in rows:
        print(line.format(*r))


def compare(paths: list[str]) -> None:
    results = [json.loads(Path(p).read_text()) for p in paths]
    names = [r.get("version_short", r["target"]) for r in results]
    if len(set(names)) < len(names):  # same version twice: tell them apart by file
        names = [f"{n} ({Path(p).stem})" for n, p in zip(names, paths)]
    keys, cells = [], {}
    for i, r in enumerate(results):
        for scen, key, label, unit, f, v in metric_rows(r):
            if (scen, key) not in cells:
                keys.append((scen, key, label, unit))
                cells[(scen, key)] = [None] * len(results)
            cells[(scen, key)][i] = fmt_value(v, f)
    head = ["scenario", "metric", "unit"] + names
    rows = [[scen, label, unit] + [c or "-" for c in cells[(scen, key)]]
            for scen, key, label, unit in keys]
    widths = [max(len(x[i]) for x in rows + [head]) for i in range(len(head))]
    for r in [head, ["-" * w for w in widths]] + rows:
        print("  ".join(c.ljust(w) if j < 3 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths))))


def host_info() -> dict:
    cpu = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        mem = int(Path("/proc/meminfo").read_text().split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return {
        "hostname": socket.gethostname(), "kernel": platform.release(), "cpu": cpu,
        "cpus": os.cpu_count(), "mem_mib": mem, "python": platform.python_version(),
        "loadavg_at_start": os.getloadavg(),
    }


def target_version(args) -> str:
    m_spec = TARGETS[args.target]
    argv = [a.format(venv=args.buildbot_venv, bin=args.kiln_bin_dir) for a in m_spec["version"]]
    try:
        r = subprocess.run(argv, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
        out = (r.stdout + r.stderr).decode(errors="replace").strip()
        return out if r.returncode == 0 else f"unknown ({out[:200]})"
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unknown ({e})"


def check_target(args) -> None:
    spec = TARGETS[args.target]
    argv0 = {Path(a.format(venv=args.buildbot_venv, bin=args.kiln_bin_dir))
             for a in [spec["master_start"][0], spec["worker_start"][0]]}
    missing = [str(p) for p in argv0 if not (p.is_file() and os.access(p, os.X_OK))]
    if missing:
        hint = ("run bench/setup-buildbot.sh" if args.target == "buildbot"
                else "build with `cargo build --release` or pass --kiln-bin-dir")
        raise BenchError(f"missing executable(s): {', '.join(missing)} ({hint})")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", choices=sorted(TARGETS))
    p.add_argument("--compare", nargs="+", metavar="RESULT.json",
                   help="print result files side by side and exit")
    p.add_argument("--scenarios", default="startup,throughput,latency,log",
                   help="comma-separated subset of: " + ",".join(SCENARIOS))
    p.add_argument("--workers", type=int, default=4, help="local workers per master (4)")
    p.add_argument("--builds", type=int, default=1000, help="throughput: forced builds (1000)")
    p.add_argument("--force-threads", type=int, default=4, help="throughput: concurrent force clients (4)")
    p.add_argument("--poll-interval", type=float, default=0.5, help="throughput: completion poll period, s (0.5)")
    p.add_argument("--throughput-timeout", type=float, default=3600, help="throughput: overall limit, s (3600)")
    p.add_argument("--stall-timeout", type=float, default=180, help="throughput: fail if no build finishes for this long, s (180)")
    p.add_argument("--latency-runs", type=int, default=20, help="latency: measured runs (20)")
    p.add_argument("--latency-warmup", type=int, default=2, help="latency: unmeasured runs first (2)")
    p.add_argument("--latency-poll", type=float, default=0.02, help="latency: poll period, s (0.02)")
    p.add_argument("--latency-gap", type=float, default=0.5, help="latency: idle pause between runs, s (0.5)")
    p.add_argument("--latency-timeout", type=float, default=120, help="latency: limit per build, s (120)")
    p.add_argument("--log-mb", type=float, default=100, help="log: output size in MB of 10^6 bytes (100)")
    p.add_argument("--log-downloads", type=int, default=3, help="log: raw downloads, median reported (3)")
    p.add_argument("--log-poll", type=float, default=0.02, help="log: poll period, s (0.02)")
    p.add_argument("--log-timeout", type=float, default=1800, help="log: limit for the build, s (1800)")
    p.add_argument("--node-modules", default=str(REPO_DIR / "target" / "test-env" / "browser" / "node_modules"),
                   help="log_pages: where playwright-core is installed")
    p.add_argument("--chromium", default="/usr/bin/chromium", help="log_pages: the browser")
    p.add_argument("--startup-runs", type=int, default=3, help="startup: fresh masters started (3)")
    p.add_argument("--hook-schedulers", type=int, default=50, help="hooks: change schedulers configured (50)")
    p.add_argument("--hook-runs", type=int, default=50, help="hooks: measured POSTs (50)")
    p.add_argument("--hook-warmup", type=int, default=3, help="hooks: unmeasured POSTs first (3)")
    p.add_argument("--hook-changes", type=int, default=10000, help="hooks: changes in the burst (10000)")
    p.add_argument("--hook-burst-timer", type=int, default=5, help="hooks: the burst scheduler's treeStableTimer, s (5)")
    p.add_argument("--checkout-runs", type=int, default=20, help="checkout: measured builds (20)")
    p.add_argument("--checkout-files", type=int, default=500, help="checkout: files in the repository (500)")
    p.add_argument("--checkout-poll", type=float, default=0.005, help="checkout: poll period, s (0.005)")
    p.add_argument("--steps", type=int, default=1,
                   help="throughput, reporters: steps in each build of builder 'b' (1)")
    p.add_argument("--step-lines", type=int, default=0,
                   help="throughput, reporters: lines each step prints; 0 runs `true` (0)")
    p.add_argument("--pace", type=float, default=0,
                   help="throughput, reporters: force each build once the one before finished and"
                        " this many seconds passed; 0 forces them all at once (0)")
    p.add_argument("--history", type=int, default=0,
                   help="throughput, reporters (kiln): finished builds and changes in the database"
                        " before the scenario starts (0)")
    p.add_argument("--reporter-kinds", default="mail,http,irc",
                   help="reporters: which reporters to configure (mail,http,irc)")
    p.add_argument("--sink-python", default=str(REPO_DIR / "target" / "test-env" / "venv" / "bin" / "python"),
                   help="reporters: a Python with aiosmtpd, for the SMTP receiver")
    p.add_argument("--settle", type=float, default=2.0, help="idle time after start-up before measuring, s (2)")
    p.add_argument("--start-timeout", type=float, default=120, help="limit for master/workers to come up, s (120)")
    p.add_argument("--http-timeout", type=float, default=120, help="socket timeout of REST requests, s (120)")
    p.add_argument("--buildbot-venv", default=str(BENCH_DIR / ".venv-buildbot"))
    p.add_argument("--buildbot-msgpack-debug", action="store_true",
                   help="keep Buildbot's built-in per-message msgpack debug logging"
                        " (on in stock Buildbot 4.3; off by default here)")
    p.add_argument("--kiln-bin-dir", default=str(REPO_DIR / "target" / "release"))
    p.add_argument("--workdir", help="parent of the temporary master directories (system temp dir)")
    p.add_argument("--keep-dirs", action="store_true", help="keep master/worker directories")
    p.add_argument("--output", "-o", help="results JSON (bench/results/<target>-<time>.json)")
    a = p.parse_args(argv)
    if not a.compare and not a.target:
        p.error("--target is required (or --compare)")
    a.scenario_list = [s.strip() for s in a.scenarios.split(",") if s.strip()]
    unknown = [s for s in a.scenario_list if s not in SCENARIOS]
    if unknown:
        p.error(f"unknown scenario(s): {', '.join(unknown)}")
    for name in ("workers", "builds", "force_threads", "latency_runs", "log_downloads", "startup_runs",
                 "steps"):
        if getattr(a, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if a.step_lines < 0:
        p.error("--step-lines must be 0 or more")
    if a.history < 0 or (a.history and a.target != "kiln"):
        p.error("--history takes 0 or more builds, and only with --target kiln")
    return a


def _on_signal(signum, _frame):
    raise SystemExit(f"bench: interrupted by signal {signum}")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.compare:
        try:
            compare(args.compare)
        except (OSError, ValueError, KeyError) as e:
            print(f"bench: error: cannot compare: {e}", file=sys.stderr)
            return 1
        return 0
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    started = _dt.datetime.now(_dt.timezone.utc)
    try:
        check_target(args)
        version = target_version(args)
        result = {
            "schema": 1, "target": args.target, "version": version,
            "version_short": f"{args.target} " + version.split("\n")[0].split(":")[-1].strip(),
            "started_at": started.isoformat(timespec="seconds"), "host": host_info(),
            "params": {k: v for k, v in vars(args).items() if k not in ("compare", "scenario_list")},
            "scenarios": {},
        }
        log(f"target {args.target}: {version.splitlines()[0] if version else '?'}")
        load1 = os.getloadavg()[0]
        if load1 > 0.5:
            log(f"warning: host load average is {load1:.2f}; results may be disturbed"
                " (see the 'other CPU' rows)")
        for name in args.scenario_list:
            log(f"scenario {name} ...")
            t = time.monotonic()
            result["scenarios"][name] = SCENARIOS[name](args)
            log(f"scenario {name} done in {time.monotonic() - t:.0f}s")
        result["finished_at"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        result["host"]["loadavg_at_end"] = os.getloadavg()
    except BenchError as e:
        print(f"bench: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    finally:
        stop_all()

    out = Path(args.output) if args.output else (
        BENCH_DIR / "results" / f"{args.target}-{started.strftime('%Y%m%dT%H%M%SZ')}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print()
    print_table(result)
    print(f"\nresults written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
