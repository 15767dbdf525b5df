"""The fleet view (docs/DESIGN.md, "The fleet view"): several mcwatchd on this
machine, each with its own state file and `[fleet] host =`, sharing real
memcached servers and a real etcd cluster (tests/lib/etcd_cluster.py). What a
user sees: every host's state file agrees with the fleet's verdict, a
server's return is flushed exactly once (memcached's own cmd_flush), a stall
seen by one host flushes nothing, a flush claimed by a host whose lease
lapsed is not sent again while that host finishes, a dead host's lease lets
the others carry on, and losing one etcd member of three changes nothing."""

import base64
import json
import os
import signal
import subprocess
import time
import urllib.request

import pytest

from conftest import BUILD, Memcached, Mcwatchd, free_port, wait_until, write_config

# Quick enough for a test; the shipped defaults are in etc/mcwatchd.conf. The
# timeout is the shipped one: on a loaded machine a live server's answer can
# take longer than 50ms twice in a row, and a host's made-up outage adds a
# flush (or, while etcd is gone, a server kept dead) of its own to what the
# tests count. A killed server is refused at once, so no test waits for it.
SETTINGS = {"probe_interval": "300ms", "probe_timeout": "250ms", "fail_after": "2", "recover_after": "2",
            "stats_interval": "300ms"}


class Hosts:
    """mcwatchd daemons standing for hosts of one fleet, stopped by pid."""

    def __init__(self, tmp_path, build, etcd, servers):
        self.tmp_path = tmp_path
        self.build = build
        self.etcd = etcd
        self.servers = servers
        self.daemons = {}

    def start(self, host, settings=None, lease="2s", fleet_settings=None):
        directory = self.tmp_path / host
        directory.mkdir(exist_ok=True)
        state = str(directory / "state")
        config = write_config(str(directory / "mcwatchd.conf"), state, [m.address for m in self.servers],
                              {**SETTINGS, **(settings or {})},
                              fleet={"etcd": self.etcd.config_value(), "name": "test", "host": host,
                                     "lease": lease, **(fleet_settings or {})})
        daemon = Mcwatchd(self.build, config, state, str(directory / "mcwatchd.log"))
        daemon.start()
        self.daemons[host] = daemon
        return daemon

    def wait_all(self, expected, timeout=20.0):
        for daemon in self.daemons.values():
            daemon.wait_states(expected, timeout, while_running=True)

    def wait_rounds(self, count=3, timeout=20.0):
        """Waits until every daemon has probed (and polled etcd) `count` more
        rounds: the time a flush or a verdict that should not come would have
        had to come, counted in rounds, which a loaded machine stretches."""
        start = {host: daemon.status()["daemon"]["rounds"] for host, daemon in self.daemons.items()}
        for host, daemon in self.daemons.items():
            wait_until(lambda: daemon.status()["daemon"]["rounds"] >= start[host] + count, timeout,
                       f"{count} more rounds on {host}")

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
def local_hosts(tmp_path, etcd, servers):
    """Hosts on this machine's loopback (conftest's `hosts` are namespaces)."""
    h = Hosts(tmp_path, BUILD, etcd, servers)
    yield h
    h.stop()


def kill_with_three_hosts(local_hosts, servers):
    """Hosts h1..h3 all live on both servers, then the first killed and
    dead on every host (b live); the two servers."""
    for name in ("h1", "h2", "h3"):
        local_hosts.start(name)
    a, b = servers
    local_hosts.wait_all({a.address: "live", b.address: "live"})
    a.kill()
    local_hosts.wait_all({a.address: "dead", b.address: "live"})
    return a, b


def test_a_killed_server_is_dead_on_every_host_and_flushed_exactly_once_on_its_return(local_hosts, servers):
    a, _ = kill_with_three_hosts(local_hosts, servers)
    servers[0] = returned = Memcached(port=a.port).start()
    local_hosts.wait_all({a.address: "live"})
    # One daemon won the rejoin and flushed; the others waited for its record.
    assert flushes(returned) == 1
    local_hosts.wait_rounds()  # a second flush would come within a few probe rounds
    assert flushes(returned) == 1
    logs = "".join(d.log_text() for d in local_hosts.daemons.values())
    assert logs.count("event=fleet_rejoin") == 1, logs


