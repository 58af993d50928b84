#!/usr/bin/env python3
"""Record how a real Buildbot master answers its REST API (data API v2) and
JSON-RPC control calls for one fixed scenario.

The answers are written to crates/kiln-master/tests/it/buildbot_api/ so that a
Rust test can compare kiln's answers with Buildbot's.  See the README.md there.

Usage:
    bench/record_api.py [--buildbot-venv DIR] [--worker-bin PATH] [--out-dir DIR] [--keep-dir]

Runs with any Python 3.9+ (standard library only); the master and the worker
are the executables of the Buildbot virtualenv (bench/setup-buildbot.sh).
Everything happens in a fresh temporary directory that is removed at the end;
the master and the worker are killed at the end even on failure.  Only
loopback addresses are used.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import http.client
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
DEFAULT_OUT = REPO_DIR / "crates" / "kiln-master" / "tests" / "it" / "buildbot_api"

MAX_STRING = 2000          # longer strings in recorded bodies are truncated
HTTP_TIMEOUT = 30.0        # socket timeout of one request
START_TIMEOUT = 120.0      # master REST up, builders loaded, worker connected
BUILD_TIMEOUT = 120.0      # one build to finish
POLL = 0.1

BUILDERS = ["ok", "fail", "props", "slow", "parent", "child", "nowhere"]

MASTER_CFG = """\
# -*- python -*-
# Buildbot master configuration used by bench/record_api.py to record the
# answers in answers.json (ports are the free loopback ports of that run).

from buildbot.plugins import schedulers, steps, util, worker

c = BuildmasterConfig = {{}}

c['title'] = 'kiln-compare'
c['titleURL'] = 'http://127.0.0.1:{www_port}/'
c['buildbotURL'] = 'http://127.0.0.1:{www_port}/'
# do not send usage data to buildbot.net
c['buildbotNetUsageData'] = None

c['db'] = {{'db_url': 'sqlite:///state.sqlite'}}

# w2 never connects.
c['workers'] = [worker.Worker('w1', 'pass'), worker.Worker('w2', 'pass2')]

# The ports are Twisted "strports" so that both listeners stay on loopback.
c['protocols'] = {{'pb': {{'port': 'tcp:{pb_port}:interface=127.0.0.1'}}}}
c['www'] = {{
    'port': 'tcp:{www_port}:interface=127.0.0.1',
    'change_hook_dialects': {{'base': True}},
}}

c['collapseRequests'] = False

f_ok = util.BuildFactory()
f_ok.addStep(steps.ShellCommand(name='hello', command=['echo', 'hello']))

f_fail = util.BuildFactory()
f_fail.addStep(steps.ShellCommand(name='failing', command='echo failing; exit 1'))

f_props = util.BuildFactory()
f_props.addStep(steps.SetPropertyFromCommand(name='setprop', command='echo v', property='p'))
f_props.addStep(steps.ShellCommand(name='show', command=['echo', util.Property('p')]))

f_slow = util.BuildFactory()
f_slow.addStep(steps.ShellCommand(name='sleep', command=['sleep', '60']))

f_parent = util.BuildFactory()
f_parent.addStep(steps.Trigger(name='trigger', schedulerNames=['child'], waitForFinish=True,
                               set_properties={{'x': 'y'}}))

f_child = util.BuildFactory()
f_child.addStep(steps.ShellCommand(name='childstep', command=['echo', 'child']))

f_nowhere = util.BuildFactory()
f_nowhere.addStep(steps.ShellCommand(command=['true']))

c['builders'] = [
    util.BuilderConfig(name='ok', workernames=['w1'], factory=f_ok),
    util.BuilderConfig(name='fail', workernames=['w1'], factory=f_fail),
    util.BuilderConfig(name='props', workernames=['w1'], factory=f_props),
    util.BuilderConfig(name='slow', workernames=['w1'], factory=f_slow),
    util.BuilderConfig(name='parent', workernames=['w1'], factory=f_parent),
    util.BuilderConfig(name='child', workernames=['w1'], factory=f_child),
    util.BuilderConfig(name='nowhere', workernames=['w2'], factory=f_nowhere),
]

