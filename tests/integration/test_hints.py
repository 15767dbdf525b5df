"""Hints (docs/DESIGN.md, "Hints"): the datagram socket beside the state file
where clients say "hint <address>\\n" after a failed connection. A hint can
only trigger a probe of that server, rate-limited per server; a refused
connection on that probe is certain, a timeout is not. Real memcached, real
mcwatchd, hints sent by an unprivileged user. Rounds are counted, never timed."""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

import pytest

from conftest import free_port, wait_until

NOBODY = 65534

# Sends each argv hint (or, with --flood N, N copies of the first) as one
# datagram; every error is ignored, as the shim does.
SENDER = r"""
import socket, sys
path, args = sys.argv[1], sys.argv[2:]
count = 1
if args[0] == "--flood":
    count, args = int(args[1]), args[2:]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sent = 0
for _ in range(count):
    for text in args:
        try:
            s.sendto(text.encode().decode("unicode_escape").encode("latin-1"), path)
            sent += 1
        except OSError:
            pass
print(sent)
"""


@pytest.fixture
def open_dir(fleet):
    """A state directory other users may traverse (pytest's tmp_path is 0700):
    the hint socket is for every local user."""
    directory = tempfile.mkdtemp(prefix="mcwatch-hints-")
    os.chmod(directory, 0o755)
    fleet.state = os.path.join(directory, "state")
    yield directory
    fleet.stop_daemon(signal.SIGKILL)
    shutil.rmtree(directory, ignore_errors=True)


