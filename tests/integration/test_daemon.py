"""mcwatchd against real memcached servers, observed through mcctl."""

import os
import re
import signal
import subprocess
import time

import pytest

from conftest import MCCTL, MCWATCHD, Memcached, record, run, wait_until


def test_three_live_servers_in_status_json(fleet):
    fleet.add_servers(3)
    fleet.start_daemon()
    status = fleet.status()
    daemon = status["daemon"]
    assert daemon["pid"] == fleet.daemon.pid
    assert daemon["stale"] is False
    assert daemon["running"] is True
    assert daemon["heartbeat_age_ms"] < 2000
    assert daemon["generation"] >= 1
    assert [s["address"] for s in status["servers"]] == [m.address for m in fleet.servers]
    for server, memcached in zip(status["servers"], fleet.servers):
        assert server["state"] == "live"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", server["since"])
        assert server["recently_down_until"] is None
        assert server["pid"] == memcached.process.pid
        assert server["rtt_us"] > 0
        assert server["uptime_s"] >= 0
        assert server["restarts"] == 0
        assert re.fullmatch(r"\d+\.\d+\.\d+.*", server["version"])
        assert server["last_error"] is None
    assert status["summary"] == {"servers": 3, "live": 3, "dead": 0, "draining": 0, "unknown": 0,
                                 "unreachable_here": 0, "text": "3 of 3 live"}
    assert run([MCCTL, "-s", fleet.state, "status"]).returncode == 0


def test_status_table_for_people(fleet):
    fleet.add_servers(2)
    fleet.start_daemon()
    fleet.servers[1].kill()
    fleet.wait_states({fleet.servers[1].address: "dead"})
    result = run([MCCTL, "-s", fleet.state, "status"])
    assert result.returncode == 1  # some server not live
    lines = result.stdout.splitlines()
    assert lines[0] == "1 of 2 live, 1 dead"  # the summary an operator reads first
    assert lines[1].startswith(f"mcwatchd pid {fleet.daemon.pid}, state {fleet.state}")
    assert lines[2].split()[:3] == ["SERVER", "STATE", "FOR"]
    assert re.match(rf"{re.escape(fleet.servers[0].address)}\s+live\s", lines[3])
    assert re.match(rf"{re.escape(fleet.servers[1].address)}\s+dead\s", lines[4])
    assert "last error: connection refused" in lines[5]
    assert "\x1b[" not in result.stdout  # no colour when not on a terminal


def test_a_dead_servers_items_and_hit_ratio_are_not_shown_as_current(fleet):
    fleet.add_servers(2)
    fleet.start_daemon()
    victim = fleet.servers[1]
    assert victim.command(b"set k 0 0 1\r\nv\r\nget k\r\n", expect_end=b"END\r\n").startswith(b"STORED")
    wait_until(lambda: fleet.server(victim.address)["curr_items"] == 1, what="the item to be probed")
    victim.kill()
    fleet.wait_states({victim.address: "dead"})
    row = next(line for line in run([MCCTL, "-s", fleet.state, "status"]).stdout.splitlines()
               if line.startswith(victim.address + " "))
    # SERVER STATE FOR RTT UPTIME ITEMS HIT% RESTARTS: the last good probe's 1 item and 100.0% are gone.
    assert row.split()[1:8] == ["dead", row.split()[2], "-", "-", "-", "-", "0"], row
    dead = fleet.server(victim.address)
    assert [dead[k] for k in ("curr_items", "get_hits", "get_misses", "curr_connections", "uptime_s")] == [None] * 5
    status = fleet.status()
    assert status["summary"]["text"] == "1 of 2 live, 1 dead"


@pytest.mark.serial  # records the time from kill -9 to dead
def test_kill_9_is_dead_then_live_again_after_restart(fleet):
    fleet.add_servers(3)
    fleet.start_daemon()
    victim = fleet.servers[1]
    victim.kill()
    killed_at = time.monotonic()
    fleet.wait_states({victim.address: "dead"})
    record("kill -9 to dead (interval 200ms, fail_after 2)", time.monotonic() - killed_at)
    assert fleet.states()[fleet.servers[0].address] == "live"
    assert fleet.states()[fleet.servers[2].address] == "live"
    dead = fleet.server(victim.address)
    assert dead["last_error"] == "connection refused"
    assert dead["rtt_us"] is None
    assert "event=down server=%s reason=\"connection refused\"" % victim.address in fleet.log_text()

    victim.start()
    fleet.wait_states({victim.address: "live"})
    back = fleet.server(victim.address)
    assert back["pid"] == victim.process.pid
    assert back["restarts"] == 1  # a new pid after the outage
    assert back["recently_down_until"] is not None
    assert back["transitions"] == 3  # unknown -> live -> dead -> live