def test_a_stall_seen_by_one_host_alone_flushes_nothing(local_hosts, servers):
    # h1 gives up after one timeout; h2 and h3 would need 50 failed probes.
    local_hosts.start("h1", {"fail_after": "1"})
    for name in ("h2", "h3"):
        local_hosts.start(name, {"fail_after": "50"})
    a, _ = servers
    local_hosts.wait_all({a.address: "live"})
    a.command(b"set kept 0 0 1\r\nx\r\n")
    before = flushes(a)
    a.signal(signal.SIGSTOP)
    try:
        wait_until(lambda: f"event=down server={a.address}" in local_hosts.daemons["h1"].log_text(), 10,
                   "h1 seeing the stall")
        time.sleep(0.3)
    finally:
        a.signal(signal.SIGCONT)
    wait_until(lambda: f"event=up server={a.address}" in local_hosts.daemons["h1"].log_text(), 10,
               "h1 seeing it back")
    local_hosts.wait_all({a.address: "live"})
    local_hosts.wait_rounds()
    assert flushes(a) == before
    assert a.command(b"get kept\r\n", b"END\r\n").startswith(b"VALUE kept")


def rejoin_txn(key, expected_mod_revision, record):
    """A v3 gateway txn: put `record` at `key` if its mod_revision is the one expected (0: absent)."""
    encoded = base64.b64encode(key.encode()).decode()
    return {"compare": [{"key": encoded, "target": "MOD", "mod_revision": str(expected_mod_revision),
                         "result": "EQUAL"}],
            "success": [{"request_put": {"key": encoded,
                                         "value": base64.b64encode(json.dumps(record).encode()).decode()}}]}


def test_a_flush_claimed_by_a_host_whose_lease_lapsed_is_not_sent_again_while_that_host_finishes(
        local_hosts, servers, etcd):
    # The claimer is played by the test, as host "t" with no hosts/ key: its
    # lease lapsed while it lived (as keepalives did under a loaded etcd). It
    # claims the server's flush, sends flush_all, a client writes, and its
    # `done` comes 1.5 s after the claim (etcd answering slowly): within the
    # time a claimer has (docs/DESIGN.md, "Side effects once").
    for name in ("h1", "h2", "h3"):
        local_hosts.start(name)
    a, _ = servers
    local_hosts.wait_all({a.address: "live"})
    key = f"/mcwatch/test/rejoin/{a.address}"
    claim = {"epoch": 1, "phase": "flushing", "host": "t", "at_unix_ms": int(time.time() * 1000), "flushed": False}
    claimed = etcd.request("/v3/kv/txn", rejoin_txn(key, 0, claim))
    assert claimed.get("succeeded"), claimed
    a.command(b"flush_all\r\n")
    a.command(b"set written_after_the_return 0 0 1\r\nx\r\n")
    time.sleep(1.5)
    done = etcd.request("/v3/kv/txn", rejoin_txn(key, int(claimed["header"]["revision"]),
                                                 {**claim, "phase": "done", "flushed": True}))
    local_hosts.wait_all({a.address: "live"})
    assert done.get("succeeded"), "another host took the claim over while its host was finishing"
    time.sleep(1.0)  # a second flush would come within a few probe rounds
    assert flushes(a) == 1
    assert a.command(b"get written_after_the_return\r\n", b"END\r\n").startswith(b"VALUE")
    assert "event=fleet_rejoin" not in "".join(d.log_text() for d in local_hosts.daemons.values())


def test_a_host_with_a_lease_that_has_not_reported_yet_keeps_a_lone_host_from_beginning_an_outage(
        local_hosts, servers, etcd):
    # A daemon just started holds its lease before its first observation:
    # stood for here by a hosts/ key under a lease, with no observation.
    lease = etcd.request("/v3/lease/grant", {"TTL": 60})["ID"]
    key = base64.b64encode(b"/mcwatch/test/hosts/starting").decode()
    value = base64.b64encode(json.dumps({"pid": 1, "started_unix_ms": 0}).encode()).decode()
    etcd.request("/v3/kv/put", {"key": key, "value": value, "lease": lease})
    h1 = local_hosts.start("h1")
    a, _ = servers
    local_hosts.wait_all({a.address: "live"})
    a.kill()
    wait_until(lambda: "1 of 2 hosts see it dead" in fleet_report(h1)["servers"][0]["reason"], 10,
               "h1's dead observation judged beside the silent host")
    local_hosts.wait_rounds()  # several polls: the verdict stays live
    assert fleet_report(h1)["servers"][0]["published"] == "live"
    assert h1.states()[a.address] == "live"
    assert "event=fleet_dead" not in h1.log_text()
    servers[0] = returned = Memcached(port=a.port).start()
    local_hosts.wait_rounds()
    assert flushes(returned) == 0  # the new process has seen no flush_all


def b64(text):
    return base64.b64encode(text.encode()).decode()


