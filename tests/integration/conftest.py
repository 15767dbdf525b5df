"""Fixtures for integration tests: real memcached servers on free loopback
ports, a real mcwatchd, and mcctl, all stopped by pid when the test ends."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from memcached_server import Memcached, free_port, raw_command  # noqa: E402,F401 (re-exported)

BUILD = os.environ.get("MCWATCH_BUILD") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build")
MCWATCHD = os.path.join(BUILD, "mcwatchd")
MCCTL = os.path.join(BUILD, "mcctl")


def wait_until(predicate, timeout=10.0, what="condition", interval=0.02):
    """Polls predicate until it returns a true value; fails after timeout.
    Returns (value, seconds waited)."""
    start = time.monotonic()
    deadline = start + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last, time.monotonic() - start
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def record(name, value):
    """Keeps a measurement (seconds) for tests/run to print at the end."""
    with open(os.path.join(BUILD, "measurements.txt"), "a") as out:
        out.write(f"{name}: {value:.3f}s\n")


class Fleet:
    """The servers and the daemon of one test."""

    def __init__(self, tmp_path):
        self.dir = tmp_path
        self.servers = []
        self.daemon = None
        self.state = str(tmp_path / "run" / "state")
        self.config = str(tmp_path / "mcwatchd.conf")
        self.log = str(tmp_path / "mcwatchd.log")

    def add_servers(self, count):
        for _ in range(count):
            self.servers.append(Memcached().start())
        return self.servers

    def write_config(self, settings=None, servers=None, routing=None):
        values = {
            "state_file": self.state,
            "probe_interval": "200ms",
            "probe_timeout": "150ms",
            "fail_after": "2",
            "recover_after": "3",
            "stale_after": "2s",
        }
        values.update(settings or {})
        lines = ["[mcwatchd]"] + [f"{k} = {v}" for k, v in values.items()]
        if routing:
            lines += ["[routing]"] + [f"{k} = {v}" for k, v in routing.items()]
        lines += ["[servers]"]
        lines += [f"server = {s}" for s in (servers or [m.address for m in self.servers])]
        with open(self.config, "w") as out:
            out.write("\n".join(lines) + "\n")
        return self.config

    def start_daemon(self, wait_live=True):
        if not os.path.exists(self.config):
            self.write_config()
        log = open(self.log, "a")
        self.daemon = subprocess.Popen([MCWATCHD, "-c", self.config, "-f"], stdout=log, stderr=log)
        # A predecessor's file may still be there: wait for this daemon's own.
        wait_until(lambda: (self.status() or {}).get("daemon", {}).get("pid") == self.daemon.pid, 5,
                   "the daemon's state file")
        if wait_live:
            self.wait_states({m.address: "live" for m in self.servers})
        return self.daemon

    def stop_daemon(self, sig=signal.SIGTERM):
        if self.daemon and self.daemon.poll() is None:
            self.daemon.send_signal(sig)
            try:
                self.daemon.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
                self.daemon.wait()
        return self.daemon.returncode if self.daemon else None

    def status(self):
        """mcctl status --json, parsed; None if mcctl says the file is unusable."""
        result = subprocess.run([MCCTL, "-s", self.state, "status", "--json"],
                                capture_output=True, text=True, timeout=10)
        if result.returncode == 2 and not result.stdout:
            return None
        return json.loads(result.stdout)

    def states(self):
        status = self.status()
        return {s["address"]: s["state"] for s in status["servers"]} if status else {}

    def server(self, address):
        status = self.status()
        return next(s for s in status["servers"] if s["address"] == address) if status else None

    def wait_states(self, expected, timeout=10.0):
        """Waits until every address in `expected` has its state; returns seconds."""
        def matches():
            states = self.states()
            return all(states.get(a) == s for a, s in expected.items())
        return wait_until(matches, timeout, f"states {expected}")[1]

    def ctl(self, *args, **kwargs):
        """mcctl on this fleet's state file; commands find the daemon's
        control socket beside it."""
        return run([MCCTL, "-s", self.state, *args], **kwargs)

    def log_text(self):
        with open(self.log) as f:
            return f.read()

    def cleanup(self):
        self.stop_daemon(signal.SIGKILL)
        for m in self.servers:
            m.stop()


@pytest.fixture
def fleet(tmp_path):
    f = Fleet(tmp_path)
    yield f
    f.cleanup()


def run(args, **kwargs):
    return subprocess.run(args, capture_output=True, text=True, timeout=30, **kwargs)
