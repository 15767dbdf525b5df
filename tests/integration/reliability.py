"""Helpers of the reliability suites (test_reliability_*.py): the test tools
built by mk/fuzz.mk, background processes whose output goes to a file, the
fake memcached servers, and measurements in units other than seconds."""

import json
import os
import signal
import subprocess
import sys
import time

from conftest import BUILD, wait_until

TOOLS = os.path.join(BUILD, "testtools")
STATE_READER_CHECK = os.path.join(TOOLS, "state_reader_check")
STATE_WRITER_DRIVE = os.path.join(TOOLS, "state_writer_drive")
CAPI_ROUTE = os.path.join(TOOLS, "capi_route")
FAKE_MEMCACHED = os.path.join(os.path.dirname(__file__), "..", "tools", "fake_memcached.py")


def record_value(name, value, unit):
    """Keeps a measurement for tests/run to print at the end."""
    with open(os.path.join(BUILD, "measurements.txt"), "a") as out:
        out.write(f"{name}: {value} {unit}\n")


def sanitizers():
    """The sanitizers mcwatchd was built with ("" for none): ASan and TSan
    builds are slower, and TSan cannot run glibc's getaddrinfo_a threads."""
    with open(os.path.join(BUILD, "mcwatchd"), "rb") as f:
        binary = f.read()
    found = []
    if b"__tsan_init" in binary:
        found.append("thread")
    if b"__asan_init" in binary:
        found.append("address")
    return ",".join(found)


class Background:
    """A process whose stdout and stderr go to a file, read while it runs;
    stopped by its pid."""

    def __init__(self, args, out_path, env=None):
        self.out_path = out_path
        self.out = open(out_path, "w")
        self.process = subprocess.Popen(args, stdout=self.out, stderr=subprocess.STDOUT, env=env)

    @property
    def pid(self):
        return self.process.pid

    def text(self):
        with open(self.out_path, errors="replace") as f:
            return f.read()

    def lines(self):
        return self.text().splitlines()

    def running(self):
        return self.process.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=30):
        """Sends `sig` (if still running) and waits; returns the exit status
        (negative: the signal that ended it)."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.out.close()
        return self.process.returncode

    def wait(self, timeout):
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"{self.process.args[0]} still running after {timeout}s")
        self.out.close()
        return self.process.returncode


def summary(line):
    """"reads=1 torn=0 ..." -> {"reads": 1, "torn": 0, ...}"""
    return {k: int(v) for k, v in (word.split("=", 1) for word in line.split())}


class FakeServers:
    """tests/tools/fake_memcached.py: ports that serve or misbehave by mode."""

    def __init__(self, tmp_path, specs):
        args = [sys.executable, FAKE_MEMCACHED]
        for mode, count in specs:
            args += ["--serve", mode, str(count)]
        self.background = Background(args, str(tmp_path / "fake_memcached.out"))
        first = wait_until(lambda: self._first_line(), 60, "the fake servers to listen")[0]
        self.ports = json.loads(first)

    def _first_line(self):
        if not self.background.running():
            raise AssertionError(f"fake_memcached.py exited: {self.background.text()}")
        lines = self.background.lines()
        return lines[0] if lines and lines[0].startswith("{") else None

    def addresses(self, mode):
        return [f"127.0.0.1:{port}" for port in self.ports[mode]]

    def stop(self):
        return self.background.stop()


def proc_stat(pid):
    """(utime + stime in seconds, RSS in KiB) of a running process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return cpu, rss


def cpu_and_rss(pid, seconds):
    """CPU use (percent of one core) over `seconds`, and the RSS at the end."""
    cpu0, _ = proc_stat(pid)
    start = time.monotonic()
    time.sleep(seconds)
    cpu1, rss = proc_stat(pid)
    return 100.0 * (cpu1 - cpu0) / (time.monotonic() - start), rss
