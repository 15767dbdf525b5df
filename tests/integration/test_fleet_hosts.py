"""The fleet view across hosts (docs/DESIGN.md, "Client hosts in tests"):
three client hosts as network namespaces, each with its own mcwatchd whose
[fleet] section names a 3-member etcd running beside the memcached servers;
a server cut from one host only, or killed for all. The per-host outcome of
the same scenarios without [fleet] is pinned in test_hosts.py."""

import os
import time

import pytest

from conftest import BUILD, wait_until
from test_hosts import KEYS, client, first_key_on, keys_on

from etcd_cluster import EtcdCluster  # noqa: E402 (tests/lib, on the path by conftest)
import measurements  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root (ip netns add)")


@pytest.fixture
def fleet_hosts(hosts, tmp_path):
    """The `hosts` fixture's three hosts, each mcwatchd in the fleet of a
    3-member etcd on addresses of the servers' namespace."""
    addresses = [hosts.add_address() for _ in range(3)]
    etcd = EtcdCluster(str(tmp_path / "etcd"), size=3, addresses=addresses, netns=hosts.services.name).start()
    try:
        hosts.start_daemons(extra_config=lambda host: (f"[fleet]\netcd = {etcd.config_value()}\nname = test\n"
                                                       f"host = {host.label}\nlease = 2s\n"))
        yield hosts
    finally:
        etcd.stop()


def saw(host, event, server):
    """Whether host's daemon logged `event` (down, up) for server: its own
    observation, whatever the fleet's verdict."""
    return f"event={event} server={server.address}" in host.mcwatchd.log_text()


def wait_saw(host, event, server, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not saw(host, event, server):
        assert time.monotonic() < deadline, f"{host.label} never logged event={event} for {server.address}"
        time.sleep(0.05)


def test_a_server_cut_from_one_host_stays_live_everywhere_and_is_not_flushed_when_it_heals(fleet_hosts):
    hosts = fleet_hosts
    cut_host, *others = hosts.hosts
    server = hosts.servers[0]
    assert client(others[0], hosts, "set-many", "k", KEYS, 0) == f"stored {KEYS}"
    assert keys_on(hosts, server)

    cut_host.cut(server)
    wait_saw(cut_host, "down", server)
    time.sleep(1.0)  # a few rounds, in which a per-host verdict would be published
    live = {m.address: "live" for m in hosts.servers}
    assert [h.mcwatchd.states() for h in hosts.hosts] == [live] * 3
    # Live for the fleet, but this host's clients cannot reach it: said loudly there, and only there.
    assert [unreachable_here(h) for h in hosts.hosts] == [[server.address], [], []]
    report = cut_host.mcwatchd.ctl("status")
    assert report.returncode == 1
    assert f"UNREACHABLE FROM THIS HOST: {server.address}" in report.stdout, report.stdout
    assert "UNREACHABLE HERE: the fleet holds it live, this host cannot reach it since" in report.stdout
    assert "UNREACHABLE" not in others[0].mcwatchd.ctl("status").stdout
    cut_host.heal(server)
    wait_saw(cut_host, "up", server)
    wait_until(lambda: unreachable_here(cut_host) == [], 10, "the cut host's status to show it reachable")
    time.sleep(1.0)  # a flush before the rejoin would come within these rounds
    assert server.stats()["cmd_flush"] == "0"
    for other in others:
        assert client(other, hosts, "get-many", "k", KEYS) == f"hits {KEYS}"


def unreachable_here(host):
    """The servers host's `mcctl status --json` says the fleet holds live
    and this host cannot reach."""
    report = host.mcwatchd.status()
    assert report["summary"]["unreachable_here"] == sum(s["unreachable_here"] for s in report["servers"])
    return [s["address"] for s in report["servers"] if s["unreachable_here"]]


def test_a_server_killed_is_dead_on_every_host_and_flushed_once_on_its_return(fleet_hosts):
    hosts = fleet_hosts
    server = hosts.servers[0]
    hosts.kill_and_restart(server)
    time.sleep(1.0)  # a second flush would come within a few rounds
    assert server.stats()["cmd_flush"] == "1"


def test_a_server_cut_from_one_host_gives_no_read_older_than_the_last_write(fleet_hosts):
    """The hosts take turns writing a new version of a key of the server
    cut from host0 (its connects fail at once), and every host reads it
    after each write: a write may fail and a read may miss, but no read
    returns a version older than the last acknowledged write."""
    hosts = fleet_hosts
    server = hosts.servers[0]
    sessions = [hosts.session(host) for host in hosts.hosts]
    key = first_key_on(hosts, server, sessions[0])
    hosts.hosts[0].cut(server, how="unreachable")
    wait_saw(hosts.hosts[0], "down", server)

    stale, last_written, failed_writes = [], 0, 0
    for version in range(1, 7):
        if sessions[version % len(sessions)].ask(f"set {key} {version}") == "STORED":
            last_written = version
        else:
            failed_writes += 1
        for host, session in zip(hosts.hosts, sessions):
            reply = session.ask(f"get {key}")
            if reply.startswith("VALUE ") and int(reply.split()[1]) < last_written:
                stale.append((version, host.label, int(reply.split()[1])))
    measurements.record(BUILD, "stale reads across 3 hosts in one fleet, a server cut from one (6 writes)",
                        f"{len(stale)} ({failed_writes} writes failed)")
    assert stale == []
