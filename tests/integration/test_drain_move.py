"""`mcctl drain --move`: mcwatchd moves every key of a draining server to
where clients now send it, paced, stoppable, and never over a client's write."""

import re
import urllib.request

from conftest import free_port, wait_until
from test_preload import client_says, holders, ttl_on  # noqa: F401

# Near memcached's default 1 MB item size limit (the item's header and key
# take the rest).
BIG = 1024 * 1024 - 4096

WRITE = (
    "import pylibmc, sys, os, random\n"
    "mc = pylibmc.Client(sys.argv[1].split(','), behaviors={'ketama': True})\n"
    "random.seed(7)\n"
    "for i in range(int(sys.argv[2])):\n"
    "    value = random.randbytes(BIG if i % 40 == 0 else 1 + i % 3000)\n"
    "    assert mc.set(f'{sys.argv[3]}{i}', value, time=(600 if i % 2 else 0))\n"
    "print('ok')\n").replace("BIG", str(BIG))

READ = (
    "import pylibmc, sys, random\n"
    "mc = pylibmc.Client(sys.argv[1].split(','), behaviors={'ketama': True})\n"
    "random.seed(7)\n"
    "same = 0\n"
    "for i in range(int(sys.argv[2])):\n"
    "    value = random.randbytes(BIG if i % 40 == 0 else 1 + i % 3000)\n"
    "    same += mc.get(f'{sys.argv[3]}{i}') == value\n"
    "print('same', same)\n").replace("BIG", str(BIG))


def python(script):
    return ["/usr/bin/python3", "-c", script]


def start(fleet, rate, **settings):
    fleet.add_servers(3)
    # [routing] as pylibmc's {"ketama": True} places keys (mcwatchd.conf(5)).
    fleet.write_config({"recently_down_window": "1h", "drain_rate": str(rate), **settings},
                       routing={"distribution": "ketama", "hash": "one_at_a_time"})
    fleet.start_daemon()


def drain_move(fleet, server):
    """The server's "drain_move" object in `mcctl status --json`."""
    return fleet.server(server.address)["drain_move"]


def status_lines(fleet, server):
    """The lines of `mcctl status` under the server's row."""
    lines = fleet.ctl("status").stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith(server.address + " "))
    return [line.strip() for line in lines[at + 1:] if line.startswith(" ")]


def items(server):
    reply = server.command(b"stats\r\n", expect_end=b"END\r\n").decode()
    return int(re.search(r"STAT curr_items (\d+)", reply).group(1))


def move_end(fleet, server, timeout=60):
    """The daemon's drain_move_end line for `server`, once logged."""
    def ended():
        return next((line for line in fleet.log_text().splitlines()
                     if "event=drain_move_end" in line and f"server={server.address}" in line), None)
    return wait_until(ended, timeout, "the end of the drain's move")[0]


def field(line, name):
    return re.search(rf"\b{name}=(\S+)", line).group(1)


def test_drain_move_moves_every_key_byte_for_byte_with_its_ttl(fleet):
    start(fleet, 5000)
    n = 200
    # Written natively (no shim), with and without expiration, binary, some
    # near the item size limit.
    assert client_says(fleet, python(WRITE), n, "k", shim=False) == "ok"
    draining = fleet.servers[1]
    keys = [f"k{i}" for i in range(n)]
    moved = [k for k, v in holders(fleet, keys).items() if v == [draining.address]]
    held = items(draining)
    assert held == len(moved) > 0
    result = fleet.ctl("drain", "--move", draining.address)
    assert result.returncode == 0, result.stderr
    assert "moving every key" in result.stdout
    end = move_end(fleet, draining)
    assert field(end, "outcome") == "done", end
    assert int(field(end, "moved")) == held, end
    # Every key left the draining server by the move, before any client read.
    assert items(draining) == 0
    placed = holders(fleet, keys)
    assert all(len(v) == 1 and v != [draining.address] for v in placed.values())
    # Each key's remaining time kept (never longer than it had), no
    # expiration capped at recently_down_window.
    by_address = {m.address: m for m in fleet.servers}
    for key in moved:
        ttl = ttl_on(by_address[placed[key][0]], key)
        assert (500 < ttl <= 600) if int(key[1:]) % 2 else (3500 < ttl <= 3600), (key, ttl)
    # A preloaded client finds every key where it sends it, byte for byte
    # (nothing is left on the draining server to fall back to).
    assert client_says(fleet, python(READ), n, "k") == f"same {n}"