def put_leased(etcd, key, value):
    """`key` = `value` (JSON) under a lease of its own, as a host's daemon writes."""
    lease = etcd.request("/v3/lease/grant", {"TTL": 60})["ID"]
    etcd.request("/v3/kv/put", {"key": b64(key), "value": b64(json.dumps(value)), "lease": lease})


def fleet_keys(etcd):
    """Every key under the fleet's prefix and its value, as etcd holds them."""
    reply = etcd.request("/v3/kv/range", {"key": b64("/mcwatch/test/"), "range_end": b64("/mcwatch/test0")})
    return {base64.b64decode(kv["key"]).decode()[len("/mcwatch/test/"):]: json.loads(base64.b64decode(kv["value"]))
            for kv in reply.get("kvs", [])}


def test_each_host_is_one_key_under_the_prefix_holding_its_observation_of_every_server(local_hosts, servers, etcd):
    a, b = kill_with_three_hosts(local_hosts, servers)
    expected = {a.address: "dead", b.address: "live"}
    # Each host's record follows its probes (published dead above is the
    # fleet's verdict, which two of them suffice for).
    wait_until(lambda: all({s: o["state"] for s, o in fleet_keys(etcd).get(f"hosts/{h}", {}).get("servers", {}).items()}
                           == expected for h in ("h1", "h2", "h3")), 10, "every host's record holding a dead")
    keys = fleet_keys(etcd)
    assert sorted(keys) == ["hosts/h1", "hosts/h2", "hosts/h3", f"rejoin/{a.address}"]
    for name in ("h1", "h2", "h3"):
        record = keys[f"hosts/{name}"]
        assert record["pid"] == local_hosts.daemons[name].pid
        assert record["servers"][a.address]["error"]


def test_an_older_daemon_s_per_server_keys_still_count_for_its_host(local_hosts, servers, etcd):
    # A rolling upgrade: "old" runs the daemon that wrote a key per server
    # (obs/<server>/<host>) beside a host key without observations.
    a, b = servers
    put_leased(etcd, "/mcwatch/test/hosts/old", {"pid": 1, "started_unix_ms": 0})
    put_leased(etcd, f"/mcwatch/test/obs/{a.address}/old",
               {"state": "dead", "since_unix_ms": 0, "error": "connection refused"})
    put_leased(etcd, f"/mcwatch/test/obs/{b.address}/old", {"state": "live", "since_unix_ms": 0})
    h1 = local_hosts.start("h1")
    local_hosts.wait_all({a.address: "live", b.address: "live"})
    wait_until(lambda: fleet_report(h1)["servers"][0]["reason"] ==
               "1 of 2 hosts see it dead (majority needs more than half): old (connection refused)", 10,
               "the older host's observation judged beside h1's")
    report = fleet_report(h1)
    assert report["servers"][0]["observations"]["old"]["counted"] is True
    assert report["servers"][1]["observations"]["old"]["state"] == "live"


def test_mcctl_fleet_names_a_key_no_daemon_can_read(local_hosts, servers, etcd):
    put_leased(etcd, "/mcwatch/test/hosts/broken", {"pid": 1, "servers": {"x:1": {"state": "asleep"}}})
    h1 = local_hosts.start("h1")
    a, _ = servers
    local_hosts.wait_all({a.address: "live"})
    why = "/mcwatch/test/hosts/broken: host record: server 'x:1': observation: unknown state 'asleep'"
    result = subprocess.run([h1.mcctl, "-c", h1.config, "fleet"], capture_output=True, text=True, timeout=30)
    assert f"unreadable key {why}\n" in result.stdout, result.stdout
    assert fleet_report(h1)["unreadable"] == [why]
    # The daemon says it too, once while the key stays unreadable.
    logged = f'event=fleet_key status=unreadable reason="{why}"'
    wait_until(lambda: logged in h1.log_text(), 10, "h1 logging the unreadable key")
    # A change under the prefix (h1's record, a dead in it): a full read that
    # finds the key again. (The broken host holds a lease and reports
    # nothing, so the verdict stays live.)
    a.kill()
    wait_until(lambda: "1 of 2 hosts see it dead" in fleet_report(h1)["servers"][0]["reason"], 10,
               "h1's dead observation in its record")
    local_hosts.wait_rounds()
    assert h1.log_text().count("event=fleet_key") == 1, h1.log_text()


