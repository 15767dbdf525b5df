"""Probing that nothing starves and that tells a dead server from one that
answers: scrapes of the metrics endpoint during rounds, servers that answer a
probe with an error (at their connection limit, flush_all disabled) and names
that move to another memcached. Real memcached, real mcwatchd."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from conftest import MCWATCHD, Memcached, free_port, wait_until
from memcached_server import MEMCACHED, wait_accepting

# One process stands for many servers: one memcached listening on this many
# loopback addresses, each a server of the daemon's configuration.
FLOOD_SERVERS = 250
SCRAPERS = 8

SCRAPER = r"""
import socket, sys, time
port, seconds = int(sys.argv[1]), float(sys.argv[2])
end = time.monotonic() + seconds
scrapes = 0
for _ in range(100000):
    if time.monotonic() >= end:
        break
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
            while s.recv(65536):
                pass
        scrapes += 1
    except OSError:
        pass
print(scrapes)
"""


def cmd_flush(server):
    return int(server.stats()["cmd_flush"])


def test_a_scrape_flood_never_gets_a_server_published_dead_or_flushed(fleet):
    hosts = [f"127.0.{1 + i // 250}.{1 + i % 250}" for i in range(FLOOD_SERVERS)]
    server = Memcached(hosts=hosts).start()
    fleet.servers.append(server)
    addresses = [f"{h}:{server.port}" for h in hosts]
    port = free_port()
    fleet.write_config({"metrics_listen": f"127.0.0.1:{port}", "probe_interval": "300ms",
                        "probe_timeout": "250ms", "stale_after": "5s"}, servers=addresses)
    fleet.start_daemon(wait_live=False)
    fleet.wait_states({a: "live" for a in addresses}, timeout=30)
    assert cmd_flush(server) == 0

    # The scrapers run at the lowest priority: this checks what the daemon
    # does with scrapes, not how a 2-core host shares its CPU between eight
    # busy loops and the memcached they compete with.
    scrapers = [subprocess.Popen([sys.executable, "-c", SCRAPER, str(port), "8"],
                                 preexec_fn=lambda: os.setpriority(os.PRIO_PROCESS, 0, 19))
                for _ in range(SCRAPERS)]
    dead_seen = set()
    try:
        end = time.monotonic() + 8
        for _ in range(400):
            if time.monotonic() >= end:
                break
            dead_seen |= {a for a, s in fleet.states().items() if s != "live"}
            time.sleep(0.05)
    finally:
        for scraper in scrapers:
            try:
                scraper.wait(timeout=30)
            except subprocess.TimeoutExpired:
                scraper.kill()
                scraper.wait()
    # Let a rejoin (and its flush) happen if anything was published dead:
    # rounds after the flood, more than recover_after's three.
    rounds_after = fleet.status()["daemon"]["rounds"]
    wait_until(lambda: fleet.status()["daemon"]["rounds"] >= rounds_after + 5, 30, "five rounds after the flood")
    status = fleet.status()
    failed = sum(s["probes_failed"] for s in status["servers"])
    print(f"flood: {len(dead_seen)} servers seen not live, {cmd_flush(server)} flush_all, {failed} failed probes")
    assert dead_seen == set()
    assert "event=down" not in fleet.log_text()
    assert cmd_flush(server) == 0


class CustomMemcached(Memcached):
    """A memcached started with extra options (-c 16, -F), stopped by pid like the others."""

    def __init__(self, extra, port=None):
        super().__init__(port=port)
        self.extra = extra

    def start(self):
        port = self.port or free_port()
        args = [MEMCACHED, "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", "16", "-t", "1", *self.extra]
        if os.geteuid() == 0:
            args += ["-u", "root"]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert wait_accepting(self.process, "127.0.0.1", port)
        self.port = port
        return self


def fill(server, count):
    for i in range(count):
        assert server.command(b"set k%d 0 0 1\r\nv\r\n" % i) == b"STORED\r\n"


def test_a_server_at_its_connection_limit_is_not_published_dead_nor_flushed(fleet):
    server = CustomMemcached(["-c", "16"]).start()
    fleet.servers.append(server)
    fill(server, 200)
    # Take every connection it allows: the next one is answered with an error.
    held = []
    refused = None
    for _ in range(64):
        s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        s.sendall(b"version\r\n")
        reply = s.recv(100)
        if reply.startswith(b"ERROR"):
            refused = reply
            s.close()
            break
        held.append(s)
    assert refused == b"ERROR Too many open connections\r\n", refused
    try:
        fleet.write_config({"fail_after": "2", "recover_after": "2"})
        fleet.start_daemon(wait_live=False)
        rounds = fleet.status()["daemon"]["rounds"]
        states = set()
        for _ in range(200):
            states.add(fleet.states().get(server.address))
            if fleet.status()["daemon"]["rounds"] >= rounds + 10:
                break
            time.sleep(0.05)
        text = fleet.ctl("status").stdout
    finally:
        for s in held:
            s.close()
    # It serves again: a few rounds for a rejoin (and its flush) if it had been published dead.
    wait_until(lambda: fleet.server(server.address)["probes_ok"] >= 3, 10, "good probes")
    print(f"connection limit: states seen {states}, {cmd_flush(server)} flush_all, "
          f"{server.stats()['curr_items']} of 200 items left")
    assert "dead" not in states
    assert "warning: error reply: \"ERROR Too many open connections\"" in text
    assert fleet.states()[server.address] == "live"
    assert cmd_flush(server) == 0
    assert server.stats()["curr_items"] == "200"
    assert "event=probe_error_reply" in fleet.log_text()


def test_a_server_refusing_flush_all_is_kept_out_loudly_while_it_holds_items_and_rejoins_once_empty(fleet):
    server = CustomMemcached(["-F"]).start()  # flush_all disabled
    fleet.servers.append(server)
    port = free_port()
    fleet.write_config({"fail_after": "2", "recover_after": "2", "metrics_listen": f"127.0.0.1:{port}"})
    fleet.start_daemon()
    fill(server, 50)
    # An outage that keeps its values: frozen, then thawed.
    server.signal(signal.SIGSTOP)
    fleet.wait_states({server.address: "dead"})
    server.signal(signal.SIGCONT)
    wait_until(lambda: "event=rejoin_blocked" in fleet.log_text(), 10, "the blocked rejoin logged")
    rounds = fleet.status()["daemon"]["rounds"]
    wait_until(lambda: fleet.status()["daemon"]["rounds"] >= rounds + 5, 10, "five more rounds")
    assert fleet.states()[server.address] == "dead"  # its pre-outage values are never served
    assert "flush_all refused, 50 items held: kept out until empty (restart it)" in fleet.ctl("status").stdout
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        metrics = response.read().decode()
    assert f'mcwatch_server_rejoin_blocked{{server="{server.address}"}} 1' in metrics
    assert server.stats()["curr_items"] == "50"

    # Restarted, it is empty: it rejoins without a flush.
    server.kill()
    server.start()
    fleet.wait_states({server.address: "live"})
    log = fleet.log_text()
    assert "but it holds no items: not flushed" in log
    print("flush_all disabled: kept out while holding 50 items, rejoined once restarted empty")


def test_a_name_that_moves_to_another_memcached_is_flushed_before_it_is_live_again(fleet, tmp_path):
    unshare = shutil.which("unshare")
    if os.geteuid() != 0 or not unshare or subprocess.run(
            [unshare, "-m", "true"], capture_output=True).returncode != 0:
        pytest.skip("needs root and unshare -m, to give mcwatchd an /etc/hosts of its own")
    port = free_port()
    primary = Memcached(port=port, hosts=("127.0.0.2",)).start()
    standby = Memcached(port=port, hosts=("127.0.0.3",)).start()
    fleet.servers += [primary, standby]
    # The standby holds an old value of the key, from before.
    assert standby.command(b"set k 0 0 3\r\nold\r\n") == b"STORED\r\n"
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.2 mcmoving\n")
    name = f"mcmoving:{port}"
    fleet.write_config({"fail_after": "2", "recover_after": "3"}, servers=[name])
    log = open(fleet.log, "a")
    # Its own /etc/hosts, rewritten in place below: the name moves.
    fleet.daemon = subprocess.Popen(
        [unshare, "-m", "sh", "-c", f'mount --bind "{hosts}" /etc/hosts && exec "{MCWATCHD}" -c "{fleet.config}" -f'],
        stdout=log, stderr=log)
    fleet.wait_states({name: "live"})
    assert fleet.server(name)["pid"] == primary.pid
    assert primary.command(b"set k 0 0 3\r\nnew\r\n") == b"STORED\r\n"

    with open(hosts, "w") as out:  # same inode: the bind mount shows it
        out.write("127.0.0.3 mcmoving\n")
    primary.kill()
    states = []
    for _ in range(400):
        server = fleet.server(name)
        states.append(server["state"])
        if server["pid"] == standby.pid and server["state"] == "live":
            break
        time.sleep(0.02)
    flushes = cmd_flush(standby)
    value = standby.command(b"get k\r\n", b"END\r\n")
    print(f"moved name: states {sorted(set(states))}, standby flushed {flushes} times, k on it: {value!r}")
    assert fleet.server(name)["pid"] == standby.pid
    assert "dead" in states
    assert flushes == 1
    assert value == b"END\r\n"
    assert "another memcached answers at 127.0.0.3:" in fleet.log_text()


def test_a_restart_is_seen_at_the_next_round_when_stats_come_only_every_stats_interval(fleet):
    (server,) = fleet.add_servers(1)
    # Stats far apart: the rounds between send `version` on the kept connection.
    fleet.write_config({"stats_interval": "1h", "fail_after": "1000"})
    fleet.start_daemon()
    first_pid = fleet.server(server.address)["pid"]
    assert first_pid == server.pid
    rounds = fleet.status()["daemon"]["rounds"]
    wait_until(lambda: fleet.status()["daemon"]["rounds"] >= rounds + 3, 10, "three version rounds")

    server.kill()
    server.start()  # the same port
    seen, _ = wait_until(lambda: (fleet.server(server.address) or {}).get("pid") == server.pid, 10,
                         "the new pid published")
    status = fleet.server(server.address)
    assert status["restarts"] == 1
    assert status["state"] == "live"
    assert "event=restart" in fleet.log_text()