@pytest.mark.serial  # records the time from kill -STOP to dead
def test_sigstop_is_dead_by_timeout_and_live_after_recover_after_probes(fleet):
    fleet.add_servers(2)
    fleet.write_config({"recover_after": "4"})
    fleet.start_daemon()
    frozen = fleet.servers[0]
    frozen.signal(signal.SIGSTOP)
    stopped_at = time.monotonic()
    fleet.wait_states({frozen.address: "dead"})
    record("kill -STOP to dead (interval 200ms, timeout 150ms, fail_after 2)", time.monotonic() - stopped_at)
    assert fleet.server(frozen.address)["last_error"].startswith("timeout after 150ms")
    assert fleet.states()[fleet.servers[1].address] == "live"

    frozen.signal(signal.SIGCONT)
    fleet.wait_states({frozen.address: "live"})
    back = fleet.server(frozen.address)
    assert back["restarts"] == 0  # same process: frozen, not restarted
    assert back["probes_ok"] >= 4
    assert re.search(r"event=up server=%s detail=\"4 good probes\"" % re.escape(frozen.address), fleet.log_text())


def test_restart_between_two_good_probes_is_counted(fleet):
    fleet.add_servers(1)
    # Probes a second apart: a restart fits between two of them.
    fleet.write_config({"probe_interval": "1s", "probe_timeout": "500ms", "fail_after": "3", "stale_after": "5s"})
    fleet.start_daemon()
    server = fleet.servers[0]
    old_pid = server.process.pid
    server.kill()
    server.start()  # same port
    restarted = lambda: fleet.server(server.address)["restarts"] == 1 and fleet.server(server.address)["pid"] != old_pid
    wait_until(restarted, 10, "the restart to be counted")
    info = fleet.server(server.address)
    assert info["state"] == "live"
    assert info["last_restart"] is not None
    assert "event=restart server=%s" % server.address in fleet.log_text()


def test_rejoin_flushes_values_from_before_the_outage(fleet):
    fleet.add_servers(2)
    fleet.start_daemon()
    cut_off = fleet.servers[0]
    assert cut_off.command(b"set before 0 0 3\r\nold\r\n") == b"STORED\r\n"
    cut_off.signal(signal.SIGSTOP)  # unreachable, not restarted: keeps its data
    fleet.wait_states({cut_off.address: "dead"})
    cut_off.signal(signal.SIGCONT)
    fleet.wait_states({cut_off.address: "live"})
    assert cut_off.command(b"get before\r\n") == b"END\r\n"
    assert fleet.server(cut_off.address)["flushes"] == 1


def test_a_drained_server_cut_off_and_back_is_flushed_before_it_is_draining_again(fleet):
    fleet.add_servers(2)
    fleet.start_daemon()
    drained = fleet.servers[0]
    assert fleet.ctl("drain", drained.address).returncode == 0
    assert drained.command(b"set deleted-meanwhile 0 0 3\r\nold\r\n") == b"STORED\r\n"
    drained.signal(signal.SIGSTOP)  # cut off with its values; deletes elsewhere miss it
    fleet.wait_states({drained.address: "dead"})
    drained.signal(signal.SIGCONT)
    fleet.wait_states({drained.address: "draining"})
    # Draining, clients read it again (and move what they find): nothing old.
    assert drained.command(b"get deleted-meanwhile\r\n") == b"END\r\n"
    assert fleet.server(drained.address)["flushes"] == 1
    assert fleet.server(drained.address)["override"] == "drain"


def test_rejoin_without_flush_when_configured(fleet):
    fleet.add_servers(2)
    fleet.write_config({"flush_on_rejoin": "no"})
    fleet.start_daemon()
    cut_off = fleet.servers[0]
    assert cut_off.command(b"set before 0 0 3\r\nold\r\n") == b"STORED\r\n"
    cut_off.signal(signal.SIGSTOP)
    fleet.wait_states({cut_off.address: "dead"})
    cut_off.signal(signal.SIGCONT)
    fleet.wait_states({cut_off.address: "live"})
    assert cut_off.command(b"get before\r\n") == b"VALUE before 0 3\r\nold\r\nEND\r\n"