def send_as_nobody(path, *hints, flood=None):
    args = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", sys.executable, "-c", SENDER, path]
    if flood:
        args += ["--flood", str(flood)]
    result = subprocess.run(args + list(hints), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return int(result.stdout)


def one_server_with_metrics(fleet, open_dir):
    """One memcached, a daemon whose rounds are far apart (a probe between two
    can only be a hint's) with its metrics endpoint: (server, port, hint socket)."""
    (server,) = fleet.add_servers(1)
    port = free_port()
    fleet.write_config({"probe_interval": "3s", "probe_timeout": "1s", "stale_after": "10s",
                        "metrics_listen": f"127.0.0.1:{port}"})
    fleet.start_daemon()
    return server, port, os.path.join(open_dir, "hints")


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return response.read().decode()


def metric(text, name, labels=""):
    pattern = re.escape(name) + (re.escape("{" + labels + "}") if labels else "") + r" (\S+)"
    found = re.search(r"^" + pattern + r"$", text, re.M)
    return float(found.group(1)) if found else None


def probes(fleet, address):
    server = fleet.server(address)
    return server["probes_ok"] + server["probes_failed"]


def test_a_hint_from_another_user_triggers_a_probe_of_that_server_and_nothing_else(fleet, open_dir):
    hinted, other = fleet.add_servers(2)
    # Rounds far apart: a probe between two of them can only be the hint's.
    fleet.write_config({"probe_interval": "3s", "probe_timeout": "1s", "stale_after": "10s"})
    fleet.start_daemon()
    hints = os.path.join(open_dir, "hints")
    assert oct(os.stat(hints).st_mode & 0o777) == "0o666"
    rounds = fleet.status()["daemon"]["rounds"]
    before = {m.address: probes(fleet, m.address) for m in (hinted, other)}

    assert send_as_nobody(hints, f"hint {hinted.address}\\n") == 1
    wait_until(lambda: probes(fleet, hinted.address) - before[hinted.address] >
               fleet.status()["daemon"]["rounds"] - rounds, 10, "a probe out of the round")
    status = fleet.status()
    extra = {m.address: probes(fleet, m.address) - before[m.address] - (status["daemon"]["rounds"] - rounds)
             for m in (hinted, other)}
    assert extra == {hinted.address: 1, other.address: 0}
    assert fleet.states() == {hinted.address: "live", other.address: "live"}
    assert not any(s["hint_triggered"] for s in status["servers"])
    assert f"event=hint server={hinted.address} uid={NOBODY}" in fleet.log_text()


def test_a_flood_of_hints_for_a_live_server_leaves_it_live_and_probed_at_most_at_the_rate_limit(fleet, open_dir):
    server, port, hints = one_server_with_metrics(fleet, open_dir)
    rounds = fleet.status()["daemon"]["rounds"]
    before = probes(fleet, server.address)
    started = time.monotonic()
    sent = send_as_nobody(hints, f"hint {server.address}\\n", flood=5000)
    elapsed = time.monotonic() - started
    time.sleep(0.5)  # the last hint's probe, if any, is answered
    status = fleet.status()
    extra = probes(fleet, server.address) - before - (status["daemon"]["rounds"] - rounds)
    received = metric(scrape(port), "mcwatch_hints_total", f'server="{server.address}"')
    allowed = int((elapsed + 0.5) / 0.1) + 2  # one probe per 100 ms, both ends counted
    print(f"flood: {sent} sent, {received:.0f} received, {extra} probes out of rounds in {elapsed:.2f}s "
          f"(at most {allowed})")
    assert sent > 0 and received > 0
    assert 1 <= extra <= allowed
    assert extra < received
    assert fleet.states() == {server.address: "live"}
    assert "event=down" not in fleet.log_text()


def test_a_hint_for_a_killed_server_makes_it_dead_before_the_rounds_would(fleet, open_dir):
    victim, other = fleet.add_servers(2)
    fleet.write_config({"probe_interval": "3s", "probe_timeout": "1s", "fail_after": "3", "stale_after": "10s"})
    fleet.start_daemon()
    hints = os.path.join(open_dir, "hints")
    victim.kill()
    rounds = fleet.status()["daemon"]["rounds"]
    send_as_nobody(hints, f"hint {victim.address}\\n")
    fleet.wait_states({victim.address: "dead"}, timeout=30)
    status = fleet.status()
    after = status["daemon"]["rounds"] - rounds
    print(f"dead after {after} rounds (fail_after 3 would take 3)")
    # Without the hint, three failed rounds; with it, the refused probe decides.
    assert after < 3
    dead = next(s for s in status["servers"] if s["address"] == victim.address)
    assert dead["hint_triggered"] is True
    assert fleet.states()[other.address] == "live"
    text = fleet.ctl("status").stdout
    assert "dead (hint)" in text, text


def test_garbage_datagrams_on_the_hint_socket_are_counted_and_ignored(fleet, open_dir):
    server, port, hints = one_server_with_metrics(fleet, open_dir)
    before = probes(fleet, server.address)
    rounds = fleet.status()["daemon"]["rounds"]
    garbage = ["hello", "hint\\n", "hint 127.0.0.1:1\\n", f"hint {server.address}", f"hint {server.address}\\n\\n",
               f"HINT {server.address}\\n", "hint " + "x" * 400 + "\\n", f"hint  {server.address}\\n"]
    assert send_as_nobody(hints, *garbage) == len(garbage)
    wait_until(lambda: metric(scrape(port), "mcwatch_hints_invalid_total") == len(garbage), 10,
               "every datagram counted")
    text = scrape(port)
    assert metric(text, "mcwatch_hints_total", f'server="{server.address}"') == 0
    assert probes(fleet, server.address) - before == fleet.status()["daemon"]["rounds"] - rounds
    assert fleet.states() == {server.address: "live"}
    assert fleet.daemon.poll() is None


def test_hint_socket_off_creates_no_socket(fleet, open_dir):
    fleet.add_servers(1)
    fleet.write_config({"hint_socket": "off"})
    fleet.start_daemon()
    assert not os.path.exists(os.path.join(open_dir, "hints"))


def test_a_hint_for_a_frozen_server_needs_fail_after_timeouts_probed_back_to_back(fleet, open_dir):
    frozen, other = fleet.add_servers(2)
    fleet.write_config({"probe_interval": "5s", "probe_timeout": "300ms", "fail_after": "3", "stale_after": "15s"})
    fleet.start_daemon()
    hints = os.path.join(open_dir, "hints")
    failed = fleet.server(frozen.address)["probes_failed"]
    frozen.signal(signal.SIGSTOP)
    try:
        rounds = fleet.status()["daemon"]["rounds"]
        send_as_nobody(hints, f"hint {frozen.address}\\n")
        fleet.wait_states({frozen.address: "dead"}, timeout=30)
        status = fleet.status()
        dead = next(s for s in status["servers"] if s["address"] == frozen.address)
        after = status["daemon"]["rounds"] - rounds
        print(f"dead after {after} rounds, {dead['probes_failed'] - failed} failed probes")
        # A timeout is not certain: three of them, one after the other, not three rounds.
        assert dead["probes_failed"] - failed >= 3
        assert after < 3
        assert dead["hint_triggered"] is True
        assert fleet.states()[other.address] == "live"
    finally:
        frozen.signal(signal.SIGCONT)
