"""The Prometheus endpoint (metrics_listen), scraped as Prometheus would and
checked with an independent parser (python3-prometheus-client) and, where
Debian's prometheus package is installed, with promtool."""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import free_port, run, wait_until


def scrape(port, path="/metrics"):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        return response.status, response.headers.get("Content-Type"), response.read().decode()


def samples(text):
    """{(name, frozenset(labels)): value} for every sample."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(parsed, name, **labels):
    return parsed[(name, frozenset(labels.items()))]


def test_metrics_are_scraped_parsed_and_follow_the_fleet(fleet):
    fleet.add_servers(2)
    port = free_port()
    fleet.write_config({"metrics_listen": f"127.0.0.1:{port}"})
    fleet.start_daemon()
    up, victim = fleet.servers
    assert up.command(b"set a 0 0 1\r\nx\r\nget a\r\nget nope\r\n").startswith(b"STORED")

    status, content_type, text = scrape(port)
    assert status == 200
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    families = {f.name: f.type for f in text_string_to_metric_families(text)}
    for name, kind in {"mcwatch_server_up": "gauge", "mcwatch_server_state": "gauge",
                       "mcwatch_probe_rtt_seconds": "histogram", "mcwatch_server_transitions": "counter",
                       "mcwatch_server_restarts": "counter", "mcwatch_flushes": "counter",
                       "mcwatch_heartbeat_timestamp_seconds": "gauge", "mcwatch_server_items": "gauge",
                       "mcwatch_server_get_hits": "counter", "mcwatch_server_get_misses": "counter",
                       "mcwatch_server_evictions": "counter"}.items():
        assert families.get(name) == kind, name

    def current():
        return samples(scrape(port)[2])

    wait_until(lambda: value(current(), "mcwatch_server_items", server=up.address) == 1, what="the item counted")
    parsed = current()
    assert value(parsed, "mcwatch_server_up", server=up.address) == 1
    assert value(parsed, "mcwatch_server_state", server=up.address, state="live") == 1
    assert value(parsed, "mcwatch_server_get_hits_total", server=up.address) >= 1
    assert value(parsed, "mcwatch_server_get_misses_total", server=up.address) >= 1
    assert value(parsed, "mcwatch_probe_rtt_seconds_count", server=up.address) >= 1
    assert value(parsed, "mcwatch_server_transitions_total", server=up.address, to="live") == 1
    heartbeat = value(parsed, "mcwatch_heartbeat_timestamp_seconds")
    wait_until(lambda: value(current(), "mcwatch_heartbeat_timestamp_seconds") > heartbeat, what="a newer heartbeat")

    victim.kill()
    fleet.wait_states({victim.address: "dead"})
    parsed = current()
    assert value(parsed, "mcwatch_server_up", server=victim.address) == 0
    assert value(parsed, "mcwatch_server_state", server=victim.address, state="dead") == 1
    assert value(parsed, "mcwatch_server_transitions_total", server=victim.address, to="dead") == 1
    assert value(parsed, "mcwatch_probes_total", server=victim.address, result="failed") >= 2

    assert fleet.ctl("flush", up.address).returncode == 0
    assert value(current(), "mcwatch_flushes_total", server=up.address) == 1

    promtool = shutil.which("promtool")
    if promtool:
        check = subprocess.run([promtool, "check", "metrics"], input=scrape(port)[2], capture_output=True,
                               text=True, timeout=30)
        assert check.returncode == 0, check.stdout + check.stderr
    else:
        print("promtool not installed (Debian package prometheus): checked with prometheus_client's parser only")


def test_only_get_metrics_is_answered(fleet):
    fleet.add_servers(1)
    port = free_port()
    fleet.write_config({"metrics_listen": f"127.0.0.1:{port}"})
    fleet.start_daemon()
    with pytest.raises(urllib.error.HTTPError) as error:
        scrape(port, "/")
    assert error.value.code == 404
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", data=b"x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(request, timeout=10)
    assert error.value.code == 405

    # An endless request head is cut off, not buffered.
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /metrics HTTP/1.0\r\n" + b"X-Filler: " + b"y" * 20000 + b"\r\n")
        reply = b""
        while True:
            try:
                chunk = s.recv(4096)
            except ConnectionResetError:
                break
            if not chunk:
                break
            reply += chunk
    assert reply.startswith(b"HTTP/1.0 431 ")
    assert scrape(port)[0] == 200  # and it still serves


def test_metrics_are_off_unless_configured_and_follow_a_reload(fleet):
    fleet.add_servers(1)
    port = free_port()
    fleet.start_daemon()
    assert "metrics=off" in fleet.log_text()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    fleet.write_config({"metrics_listen": f"127.0.0.1:{port}"})
    assert fleet.ctl("reload").returncode == 0
    assert scrape(port)[0] == 200

    # A port already taken: the reload is refused, the endpoint stays.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        fleet.write_config({"metrics_listen": f"127.0.0.1:{taken.getsockname()[1]}"})
        result = fleet.ctl("reload")
    assert result.returncode == 1
    assert "metrics_listen: cannot listen on" in result.stderr
    assert scrape(port)[0] == 200


def test_a_port_in_use_stops_the_start_with_a_message(fleet):
    fleet.add_servers(1)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        fleet.write_config({"metrics_listen": f"127.0.0.1:{port}"})
        from conftest import MCWATCHD
        result = run([MCWATCHD, "-f", "-c", fleet.config])
    assert result.returncode == 1
    assert f"mcwatchd: metrics_listen: cannot listen on 127.0.0.1:{port}: Address already in use" in result.stderr


HOLDER = r"""
import socket, sys, time
port, count = int(sys.argv[1]), int(sys.argv[2])
held = []
for _ in range(count):
    try:
        held.append(socket.create_connection(("127.0.0.1", port), timeout=5))
    except OSError:
        pass
print(len(held), flush=True)
time.sleep(30)
"""


def test_one_local_user_holding_every_metrics_connection_leaves_scrapes_unanswered(fleet):
    if os.geteuid() != 0:
        pytest.skip("needs root, to hold the connections as another user (nobody)")
    fleet.add_servers(1)
    port = free_port()
    fleet.write_config({"metrics_listen": f"127.0.0.1:{port}"})
    fleet.start_daemon()
    # An unprivileged user opens many connections and sends nothing.
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(port), "32"], stdout=subprocess.PIPE, text=True,
                              preexec_fn=lambda: (os.setgid(65534), os.setuid(65534)))
    try:
        assert int(holder.stdout.readline()) > 0
        time.sleep(0.3)  # the daemon accepts them
        failed = 0
        for _ in range(20):
            try:
                assert scrape(port)[0] == 200
            except (OSError, urllib.error.URLError):
                failed += 1
    finally:
        holder.kill()
        holder.wait()
    print(f"{failed} of 20 scrapes failed while another user held connections")
    assert failed == 0
