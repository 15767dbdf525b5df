"""Fixtures for integration tests: real memcached servers on free loopback
ports, a real mcwatchd, and mcctl, all stopped by pid when the test ends;
or client hosts as network namespaces, each with its own mcwatchd, reaching
memcached servers over their own links (`hosts`). The processes themselves
are tests/lib/'s, shared with the benchmarks."""

import os
import signal
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import measurements  # noqa: E402
from mcwatchd import Mcwatchd, write_config  # noqa: E402
from memcached_server import Memcached, free_port, raw_command  # noqa: E402,F401 (re-exported)
from netns import Network  # noqa: E402
from processes import wait_until  # noqa: E402,F401 (re-exported)
from sanitizers import shim_env  # noqa: E402
from etcd_cluster import EtcdCluster  # noqa: E402

BUILD = os.environ.get("MCWATCH_BUILD") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build")
MCWATCHD = os.path.join(BUILD, "mcwatchd")
MCCTL = os.path.join(BUILD, "mcctl")
SHIM = os.path.join(BUILD, "libmcshim.so")
PYLIBMC_SESSION = os.path.join(os.path.dirname(__file__), "..", "clients", "pylibmc_session.py")
# The daemon settings of the tests: a verdict within a second.
TEST_SETTINGS = {
    "probe_interval": "200ms",
    "probe_timeout": "150ms",
    "fail_after": "2",
    "recover_after": "3",
    "stale_after": "2s",
}


def pytest_configure(config):
    # tests/run runs the integration tests in parallel workers (pytest-xdist),
    # then those marked serial alone, after them.
    config.addinivalue_line(
        "markers", "serial: run alone, after the parallel workers: the test uses the shared build directory "
        "(make), or what it measures (time, CPU) another test's load would change, or its load would "
        "disturb the others; each says which beside its marker")


def record(name, value):
    """Keeps a measurement (seconds) for tests/run to print at the end."""
    measurements.record(BUILD, name, f"{value:.3f}s")


def _of_daemon(name):
    """A Fleet attribute that is its Mcwatchd's attribute `name`."""
    return property(lambda self: getattr(self.mcwatchd, name), lambda self, value: setattr(self.mcwatchd, name, value))


class Fleet:
    """The servers and the daemon of one test."""

    def __init__(self, tmp_path):
        self.dir = tmp_path
        self.servers = []
        self.mcwatchd = Mcwatchd(BUILD, config=str(tmp_path / "mcwatchd.conf"), state=str(tmp_path / "run" / "state"),
                                 log=str(tmp_path / "mcwatchd.log"))

    # The paths are the daemon's: a test may point them elsewhere before it
    # writes the config and starts the daemon.
    state = _of_daemon("state")
    config = _of_daemon("config")
    log = _of_daemon("log")
    # The mcwatchd process (a subprocess.Popen): a test may start its own and
    # set it here, to be stopped like the fleet's.
    daemon = _of_daemon("process")

    def add_servers(self, count):
        for _ in range(count):
            self.servers.append(Memcached().start())
        return self.servers

    def write_config(self, settings=None, servers=None, routing=None):
        values = dict(TEST_SETTINGS, **(settings or {}))
        return write_config(self.config, self.state, servers or [m.address for m in self.servers], values,
                            routing)

    def start_daemon(self, wait_live=True):
        if not os.path.exists(self.config):
            self.write_config()
        self.mcwatchd.start(timeout=5)
        if wait_live:
            self.wait_states({m.address: "live" for m in self.servers})
        return self.daemon

    def stop_daemon(self, sig=signal.SIGTERM):
        return self.mcwatchd.stop(sig, timeout=5)

    def status(self):
        """mcctl status --json, parsed; None if mcctl says the file is unusable."""
        return self.mcwatchd.status(timeout=10)

    def states(self):
        return self.mcwatchd.states()

    def server(self, address):
        status = self.status()
        return next(s for s in status["servers"] if s["address"] == address) if status else None

    def wait_states(self, expected, timeout=10.0):
        """Waits until every address in `expected` has its state; returns seconds."""
        return self.mcwatchd.wait_states(expected, timeout)

    def ctl(self, *args, **kwargs):
        """mcctl on this fleet's state file; commands find the daemon's
        control socket beside it."""
        return self.mcwatchd.ctl(*args, **kwargs)

    def log_text(self):
        return self.mcwatchd.log_text()

    def cleanup(self):
        self.stop_daemon(signal.SIGKILL)
        for m in self.servers:
            m.stop()


@pytest.fixture
def fleet(tmp_path):
    f = Fleet(tmp_path)
    yield f
    f.cleanup()


class Hosts(Network):
    """A Network (tests/lib/netns.py) of one test: client hosts as network
    namespaces and memcached servers on the servers' bridge, each host's
    mcwatchd in its own directory of the test's."""

    def __init__(self, tmp_path, hosts):
        super().__init__(hosts)
        self.dir = tmp_path

    def start_daemons(self, settings=None, routing=None, extra_config=""):
        """One mcwatchd per host (TEST_SETTINGS and `settings`), each
        waited for until it sees every server live. `extra_config`: text
        added to each config, or a function of the host that returns it
        (a [fleet] section names its host)."""
        for host in self.hosts:
            extra = extra_config(host) if callable(extra_config) else extra_config
            host.start_mcwatchd(BUILD, str(self.dir / host.label), dict(TEST_SETTINGS, **(settings or {})),
                                routing, extra)
        for host in self.hosts:
            host.mcwatchd.wait_states({m.address: "live" for m in self.servers})

    def kill_and_restart(self, server):
        """Kills `server` (a Memcached of this network), waits until every
        host's daemon sees it dead, starts it again and waits until every
        host sees it live."""
        server.kill()
        for host in self.hosts:
            host.mcwatchd.wait_states({server.address: "dead"})
        server.start()
        for host in self.hosts:
            host.mcwatchd.wait_states({server.address: "live"})

    def session(self, host):
        """A preloaded pylibmc client on `host`, reading its state file,
        driven line by line (netns.Session)."""
        servers = ",".join(m.address for m in self.servers)
        return host.start_session(["/usr/bin/python3", PYLIBMC_SESSION, servers],
                                  env=shim_env(SHIM, host.mcwatchd.state))


@pytest.fixture
def hosts(tmp_path):
    """Three client hosts and two memcached servers (no daemon yet: call
    start_daemons); everything deleted when the test ends."""
    with Hosts(tmp_path, 3) as network:
        network.add_servers(2)
        network.wait_reachable()
        yield network


@pytest.fixture
def etcd(tmp_path):
    """A 1-member etcd cluster on loopback ports (tests/lib/etcd_cluster.py)."""
    cluster = EtcdCluster(str(tmp_path), size=1).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def etcd3(tmp_path):
    """A 3-member etcd cluster on loopback ports."""
    cluster = EtcdCluster(str(tmp_path), size=3).start()
    yield cluster
    cluster.stop()


def run(args, **kwargs):
    return subprocess.run(args, capture_output=True, text=True, timeout=30, **kwargs)
