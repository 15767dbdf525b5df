"""Which [routing] settings describe each common client, verified with the
real clients: each stores keys on real servers without the shim, each server
is asked which keys it holds, and `mcctl -c CONF route` must put every key
where the client did with the table's setting and with no other candidate.
The same table is in mcwatchd.conf(5), and etc/mcwatchd.conf's default is the
row of libmemcached's defaults (PHP, pylibmc and the tools unconfigured)."""

import json
import os
import re
import subprocess

import pytest

from conftest import MCCTL
from test_preload import CLIENTS_DIR, flush_all, holders
from sanitizers import plain_env  # noqa: E402 (tests/lib, on the path by conftest)

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
N = 400

# (client, its setting, distribution, hash): the table of mcwatchd.conf(5).
TABLE = [
    ("php", "defaults", "modula", "one_at_a_time"),
    ("php", "libketama_compatible", "ketama_weighted", "md5"),
    ("php", "consistent", "ketama", "one_at_a_time"),
    ("pylibmc", "defaults", "modula", "one_at_a_time"),
    ("pylibmc", "ketama", "ketama", "one_at_a_time"),
    ("memccp", "defaults", "modula", "one_at_a_time"),
]
CANDIDATES = [(d, h) for d in ("modula", "ketama", "ketama_weighted") for h in ("one_at_a_time", "md5", "crc")]


def store(fleet, client, setting, tmp_path):
    """Keys stored by the real client, unpreloaded; returns their names."""
    servers = ",".join(m.address for m in fleet.servers)
    env = plain_env()
    if client == "memccp":
        files = []
        for i in range(N):
            path = tmp_path / f"f{i}"
            path.write_text(f"v{i}")
            files.append(str(path))
        subprocess.run(["memccp", "--servers", servers] + files, check=True, env=env, timeout=60)
        return [f"f{i}" for i in range(N)]
    command = {"php": ["php", os.path.join(CLIENTS_DIR, "placement.php")],
               "pylibmc": ["/usr/bin/python3", os.path.join(CLIENTS_DIR, "placement.py")]}[client]
    out = subprocess.run(command + [servers, setting, "p", str(N)], capture_output=True, text=True, env=env,
                         timeout=60)
    assert out.returncode == 0 and out.stdout == f"stored {N}\n", out.stderr
    return [f"p{i}" for i in range(N)]


def mcctl_natives(fleet, tmp_path, distribution, hash_name, keys):
    config = tmp_path / f"{distribution}-{hash_name}.conf"
    config.write_text(f"[mcwatchd]\nstate_file = {tmp_path}/no-daemon/state\n"
                      f"[routing]\ndistribution = {distribution}\nhash = {hash_name}\n[servers]\n" +
                      "".join(f"server = {m.address}\n" for m in fleet.servers))
    out = subprocess.run([MCCTL, "-c", str(config), "route", "--json", "-"], input="".join(k + "\n" for k in keys),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return {r["key"]: r["native"] for r in map(json.loads, out.stdout.splitlines())}


@pytest.mark.parametrize("client,setting,distribution,hash_name", TABLE)
def test_routing_table_row_matches_where_the_real_client_puts_keys(fleet, tmp_path, client, setting,
                                                                    distribution, hash_name):
    fleet.add_servers(4)
    flush_all(fleet)
    keys = store(fleet, client, setting, tmp_path)
    placed = holders(fleet, keys)
    assert all(len(v) == 1 for v in placed.values())
    placed = {k: v[0] for k, v in placed.items()}
    agree = {}
    for candidate in CANDIDATES:
        natives = mcctl_natives(fleet, tmp_path, *candidate, keys)
        agree[candidate] = sum(1 for k in keys if natives[k] == placed[k])
    assert agree[(distribution, hash_name)] == N, agree
    others = {c: n for c, n in agree.items() if c != (distribution, hash_name)}
    assert all(n < N for n in others.values()), others


def test_routing_table_is_documented_and_the_example_has_the_common_default():
    with open(os.path.join(ROOT, "man", "mcwatchd.conf.5")) as f:
        page = f.read()
    section = page.split(".SH [routing]", 1)[1].split(".SH ", 1)[0]
    for client, setting, distribution, hash_name in TABLE:
        row = re.search(rf"^{re.escape(distribution)}\t{re.escape(hash_name)}\t.*$", section, re.M)
        assert row, f"mcwatchd.conf(5) [routing] has no row {distribution} {hash_name}"
    with open(os.path.join(ROOT, "etc", "mcwatchd.conf")) as f:
        example = f.read()
    routing = example.split("[routing]", 1)[1].split("\n[", 1)[0]
    values = dict(re.findall(r"^(distribution|hash)\s*=\s*(\S+)", routing, re.M))
    assert values == {"distribution": "modula", "hash": "one_at_a_time"}, values
    for words in ("OPT_LIBKETAMA_COMPATIBLE", "DISTRIBUTION_CONSISTENT", "pylibmc", "memccp"):
        assert words in routing and words in section.replace("\\", ""), words