def test_second_daemon_on_the_same_state_file_is_refused(fleet):
    fleet.add_servers(1)
    fleet.start_daemon()
    second = run([MCWATCHD, "-c", fleet.config, "-f"])
    assert second.returncode == 1
    assert f"another mcwatchd (pid {fleet.daemon.pid}) already publishes {fleet.state}" in second.stderr
    assert fleet.daemon.poll() is None  # the first one is untouched


def test_sigterm_exits_cleanly_and_leaves_a_file_that_goes_stale(fleet):
    fleet.add_servers(1)
    fleet.write_config({"stale_after": "1s"})
    fleet.start_daemon()
    assert fleet.stop_daemon(signal.SIGTERM) == 0
    assert "event=stop" in fleet.log_text()
    assert os.path.exists(fleet.state)
    result = wait_until(lambda: (r := run([MCCTL, "-s", fleet.state, "status", "--json"])).returncode == 2 and r, 5,
                        "mcctl to call the file stale")[0]
    import json
    assert json.loads(result.stdout)["daemon"]["stale"] is True
    assert json.loads(result.stdout)["daemon"]["running"] is False
    table = run([MCCTL, "-s", fleet.state, "status"])
    assert table.returncode == 2
    assert "STALE: no heartbeat for" in table.stdout


def test_daemon_restart_publishes_a_new_file(fleet):
    fleet.add_servers(2)
    fleet.start_daemon()
    first_pid = fleet.daemon.pid
    fleet.stop_daemon(signal.SIGKILL)
    fleet.start_daemon()  # waits until the file names the new daemon
    assert fleet.status()["daemon"]["pid"] != first_pid
    assert all(s == "live" for s in fleet.states().values())


def test_detached_daemon_reports_its_own_pid(fleet):
    fleet.add_servers(1)
    fleet.write_config()
    with open(fleet.log, "w") as log:  # the daemon keeps stderr: not a pipe we wait on
        result = subprocess.run([MCWATCHD, "-c", fleet.config], stderr=log, timeout=30)  # no -f: detaches
    assert result.returncode == 0
    status = wait_until(fleet.status, 5, "a status")[0]
    pid = status["daemon"]["pid"]
    try:
        assert pid != 0 and os.path.exists(f"/proc/{pid}")
        with open(fleet.state + ".lock") as lock:
            assert lock.read().strip() == str(pid)
    finally:
        os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not os.path.exists(f"/proc/{pid}") or "zombie" in open(f"/proc/{pid}/status").read().lower(),
               5, "the detached daemon to exit")


def test_unresponsive_and_unresolvable_servers_do_not_hold_up_the_others(fleet):
    live = fleet.add_servers(1)[0]
    fleet.write_config(servers=[live.address, "nonexistent.invalid:11211", f"127.0.0.1:{live.port + 1}"])
    fleet.start_daemon(wait_live=False)
    fleet.wait_states({live.address: "live", "nonexistent.invalid:11211": "dead"})
    assert "cannot resolve" in fleet.server("nonexistent.invalid:11211")["last_error"]


def test_config_check(tmp_path):
    good = tmp_path / "good.conf"
    good.write_text("[servers]\nserver = 127.0.0.1:11211\n")
    result = run([MCWATCHD, "-t", "-c", str(good)])
    assert result.returncode == 0
    assert result.stdout.startswith(f"{good}: ok: 1 servers")

    cases = {
        "[mcwatchd]\nprobe_interval = soon\n[servers]\nserver = a:1\n": ":2: probe_interval: bad duration 'soon'",
        "[servers]\nserver = a:1\nserver = b:99999\n": ":3: server b:99999: port '99999' out of range",
        "[servers]\nserver = a:1\nserver = a:1\n": ":3: duplicate server a:1 (first on line 2)",
        "[mcwatchd]\nverbose = yes\n": ":2: unknown key 'verbose' in [mcwatchd]",
        "[mcwatchd]\n": ": no servers configured",
    }
    for text, expected in cases.items():
        bad = tmp_path / "bad.conf"
        bad.write_text(text)
        result = run([MCWATCHD, "-t", "-c", str(bad)])
        assert result.returncode == 1, text
        assert result.stderr.startswith(f"mcwatchd: {bad}{expected}"), result.stderr

    missing = run([MCWATCHD, "-t", "-c", str(tmp_path / "none.conf")])
    assert missing.returncode == 1
    assert "none.conf: cannot open: No such file or directory" in missing.stderr
    assert run([MCWATCHD, "--version"]).stdout.startswith("mcwatchd ")
    assert run([MCWATCHD, "-x"]).returncode == 2


