"""The fleet view (docs/DESIGN.md, "The fleet view"): several mcwatchd on this
machine, each with its own state file and `[fleet] host =`, sharing real
memcached servers and a real etcd cluster (tests/lib/etcd_cluster.py). What a
user sees: every host's state file agrees with the fleet's verdict, a
server's return is flushed exactly once (memcached's own cmd_flush), a stall
seen by one host flushes nothing, a dead host's lease lets the others carry
on, and losing one etcd member of three changes nothing."""

import json
import os
import signal
import subprocess
import time

import pytest

from conftest import BUILD, Memcached, Mcwatchd, wait_until, write_config

# Quick enough for a test; the shipped defaults are in etc/mcwatchd.conf.
SETTINGS = {"probe_interval": "100ms", "probe_timeout": "50ms", "fail_after": "2", "recover_after": "2",
            "stats_interval": "100ms"}


class Hosts:
    """mcwatchd daemons standing for hosts of one fleet, stopped by pid."""

    def __init__(self, tmp_path, build, etcd, servers):
        self.tmp_path = tmp_path
        self.build = build
        self.etcd = etcd
        self.servers = servers
        self.daemons = {}

    def start(self, host, settings=None, lease="2s", etcd_value=None):
        directory = self.tmp_path / host
        directory.mkdir(exist_ok=True)
        state = str(directory / "state")
        config = write_config(str(directory / "mcwatchd.conf"), state, [m.address for m in self.servers],
                              {**SETTINGS, **(settings or {})},
                              fleet={"etcd": etcd_value or self.etcd.config_value(), "name": "test", "host": host,
                                     "lease": lease})
        daemon = Mcwatchd(self.build, config, state, str(directory / "mcwatchd.log"))
        daemon.start()
        self.daemons[host] = daemon
        return daemon

    def wait_all(self, expected, timeout=20.0):
        for daemon in self.daemons.values():
            daemon.wait_states(expected, timeout, while_running=True)

    def stop(self):
        for daemon in self.daemons.values():
            daemon.stop(signal.SIGKILL)


@pytest.fixture
def servers():
    started = [Memcached().start(), Memcached().start()]
    yield started
    for m in started:
        m.stop()


def fleet_report(daemon):
    result = subprocess.run([daemon.mcctl, "-c", daemon.config, "fleet", "--json"], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout)


def flushes(server):
    return int(server.stats()["cmd_flush"])


def restart(server):
    """The same memcached address, a new (empty) process."""
    server.kill()
    return Memcached(port=server.port).start()


@pytest.fixture
def hosts(tmp_path, etcd, servers):
    h = Hosts(tmp_path, BUILD, etcd, servers)
    yield h
    h.stop()


def test_a_killed_server_is_dead_on_every_host_and_flushed_exactly_once_on_its_return(hosts, servers):
    for name in ("h1", "h2", "h3"):
        hosts.start(name)
    a, b = servers
    hosts.wait_all({a.address: "live", b.address: "live"})
    a.kill()
    hosts.wait_all({a.address: "dead", b.address: "live"})
    servers[0] = returned = Memcached(port=a.port).start()
    hosts.wait_all({a.address: "live"})
    # One daemon won the rejoin and flushed; the others waited for its record.
    assert flushes(returned) == 1
    time.sleep(1.0)  # a second flush would come within a few probe rounds
    assert flushes(returned) == 1
    logs = "".join(d.log_text() for d in hosts.daemons.values())
    assert logs.count("event=fleet_rejoin") == 1, logs


def test_a_stall_seen_by_one_host_alone_flushes_nothing(hosts, servers):
    # h1 gives up after one 20ms timeout; h2 and h3 would need 50 failed probes.
    hosts.start("h1", {"probe_timeout": "20ms", "fail_after": "1"})
    for name in ("h2", "h3"):
        hosts.start(name, {"probe_timeout": "90ms", "fail_after": "50"})
    a, _ = servers
    hosts.wait_all({a.address: "live"})
    a.command(b"set kept 0 0 1\r\nx\r\n")
    before = flushes(a)
    a.signal(signal.SIGSTOP)
    try:
        wait_until(lambda: f"event=down server={a.address}" in hosts.daemons["h1"].log_text(), 10,
                   "h1 seeing the stall")
        time.sleep(0.3)
    finally:
        a.signal(signal.SIGCONT)
    wait_until(lambda: f"event=up server={a.address}" in hosts.daemons["h1"].log_text(), 10, "h1 seeing it back")
    hosts.wait_all({a.address: "live"})
    time.sleep(1.0)
    assert flushes(a) == before
    assert a.command(b"get kept\r\n", b"END\r\n").startswith(b"VALUE kept")


def test_a_killed_daemon_s_lease_expires_and_the_other_host_carries_on(hosts, servers):
    hosts.start("h1")
    h2 = hosts.start("h2")
    a, _ = servers
    hosts.wait_all({a.address: "live"})
    assert fleet_report(h2)["hosts"] == ["h1", "h2"]
    h2.stop(signal.SIGKILL)
    del hosts.daemons["h2"]
    # The lease (2s) expires: h2's last word (live) stops counting.
    wait_until(lambda: fleet_report(hosts.daemons["h1"])["hosts"] == ["h1"], 10, "h2's lease to expire")
    a.kill()
    hosts.wait_all({a.address: "dead"})


def test_one_etcd_member_of_three_killed_changes_nothing(tmp_path, etcd3, servers):
    hosts = Hosts(tmp_path, BUILD, etcd3, servers)
    try:
        for name in ("h1", "h2", "h3"):
            hosts.start(name)
        a, _ = servers
        hosts.wait_all({a.address: "live"})
        # The member every daemon asks first.
        etcd3.members[0].stop(signal.SIGKILL)
        a.kill()
        hosts.wait_all({a.address: "dead"})
        servers[0] = returned = Memcached(port=a.port).start()
        hosts.wait_all({a.address: "live"})
        assert flushes(returned) == 1
    finally:
        hosts.stop()
