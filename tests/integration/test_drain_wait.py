"""`mcctl drain --wait`: returns once the draining server holds at most
--threshold items (with --move, once the move is done), reading the state
file; fails when the drain or its move ends otherwise, or at --timeout."""

import subprocess

from conftest import wait_until
from test_drain_move import WRITE, items, python, start
from test_preload import client_says

# memcached's facts are read by `stats` every stats_interval: short here.
FAST_STATS = {"stats_interval": "200ms"}


def test_drain_move_wait_returns_0_once_the_move_is_done_and_the_server_holds_nothing(fleet):
    start(fleet, 200, **FAST_STATS)
    assert client_says(fleet, python(WRITE), 150, "d", shim=False) == "ok"
    draining = fleet.servers[1]
    held = items(draining)
    assert held > 0
    result = fleet.ctl("drain", "--move", "--wait", "--timeout", "60s", draining.address, timeout=90)
    assert result.returncode == 0, result.stderr
    assert "moving every key" in result.stdout
    assert f"{draining.address}: keys moved: done, {held} moved, 0 skipped; " in result.stdout
    assert items(draining) == 0
    assert fleet.server(draining.address)["drain_move"]["state"] == "done"


def test_drain_move_wait_returns_at_the_moves_end_though_a_key_written_after_the_listing_stays(fleet):
    """A key the move never listed (written straight to the server after the
    listing, by a writer that bypasses the shim) stays behind: waiting for 0
    items would never end, so without --threshold the move's end is the
    outcome; an explicit --threshold 0 still counts the items."""
    start(fleet, 20, **FAST_STATS)
    assert client_says(fleet, python(WRITE), 150, "late", shim=False) == "ok"
    draining = fleet.servers[1]
    assert items(draining) > 0
    waiting = subprocess.Popen([fleet.mcwatchd.mcctl, "-s", fleet.state, "drain", "--move", "--wait",
                                "--timeout", "60s", draining.address], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: "event=drain_move_listed" in fleet.log_text(), 10, "the key listing")
        assert draining.command(b"set written-after-the-listing 0 0 1\r\nx\r\n") == b"STORED\r\n"
        out, err = waiting.communicate(timeout=90)
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.wait()
    assert waiting.returncode == 0, (out, err)
    assert f"{draining.address}: keys moved: done, " in out
    assert items(draining) == 1
    # Without --move (another move would list and move that key too).
    result = fleet.ctl("drain", "--wait", "--threshold", "0", "--timeout", "1500ms", draining.address)
    assert result.returncode == 3, (result.stdout, result.stderr)


def test_drain_move_wait_fails_when_the_server_is_undrained_mid_move(fleet):
    start(fleet, 5, **FAST_STATS)
    assert client_says(fleet, python(WRITE), 150, "u", shim=False) == "ok"
    draining = fleet.servers[2]
    waiting = subprocess.Popen([fleet.mcwatchd.mcctl, "-s", fleet.state, "drain", "--wait", "--move",
                                draining.address], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: "event=drain_move_listed" in fleet.log_text(), 10, "the key listing")
        assert fleet.ctl("undrain", draining.address).returncode == 0
        out, err = waiting.communicate(timeout=10)
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.wait()
    assert waiting.returncode == 1, (out, err)
    assert f"drain --wait: the drain of {draining.address} ended" in err or \
        f"drain --wait: the move of {draining.address}'s keys was stopped" in err, err


def test_drain_wait_without_move_meets_its_threshold_or_times_out(fleet):
    start(fleet, 1000, **FAST_STATS)
    assert client_says(fleet, python(WRITE), 150, "t", shim=False) == "ok"
    draining = fleet.servers[0]
    held = items(draining)
    assert held > 1
    # Nobody reads: the items stay, below the threshold asked for at once...
    result = fleet.ctl("drain", "--wait", "--threshold", str(held), "--timeout", "30s", draining.address)
    assert result.returncode == 0, result.stderr
    assert f"{draining.address}: {held} items left, at most {held}\n" in result.stdout
    # ... above a lower one until the timeout (the server already draining).
    result = fleet.ctl("drain", "--threshold", str(held - 1), "--wait", "--timeout", "1500ms", draining.address)
    assert result.returncode == 3, (result.stdout, result.stderr)
    assert f"drain --wait: 1500ms passed and {draining.address} is not drained to {held - 1} items: " \
           f"{held} items held" in result.stderr
    assert items(draining) == held


def test_drain_wait_options_need_wait(fleet):
    fleet.add_servers(2)
    fleet.start_daemon()
    result = fleet.ctl("drain", "--threshold", "5", fleet.servers[0].address)
    assert result.returncode == 64
    assert "drain: --threshold and --timeout go with --wait" in result.stderr
    assert fleet.states()[fleet.servers[0].address] == "live"
