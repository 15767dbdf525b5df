"""Client hosts as network namespaces (tests/lib/netns.py): three hosts, each
with its own mcwatchd, state file and preloaded pylibmc, reaching the same
two memcached servers over their own veth links. What one host sees of a
server it alone cannot reach, and the harness itself: its cuts, and a
teardown that leaves nothing behind."""

import errno
import os
import subprocess

import pytest

from conftest import BUILD, SHIM, Memcached, wait_until

import measurements  # noqa: E402 (tests/lib, on the path by conftest)
import netns  # noqa: E402
from netns import first_key_on, holder  # noqa: E402
from sanitizers import shim_env  # noqa: E402

PYLIBMC_CLIENT = os.path.join(os.path.dirname(__file__), "..", "clients", "pylibmc_client.py")
KEYS = 40

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root (ip netns add)")


def client(host, network, *args):
    """The preloaded pylibmc client (ketama, as the daemon's default
    routing) run on `host`, reading that host's state file; its output."""
    servers = ",".join(m.address for m in network.servers)
    result = host.run(["/usr/bin/python3", PYLIBMC_CLIENT, servers, *map(str, args)],
                      env=shim_env(SHIM, host.mcwatchd.state))
    assert result.returncode == 0 and result.stderr == "", result.stderr
    return result.stdout.strip()


def states(network):
    """[{address: state}] of each host's state file, in host order."""
    return [host.mcwatchd.states() for host in network.hosts]


def keys_on(network, server):
    return [i for i in range(KEYS) if server.address in holder(network, f"k{i}")]


def test_three_hosts_each_see_both_servers_and_place_keys_alike(hosts):
    hosts.start_daemons()
    live = {m.address: "live" for m in hosts.servers}
    assert states(hosts) == [live] * 3
    assert len({host.mcwatchd.status()["daemon"]["pid"] for host in hosts.hosts}) == 3
    writer, *readers = hosts.hosts
    assert client(writer, hosts, "set-many", "k", KEYS, 0) == f"stored {KEYS}"
    assert all(keys_on(hosts, m) for m in hosts.servers)  # the keys spread over both
    for reader in readers:
        assert client(reader, hosts, "get-many", "k", KEYS) == f"hits {KEYS}"


def test_server_cut_from_one_host_is_dead_there_only_and_that_hosts_reads_go_to_the_substitute(hosts):
    """Today's per-host behaviour, the gap issue 16 closes: each daemon
    decides alone, so a server cut from one host (a silent partition) is
    dead in that host's state file and live in the others', and the hosts
    place its keys in different places: one host writes a key to the
    substitute while the others keep reading the server's older value. With
    the fleet view ([fleet]), the expected outcome changes: the server stays
    live for the fleet, and no host reads a value older than the last
    write."""
    hosts.start_daemons()
    cut_host, *others = hosts.hosts
    server, substitute = hosts.servers
    assert client(others[0], hosts, "set-many", "k", KEYS, 0) == f"stored {KEYS}"
    on_server = keys_on(hosts, server)
    assert on_server

    cut_host.cut(server)
    cut_host.mcwatchd.wait_states({server.address: "dead", substitute.address: "live"})
    live = {m.address: "live" for m in hosts.servers}
    assert [o.mcwatchd.states() for o in others] == [live, live]

    # The cut host asks the substitute for the server's keys: misses.
    assert client(cut_host, hosts, "get-many", "k", KEYS) == f"hits {KEYS - len(on_server)}"
    for other in others:
        assert client(other, hosts, "get-many", "k", KEYS) == f"hits {KEYS}"

    key = f"k{on_server[0]}"
    assert client(cut_host, hosts, "set", key, "from-the-cut-host", 0) == "SUCCESS"
    assert holder(hosts, key) == {server.address: f"v{on_server[0]}", substitute.address: "from-the-cut-host"}
    assert client(cut_host, hosts, "get", key) == "VALUE from-the-cut-host"
    for other in others:
        assert client(other, hosts, "get", key) == f"VALUE v{on_server[0]}"
    assert [o.mcwatchd.states() for o in others] == [live, live]