def test_config_check_without_c_reads_etc_mcwatchd_conf():
    # -t only: on a host where /etc/mcwatchd.conf exists, a plain `mcwatchd` would start a daemon.
    result = run([MCWATCHD, "-t"])
    said = result.stdout if result.returncode == 0 else result.stderr
    assert said.startswith(("/etc/mcwatchd.conf: ok: ", "mcwatchd: /etc/mcwatchd.conf: ")), result


def test_config_mistakes_are_named_with_file_and_line(tmp_path):
    conf = tmp_path / "mcwatchd.conf"
    cases = {
        "[servers]\nserver = 127.0.0.1:11212:1\n":
            ":2: server 127.0.0.1:11212:1: the weight is written `weight=1` after the address: "
            "server = 127.0.0.1:11212 weight=1",
        "[servers]\nserver = 127.0.0.1:11211,127.0.0.1:11212\n":
            ":2: server 127.0.0.1:11211,127.0.0.1:11212: write one server per `server =` line, "
            "not a comma-separated list",
        "[servers]\nserver = 127.0.0.1:11211\nserver = localhost:11211\n":
            ":3: server localhost:11211 is 127.0.0.1:11211, the same server as 127.0.0.1:11211 on line 2",
    }
    for text, expected in cases.items():
        conf.write_text(text)
        result = run([MCWATCHD, "-t", "-c", str(conf)])
        assert (result.returncode, result.stderr) == (1, f"mcwatchd: {conf}{expected}\n"), text

    directory = run([MCWATCHD, "-t", "-c", str(tmp_path)])
    assert (directory.returncode, directory.stderr) == (1, f"mcwatchd: {tmp_path}: is a directory, "
                                                           "not a configuration file\n")

    # `#` after a value is a comment, as `;` is.
    conf.write_text("[mcwatchd]\nprobe_interval = 500ms # half a second\n[servers]\nserver = 127.0.0.1:11211\n")
    commented = run([MCWATCHD, "-t", "-c", str(conf)])
    assert commented.returncode == 0, commented.stderr
    assert "probe every 500ms" in commented.stdout


def test_config_check_warns_about_a_name_that_does_not_resolve(tmp_path):
    conf = tmp_path / "mcwatchd.conf"
    conf.write_text("[servers]\nserver = 127.0.0.1:11211\nserver = nonexistent.invalid:11211\n")
    result = run([MCWATCHD, "-t", "-c", str(conf)])
    assert result.returncode == 0
    assert result.stderr.startswith(f"mcwatchd: warning: {conf}:3: server nonexistent.invalid:11211: name does "
                                    "not resolve now (")
    assert result.stderr.endswith("mcwatchd will keep trying and publish it dead until it does\n")
    assert result.stdout.startswith(f"{conf}: ok: 2 servers")


def test_mcctl_on_a_missing_or_garbage_state_file(tmp_path):
    missing = run([MCCTL, "-s", str(tmp_path / "state"), "status"])
    assert missing.returncode == 2
    assert missing.stderr == f"mcctl: state file {tmp_path}/state: does not exist\n"
    garbage = tmp_path / "garbage"
    garbage.write_bytes(os.urandom(5000))
    garbage.chmod(0o644)
    result = run([MCCTL, "-s", str(garbage), "status", "--json"])
    assert result.returncode == 2
    assert "bad magic" in result.stderr
    assert result.stdout == ""


def test_mcctl_dump_and_watch(fleet):
    fleet.add_servers(1)
    fleet.start_daemon()
    dump = run([MCCTL, "-s", fleet.state, "dump"])
    assert dump.returncode == 0
    assert "magic: MCWATCH" in dump.stdout
    assert f"address: {fleet.servers[0].address}" in dump.stdout
    assert "state: 1" in dump.stdout
    watch = run([MCCTL, "-s", fleet.state, "watch", "-n", "100ms", "--count", "3"])
    assert watch.returncode == 0
    assert watch.stdout.count("SERVER") == 3