def test_a_killed_daemon_s_lease_expires_and_the_other_host_carries_on(local_hosts, servers):
    local_hosts.start("h1")
    h2 = local_hosts.start("h2")
    a, _ = servers
    local_hosts.wait_all({a.address: "live"})
    assert fleet_report(h2)["hosts"] == ["h1", "h2"]
    h2.stop(signal.SIGKILL)
    del local_hosts.daemons["h2"]
    # The lease (2s) expires: h2's last word (live) stops counting.
    wait_until(lambda: fleet_report(local_hosts.daemons["h1"])["hosts"] == ["h1"], 10,
               "h2's lease to expire")
    a.kill()
    local_hosts.wait_all({a.address: "dead"})


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


def test_with_etcd_gone_the_last_view_is_kept_until_fallback_after_then_local_probes_decide_loudly(local_hosts,
                                                                                                     servers, etcd):
    port = free_port()
    h1 = local_hosts.start("h1", {"metrics_listen": f"127.0.0.1:{port}"}, fleet_settings={"fallback_after": "3s"})
    a, _ = servers
    local_hosts.wait_all({a.address: "live"})
    # The fleet's view holds h1's observation: the daemon's next poll takes it.
    wait_until(lambda: fleet_report(h1)["servers"][0]["published"] == "live", 10, "the fleet's view of the server")
    wait_until(lambda: h1.status()["fleet"]["etcd_answers"], 10, "status saying etcd answers")
    assert h1.status()["fleet"]["fallback"] is False
    assert "mcwatch_fleet_etcd_up 1\n" in scrape(port)
    assert "fleet: etcd answering since" in status_text(h1)
    time.sleep(1.0)
    for member in etcd.members:
        member.stop(signal.SIGKILL)
    a.kill()
    fallback = "event=fleet_fallback status=started"

    # The state is read before the log: the daemon logs the fallback before
    # it publishes what its own probes say, so a dead state seen without
    # that line would be the last view lost early.
    def dead_after_fallback():
        dead = h1.states().get(a.address) == "dead"
        assert not dead or fallback in h1.log_text(), "published dead before fallback_after"
        return dead
    wait_until(dead_after_fallback, 20, "the fallback to local probes")
    assert "event=fleet_etcd status=unreachable" in h1.log_text()
    # And loudly where an operator looks: status (text and JSON) and metrics.
    wait_until(lambda: h1.status()["fleet"]["fallback"], 10, "status saying the host fell back")
    fleet = h1.status()["fleet"]
    assert fleet["etcd_answers"] is False and fleet["last_error"] and fleet["last_answer"]
    text = status_text(h1)
    assert "FLEET: etcd not answering since" in text and "FLEET FALLBACK" in text, text
    metrics = scrape(port)
    assert "mcwatch_fleet_etcd_up 0\n" in metrics and "mcwatch_fleet_fallback 1\n" in metrics, metrics
    assert "mcwatch_fleet_last_answer_age_seconds " in metrics


def test_a_server_back_while_etcd_is_gone_stays_dead_until_etcd_returns_then_is_flushed_exactly_once(local_hosts,
                                                                                                       servers, etcd):
    """The rule: never a rejoin on local evidence alone while [fleet] is
    configured, so never one without the fleet's flush."""
    for name in ("h1", "h2"):
        local_hosts.start(name, fleet_settings={"fallback_after": "2s"})
    a, b = servers
    local_hosts.wait_all({a.address: "live", b.address: "live"})
    for daemon in local_hosts.daemons.values():
        wait_until(lambda: daemon.status()["fleet"]["etcd_answers"], 10, "status saying etcd answers")
    for member in etcd.members:
        member.stop(signal.SIGKILL)
    for daemon in local_hosts.daemons.values():
        wait_until(lambda: daemon.status()["fleet"]["fallback"], 20, "the fallback to local probes")
    a.kill()
    local_hosts.wait_all({a.address: "dead", b.address: "live"})
    servers[0] = returned = Memcached(port=a.port).start()
    for daemon in local_hosts.daemons.values():
        wait_until(lambda: f"event=up server={a.address}" in daemon.log_text(), 10, "its probes seeing it back")
    # Back for this host's probes, not for its clients: nobody has flushed it.
    assert [d.states()[a.address] for d in local_hosts.daemons.values()] == ["dead", "dead"]
    assert flushes(returned) == 0

    for member in etcd.members:
        member.start(f"{member.name}={member.peer_url}")
    wait_until(lambda: all(m.healthy() for m in etcd.members), 30, "etcd back")
    local_hosts.wait_all({a.address: "live", b.address: "live"})
    assert flushes(returned) == 1
    local_hosts.wait_rounds()  # a second flush would come within a few probe rounds
    assert flushes(returned) == 1


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return response.read().decode()


def status_text(daemon):
    return daemon.ctl("status").stdout