c['schedulers'] = [
    schedulers.ForceScheduler(
        name='force',
        builderNames=['ok', 'fail', 'props', 'slow', 'parent', 'nowhere']),
    schedulers.Triggerable(name='child', builderNames=['child']),
    schedulers.SingleBranchScheduler(
        name='sbs', change_filter=util.ChangeFilter(branch='main'),
        treeStableTimer=None, builderNames=['ok']),
]
"""

SCENARIO = (
    "Buildbot master (SQLite) with workers w1 (connected, stock buildbot-worker, pb) and w2 "
    "(never connects); builders ok, fail, props, slow, parent, child, nowhere; schedulers "
    "force (ForceScheduler), child (Triggerable), sbs (SingleBranchScheduler on branch main, "
    "builder ok); see master.cfg. Sequence, each build finished before the next: "
    "force ok (build ok1); force fail (build fail); force props (build props); force parent "
    "(build parent, which triggers build child); POST /change_hook/base with files='a.txt' "
    "(rejected: the base hook expects files as JSON) and again with files='[\"a.txt\"]' "
    "(change -> build ok2 of ok via sbs); force slow and stop it with JSON-RPC 'stop' while "
    "its step runs (build slow, cancelled); force nowhere (request stays pending). Then the "
    "GETs, the JSON-RPC error cases, 'stop' on the finished ok1 and 'cancel' of the pending "
    "request of nowhere. The master and worker run with a minimal environment (PATH, HOME, "
    "LANG), which the worker lists in each stdio log header; the run's temporary directory "
    "(field 'workdir') appears in paths and in the master's name. "
    "Bodies: every 'environ' dict (worker environment) is replaced by {}; "
    "strings longer than 2000 characters are truncated and marked '...[truncated N chars]'; "
    "non-JSON bodies are stored as text."
)


class RecordError(Exception):
    """A failure that aborts the run with a clear message."""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port(exclude: set[int]) -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in exclude:
            exclude.add(port)
            return port


def tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


# ---------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------
class Proc:
    """A child process in its own process group, output sent to a file."""

    def __init__(self, name: str, argv: list[str], cwd: Path, out: Path, env: dict):
        self.name = name
        self.out = out
        self._fh = open(out, "ab")
        try:
            self.popen = subprocess.Popen(
                argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                stdout=self._fh, stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as e:
            self._fh.close()
            raise RecordError(f"cannot start {name}: {shlex.join(argv)}: {e}") from e
        self.pid = self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        if self.popen.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                log(f"{self.name} ignored SIGTERM for {timeout:.0f}s; sending SIGKILL")
        try:  # whatever is left in the group (e.g. a running `sleep`)
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:
            log(f"warning: {self.name} (pid {self.pid}) did not exit after SIGKILL")
        self._fh.close()


def run_tool(argv: list[str], cwd: Path, env: dict, what: str) -> str:
    try:
        r = subprocess.run(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=180)
    except FileNotFoundError as e:
        raise RecordError(f"{what}: command not found: {argv[0]}") from e
    except subprocess.TimeoutExpired as e:
        raise RecordError(f"{what}: timed out: {shlex.join(argv)}") from e
    out = (r.stdout + r.stderr).decode(errors="replace")
    if r.returncode != 0:
        raise RecordError(f"{what} failed (exit {r.returncode}): {shlex.join(argv)}\n{out[-3000:]}")
    return out


# ---------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------
def http_request(port: int, method: str, path: str, body: bytes | None = None,
                 headers: dict | None = None) -> tuple[int, str, bytes]:
    """One request on a fresh connection: (status, content-type, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=HTTP_TIMEOUT)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.getheader("content-type", ""), resp.read()
    except (OSError, http.client.HTTPException) as e:
        raise RecordError(f"{method} {path}: {e}") from e
    finally:
        conn.close()


