"""Membership changes, daemon side (docs/DESIGN.md, "Membership changes"):
the managed-list flag, the previous server list a reload publishes, and
removals refused while a server still holds keys."""

import json
import re
import signal
from datetime import datetime

from conftest import raw_command, wait_until

MANAGED_LIST = 0x2  # state::kHeaderManagedList, pinned in libshim/state_format.hpp


def dump_header(fleet):
    """`mcctl dump`'s header fields, {name: text}."""
    result = fleet.ctl("dump")
    assert result.returncode == 0, result.stderr
    header = result.stdout.split("\nslot ", 1)[0]
    return dict(re.findall(r"^  ([a-z_]+): ?(.*)$", header, re.M))


def test_managed_list_sets_the_header_flag_and_a_reload_clears_it(fleet):
    fleet.add_servers(2)
    fleet.write_config(routing={"managed_list": "on"})
    fleet.start_daemon()
    assert int(dump_header(fleet)["flags"], 16) & MANAGED_LIST
    assert fleet.status()["daemon"]["managed_list"] is True

    fleet.write_config(routing={"managed_list": "off"})
    fleet.daemon.send_signal(signal.SIGHUP)
    wait_until(lambda: fleet.status()["daemon"]["managed_list"] is False, what="the flag cleared by the reload")
    assert not int(dump_header(fleet)["flags"], 16) & MANAGED_LIST


def reload(fleet):
    result = fleet.ctl("reload")
    assert result.returncode == 0, result.stderr
    return result


def without_move(change):
    """A membership change as `mcctl status --json` has it, without its
    move's figures (they move on by themselves)."""
    return {k: v for k, v in change.items() if k != "move"}


def test_adding_a_server_by_reload_publishes_the_list_before_it(fleet):
    first, second, joining = fleet.add_servers(3)
    fleet.write_config(settings={"recently_down_window": "60s"}, servers=[first.address, second.address],
                       routing={"distribution": "modula", "hash": "crc"})
    fleet.start_daemon(wait_live=False)
    assert fleet.status()["membership_change"] is None
    assert dump_header(fleet)["previous_count"] == "0"

    fleet.write_config(settings={"recently_down_window": "60s"},
                       servers=[first.address, second.address, joining.address],
                       routing={"distribution": "ketama", "hash": "md5"})
    reload(fleet)
    change = fleet.status()["membership_change"]
    assert change["added"] == [joining.address]
    assert change["removed"] == []
    assert change["counts"] is True
    assert change["previous"] == {"distribution": "modula", "hash": "crc", "servers": [
        {"address": first.address, "resolved": first.address, "weight": 1, "took_keys": True},
        {"address": second.address, "resolved": second.address, "weight": 1, "took_keys": True}]}
    at, until = (datetime.fromisoformat(change[k].replace("Z", "+00:00")) for k in ("at", "until"))
    assert (until - at).total_seconds() == 60

    header = dump_header(fleet)
    assert header["previous_count"] == "2"
    assert header["membership_changed"] == change["at"]
    dump = fleet.ctl("dump").stdout
    assert f"previous 1:\n  address: {second.address}\n" in dump

    text = fleet.ctl("status").stdout
    assert f"membership changed {change['at']} (" in text
    assert f"added {joining.address}; removed none" in text
    assert f"previous list (2 servers, modula crc) counts until {change['until']}" in text
    assert re.search(rf"event=membership_change by=reload added={re.escape(joining.address)} removed=- "
                     r"previous_servers=2", fleet.log_text())

    # A reload that changes no membership (another file setting) keeps it as it was.
    fleet.write_config(settings={"recently_down_window": "60s", "stale_after": "3s"},
                       servers=[first.address, second.address, joining.address],
                       routing={"distribution": "ketama", "hash": "md5"})
    reload(fleet)
    assert without_move(fleet.status()["membership_change"]) == without_move(change)


def test_the_previous_list_survives_a_daemon_restart_within_the_window(fleet):
    first, joining = fleet.add_servers(2)
    fleet.write_config(settings={"recently_down_window": "60s"}, servers=[first.address])
    fleet.start_daemon(wait_live=False)
    fleet.write_config(settings={"recently_down_window": "60s"}, servers=[first.address, joining.address])
    reload(fleet)
    change = fleet.status()["membership_change"]
    assert change["added"] == [joining.address]

    fleet.stop_daemon()
    fleet.start_daemon(wait_live=False)
    assert without_move(fleet.status()["membership_change"]) == without_move(change)


def test_the_previous_list_ends_with_its_window(fleet):
    first, joining = fleet.add_servers(2)
    fleet.write_config(settings={"recently_down_window": "1s"}, servers=[first.address])
    fleet.start_daemon(wait_live=False)
    fleet.write_config(settings={"recently_down_window": "1s"}, servers=[first.address, joining.address])
    reload(fleet)
    assert fleet.status()["membership_change"]["counts"] is True
    wait_until(lambda: fleet.status()["membership_change"]["counts"] is False, what="the window's end")
    assert "(over)" in fleet.ctl("status").stdout
    # Past its window, a restart does not carry it over.
    fleet.stop_daemon()
    fleet.start_daemon(wait_live=False)
    assert fleet.status()["membership_change"] is None


