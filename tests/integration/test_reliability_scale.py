"""mcwatchd with a thousand configured servers (a lightweight stats responder
on a thousand loopback ports): every server is probed in every round, and
the daemon's CPU and memory are measured."""

import resource
import subprocess
import time

import pytest

from conftest import MCWATCHD, wait_until
from reliability import FakeServers, cpu_and_rss, record_value, sanitizers

pytestmark = pytest.mark.serial  # measures the daemon's CPU over a thousand servers

SERVERS = 1000
# What these tests pin is that every server is probed in every round, not how
# fast a failure is detected: one Python process answering a thousand ports on
# a loaded two-core machine misses a 250 ms deadline (whole rounds of it at a
# load average of 10), and that must not fail them. So a deadline of 800 ms,
# and fail_after 1000: a missed deadline does not make a server dead (a server
# that never answered still never becomes live).
INTERVAL = "1s"
SETTINGS = {"probe_interval": INTERVAL, "probe_timeout": "800ms", "stale_after": "10s", "fail_after": "1000"}


def test_a_thousand_servers_are_each_probed_in_every_round(fleet, tmp_path):
    fakes = FakeServers(tmp_path, [("stats", SERVERS)])
    try:
        addresses = fakes.addresses("stats")
        fleet.write_config(SETTINGS, servers=addresses)
        fleet.start_daemon(wait_live=False)
        fleet.wait_states({a: "live" for a in addresses}, timeout=60)
        first = fleet.status()
        started = time.monotonic()
        cpu, rss = cpu_and_rss(fleet.daemon.pid, 5)
        wait_until(lambda: fleet.status()["daemon"]["rounds"] >= first["daemon"]["rounds"] + 10, 60,
                   "ten more rounds")
        elapsed = time.monotonic() - started
        last = fleet.status()
    finally:
        fakes.stop()
    assert [s["address"] for s in last["servers"]] == addresses
    assert all(s["state"] == "live" for s in last["servers"])
    # One consistent copy of the table: if any server had been skipped in a
    # round, its probe count would differ from the others'.
    probes = {s["probes_ok"] + s["probes_failed"] for s in last["servers"]}
    assert len(probes) == 1, sorted(probes)[:5]
    rounds = last["daemon"]["rounds"] - first["daemon"]["rounds"]
    failed = sum(s["probes_failed"] for s in last["servers"])
    build = sanitizers() or "no sanitizer"
    record_value(f"1000 servers, probe_interval {INTERVAL} ({build}): mcwatchd CPU", f"{cpu:.1f}", "% of one core")
    record_value(f"1000 servers ({build}): mcwatchd RSS", rss, "KiB")
    record_value(f"1000 servers ({build}): rounds per second (interval {INTERVAL}: 1)", f"{rounds / elapsed:.2f}",
                 "rounds/s")
    record_value(f"1000 servers ({build}): failed probes", failed, "probes")


def test_more_servers_than_the_default_descriptor_limit_are_all_probed(fleet, tmp_path):
    count = 1100
    fakes = FakeServers(tmp_path, [("stats", count)])
    try:
        addresses = fakes.addresses("stats")
        fleet.write_config(SETTINGS, servers=addresses)
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        limit = (1024, hard)  # what systemd gives a service unless its unit says otherwise
        with open(fleet.log, "a") as log:
            fleet.daemon = subprocess.Popen([MCWATCHD, "-c", fleet.config, "-f"], stdout=log, stderr=log,
                                            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, limit))
        wait_until(lambda: (fleet.status() or {}).get("daemon", {}).get("pid") == fleet.daemon.pid, 10,
                   "the daemon's state file")
        # Every one live, not a count of rounds: on a loaded machine ten rounds
        # can pass before the one process of the fakes has answered each port.
        fleet.wait_states({a: "live" for a in addresses}, timeout=60)
    finally:
        fakes.stop()
