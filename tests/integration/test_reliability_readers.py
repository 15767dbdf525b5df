"""Readers survive everything the writer does: rewrites as fast as it can,
new files of other sizes, kill -9 in the middle of a write, a real mcwatchd
killed and restarted in a loop with more or fewer servers. Readers are
separate processes (tests/tools/state_reader_check, capi_route) mapping the
file as libmcshim and mcctl do."""

import random
import signal
import time

from conftest import free_port, wait_until
from reliability import (CAPI_ROUTE, STATE_READER_CHECK, STATE_WRITER_DRIVE, Background, record_value,
                         sanitizers, summary)

READERS = 3
READS_PER_READER = 350_000  # over a million in all
# Under ThreadSanitizer a copy takes so long that a writer at full speed
# leaves readers almost no consistent one: it pauses between updates there.
WRITER_PACE = ["--pause-us", "20"] if "thread" in sanitizers() else []


def start_writer(tmp_path, state, *extra, name="writer"):
    writer = Background([STATE_WRITER_DRIVE, state, *extra], str(tmp_path / f"{name}.out"))
    wait_until(lambda: "published" in writer.text() or not writer.running(), 10, "the writer's first file")
    assert writer.running(), writer.text()
    return writer


def start_readers(tmp_path, state, mode, reads=None, seconds=120):
    args = ["--mode", mode, "--seconds", str(seconds)]
    if reads:
        args += ["--reads", str(reads)]
    return [Background([STATE_READER_CHECK, state, *args], str(tmp_path / f"reader{i}.out"))
            for i in range(READERS)]


def finish(readers, how):
    """Stops (or waits for) each reader; returns their summaries."""
    results = []
    for reader in readers:
        status = reader.wait(180) if how == "wait" else reader.stop()
        lines = reader.lines()
        assert status == 0, f"reader exit status {status} (negative: killed by that signal): {lines[-5:]}"
        results.append(summary(lines[-1]))
    return results


def last_usable(client):
    """capi_route --loop prints "usable=0|1 problem=..." at each change."""
    changes = [line.split()[0] for line in client.lines() if line.startswith("usable=")]
    return changes[-1] if changes else None


def test_a_million_reads_and_not_one_torn_while_the_writer_rewrites_as_fast_as_it_can(tmp_path):
    state = str(tmp_path / "run" / "state")
    writer = start_writer(tmp_path, state, "--servers", "8", *WRITER_PACE)
    readers = start_readers(tmp_path, state, "counter", reads=READS_PER_READER)
    try:
        results = finish(readers, "wait")
    finally:
        writer.stop()
    reads = sum(r["reads"] for r in results)
    assert reads >= READERS * READS_PER_READER
    assert all(r["torn"] == 0 and r["backwards"] == 0 for r in results)
    # Each reader saw the writer move: the reads raced real writes.
    assert all(r["distinct"] > 1 for r in results)
    record_value("seqlock: consistent reads checked, 3 reader processes, 8 slots", reads, "reads, 0 torn")
    record_value("seqlock: copies refused and retried", sum(r["retries"] for r in results), "retries")
    record_value("seqlock: of the same copies made without it, torn",
                 f"{sum(r['naive_torn'] for r in results)} of {sum(r['naive'] for r in results)}", "copies")


def test_readers_follow_new_files_of_every_size_without_a_torn_read(tmp_path):
    state = str(tmp_path / "run" / "state")
    writer = start_writer(tmp_path, state, "--republish-every", "500", "--counts", "3,8,1,16", *WRITER_PACE)
    readers = start_readers(tmp_path, state, "counter", reads=150_000)
    try:
        results = finish(readers, "wait")
    finally:
        writer.stop()
    assert all(r["torn"] == 0 and r["backwards"] == 0 for r in results)
    assert all(r["remaps"] > 0 for r in results)
    record_value("republished files followed by 3 readers", sum(r["remaps"] for r in results), "remaps, 0 torn")


def test_readers_survive_a_writer_killed_mid_write_and_follow_its_successor(tmp_path):
    # The writer spends most of its time inside its seqlock section: a kill -9
    # there leaves the sequence odd forever. Readers keep their last view
    # (no consistent copy of that file again) until the next writer's file.
    state = str(tmp_path / "run" / "state")
    readers = start_readers(tmp_path, state, "counter")
    rounds = 12
    counts = ["3", "8", "1", "16"]
    try:
        for i in range(rounds):
            writer = start_writer(tmp_path, state, "--servers", counts[i % len(counts)], name=f"writer{i}")
            time.sleep(random.Random(i).uniform(0.02, 0.15))
            assert writer.stop(signal.SIGKILL) == -signal.SIGKILL
        last = start_writer(tmp_path, state, "--servers", "5", name="last")
        # Every reader maps the last writer's file and reads it consistently.
        wait_until(lambda: all("slots=5" in (r.lines() or [""])[-1] for r in readers), 10,
                   "every reader to map the last file")
        time.sleep(0.2)
        results = finish(readers, "stop")
        last.stop()
    finally:
        for r in readers:
            r.stop(signal.SIGKILL)
    assert all(r["torn"] == 0 for r in results)
    assert all(r["remaps"] >= 1 for r in results)
    assert all(r["reads"] > 0 for r in results)
    record_value("writers killed -9 mid-write, survived by 3 readers", rounds, "kills")
    record_value("reads left without a consistent copy by a killed writer (kept the last view)",
                 sum(r["stuck"] for r in results), "reads")