# The move after a change, slow enough to be running while a test acts.
SLOW_MOVE = {"recently_down_window": "60s", "drain_rate": "1"}


def join_then_list_a_third(fleet):
    """A server joined by reload (its change counting for 60 s, its move
    running for tens of seconds), then the config edited to add a third:
    (first, joining, third, the change)."""
    first, joining, third = fleet.add_servers(3)
    for i in range(60):  # about half of them move to the joining server, one a second
        assert raw_command(first.port, f"set k{i} 0 0 1\r\nv\r\n".encode()) == b"STORED\r\n"
    fleet.write_config(settings=SLOW_MOVE, servers=[first.address])
    fleet.start_daemon(wait_live=False)
    fleet.write_config(settings=SLOW_MOVE, servers=[first.address, joining.address])
    reload(fleet)
    change = fleet.status()["membership_change"]
    fleet.write_config(settings=SLOW_MOVE, servers=[first.address, joining.address, third.address])
    return first, joining, third, change


def test_a_second_change_within_the_first_ones_window_is_refused_and_force_makes_it(fleet):
    first, joining, third, change = join_then_list_a_third(fleet)
    result = fleet.ctl("reload")
    assert result.returncode == 1
    assert result.stderr == (
        f"mcctl: refused: the membership change of {change['at']} (added {joining.address}; removed none) still "
        f"counts until {change['until']} (recently_down_window): a second change now would leave the keys it moved "
        f"that no client has read and its move has not moved yet where no client looks; reload once its move is done "
        f"(`mcctl status`) or after that; `mcctl reload --force` changes "
        f"it anyway (keys the first change moved that were not read since become misses)\n")
    # Nothing changed.
    assert [s["address"] for s in fleet.status()["servers"]] == [first.address, joining.address]
    assert without_move(fleet.status()["membership_change"]) == without_move(change)

    # SIGHUP is refused the same way, in the log.
    fleet.daemon.send_signal(signal.SIGHUP)
    wait_until(lambda: fleet.log_text().count("event=reload status=refused") == 2, what="the SIGHUP's refusal")
    assert f"the membership change of {change['at']}" in fleet.log_text().splitlines()[-1]

    forced = fleet.ctl("reload", "--force")
    assert forced.returncode == 0, forced.stderr
    assert [s["address"] for s in fleet.status()["servers"]] == [first.address, joining.address, third.address]
    assert fleet.status()["membership_change"]["added"] == [third.address]
    assert re.search(r"event=reload status=forced reason=\"the membership change of ", fleet.log_text())


def test_a_start_with_a_second_change_within_the_window_warns_and_publishes_it(fleet):
    _, joining, third, change = join_then_list_a_third(fleet)  # the third listed, never reloaded
    fleet.stop_daemon()
    fleet.start_daemon(wait_live=False)
    assert fleet.status()["membership_change"]["added"] == [third.address]
    assert re.search(rf"event=start status=change_within_window reason=\"the membership change of {change['at']} "
                     rf"\(added {re.escape(joining.address)}; removed none\)", fleet.log_text())


def plant_items(fleet, server, count):
    """Stores `count` keys on `server` directly and waits until mcwatchd's
    stats sample shows them (stats_interval is short in these tests)."""
    for i in range(count):
        assert raw_command(server.port, f"set planted{i} 0 0 5\r\nvalue\r\n".encode()) == b"STORED\r\n"
    wait_until(lambda: (fleet.server(server.address)["curr_items"] or 0) >= count, what="the items in its stats")


FAST_STATS = {"stats_interval": "200ms", "recently_down_window": "60s"}


def test_removing_a_server_that_holds_items_is_refused_with_the_way_and_force_removes_it(fleet):
    kept, holding = fleet.add_servers(2)
    fleet.write_config(settings=FAST_STATS)
    fleet.start_daemon()
    plant_items(fleet, holding, 3)

    fleet.write_config(settings=FAST_STATS, servers=[kept.address])
    result = fleet.ctl("reload")
    assert result.returncode == 1
    assert result.stderr == (
        f"mcctl: refused: the configuration removes {holding.address} (live, 3 items), whose keys clients still "
        f"read: move them first with `mcctl drain --move --wait {holding.address}`, then remove the server and "
        f"reload; `mcctl reload --force` removes it anyway (its keys become misses)\n")
    # Nothing changed.
    assert [s["address"] for s in fleet.status()["servers"]] == [kept.address, holding.address]
    assert fleet.status()["membership_change"] is None

    # SIGHUP is refused the same way, in the log.
    fleet.daemon.send_signal(signal.SIGHUP)
    wait_until(lambda: fleet.log_text().count("event=reload status=refused") == 2, what="the SIGHUP's refusal")
    assert f"removes {holding.address} (live, 3 items)" in fleet.log_text().splitlines()[-1]

    forced = fleet.ctl("reload", "--force")
    assert forced.returncode == 0, forced.stderr
    assert [s["address"] for s in fleet.status()["servers"]] == [kept.address]
    assert fleet.status()["membership_change"]["removed"] == [holding.address]
    assert "event=reload status=forced" in fleet.log_text()


