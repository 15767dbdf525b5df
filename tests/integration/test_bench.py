"""`make bench`'s harness at tiny sizes (tests/bench/run.py --smoke), so it
cannot rot: every section runs against real servers, writes its figures to
results.json, and the miss-storm chart is a PNG. At these sizes the figures
mean nothing; what is checked is that each measured what it says."""

import json
import os
import subprocess

import pytest

from conftest import BUILD
from test_preload import SANITIZED

RUN = os.path.join(os.path.dirname(__file__), "..", "bench", "run.py")
SYSTEMS = {"mcwatch", "mcwatch_replicated", "libmemcached_plain", "libmemcached_eject", "twemproxy_eject"}
# read_through.c's database file: an epoch, then four words a key.
def database_bytes(keys):
    return 8 + keys * 32



@pytest.mark.serial  # measures throughput and CPU, and loads both cores while it does
@pytest.mark.skipif(SANITIZED, reason="benchmarks measure the plain build")
def test_bench_smoke_run_writes_every_section_and_the_chart(tmp_path):
    result = subprocess.run(["/usr/bin/python3", RUN, "--build", BUILD, "--out", str(tmp_path), "--smoke"],
                            capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with open(tmp_path / "results.json") as f:
        results = json.load(f)
    for section in ("routing", "throughput", "miss_storm", "detection", "daemon", "membership", "fleet"):
        assert f"== {section}" in result.stdout
        assert "error" not in results[section], results[section]
    # The last lines list each missed target, or say that none was missed.
    assert "every target met" in result.stdout or "off target: " in result.stdout

    routing = results["routing"]
    assert {r["state"] for r in routing["rows"]} == {"all_live", "one_dead"}
    assert all(r["native_ns"] > 0 and r["shim_ns"] > 0 and r["capi_ns"] > 0 for r in routing["rows"])

    throughput = results["throughput"]
    for figure in ("shim_over_direct", "replicated_gets_over_direct", "replicated_sets_over_direct"):
        assert "met" in throughput[figure]
    assert all(c["gets_over_direct"]["replicated"] > 0 and c["sets_over_direct"]["replicated"] > 0
               for c in throughput["cells"])
    for replicas in (1, 2):
        hit = throughput["hit_ratio"][f"replicas_{replicas}"]
        assert hit["reads"] > 0 and 0 < hit["hit_ratio"] <= 1 and hit["errors"] == 0

    storm = results["miss_storm"]
    assert set(storm["systems"]) == SYSTEMS
    for system, figures in storm["systems"].items():
        assert all(figures["phases"][p]["reads"] > 0 for p in ("steady", "outage", "return", "planned")), system
        assert figures["dead_keys"] > 0
    # Without failover, every read of the killed server's keys is a database read.
    assert storm["systems"]["libmemcached_plain"]["phases"]["outage"]["errors"] > 0
    for figure in ("outage_misses_over_dead_keys", "return_misses_over_dead_keys", "stale_reads"):
        assert "met" in storm["systems"]["mcwatch"][figure]
    for figure in ("outage_misses_over_dead_keys", "return_db_reads_over_dead_keys",
                   "planned_db_reads_over_planned_keys", "stale_reads", "outage_errors"):
        assert "met" in storm["systems"]["mcwatch_replicated"][figure]
    for system in ("mcwatch", "mcwatch_replicated"):
        # The planned restart came after a drain --move that ran to its end.
        assert storm["systems"][system]["planned_drain_move"]["outcome"] == "done"
        assert "met" in storm["systems"][system]["planned_db_reads_over_planned_keys"]
    # With copies, a server's items are not its keys: those are counted by placement.
    assert 0 < storm["systems"]["mcwatch_replicated"]["dead_keys"] < 2000
    with open(storm["chart"], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"

    membership = results["membership"]
    assert set(membership["systems"]) == {"mcwatch_ketama", "mcwatch_modula", "libmemcached_ketama",
                                          "libmemcached_modula"}
    for system, figures in membership["systems"].items():
        assert all(figures["phases"][p]["reads"] > 0 for p in ("steady", "join", "leave")), system
        assert figures["join"]["moved_keys"] > 0 and figures["leave"]["moved_keys"] > 0, system
    for system in ("mcwatch_ketama", "mcwatch_modula"):
        assert membership["systems"][system]["leave_drain_move"]["outcome"] == "done"
        for change in ("join", "leave"):
            assert "met" in membership["systems"][system][change]["db_reads_over_moved_keys_read"]
    # libmemcached alone: a key moved to the added (empty) server misses there.
    assert membership["systems"]["libmemcached_ketama"]["join"]["db_reads_over_moved_keys_read"] > 0.5

    # Every kill and every stop was followed by a request served elsewhere.
    for cause in ("refused", "blackhole"):
        assert results["detection"]["interval_100ms"][cause]["not_routed_away"] == 0
    for probing in results["daemon"]["probing"].values():
        # STATE_FORMAT.md: a 320-byte header and a 640-byte slot per server.
        assert probing["state_file_bytes"] == 320 + 640 * probing["servers"]
        assert probing["peak_rss_kb"] > 0
    assert results["daemon"]["shim_resident"]["preloaded_rss_kb"] > 0

    # The fleet view: a return flushed once for the fleet, once per host
    # alone; a one-host stall flushes nothing in the fleet; every simulated
    # host's clients moved the killed server's key.
    hosts = results["fleet"]["hosts"]
    assert hosts["fleet-interval_100ms"]["flushes_per_return"] == [1]
    assert hosts["alone-interval_100ms"]["flushes_per_return"] == [3]
    assert hosts["fleet-interval_100ms"]["flushes_per_stall"] == [0]
    scale = results["fleet"]["scale"]["4x3"]
    assert scale["kill_to_all_dead"]["hosts_routed_away"] == 4 and scale["flushes_per_return"] == 1
    assert scale["poll"]["keys"] == 4  # a key per host, its observations of the 3 servers inside


def test_read_through_counts_stale_reads_and_database_reads(fleet, tmp_path):
    """The miss-storm workload's own counters, on a case with a known answer:
    its hottest key overwritten everywhere with a version older than the
    database's must read stale; a key deleted must be read from the database."""
    tool = os.path.join(BUILD, "bench", "read_through")
    servers = ",".join(m.address for m in fleet.add_servers(2))
    keys = 500
    db = tmp_path / "database"
    db.write_bytes(bytes(database_bytes(keys)))
    warm = subprocess.run([tool, "warm", servers, str(db), str(keys)], capture_output=True, text=True, timeout=60)
    assert warm.returncode == 0 and warm.stdout.strip() == f"warmed {keys} failed 0"
    old = b"v0:" + b"." * 97
    for m in fleet.servers:
        assert m.command(b"set storm:0 0 0 100\r\n" + old + b"\r\n") == b"STORED\r\n"
        m.command(b"delete storm:419\r\n")  # the second hottest (rank r is key r * 7919 % keys)
    run = subprocess.run([tool, "run", servers, str(db), str(keys), "2000", "1", "0", "1"], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    # "T reads hits db_reads errors stale writes write_errors refills" per 100 ms
    totals = [sum(int(line.split()[i]) for line in run.stdout.splitlines()) for i in range(1, 9)]
    reads, hits, db_reads, errors, stale = totals[:5]
    assert reads > 1000 and errors == 0
    assert stale > 0  # storm:0, the hottest key, until the first write of it replaces the old value
    assert db_reads >= 1  # storm:419, once; then it is cached again
    assert hits + db_reads == reads


def test_read_through_shared_writers_race_on_the_same_keys_without_stale_reads(fleet, tmp_path):
    """read_through's `shared` mode: two processes write every key (a few
    hot keys, so their writes race), each only forward by cas, and a correct
    cache (one memcached) then never returns a value older than the
    database's; each key's reads and database reads are counted in the file."""
    tool = os.path.join(BUILD, "bench", "read_through")
    servers = fleet.add_servers(1)[0].address
    keys = 10
    db = tmp_path / "database"
    db.write_bytes(bytes(database_bytes(keys)))
    runs = [subprocess.Popen([tool, "run", servers, str(db), str(keys), "4000", "1", str(writer), "2", "shared"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for writer in (0, 1)]
    outputs = [run.communicate(timeout=60) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [err for _, err in outputs]
    per_writer = [[sum(int(line.split()[i]) for line in out.splitlines()) for i in range(1, 9)] for out, _ in outputs]
    for reads, hits, db_reads, errors, stale, writes, write_errors, refills in per_writer:
        assert reads > 1000 and writes > 50  # each wrote the same ten keys
        assert errors == 0 and write_errors == 0
        assert stale == 0
    words = [int.from_bytes(db.read_bytes()[8 + i * 8:16 + i * 8], "little") for i in range(keys * 4)]
    versions, key_reads = words[0::4], words[2::4]
    assert all(v > 0 for v in versions[:3])  # the hottest keys were written
    assert sum(key_reads) == sum(w[0] for w in per_writer)