def test_with_replicas_drain_move_stores_every_moved_key_on_all_its_copies(fleet):
    """With replicas = 2 a moved key lands on both its copies: of three
    servers, one draining, both others."""
    fleet.add_servers(3)
    fleet.write_config({"recently_down_window": "1h", "drain_rate": "5000"},
                       routing={"distribution": "ketama", "hash": "one_at_a_time", "replicas": "2"})
    fleet.start_daemon()
    n = 120
    assert client_says(fleet, python(WRITE), n, "r", shim=False) == "ok"
    draining = fleet.servers[0]
    keys = [f"r{i}" for i in range(n)]
    moved = [k for k, v in holders(fleet, keys).items() if v == [draining.address]]
    assert moved
    assert fleet.ctl("drain", "--move", draining.address).returncode == 0
    end = move_end(fleet, draining)
    assert field(end, "outcome") == "done" and int(field(end, "moved")) == len(moved), end
    others = sorted(m.address for m in fleet.servers[1:])
    placed = holders(fleet, moved)
    assert {k: sorted(v) for k, v in placed.items()} == {k: others for k in moved}


def test_a_client_write_during_the_drain_move_wins(fleet):
    start(fleet, 10)
    n = 150
    assert client_says(fleet, python(WRITE), n, "w", shim=False) == "ok"
    draining = fleet.servers[0]
    keys = [f"w{i}" for i in range(n)]
    on_draining = [k for k, v in holders(fleet, keys).items() if v == [draining.address]]
    assert len(on_draining) > 10
    assert fleet.ctl("drain", "--move", draining.address).returncode == 0
    fleet.wait_states({draining.address: "draining"})
    # Through the shim, while the move runs (10 keys a second).
    script = ("import pylibmc, sys\n"
              "mc = pylibmc.Client(sys.argv[1].split(','), behaviors={'ketama': True})\n"
              "print(sum(bool(mc.set(k, b'newer')) for k in sys.argv[2:]))\n")
    assert client_says(fleet, python(script), *on_draining) == str(len(on_draining))
    end = move_end(fleet, draining)
    assert field(end, "outcome") == "done", end
    assert int(field(end, "skipped")) > 0, end
    script = ("import pylibmc, sys\n"
              "mc = pylibmc.Client(sys.argv[1].split(','), behaviors={'ketama': True})\n"
              "print(sum(mc.get(k) == b'newer' for k in sys.argv[2:]))\n")
    assert client_says(fleet, python(script), *on_draining) == str(len(on_draining))


def test_undrain_stops_the_drain_move(fleet):
    start(fleet, 5)
    n = 150
    assert client_says(fleet, python(WRITE), n, "u", shim=False) == "ok"
    draining = fleet.servers[2]
    held = items(draining)
    assert fleet.ctl("drain", "--move", draining.address).returncode == 0
    wait_until(lambda: "event=drain_move_listed" in fleet.log_text(), 10, "the key listing")
    result = fleet.ctl("undrain", draining.address)
    assert result.returncode == 0, result.stderr
    end = move_end(fleet, draining)
    assert field(end, "outcome") == "stopped", end
    assert "undrain" in end
    assert int(field(end, "moved")) < held, end


