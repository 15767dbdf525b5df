"""Helpers of the reliability suites (test_reliability_*.py): the test tools
built by mk/fuzz.mk, the fake memcached servers, and measurements in units
other than seconds. Background processes and /proc readings are tests/lib's,
re-exported here."""

import json
import os
import sys

from conftest import BUILD, wait_until  # first: it puts tests/lib on the path

import measurements  # noqa: E402
import procfs  # noqa: E402
import sanitizers as build_sanitizers  # noqa: E402
from processes import Background  # noqa: E402,F401 (re-exported)
from procfs import cpu_and_rss  # noqa: E402,F401 (re-exported)

TOOLS = os.path.join(BUILD, "testtools")
STATE_READER_CHECK = os.path.join(TOOLS, "state_reader_check")
STATE_WRITER_DRIVE = os.path.join(TOOLS, "state_writer_drive")
CAPI_ROUTE = os.path.join(TOOLS, "capi_route")
FAKE_MEMCACHED = os.path.join(os.path.dirname(__file__), "..", "tools", "fake_memcached.py")


def record_value(name, value, unit):
    """Keeps a measurement for tests/run to print at the end."""
    measurements.record(BUILD, name, f"{value} {unit}")


def sanitizers():
    """The sanitizers mcwatchd was built with ("" for none), to label a
    measurement: a sanitizer build is slower."""
    return ",".join(build_sanitizers.built_with(os.path.join(BUILD, "mcwatchd")))


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
    return procfs.cpu_seconds(pid), procfs.status_kb(pid, "VmRSS")
