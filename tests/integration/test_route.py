"""mcctl route against libmemcached's own placement, with a real daemon."""

import json
import os
import subprocess

import pytest

from conftest import MCCTL
from test_preload import C_CLIENT, PRELOAD

KEYS = [f"user:{i}:profile" for i in range(20000)]


def libmemcached_places(fleet, flags, shim=False):
    """memcached_server_by_key for every key: libmemcached's own answer, or
    with the shim preloaded, the shim's."""
    servers = ",".join(m.address for m in fleet.servers)
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    if shim:
        env.update(PRELOAD, MCSHIM_STATE=fleet.state)
    out = subprocess.run([C_CLIENT] + flags + [servers, "where"], input="\n".join(KEYS) + "\n", env=env,
                         capture_output=True, text=True, check=True, timeout=60).stdout
    return dict(line.split(" ", 1) for line in out.splitlines())


def routes(fleet):
    out = subprocess.run([MCCTL, "-s", fleet.state, "route", "--json", "-"], input="\n".join(KEYS) + "\n",
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return {r["key"]: r for r in map(json.loads, out.stdout.splitlines())}


@pytest.mark.parametrize("distribution,hash_name,flags", [("ketama", "md5", []),
                                                           ("modula", "one_at_a_time", ["--modula"])])
def test_route_equals_libmemcached_and_moves_only_dead_keys(fleet, distribution, hash_name, flags):
    fleet.add_servers(4)
    fleet.write_config(routing={"distribution": distribution, "hash": hash_name})
    fleet.start_daemon()
    native = libmemcached_places(fleet, flags)
    live = routes(fleet)
    assert all(live[k]["native"] == native[k] == live[k]["target"] and live[k]["reason"] == "live" for k in KEYS)

    dead = fleet.servers[2]
    dead.kill()
    fleet.wait_states({dead.address: "dead"})
    during = routes(fleet)
    moved = [k for k in KEYS if during[k]["target"] != native[k]]
    assert moved and all(native[k] == dead.address for k in moved)
    assert all(during[k]["target"] != dead.address for k in KEYS)
    assert all(during[k]["native"] == native[k] for k in KEYS)
    assert len(moved) == sum(1 for k in KEYS if native[k] == dead.address)
    # An application that asks libmemcached where a key goes
    # (memcached_server_by_key, PHP's getServerByKey) hears the shim's answer.
    asked = libmemcached_places(fleet, flags, shim=True)
    assert all(asked[k] == during[k]["target"] for k in KEYS)


def test_route_names_the_routing_it_assumed_and_where_it_read_it(fleet):
    fleet.add_servers(2)
    # PHP's and pylibmc's word for ketama.
    fleet.write_config(routing={"distribution": "consistent", "hash": "one_at_a_time"})
    fleet.start_daemon()
    from_state = fleet.ctl("route", "foo")
    assert from_state.returncode == 0, from_state.stderr
    assert from_state.stdout.splitlines()[0] == \
        f"routing: distribution ketama, hash one_at_a_time (from state file {fleet.state})"
    from_config = subprocess.run([MCCTL, "-c", fleet.config, "route", "--json", "foo"], capture_output=True,
                                 text=True, timeout=30)
    assert from_config.returncode == 0, from_config.stderr
    assert json.loads(from_config.stdout)["routing"] == {"distribution": "ketama", "hash": "one_at_a_time",
                                                         "from": "config", "path": fleet.config}


def test_route_says_keys_memcached_would_refuse_are_invalid(fleet):
    fleet.add_servers(2)
    fleet.start_daemon()
    result = fleet.ctl("route", "", "k" * 251, "two words", "ok")
    assert result.returncode == 1
    lines = result.stdout.splitlines()[1:]
    assert lines[0] == ": invalid key: empty"
    assert lines[1].endswith("...: invalid key: 251 bytes, longer than memcached's 250")
    assert lines[2] == "two words: invalid key: holds a space at byte 4"
    assert lines[3].startswith("ok: native ")
    piped = subprocess.run([MCCTL, "-s", fleet.state, "route", "-"], input="a\x01b\nfine\n", capture_output=True,
                           text=True, timeout=30)
    assert piped.returncode == 1
    assert piped.stdout.splitlines()[1] == "a\\x01b: invalid key: holds control character 0x01 at byte 2"
    # memcached itself refuses such a key: the answer above is what a client would meet.
    assert b"CLIENT_ERROR" in fleet.servers[0].command(b"set " + b"k" * 251 + b" 0 0 1\r\nv\r\n")