def test_status_text_and_json_show_the_moves_progress_while_it_runs_and_after_it_ends(fleet):
    start(fleet, 20)
    n = 150
    assert client_says(fleet, python(WRITE), n, "p", shim=False) == "ok"
    draining = fleet.servers[1]
    held = items(draining)
    assert held > 10
    never_moved = fleet.server(fleet.servers[0].address)["drain_move"]
    assert never_moved == {"state": "none", "moved": 0, "skipped": 0, "remaining": 0, "rate_per_s": None,
                           "eta_s": None, "started": None}
    assert fleet.ctl("drain", "--move", draining.address).returncode == 0
    # 20 keys a second: seen half-way.
    move = wait_until(lambda: (lambda m: m if m["state"] == "moving" and m["moved"] >= 5 else None)(
        drain_move(fleet, draining)), 30, "the move under way")[0]
    assert move["moved"] + move["skipped"] + move["remaining"] == held, move
    assert move["remaining"] > 0 and move["rate_per_s"] > 0 and move["eta_s"] > 0, move
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", move["started"]), move
    line = next(line for line in status_lines(fleet, draining) if line.startswith("moving keys:"))
    assert re.fullmatch(r"moving keys: \d+ moved, \d+ skipped, \d+ left, [\d.]+/s, about \d+s left", line), line
    # Ended: the figures stay, nothing left, the time left 0.
    move_end(fleet, draining)
    move = wait_until(lambda: (lambda m: m if m["state"] == "done" else None)(drain_move(fleet, draining)), 10,
                      "the move done in the state file")[0]
    assert move["moved"] == held and move["skipped"] == 0 and move["remaining"] == 0, move
    assert move["eta_s"] == 0 and move["rate_per_s"] is None, move
    assert f"keys moved: done, {held} moved, 0 skipped" in status_lines(fleet, draining)


def test_metrics_show_the_moves_progress_and_where_it_stands(fleet):
    port = free_port()
    start(fleet, 5000, metrics_listen=f"127.0.0.1:{port}")
    assert client_says(fleet, python(WRITE), 100, "m", shim=False) == "ok"
    draining = fleet.servers[2]
    held = items(draining)
    assert fleet.ctl("drain", "--move", draining.address).returncode == 0
    move_end(fleet, draining)
    label = f'server="{draining.address}"'

    def scraped():
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            text = response.read().decode()
        return text if f'mcwatch_drain_move_state{{{label},state="done"}} 1' in text else None
    text = wait_until(scraped, 10, "the move done in the metrics")[0]
    assert f'mcwatch_drain_move_keys_total{{{label},result="moved"}} {held}\n' in text
    assert f"mcwatch_drain_move_remaining{{{label}}} 0\n" in text
    assert f"mcwatch_drain_move_running{{{label}}} 0\n" in text
    assert re.search(rf"mcwatch_drain_move_start_timestamp_seconds\{{{label}\}} 1\d{{9}}\.\d{{3}}\n", text)
    # Servers never moved have no samples.
    assert f'mcwatch_drain_move_remaining{{server="{fleet.servers[0].address}"}}' not in text


def test_a_daemon_restart_keeps_the_moves_figures_and_shows_a_move_it_cut_short_stopped(fleet):
    start(fleet, 10)
    assert client_says(fleet, python(WRITE), 150, "r", shim=False) == "ok"
    draining = fleet.servers[0]
    assert fleet.ctl("drain", "--move", draining.address).returncode == 0
    before = wait_until(lambda: (lambda m: m if m["moved"] >= 3 else None)(drain_move(fleet, draining)), 30,
                        "a few keys moved")[0]
    fleet.stop_daemon()
    fleet.start_daemon(wait_live=False)
    fleet.wait_states({draining.address: "draining"})
    after = drain_move(fleet, draining)
    # No daemon resumes a move: the one cut short is stopped, its figures and start kept.
    assert after["state"] == "stopped", after
    assert after["moved"] >= before["moved"] and after["started"] == before["started"], (before, after)
    assert after["moved"] + after["skipped"] + after["remaining"] == \
        before["moved"] + before["skipped"] + before["remaining"], (before, after)
    assert any(line.startswith("keys moved: stopped, ") for line in status_lines(fleet, draining))