def clean(value):
    """Replace 'environ' dicts by {} and truncate long strings."""
    if isinstance(value, dict):
        return {k: ({} if k == "environ" and isinstance(v, dict) else clean(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [clean(v) for v in value]
    if isinstance(value, str) and len(value) > MAX_STRING:
        return value[:MAX_STRING] + f"...[truncated {len(value) - MAX_STRING} chars]"
    return value


class Recorder:
    def __init__(self, port: int):
        self.port = port
        self.answers: list[dict] = []
        self.keys: set[str] = set()

    # -- plain helpers (not recorded) ---------------------------------------
    def get_json(self, path: str):
        status, _, data = http_request(self.port, "GET", "/api/v2/" + path,
                                       headers={"Accept": "application/json"})
        if status != 200:
            raise RecordError(f"GET /api/v2/{path}: HTTP {status}: {data[:500]!r}")
        try:
            return json.loads(data)
        except ValueError as e:
            raise RecordError(f"GET /api/v2/{path}: not JSON: {data[:200]!r}") from e

    def rpc(self, path: str, method: str, params: dict):
        """A JSON-RPC call that must succeed; returns (result, request, status, body)."""
        req = {"jsonrpc": "2.0", "method": method, "id": 1, "params": params}
        status, _, data = http_request(self.port, "POST", "/api/v2/" + path,
                                       json.dumps(req).encode(),
                                       {"Content-Type": "application/json"})
        try:
            obj = json.loads(data)
        except ValueError:
            obj = None
        if status != 200 or not isinstance(obj, dict) or "result" not in obj:
            raise RecordError(f"POST /api/v2/{path} {method}: HTTP {status}: {data[:500]!r}")
        return obj["result"], req, status, obj

    # -- recording ------------------------------------------------------------
    def add(self, key: str, method: str, path: str, request, status: int,
            ctype: str, data: bytes) -> dict:
        if key in self.keys:
            raise RecordError(f"duplicate answer key {key}")
        self.keys.add(key)
        text = data.decode("utf-8", errors="replace")
        body = text
        if "json" in ctype.lower() or text[:1] in ("{", "["):
            try:
                body = json.loads(text)
            except ValueError:
                pass
        entry = {"key": key, "method": method, "path": path, "request": request,
                 "status": status, "content_type": ctype, "body": clean(body)}
        self.answers.append(entry)
        return entry

    def record_get(self, key: str, path: str, accept: str = "application/json") -> dict:
        full = "/api/v2/" + path if path else "/api/v2"
        status, ctype, data = http_request(self.port, "GET", full, headers={"Accept": accept})
        return self.add(key, "GET", full, None, status, ctype, data)

    def record_post(self, key: str, path: str, request, raw: bytes | None = None,
                    ctype: str = "application/json") -> dict:
        """POST a JSON-RPC request (or `raw` bytes, recorded as text)."""
        full = "/api/v2/" + path
        data = raw if raw is not None else json.dumps(request).encode()
        status, rctype, body = http_request(self.port, "POST", full, data,
                                            {"Content-Type": ctype})
        rec = request if raw is None else raw.decode("utf-8", errors="replace")
        return self.add(key, "POST", full, rec, status, rctype, body)

    def add_rpc(self, key: str, path: str, req: dict, status: int, body) -> None:
        full = "/api/v2/" + path
        self.add(key, "POST", full, req, status, "application/json",
                 json.dumps(body).encode())


# ---------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------
class Run:
    def __init__(self, args):
        self.args = args
        self.venv = Path(args.buildbot_venv)
        self.root = Path(tempfile.mkdtemp(prefix="kiln-record-api-"))
        self.master_dir = self.root / "master"
        self.worker_dir = self.root / "w1"
        ports: set[int] = set()
        self.www_port = free_port(ports)
        self.pb_port = free_port(ports)
        # A minimal, fixed environment: the worker dumps its whole environment
        # into every command's stdio log header, which is recorded.
        home = self.root / "home"
        home.mkdir()
        path = [str(self.venv / "bin")]
        if self.worker_bin().parent != self.venv / "bin":
            path.append(str(self.worker_bin().parent))
        self.env = {"PATH": os.pathsep.join(path + ["/usr/local/bin", "/usr/bin", "/bin"]),
                    "HOME": str(home), "LANG": "C.UTF-8"}
        self.master: Proc | None = None
        self.worker: Proc | None = None
        self.rec = Recorder(self.www_port)
        self.builderids: dict[str, int] = {}
        self.builds: dict[str, dict] = {}   # symbolic name -> build
        self.cfg_text = ""

    # -- waiting ----------------------------------------------------------------
    def check_alive(self) -> None:
        if self.master is not None and not self.master.alive():
            raise RecordError(f"master exited (code {self.master.popen.returncode})\n" + self.log_tails())
        if self.worker is not None and not self.worker.alive():
            raise RecordError(f"worker exited (code {self.worker.popen.returncode})\n" + self.log_tails())

    def log_tails(self) -> str:
        parts = []
        for p in (self.master_dir / "twistd.log", self.worker_dir / "twistd.log",
                  self.root / "master.out", self.root / "worker.out"):
            if p.exists():
                parts.append(f"--- {p} ---\n{tail(p)}")
        return "\n".join(parts)

    def wait(self, what: str, fn, timeout: float, interval: float = POLL):
        deadline = time.monotonic() + timeout
        last_err = None
        while True:
            self.check_alive()
            try:
                v = fn()
                if v:
                    return v
                last_err = None
            except RecordError as e:
                last_err = e
            if time.monotonic() >= deadline:
                msg = f"timed out after {timeout:.0f}s waiting for {what}"
                if last_err:
                    msg += f" (last error: {last_err})"
                raise RecordError(msg + "\n" + self.log_tails())
            time.sleep(interval)

    # -- set-up -------------------------------------------------------------------
    def version(self) -> str:
        out = run_tool([str(self.venv / "bin" / "buildbot"), "--version"], self.root, self.env,
                       "buildbot --version")
        for line in out.splitlines():
            if line.startswith("Buildbot version:"):
                return line.split(":", 1)[1].strip()
        raise RecordError(f"cannot parse buildbot --version: {out!r}")

    def worker_bin(self) -> Path:
        if self.args.worker_bin:
            return Path(self.args.worker_bin)
        p = self.venv / "bin" / "buildbot-worker"
        if p.exists():
            return p
        return REPO_DIR / "target" / "test-env" / "venv" / "bin" / "buildbot-worker"

    def setup(self) -> None:
        bb = str(self.venv / "bin" / "buildbot")
        run_tool([bb, "create-master", "--quiet", str(self.master_dir)], self.root, self.env,
                 "buildbot create-master")
        self.cfg_text = MASTER_CFG.format(www_port=self.www_port, pb_port=self.pb_port)
        (self.master_dir / "master.cfg").write_text(self.cfg_text)
        run_tool([bb, "checkconfig", str(self.master_dir)], self.root, self.env,
                 "buildbot checkconfig")
        run_tool([str(self.worker_bin()), "create-worker", "--quiet", str(self.worker_dir),
                  f"127.0.0.1:{self.pb_port}", "w1", "pass"], self.root, self.env,
                 "buildbot-worker create-worker")

    def start(self) -> None:
        self.master = Proc("master", [str(self.venv / "bin" / "buildbot"), "start", "--nodaemon",
                                      str(self.master_dir)],
                           self.master_dir, self.root / "master.out", self.env)

        def builders_loaded():
            try:
                bs = self.rec.get_json("builders")["builders"]
            except RecordError:
                return False
            self.builderids = {b["name"]: b["builderid"] for b in bs}
            return set(BUILDERS) <= set(self.builderids)

        self.wait("the REST API to list all builders", builders_loaded, START_TIMEOUT)
        log(f"master up (www 127.0.0.1:{self.www_port}, pb 127.0.0.1:{self.pb_port})")
        self.worker = Proc("worker w1", [str(self.worker_bin()), "start", "--nodaemon",
                                         str(self.worker_dir)],
                           self.worker_dir, self.root / "worker.out", self.env)

        def connected():
            ws = self.rec.get_json("workers")["workers"]
            return any(w["name"] == "w1" and w.get("connected_to") for w in ws)

        self.wait("worker w1 to connect", connected, START_TIMEOUT)
        log("worker w1 connected")

    def stop(self) -> None:
        for p in (self.worker, self.master):
            if p is not None:
                p.stop()
        if self.args.keep_dir:
            log(f"kept {self.root}")
        else:
            shutil.rmtree(self.root, ignore_errors=True)

    # -- scenario -------------------------------------------------------------------
    def force(self, builder: str) -> tuple[int, int]:
        result, _, _, _ = self.rec.rpc("forceschedulers/force", "force", {"builderNames": [builder]})
        try:
            bsid, brids = result
            return int(bsid), int(brids[str(self.builderids[builder])])
        except (TypeError, ValueError, KeyError) as e:
            raise RecordError(f"unexpected force result: {result!r}") from e

    def build_of_request(self, brid: int):
        bs = self.rec.get_json(f"builds?buildrequestid={brid}")["builds"]
        return bs[0] if bs else None

    def wait_build(self, name: str, brid: int) -> dict:
        def done():
            b = self.build_of_request(brid)
            return b if b and b["complete"] else None

        b = self.wait(f"build '{name}' (request {brid}) to finish", done, BUILD_TIMEOUT)
        self.builds[name] = b
        log(f"build {name}: buildid {b['buildid']}, results {b['results']}, "
            f"state '{b['state_string']}'")
        return b

    def scenario(self) -> None:
        rec = self.rec
        # a. .. d.
        for name, builder in (("ok1", "ok"), ("fail", "fail"), ("props", "props"),
                              ("parent", "parent")):
            _, brid = self.force(builder)
            self.wait_build(name, brid)
        trig = rec.get_json(f"builds/{self.builds['parent']['buildid']}/triggered_builds")["builds"]
        if len(trig) != 1:
            raise RecordError(f"expected one triggered build, got {trig!r}")
        self.builds["child"] = trig[0]
        if not trig[0]["complete"]:
            raise RecordError("the child build is not complete although its parent is")

        # e. the change hook; the literal form first (files not JSON), then with files as JSON
        known = {b["buildid"] for b in rec.get_json(f"builders/{self.builderids['ok']}/builds")["builds"]}
        fields = {"author": "Alice <alice@example.com>", "branch": "main", "revision": "abc123",
                  "repository": "https://example.com/repo.git", "project": "proj",
                  "comments": "a change", "files": "a.txt"}
        created = False
        for key, files in (("hook.base.files_not_json", "a.txt"), ("hook.base", '["a.txt"]')):
            form = dict(fields, files=files)
            body = urllib.parse.urlencode(form).encode()
            status, ctype, data = http_request(
                self.www_port, "POST", "/change_hook/base", body,
                {"Content-Type": "application/x-www-form-urlencoded"})
            rec.add(key, "POST", "/change_hook/base", form, status, ctype, data)
            log(f"change hook (files={files!r}): HTTP {status} {data[:100]!r}")
            if rec.get_json("changes")["changes"]:
                created = True
                break
        if not created:
            raise RecordError("the change hook created no change")

        def new_ok_build():
            bs = rec.get_json(f"builders/{self.builderids['ok']}/builds")["builds"]
            new = [b for b in bs if b["buildid"] not in known]
            return new[0] if new and new[0]["complete"] else None

        self.builds["ok2"] = self.wait("the build of 'ok' started by the change", new_ok_build,
                                       BUILD_TIMEOUT)
        log(f"build ok2: buildid {self.builds['ok2']['buildid']}")

        # f. slow, stopped while its step runs
        _, brid = self.force("slow")
        build = self.wait("build 'slow' to start", lambda: self.build_of_request(brid), BUILD_TIMEOUT)
        slow_id = build["buildid"]

        def step_running():
            steps = rec.get_json(f"builds/{slow_id}/steps")["steps"]
            running = [s for s in steps if s["name"] == "sleep" and s["started_at"]
                       and not s["complete"]]
            if not running:
                return None
            logs = rec.get_json(f"steps/{running[0]['stepid']}/logs")["logs"]
            # the worker has started the command once the header lines arrive
            return running[0] if any(lg["name"] == "stdio" and lg["num_lines"] > 0
                                     for lg in logs) else None

        self.wait("the step 'sleep' of build 'slow' to run", step_running, BUILD_TIMEOUT)
        _, req, status, body = rec.rpc(f"builds/{slow_id}", "stop", {"reason": "stopped by test"})
        rec.add_rpc("rpc.build.slow.stop", f"builds/{slow_id}", req, status, body)
        self.wait_build("slow", brid)

        # g. nowhere: pending forever
        bsid, brid = self.force("nowhere")
        self.nowhere_bsid, self.nowhere_brid = bsid, brid
        self.wait("the request of 'nowhere' to be visible",
                  lambda: rec.get_json(f"buildrequests/{brid}")["buildrequests"], BUILD_TIMEOUT)
        log(f"nowhere: buildset {bsid}, request {brid} (pending)")

    # -- recording -----------------------------------------------------------------
    def record(self) -> None:
        rec = self.rec
        B = {k: v["buildid"] for k, v in self.builds.items()}
        ok = self.builderids["ok"]

        rec.record_get("root", "")
        rec.record_get("application.spec", "application.spec")
        rec.record_get("builders", "builders")
        for name in BUILDERS:
            rec.record_get(f"builder.{name}", f"builders/{self.builderids[name]}")
        rec.record_get("builder.ok.builds", f"builders/{ok}/builds")
        rec.record_get("builder.ok.builds.1", f"builders/{ok}/builds/1")

        rec.record_get("builds", "builds")
        order = ["ok1", "fail", "props", "parent", "child", "ok2", "slow"]
        steps_of: dict[str, list] = {}
        for name in order:
            bid = B[name]
            rec.record_get(f"build.{name}", f"builds/{bid}")
            st = rec.record_get(f"build.{name}.steps", f"builds/{bid}/steps")
            steps_of[name] = st["body"]["steps"]
            first = min(s["number"] for s in steps_of[name])
            rec.record_get(f"build.{name}.steps.first", f"builds/{bid}/steps/{first}")
            rec.record_get(f"build.{name}.property_list", f"builds/{bid}/property_list")
            rec.record_get(f"build.{name}.data", f"builds/{bid}/data")
            rec.record_get(f"build.{name}.changes", f"builds/{bid}/changes")
        rec.record_get("build.parent.triggered_builds", f"builds/{B['parent']}/triggered_builds")
        rec.record_get("build.props.properties", f"builds/{B['props']}/properties")
        rec.record_get("build.child.properties", f"builds/{B['child']}/properties")

        # logs of every step of fail, props, slow (and ok1)
        fail_stdio = None
        for name in ("ok1", "fail", "props", "slow"):
            for s in steps_of[name]:
                r = rec.record_get(f"step.{name}.{s['name']}.logs", f"steps/{s['stepid']}/logs")
                if name == "fail" and s["name"] == "failing":
                    for lg in r["body"]["logs"]:
                        if lg["name"] == "stdio":
                            fail_stdio = lg["logid"]
        if fail_stdio is None:
            raise RecordError("no stdio log on the step 'failing' of build 'fail'")
        rec.record_get("log.fail.failing.stdio", f"logs/{fail_stdio}")
        rec.record_get("log.fail.failing.stdio.contents", f"logs/{fail_stdio}/contents")
        rec.record_get("log.fail.failing.stdio.raw", f"logs/{fail_stdio}/raw", accept="*/*")

        rec.record_get("buildrequests", "buildrequests")
        rec.record_get("buildrequests.incomplete", "buildrequests?complete=false")
        rec.record_get("buildrequest.nowhere", f"buildrequests/{self.nowhere_brid}")
        rec.record_get("buildsets", "buildsets")
        rec.record_get("buildset.nowhere", f"buildsets/{self.nowhere_bsid}")
        ok1_bsid = rec.get_json(f"buildrequests/{self.builds['ok1']['buildrequestid']}")[
            "buildrequests"][0]["buildsetid"]
        rec.record_get("buildset.ok1.properties", f"buildsets/{ok1_bsid}/properties")

        changes = rec.record_get("changes", "changes")["body"]["changes"]
        rec.record_get("change.1", f"changes/{changes[0]['changeid']}")
        rec.record_get("sourcestamps", "sourcestamps")
        ok2_bs = rec.get_json(f"buildrequests/{self.builds['ok2']['buildrequestid']}")[
            "buildrequests"][0]["buildsetid"]
        ok2_ssid = rec.get_json(f"buildsets/{ok2_bs}")["buildsets"][0]["sourcestamps"][0]["ssid"]
        rec.record_get("sourcestamp.ok2", f"sourcestamps/{ok2_ssid}")

        workers = rec.record_get("workers", "workers")["body"]["workers"]
        w1 = next(w["workerid"] for w in workers if w["name"] == "w1")
        rec.record_get("worker.w1", f"workers/{w1}")
        rec.record_get("masters", "masters")
        rec.record_get("schedulers", "schedulers")
        rec.record_get("forceschedulers", "forceschedulers")
        rec.record_get("forcescheduler.force", "forceschedulers/force")
        rec.record_get("changesources", "changesources")
        rec.record_get("builder.ok.forceschedulers", f"builders/{ok}/forceschedulers")

        rec.record_get("builds.limit_minus1", "builds?limit=-1")
        rec.record_get("builds.limit2_offset1", "builds?limit=2&offset=1")
        rec.record_get("builds.order_desc_limit1", "builds?order=-buildid&limit=1")
        rec.record_get("builds.fields", "builds?field=buildid&field=results")
        rec.record_get("builds.results_2", "builds?results=2")
        rec.record_get("builds.nosuchfilter", "builds?nosuchfilter=1")
        rec.record_get("build.not_found", "builds/99999")
        rec.record_get("nosuchpath", "nosuchpath")

        # JSON-RPC error cases
        fs = "forceschedulers/force"
        rec.record_post("rpc.error.not_json", fs, None, raw=b"this is not json")
        rec.record_post("rpc.error.no_jsonrpc", fs,
                        {"method": "force", "id": 1, "params": {"builderNames": ["ok"]}})
        rec.record_post("rpc.error.jsonrpc_1_0", fs,
                        {"jsonrpc": "1.0", "method": "force", "id": 1,
                         "params": {"builderNames": ["ok"]}})
        rec.record_post("rpc.error.no_id", fs,
                        {"jsonrpc": "2.0", "method": "force", "params": {"builderNames": ["ok"]}})
        rec.record_post("rpc.error.method_nosuch", fs,
                        {"jsonrpc": "2.0", "method": "nosuch", "id": 1, "params": {}})
        rec.record_post("rpc.error.params_not_object", fs,
                        {"jsonrpc": "2.0", "method": "force", "id": 1, "params": ["ok"]})
        rec.record_post("rpc.error.force_unknown_builder", fs,
                        {"jsonrpc": "2.0", "method": "force", "id": 1,
                         "params": {"builderNames": ["nosuchbuilder"]}})
        rec.record_post("rpc.error.force_builder_not_in_scheduler", fs,
                        {"jsonrpc": "2.0", "method": "force", "id": 1,
                         "params": {"builderNames": ["child"]}})
        rec.record_post("rpc.error.content_type_text", fs,
                        None, raw=json.dumps({"jsonrpc": "2.0", "method": "force", "id": 1,
                                              "params": {"builderNames": ["ok"]}}).encode(),
                        ctype="text/plain")
        rec.record_post("rpc.error.nosuchpath", "nosuchpath",
                        {"jsonrpc": "2.0", "method": "force", "id": 1, "params": {}})
        rec.record_post("rpc.error.build_method_nosuch", f"builds/{B['ok1']}",
                        {"jsonrpc": "2.0", "method": "nosuch", "id": 1, "params": {}})
        self.check_no_new_buildsets()

        rec.record_post("rpc.build.ok1.stop_finished", f"builds/{B['ok1']}",
                        {"jsonrpc": "2.0", "method": "stop", "id": 1,
                         "params": {"reason": "stopped by test"}})
        brid = self.nowhere_brid
        rec.record_post("rpc.buildrequest.nowhere.cancel", f"buildrequests/{brid}",
                        {"jsonrpc": "2.0", "method": "cancel", "id": 1,
                         "params": {"reason": "cancelled by test"}})
        try:
            self.wait(f"request {brid} to be complete after cancel",
                      lambda: rec.get_json(f"buildrequests/{brid}")["buildrequests"][0]["complete"],
                      30)
        except RecordError as e:
            log(f"note: {str(e).splitlines()[0]}")
        rec.record_get("buildrequest.nowhere.after_cancel", f"buildrequests/{brid}")
        rec.record_get("buildset.nowhere.after_cancel", f"buildsets/{self.nowhere_bsid}")
        rec.record_get("build.ok1.after_stop", f"builds/{B['ok1']}")

    def check_no_new_buildsets(self) -> None:
        bss = self.rec.get_json("buildsets")["buildsets"]
        if any(b["bsid"] > self.nowhere_bsid for b in bss):
            log("note: a JSON-RPC error case created a buildset")

    # -- output -------------------------------------------------------------------------
    def write(self, version: str, started: _dt.datetime) -> None:
        out = Path(self.args.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        doc = {
            "buildbot_version": version,
            "recorded_at": started.isoformat(timespec="seconds"),
            "scenario": SCENARIO,
            # the run's temporary directory, which appears in paths in the bodies
            "workdir": str(self.root),
            "answers": self.rec.answers,
        }
        (out / "answers.json").write_text(json.dumps(doc, indent=2, sort_keys=True,
                                                     ensure_ascii=False) + "\n")
        (out / "master.cfg").write_text(self.cfg_text)
        log(f"wrote {out / 'answers.json'} and {out / 'master.cfg'}")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--buildbot-venv", default=str(BENCH_DIR / ".venv-buildbot"))
    p.add_argument("--worker-bin", help="buildbot-worker executable "
                   "(default: the venv's, else target/test-env/venv/bin/buildbot-worker)")
    p.add_argument("--out-dir", default=str(DEFAULT_OUT))
    p.add_argument("--keep-dir", action="store_true", help="keep the temporary directory")
    return p.parse_args(argv)


def _on_signal(signum, _frame):
    raise SystemExit(f"record_api: interrupted by signal {signum}")


def main(argv=None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    started = _dt.datetime.now(_dt.timezone.utc)
    run = Run(args)
    try:
        version = run.version()
        log(f"Buildbot {version}; working in {run.root}")
        run.setup()
        run.start()
        run.scenario()
        run.record()
        run.write(version, started)
    except RecordError as e:
        print(f"record_api: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("record_api: interrupted", file=sys.stderr)
        return 130
    finally:
        run.stop()
    n = len(run.rec.answers)
    by_status: dict[int, int] = {}
    for a in run.rec.answers:
        by_status[a["status"]] = by_status.get(a["status"], 0) + 1
    print(f"recorded {n} answers ("
          + ", ".join(f"{k}: {v}" for k, v in sorted(by_status.items())) + ")")
    return 0


if __name__ == "__main__":
    sys.exit(main())
