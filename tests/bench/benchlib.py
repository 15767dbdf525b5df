"""What every section of `make bench` (tests/bench/run.py) shares: the
processes it starts (memcached, mcwatchd, nutcracker), always stopped by
pid; readings of /proc; and how a figure is held against its target."""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import mcwatchd  # noqa: E402
import sanitizers  # noqa: E402
from memcached_server import Memcached, free_port, wait_accepting  # noqa: E402,F401 (Memcached re-exported)
from processes import Processes, wait_until  # noqa: E402,F401 (Processes re-exported)
from procfs import cpu_seconds, proc_kb, rollup_kb, status_kb  # noqa: E402,F401 (re-exported)

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
        return sanitizers.shim_env(self.tool("libmcshim.so"), state)

    def plain_env(self):
        return sanitizers.plain_env()


def config_key_known(ctx, key):
    """Whether this build's mcwatchd has the configuration key `key`
    (`mcwatchd --list-config-keys`): features that land later are measured
    once they are there."""
    keys = subprocess.run([ctx.tool("mcwatchd"), "--list-config-keys"], capture_output=True, text=True, timeout=30)
    return any(line.split()[1:2] == [key] for line in keys.stdout.splitlines())


def wait_for(predicate, timeout, what, interval=0.01):
    """wait_until's value alone."""
    return wait_until(predicate, timeout, what, interval)[0]


class Mcwatchd(mcwatchd.Mcwatchd):
    """A real mcwatchd over the given server addresses, its config and log in
    the run's scratch directory `name`, its state file under the short run
    directory."""

    def __init__(self, ctx, name, addresses, settings=None, routing=None):
        directory = ctx.scratch(name)
        super().__init__(ctx.build, os.path.join(directory, "mcwatchd.conf"), os.path.join(ctx.run_dir, name, "state"),
                         os.path.join(directory, "mcwatchd.log"))
        self.ctx = ctx
        self.dir = directory
        self.settings = settings
        self.routing = routing
        self.set_servers(addresses)

    def set_servers(self, addresses):
        """Rewrites the config's [servers] (the daemon reads it at its start
        or on `mcctl reload`)."""
        self.addresses = list(addresses)
        mcwatchd.write_config(self.config, self.state, self.addresses, self.settings, self.routing)

    def start(self, timeout=30):
        super().start(timeout)
        self.wait_states({a: "live" for a in self.addresses}, timeout, while_running=True)
        return self

    def all_in(self, state, addresses=None):
        states = self.states()
        return bool(states) and all(states.get(a) == state for a in (addresses or self.addresses))

    def ctl(self, *args):
        result = super().ctl(*args)
        result.check_returncode()

    def ctl_result(self, *args):
        """mcctl's CompletedProcess, whatever its exit status."""
        return super().ctl(*args)

    def stop(self):
        super().stop(timeout=10)

    def mcctl_offers(self, option):
        """Whether this build's mcctl knows `option` (its usage lists it)."""
        usage = subprocess.run([self.mcctl, "--help"], capture_output=True, text=True, timeout=30)
        return option in usage.stdout + usage.stderr

    def drain_move_end(self, address):
        """The figures of the log's last `event=drain_move_end` line for
        `address` (outcome, moved, skipped, remaining), or None."""
        ends = [line for line in self.log_text().splitlines()
                if "event=drain_move_end" in line and f" server={address} " in line]
        if not ends:
            return None
        fields = dict(re.findall(r" (outcome|moved|skipped|remaining)=(\S+)", ends[-1]))
        return {k: (v if k == "outcome" else int(v)) for k, v in fields.items()}

    def drain_move(self, address, timeout):
        """`mcctl drain --move` of `address`, run to its end: with
        `--wait` where mcctl offers it (exit 0 once moved), else by waiting
        for the log's drain_move_end line; at most `timeout` seconds. Its
        duration, outcome and counts (the log's), and the keys moved a
        second."""
        before = len(self.log_text())
        start = time.monotonic()
        waited = self.mcctl_offers("--wait")
        if waited:
            done = super().ctl("drain", "--move", "--wait", "--timeout", f"{max(int(timeout), 1)}s", address,
                               timeout=timeout + 30)
            # Not drained in time (a key the move skipped stays on the
            # server): said, and the move's end still read from the log.
            wait_failed = (done.stdout + done.stderr).strip() if done.returncode != 0 else None
        else:
            self.ctl("drain", "--move", address)
        end = None
        # (--wait may have spent the timeout on items the move skipped: the
        # end line, if the move ended, is there by now or within moments.)
        deadline = max(start + timeout, time.monotonic() + 2)
        while time.monotonic() < deadline:
            # Only this drain's end: the log after the command.
            if "event=drain_move_end" in self.log_text()[before:]:
                end = self.drain_move_end(address)
                break
            time.sleep(0.02)
        seconds = time.monotonic() - start
        result = {"seconds": round(seconds, 2), "waited_by": "mcctl drain --wait" if waited else "the log"}
        if waited and wait_failed:
            result["wait_failed"] = wait_failed
        result.update(end or {"outcome": f"not ended after {timeout} s"})
        if end:
            result["moved_per_s"] = round(end["moved"] / seconds) if seconds > 0 else None
        return result


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


def judged(value, target, higher_is_better=False):
    """A figure with its target, and whether it is met."""
    met = value >= target if higher_is_better else value <= target
    return {"value": value, "target": (">= " if higher_is_better else "<= ") + str(target), "met": met}


def mark(figure):
    """ '' or the mark a table puts beside a missed target."""
    return "" if figure["met"] else f"  << off target ({figure['target']})"