def test_server_cut_from_one_host_gives_reads_older_than_the_last_write_across_hosts(hosts):
    """Today's per-host behaviour, the gap issue 16 closes: the hosts take
    turns writing a new version of a key of the server cut from host0, and
    every host reads it after each write. host0 writes to the substitute and
    reads there; the others write to the server and read there: each side
    reads its own last version, older than the other side's last write
    (a miss would be fine: a cache may forget). With the fleet view, no host
    reads a value older than the last write: 0."""
    hosts.start_daemons()
    server = hosts.servers[0]
    sessions = [hosts.session(host) for host in hosts.hosts]
    key = first_key_on(hosts, server, sessions[0])
    hosts.hosts[0].cut(server)
    hosts.hosts[0].mcwatchd.wait_states({server.address: "dead"})

    stale = []
    for version in range(6):
        writer = sessions[version % len(sessions)]
        assert writer.ask(f"set {key} {version}") == "STORED"
        for host, session in zip(hosts.hosts, sessions):
            reply = session.ask(f"get {key}")
            if reply.startswith("VALUE ") and int(reply.split()[1]) < version:
                stale.append((version, host.label, int(reply.split()[1])))
    measurements.record(BUILD, "stale reads across 3 hosts, a server cut from one (6 writes)", str(len(stale)))
    assert stale == [(1, "host0", 0), (2, "host0", 0), (3, "host1", 2), (3, "host2", 2), (4, "host0", 3),
                     (5, "host0", 3)]


def test_server_cut_from_one_host_is_flushed_for_every_host_when_it_heals(hosts):
    """Today's per-host behaviour, the gap issue 16 closes: the host that
    lost its link to a server flushes it before publishing it live again
    (flush_on_rejoin), though the other hosts never lost it: their keys on
    it are gone. With the fleet view, a stall seen by one host flushes
    nothing."""
    hosts.start_daemons()
    cut_host, *others = hosts.hosts
    server = hosts.servers[0]
    assert client(others[0], hosts, "set-many", "k", KEYS, 0) == f"stored {KEYS}"
    on_server = keys_on(hosts, server)
    assert on_server and server.stats()["cmd_flush"] == "0"

    cut_host.cut(server)
    cut_host.mcwatchd.wait_states({server.address: "dead"})
    cut_host.heal(server)
    cut_host.mcwatchd.wait_states({server.address: "live"})

    assert server.stats()["cmd_flush"] == "1"
    for other in others:
        assert other.mcwatchd.states()[server.address] == "live"
        assert client(other, hosts, "get-many", "k", KEYS) == f"hits {KEYS - len(on_server)}"


CONNECT_SCRIPT = ("import socket, sys\n"
                  "try:\n"
                  "    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=0.5).close()\n"
                  "    print('connected')\n"
                  "except OSError as error:\n"
                  "    print(type(error).__name__, error.errno)\n")


def connects(host, server):
    """What a connect from `host` to `server` (a Memcached) gives:
    'connected', or the error's type and errno."""
    return host.run(["/usr/bin/python3", "-c", CONNECT_SCRIPT, server.hosts[0], str(server.port)]).stdout.strip()


def test_cut_drops_silently_or_fails_at_once_for_one_host_only(hosts):
    """cut(how="drop") times out (a partition), cut(how="unreachable")
    fails at once with EHOSTUNREACH, cut_all() with ENETUNREACH; the other
    hosts and the other server stay reachable, and heal undoes each."""
    cut_host, other = hosts.hosts[:2]
    server, substitute = hosts.servers
    cut_host.cut(server)
    assert connects(cut_host, server) == "TimeoutError None"
    assert connects(cut_host, substitute) == connects(other, server) == "connected"
    cut_host.heal(server)
    assert connects(cut_host, server) == "connected"

    cut_host.cut(server, how="unreachable")
    assert connects(cut_host, server) == f"OSError {errno.EHOSTUNREACH}"
    assert connects(cut_host, substitute) == connects(other, server) == "connected"
    cut_host.heal(server)
    assert connects(cut_host, server) == "connected"

    cut_host.cut_all()
    assert connects(cut_host, substitute) == f"OSError {errno.ENETUNREACH}"
    assert connects(other, substitute) == "connected"
    cut_host.heal_all()
    assert connects(cut_host, substitute) == "connected"


