"""Probing that nothing starves and that tells a dead server from one that
answers: scrapes of the metrics endpoint during rounds, servers that answer a
probe with an error (at their connection limit, flush_all disabled) and names
that move to another memcached. Real memcached, real mcwatchd."""

import os
import subprocess
import sys
import time

import pytest

from conftest import MCWATCHD, Memcached, free_port, wait_until

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
        rounds_before = fleet.status()["daemon"]["rounds"]
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
    # Let a rejoin (and its flush) happen if anything was published dead.
    wait_until(lambda: fleet.status()["daemon"]["rounds"] >= rounds_before + 10, 30, "ten more rounds")
    time.sleep(2)
    status = fleet.status()
    failed = sum(s["probes_failed"] for s in status["servers"])
    print(f"flood: {len(dead_seen)} servers seen not live, {cmd_flush(server)} flush_all, {failed} failed probes")
    assert dead_seen == set()
    assert "event=down" not in fleet.log_text()
    assert cmd_flush(server) == 0