def test_readers_and_clients_survive_mcwatchd_killed_and_restarted_with_other_server_lists(fleet, tmp_path):
    servers = fleet.add_servers(3)
    refused = [f"127.0.0.1:{free_port()}" for _ in range(3)]
    pool = [m.address for m in servers] + refused
    # More, then fewer servers: a new file (and a layout) per restart.
    lists = [pool[:3], pool, pool[:1], pool[1:5], pool[:2] + refused[:1]]
    settings = {"probe_interval": "10ms", "probe_timeout": "5ms", "stale_after": "1s", "fail_after": "1",
                "recover_after": "1"}
    readers = [Background([STATE_READER_CHECK, fleet.state, "--mode", "daemon", "--seconds", "300"],
                          str(tmp_path / f"reader{i}.out")) for i in range(2)]
    client = Background([CAPI_ROUTE, "--state", fleet.state, "--servers", ",".join(pool), "--loop", "300"],
                        str(tmp_path / "client.out"))
    kills = 25
    rng = random.Random(5)
    try:
        for i in range(kills):
            fleet.write_config(settings, servers=lists[i % len(lists)])
            fleet.start_daemon(wait_live=False)
            time.sleep(rng.uniform(0, 0.15))
            fleet.stop_daemon(signal.SIGKILL)
            assert fleet.daemon.returncode == -signal.SIGKILL
        final = pool[:2] + refused[:2]
        fleet.write_config(settings, servers=final)
        fleet.start_daemon(wait_live=False)
        final_pid = fleet.daemon.pid
        fleet.wait_states({pool[0]: "live", pool[1]: "live", refused[0]: "dead", refused[1]: "dead"})
        for reader in readers:
            wait_until(lambda: f"mapped pid={final_pid} slots=4" in reader.text(), 10,
                       "the reader to map the newest file")
        wait_until(lambda: last_usable(client) == "usable=1", 10, "the client to use the newest file")
        statuses = [process.stop() for process in readers + [client]]
    finally:
        for process in readers + [client]:
            process.stop(signal.SIGKILL)
    # Never killed by SIGBUS or anything else, never a failed call.
    assert statuses == [0, 0, 0], [p.text()[-2000:] for p in readers + [client]]
    results = [summary(r.lines()[-1]) for r in readers]
    client_summary = summary(client.lines()[-1])
    for r in results:
        assert r["torn"] == 0
        assert r["reads"] > 0
        assert r["remaps"] >= 1
    assert client_summary["errors"] == 0
    assert client_summary["routes"] > 0
    record_value("mcwatchd kill -9 and restart (server lists of 1 to 6)", kills,
                 "kills survived by 2 readers and 1 C API client")
    record_value("files followed by each reader in the kill loop", min(r["remaps"] for r in results), "remaps")
    record_value("C API routes during the kill loop, none failed", client_summary["routes"], "routes")


def state_mappings(pid, state):
    """The client's mappings of the state file, replaced ones included ("(deleted)")."""
    with open(f"/proc/{pid}/maps") as f:
        return [line for line in f if line.rstrip().endswith((state, state + " (deleted)"))]


def test_a_long_lived_client_holds_at_most_two_state_files_after_30_daemon_restarts(fleet, tmp_path):
    servers = fleet.add_servers(2)
    fleet.write_config({"probe_interval": "50ms", "probe_timeout": "40ms", "stale_after": "1s"})
    client = Background([CAPI_ROUTE, "--state", fleet.state, "--servers", ",".join(m.address for m in servers),
                         "--loop", "300"], str(tmp_path / "client.out"))
    most = 0
    try:
        for _ in range(30):
            fleet.start_daemon(wait_live=False)
            time.sleep(0.2)  # the client notices the new file within a second or two
            most = max(most, len(state_mappings(client.process.pid, fleet.state)))
            fleet.stop_daemon(signal.SIGKILL)
        fleet.start_daemon()
        wait_until(lambda: last_usable(client) == "usable=1", 10, "the client to use the newest file")
        most = max(most, len(state_mappings(client.process.pid, fleet.state)))
        # No reader is inside the file it left: it goes at the client's next check.
        wait_until(lambda: len(state_mappings(client.process.pid, fleet.state)) == 1, 10,
                   "the client to unmap the file it left")
        assert client.stop() == 0, client.text()[-2000:]
    finally:
        client.stop(signal.SIGKILL)
    assert summary(client.lines()[-1])["errors"] == 0
    assert most <= 2, f"{most} mappings of the state file in one client"
    record_value("state file mappings held by a client over 30 daemon restarts", most, "mappings")