def test_removing_a_server_after_its_drain_move_completes_is_accepted(fleet):
    kept, drained = fleet.add_servers(2)
    fleet.write_config(settings=FAST_STATS)
    fleet.start_daemon()
    plant_items(fleet, drained, 5)
    assert fleet.ctl("drain", "--move", drained.address).returncode == 0
    wait_until(lambda: re.search(rf"event=drain_move_end server={re.escape(drained.address)} outcome=done",
                                 fleet.log_text()), what="the move's end")

    fleet.write_config(settings=FAST_STATS, servers=[kept.address])
    reload(fleet)
    assert [s["address"] for s in fleet.status()["servers"]] == [kept.address]
    assert fleet.status()["membership_change"]["removed"] == [drained.address]
    for i in range(5):  # every key moved: nothing was lost
        assert raw_command(kept.port, f"get planted{i}\r\n".encode(), expect_end=b"END\r\n").startswith(b"VALUE")


def test_a_dead_server_that_held_items_may_be_removed(fleet):
    kept, dead = fleet.add_servers(2)
    fleet.write_config(settings=FAST_STATS)
    fleet.start_daemon()
    plant_items(fleet, dead, 2)
    dead.stop()
    fleet.wait_states({dead.address: "dead"})
    fleet.write_config(settings=FAST_STATS, servers=[kept.address])
    reload(fleet)
    assert [s["address"] for s in fleet.status()["servers"]] == [kept.address]
    assert fleet.status()["membership_change"]["removed"] == [dead.address]


def test_a_start_without_a_server_the_previous_file_listed_warns_and_publishes_the_change(fleet):
    kept, holding = fleet.add_servers(2)
    fleet.write_config(settings=FAST_STATS)
    fleet.start_daemon()
    plant_items(fleet, holding, 2)
    fleet.stop_daemon()

    fleet.write_config(settings=FAST_STATS, servers=[kept.address])
    fleet.start_daemon(wait_live=False)
    change = fleet.status()["membership_change"]
    assert change["removed"] == [holding.address]
    assert change["previous"]["servers"][1]["address"] == holding.address
    assert re.search(rf"event=start status=removed_undrained reason=\"the configuration removes "
                     rf"{re.escape(holding.address)} \(live, 2 items\)", fleet.log_text())
    assert re.search(rf"event=membership_change by=start added=- removed={re.escape(holding.address)}",
                     fleet.log_text())


def routes(fleet, keys):
    """`mcctl route --json` for `keys`: {key: its object}."""
    result = fleet.ctl("route", "--json", *keys)
    assert result.returncode == 0, result.stderr
    return {r["key"]: r for r in map(json.loads, result.stdout.splitlines())}


def test_route_shows_where_a_key_moved_by_a_join_is_looked_up_on_a_miss(fleet):
    first, second, joining = fleet.add_servers(3)
    modula = {"distribution": "modula", "hash": "one_at_a_time"}
    fleet.write_config(settings={"recently_down_window": "60s"}, servers=[first.address, second.address],
                       routing=modula)
    fleet.start_daemon(wait_live=False)
    fleet.wait_states({first.address: "live", second.address: "live"})
    keys = [f"k{i}" for i in range(40)]
    before = {k: r["target"] for k, r in routes(fleet, keys).items()}

    fleet.write_config(settings={"recently_down_window": "60s"},
                       servers=[first.address, second.address, joining.address], routing=modula)
    reload(fleet)
    fleet.wait_states({joining.address: "live"})
    until = fleet.status()["membership_change"]["until"]
    after = routes(fleet, keys)
    moved = [k for k in keys if after[k]["target"] != before[k]]
    assert len(moved) > len(keys) // 2  # modula: most keys
    for k in keys:
        if k in moved:
            assert (after[k]["reason"], after[k]["fallback"], after[k]["fallback_until"]) == \
                ("joined", before[k], until), after[k]
        else:
            assert (after[k]["reason"], after[k]["fallback"]) == ("live", None), after[k]
    text = fleet.ctl("route", moved[0]).stdout
    assert (f"{moved[0]}: native {after[moved[0]]['target']}, now {after[moved[0]]['target']} (placement changed "
            f"with the server list: fallback {before[moved[0]]} until {until})") in text
