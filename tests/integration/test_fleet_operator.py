"""Operator commands of a fleet (docs/DESIGN.md, "The fleet view",
operator commands): `mcctl drain|down|undrain|up` given on any host apply
to every host, through etcd; the rejoin that ends an override flushes the
server once for the fleet; `flush` flushes once; a host started later shows
the override from its first file; without etcd a command is refused with
etcd's error. Several mcwatchd on this machine, real memcached and etcd
(test_fleet.py's Hosts and fixtures); what a user sees: `mcctl status
--json` of each host's state file, mcctl's answer, memcached's cmd_flush."""

import signal
import socket

import pytest

from conftest import wait_until
from test_fleet import fleet_report, flushes, local_hosts, servers  # noqa: F401 (pytest fixtures)

HOSTS = ("h1", "h2", "h3")
# Patient probes: an outage that a loaded test machine makes up would add a
# flush of its own to the ones these tests count.
PATIENT = {"fail_after": "20"}


def ok(result):
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def assert_flushed_once_since(hosts, server, before):
    assert flushes(server) == before + 1
    hosts.wait_rounds()  # a second host's flush would come within a few probe rounds
    assert flushes(server) == before + 1


@pytest.mark.parametrize("take, shown, end", [("drain", "draining", "undrain"), ("down", "dead", "up")])
def test_an_override_given_on_one_host_shows_on_every_host_and_its_end_on_another_flushes_once(local_hosts, servers, take,
                                                                                                shown, end):
    for name in HOSTS:
        local_hosts.start(name, PATIENT)
    a, b = servers
    local_hosts.wait_all({a.address: "live", b.address: "live"})
    before = flushes(a)
    assert "recorded for the fleet" in ok(local_hosts.daemons["h1"].ctl(take, a.address))
    local_hosts.wait_all({a.address: shown, b.address: "live"})
    overridden = fleet_report(local_hosts.daemons["h3"])["servers"][0]
    assert (overridden["address"], overridden["operator"]["op"], overridden["operator"]["host"]) == \
        (a.address, take, "h1")
    ok(local_hosts.daemons["h2"].ctl(end, a.address))
    local_hosts.wait_all({a.address: "live", b.address: "live"})
    assert_flushed_once_since(local_hosts, a, before)


def test_flush_on_one_host_flushes_the_shared_server_once(local_hosts, servers):
    for name in HOSTS:
        local_hosts.start(name, PATIENT)
    a, _ = servers
    local_hosts.wait_all({a.address: "live"})
    before = flushes(a)
    ok(local_hosts.daemons["h2"].ctl("flush", a.address))
    assert_flushed_once_since(local_hosts, a, before)


def test_a_host_started_after_a_drain_never_shows_the_server_live(local_hosts, servers, etcd):
    for name in ("h1", "h2"):
        local_hosts.start(name, PATIENT)
    a, _ = servers
    local_hosts.wait_all({a.address: "live"})
    ok(local_hosts.daemons["h1"].ctl("drain", a.address))
    local_hosts.wait_all({a.address: "draining"})
    # h3 asks first an endpoint that accepts connections and never answers:
    # its first read of etcd takes a request's timeout (1s), long after its
    # first probe found the server answering.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        first = f"http://127.0.0.1:{silent.getsockname()[1]}"
        # Returns once the state file is h3's own: its first file.
        h3 = local_hosts.start("h3", PATIENT, fleet_settings={"etcd": f"{first}, {etcd.config_value()}"})

        def draining_never_live():
            state = h3.states().get(a.address)
            assert state != "live", "a fresh host published a drained server live"
            return state == "draining"
        wait_until(draining_never_live, 20, "h3 showing the drain")


def test_with_etcd_stopped_a_drain_on_a_fleet_host_is_refused_naming_etcd_and_nothing_changes(local_hosts, servers, etcd):
    h1 = local_hosts.start("h1", PATIENT)
    a, _ = servers
    local_hosts.wait_all({a.address: "live"})
    for member in etcd.members:
        member.stop(signal.SIGKILL)
    result = h1.ctl("drain", a.address)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "etcd did not record it" in result.stderr, result.stderr
    assert etcd.members[0].endpoint in result.stderr, result.stderr
    assert h1.states()[a.address] == "live"
