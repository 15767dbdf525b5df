"""Membership changes, daemon side (docs/DESIGN.md, "Membership changes"):
the managed-list flag, the previous server list a reload publishes, and
removals refused while a server still holds keys."""

import re
import signal

from conftest import wait_until

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
