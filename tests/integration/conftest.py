"""Fixtures for integration tests: real memcached servers on free loopback
ports, a real mcwatchd, and mcctl, all stopped by pid when the test ends."""

import json
import os
import signal
import socket
import subprocess
import time

import pytest

BUILD = os.environ.get("MCWATCH_BUILD") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build")
MCWATCHD = os.path.join(BUILD, "mcwatchd")
MCCTL = os.path.join(BUILD, "mcctl")
MEMCACHED = "/usr/bin/memcached"


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


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def record(name, value):
    """Keeps a measurement (seconds) for tests/run to print at the end."""
    with open(os.path.join(BUILD, "measurements.txt"), "a") as out:
        out.write(f"{name}: {value:.3f}s\n")


def raw_command(port, command, expect_end=b"\r\n", timeout=2.0):
    """Sends one text command to a memcached and returns its reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(command)
        reply = b""
        while not reply.endswith(expect_end):
            chunk = s.recv(65536)
            if not chunk:
                break
            reply += chunk
        return reply


class Memcached:
    """One memcached process on a loopback port."""

    def __init__(self, port=None):
        self.port = port
        self.process = None

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def start(self):
        for _ in range(20):
            port = self.port or free_port()
            args = [MEMCACHED, "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", "16", "-t", "1"]
            if os.geteuid() == 0:
                args += ["-u", "root"]
            self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if self._wait_accepting(port):
                self.port = port
                return self
            self.process.kill()
            self.process.wait()
            if self.port:
                time.sleep(0.1)  # fixed port still held by the previous process
        pytest.fail(f"could not start memcached (port {self.port})")

    def _wait_accepting(self, port):
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return True
            except OSError:
                time.sleep(0.01)
        return False

    def signal(self, sig):
        if self.process and self.process.poll() is None:
            os.kill(self.process.pid, sig)

    def kill(self):
        """kill -9, and reap it."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait()

    def command(self, text, expect_end=b"\r\n"):
        return raw_command(self.port, text, expect_end)


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