def test_a_silent_cut_drops_what_an_open_connection_sends_too(hosts):
    """The write a host sends on a connection opened before the cut never
    reaches the server: a partition, not a one-way loss."""
    cut_host = hosts.hosts[0]
    server = hosts.servers[0]
    script = ("import socket, sys\n"
              "s = socket.create_connection((sys.argv[1], 11211), timeout=1)\n"
              "print('connected', flush=True)\n"
              "sys.stdin.readline()\n"
              "s.sendall(b'set written-during-the-cut 0 0 1\\r\\nx\\r\\n')\n"
              "try:\n"
              "    print(s.recv(100))\n"
              "except OSError as error:\n"
              "    print(type(error).__name__)\n")
    writer = cut_host.popen(["/usr/bin/python3", "-c", script, server.hosts[0]], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline() == "connected\n"
        cut_host.cut(server)
        writer.stdin.write("write\n")
        writer.stdin.flush()
        assert writer.stdout.readline() == "TimeoutError\n"
    finally:
        writer.kill()
        writer.communicate(timeout=10)
    assert holder(hosts, "written-during-the-cut") == {}
    cut_host.heal(server)
    assert connects(cut_host, server) == "connected"


def test_a_service_beside_the_servers_is_reached_and_cut_like_one(hosts):
    """add_address: another service in the servers' namespace (an etcd
    member in the fleet tests; a memcached stands for it here) on its own
    address, reached by every host, cut from one host by its address."""
    service = Memcached(port=2379, hosts=[hosts.add_address()], netns=hosts.services.name).start()
    try:
        cut_host, other = hosts.hosts[:2]
        assert connects(cut_host, service) == connects(other, service) == "connected"
        cut_host.cut(service.hosts[0])
        assert connects(cut_host, service) == "TimeoutError None"
        assert connects(other, service) == connects(cut_host, hosts.servers[0]) == "connected"
        cut_host.heal(service.address)
        assert connects(cut_host, service) == "connected"
    finally:
        service.stop()


def test_teardown_leaves_no_namespace_link_or_process_of_the_run(tmp_path):
    with netns.Network(hosts=2) as network:
        network.add_servers(1)
        assert len(network.names()) == 3
        server_pid = network.servers[0].pid
        # A client still running at the end is stopped with its namespace.
        sleeper = network.hosts[0].popen(["sleep", "60"])
        # In its namespace: `ip netns exec` has become sleep (else the
        # teardown can delete the namespace before ip enters it: exit 255).
        wait_until(lambda: open(f"/proc/{sleeper.pid}/cmdline", "rb").read().startswith(b"sleep\0"), 10,
                   "the client running in its namespace")
    assert network.names() == []
    assert sleeper.wait(timeout=10) == -9
    with pytest.raises(ProcessLookupError):
        os.kill(server_pid, 0)


def test_teardown_after_a_failure_in_the_block_or_in_the_setup_leaves_nothing(tmp_path):
    with pytest.raises(ZeroDivisionError):
        with netns.Network(hosts=2) as network:
            network.add_servers(1)
            1 / 0
    assert network.names() == []
    broken = netns.Network(hosts=3)
    netns.ip("netns", "add", f"{broken.prefix}-host1")  # the second host cannot be made
    with pytest.raises(RuntimeError, match="host1"):
        with broken:
            pass
    assert broken.names() == []


def test_leftovers_of_a_dead_run_are_removed_by_the_next(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    leftover = f"{netns.PREFIX}-{dead.pid}-0-host0"
    netns.ip("netns", "add", leftover)
    try:
        with netns.Network(hosts=1) as network:
            assert leftover not in netns.namespaces()
            assert network.names()
    finally:
        netns.ip("netns", "delete", leftover, check=False)
    assert network.names() == []


def test_a_host_without_its_link_still_has_its_own_loopback(hosts):
    host = hosts.hosts[0]
    host.cut_all()
    script = ("import socket\n"
              "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n"
              "socket.create_connection(s.getsockname(), timeout=1).close(); print('loopback up')\n")
    assert host.run(["/usr/bin/python3", "-c", script]).stdout.strip() == "loopback up"


def test_server_killed_and_restarted_is_flushed_once_by_every_host(hosts):
    """Today's per-host behaviour, the gap issue 16 closes: every host saw
    the outage, so every host's daemon sends its own flush_all before
    publishing the server live again: one flush per host (3), the later ones
    emptying what clients wrote after the first host's rejoin. With the
    fleet view, a rejoin is flushed exactly once."""
    hosts.start_daemons()
    server = hosts.servers[0]
    hosts.kill_and_restart(server)
    assert server.stats()["cmd_flush"] == str(len(hosts.hosts))
