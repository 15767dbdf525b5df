"""What every section of `make bench` (tests/bench/run.py) shares: the
processes it starts (memcached, mcwatchd, nutcracker), always stopped by
pid; readings of /proc; and how a figure is held against its target."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from memcached_server import Memcached, free_port, wait_accepting  # noqa: E402,F401 (Memcached re-exported)

NUTCRACKER = "/usr/sbin/nutcracker"


class Context:
    """Where a run builds from and writes to, and how big it is."""

    def __init__(self, build, out, smoke):
        self.build = os.path.abspath(build)
        self.out = os.path.abspath(out)
        self.smoke = smoke
        self.work = os.path.join(self.out, "work")
        os.makedirs(self.work, exist_ok=True)
        # State files and control sockets live under a short path: a unix
        # socket's path may not exceed 107 bytes, and --out may be deep.
        self.run_dir = tempfile.mkdtemp(prefix="mcwatch-bench-")

    def close(self):
        shutil.rmtree(self.run_dir, ignore_errors=True)

    def tool(self, name):
        return os.path.join(self.build, name)

    def bench_tool(self, name):
        return os.path.join(self.build, "bench", name)

    def scratch(self, name):
        path = os.path.join(self.work, name)
        os.makedirs(path, exist_ok=True)
        return path

    def shim_env(self, state):
        """The environment of a client with the shim preloaded."""
        env = dict(os.environ, LD_PRELOAD=self.tool("libmcshim.so"), MCSHIM_STATE=state)
        env.pop("MCSHIM_DEBUG", None)
        return env

    def plain_env(self):
        env = dict(os.environ)
        env.pop("LD_PRELOAD", None)
        return env


def wait_for(predicate, timeout, what, interval=0.01):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise RuntimeError(f"timed out after {timeout}s waiting for {what}")


class Mcwatchd:
    """A real mcwatchd over the given server addresses."""

    def __init__(self, ctx, name, addresses, settings=None, routing=None):
        self.ctx = ctx
        self.dir = ctx.scratch(name)
        self.state = os.path.join(ctx.run_dir, name, "state")
        self.config = os.path.join(self.dir, "mcwatchd.conf")
        self.log = os.path.join(self.dir, "mcwatchd.log")
        values = {"state_file": self.state}
        values.update(settings or {})
        lines = ["[mcwatchd]"] + [f"{k} = {v}" for k, v in values.items()]
        if routing:
            lines += ["[routing]"] + [f"{k} = {v}" for k, v in routing.items()]
        lines += ["[servers]"] + [f"server = {a}" for a in addresses]
        with open(self.config, "w") as out:
            out.write("\n".join(lines) + "\n")
        self.addresses = list(addresses)
        self.process = None

    @property
    def pid(self):
        return self.process.pid

    def start(self, timeout=30):
        with open(self.log, "a") as log:
            self.process = subprocess.Popen([self.ctx.tool("mcwatchd"), "-f", "-c", self.config],
                                            stdout=log, stderr=log)
        def live():
            if self.process.poll() is not None:
                with open(self.log) as log:
                    raise RuntimeError(f"mcwatchd exited {self.process.returncode}: {log.read()[-2000:]}")
            return self.all_in("live")
        wait_for(live, timeout, f"mcwatchd ({self.config}) to see its servers live", 0.02)
        return self

    def status(self):
        result = subprocess.run([self.ctx.tool("mcctl"), "-s", self.state, "status", "--json"],
                                capture_output=True, text=True, timeout=30)
        # Exit 1 means some server is not live; 2, no usable state file.
        return json.loads(result.stdout) if result.returncode in (0, 1) and result.stdout else None

    def states(self):
        status = self.status()
        return {s["address"]: s["state"] for s in status["servers"]} if status else {}

    def all_in(self, state, addresses=None):
        states = self.states()
        return bool(states) and all(states.get(a) == state for a in (addresses or self.addresses))

    def ctl(self, *args):
        subprocess.run([self.ctx.tool("mcctl"), "-s", self.state, *args], check=True,
                       capture_output=True, text=True, timeout=30)

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Nutcracker:
    """twemproxy in front of the given servers: ketama, md5, auto_eject_hosts
    with the failure limit, retry timeout and server timeout given (by
    default its notes/recommendation.md's: 3 failures, 30 s, 400 ms)."""

    def __init__(self, ctx, name, addresses, failure_limit=3, retry_timeout_ms=30000, timeout_ms=400):
        self.ctx = ctx
        self.dir = ctx.scratch(name)
        self.port = free_port()
        self.config = os.path.join(self.dir, "nutcracker.yml")
        servers = "".join(f"    - {a}:1\n" for a in addresses)
        with open(self.config, "w") as out:
            out.write(f"""pool:
  listen: 127.0.0.1:{self.port}
  hash: md5
  distribution: ketama
  timeout: {timeout_ms}
  auto_eject_hosts: true
  server_failure_limit: {failure_limit}
  server_retry_timeout: {retry_timeout_ms}
  preconnect: true
  servers:
{servers}""")
        self.process = None

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def start(self):
        stats_port = free_port()
        self.process = subprocess.Popen([NUTCRACKER, "-c", self.config, "-s", str(stats_port),
                                         "-a", "127.0.0.1", "-o", os.path.join(self.dir, "nutcracker.log")],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not wait_accepting(self.process, "127.0.0.1", self.port, timeout=10):
            raise RuntimeError(f"nutcracker did not accept on port {self.port} (exit status "
                               f"{self.process.poll()}); see {self.dir}")
        return self

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


class Processes:
    """Everything a section starts, stopped when it ends however it ends."""

    def __init__(self):
        self.items = []

    def add(self, item):
        self.items.append(item)
        return item

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for item in reversed(self.items):
            try:
                item.stop()
            except Exception as error:  # keep stopping the others
                print(f"bench: could not stop {item!r}: {error}", file=sys.stderr)


def cpu_seconds(pid):
    """user + system CPU seconds a process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def proc_kb(path, field):
    """A "Field:   N kB" figure from a /proc file."""
    with open(path) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in {path}")


def status_kb(pid, field):
    """A kB figure from /proc/PID/status (VmRSS, VmHWM, ...)."""
    return proc_kb(f"/proc/{pid}/status", field)


def rollup_kb(pid, field):
    """A kB figure from /proc/PID/smaps_rollup (Rss, Pss, Private_Dirty, ...)."""
    return proc_kb(f"/proc/{pid}/smaps_rollup", field)


def judged(value, target, higher_is_better=False):
    """A figure with its target, and whether it is met."""
    met = value >= target if higher_is_better else value <= target
    return {"value": value, "target": (">= " if higher_is_better else "<= ") + str(target), "met": met}


def mark(figure):
    """ '' or the mark a table puts beside a missed target."""
    return "" if figure["met"] else f"  << off target ({figure['target']})"
