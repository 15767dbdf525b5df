"""The harness's side of tests/bench/read_through.c, the read-through
workload of the miss_storm, membership and throughput (hit ratio) sections:
its database file, the clients, their per-100 ms counts, and the native
placement of its keys."""

import mmap
import re
import socket
import struct
import subprocess
import time
import urllib.parse

FIELDS = ["reads", "hits", "db_reads", "errors", "stale", "writes", "write_errors", "refills"]
# read_through.c's Database: an epoch, then per key its version, the epoch it
# was last cached in, and its reads and database reads so far.
HEADER_BYTES = 8
RECORD_WORDS = 4


def database_bytes(keys):
    return HEADER_BYTES + keys * RECORD_WORDS * 8


def create_database(path, keys):
    with open(path, "wb") as f:
        f.truncate(database_bytes(keys))
    return path


def bump_epoch(db):
    """From now on, a database read of a key the cache receives is a refill."""
    with open(db, "r+b") as f, mmap.mmap(f.fileno(), 8) as words:
        words[0:8] = struct.pack("<Q", struct.unpack("<Q", words[0:8])[0] + 1)


def key_counts(db, keys):
    """(reads, database reads) of each key so far, two lists."""
    with open(db, "rb") as f:
        data = f.read(database_bytes(keys))
    words = struct.unpack(f"<{keys * RECORD_WORDS}Q", data[HEADER_BYTES:])
    return list(words[2::RECORD_WORDS]), list(words[3::RECORD_WORDS])


def keys_held(server, timeout=30):
    """The indexes of the workload's keys that a memcached holds now
    (`lru_crawler metadump all`, waiting out a crawl under way)."""
    deadline = time.monotonic() + timeout
    while True:
        with socket.create_connection((server.hosts[0], server.port), timeout=timeout) as connection:
            connection.sendall(b"lru_crawler metadump all\r\n")
            chunks, tail = [], b""
            while not (tail.endswith(b"END\r\n") or tail.startswith((b"BUSY", b"ERROR", b"CLIENT_ERROR"))):
                chunk = connection.recv(1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
                tail = (tail + chunk)[-64:]
        reply = b"".join(chunks)
        if not reply.startswith(b"BUSY"):
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"{server.address}: lru_crawler metadump stayed BUSY for {timeout} s")
        time.sleep(0.05)
    if not reply.endswith(b"END\r\n"):
        raise RuntimeError(f"{server.address}: lru_crawler metadump all answered {reply[:200]!r}")
    return {int(m) for m in re.findall(r"^key=storm:(\d+) ", urllib.parse.unquote(reply.decode()), re.M)}


def place(ctx, servers, keys, options=()):
    """libmemcached's own placement of keys 0..keys-1 on `servers` (a list of
    addresses), without the shim: one address per key."""
    result = subprocess.run([ctx.bench_tool("read_through"), "place", ",".join(servers), str(keys), *options],
                            env=ctx.plain_env(), capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"read_through place exited {result.returncode}: {result.stderr.strip()}")
    placement = result.stdout.split()
    if len(placement) != keys:
        raise RuntimeError(f"read_through place printed {len(placement)} addresses for {keys} keys")
    return placement


def warm(ctx, servers, db, keys, env, options=(), what="warming the cache"):
    result = subprocess.run([ctx.bench_tool("read_through"), "warm", ",".join(servers), db, str(keys), *options],
                            env=env, capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed: {result.stdout}{result.stderr}")


class Clients:
    """`count` read_through run processes, writer i of count, started now."""

    def __init__(self, ctx, servers, db, keys, rate, seconds, env, options=(), count=2):
        self.seconds = seconds
        self.processes = [subprocess.Popen([ctx.bench_tool("read_through"), "run", ",".join(servers), db, str(keys),
                                            str(rate), str(seconds), str(i), str(count), *options], env=env,
                                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                          for i in range(count)]

    def finish(self, what):
        """Waits for every client (bounded by its own run); their buckets:
        [T, reads, hits, db_reads, errors, stale, writes, write_errors, refills]."""
        outputs = []
        for process in self.processes:
            try:
                outputs.append(process.communicate(timeout=self.seconds + 60))
            except subprocess.TimeoutExpired:
                process.kill()
                outputs.append(process.communicate())
        for process, (_, err) in zip(self.processes, outputs):
            if process.returncode != 0:
                raise RuntimeError(f"{what}: client exited {process.returncode}: {err.strip()}")
        return [[float(x) for x in line.split()] for out, _ in outputs for line in out.splitlines()]

    def stop(self):
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()


def totals(buckets, begin=float("-inf"), end=float("inf")):
    """Each field summed over the buckets whose middle falls in [begin, end)."""
    out = dict.fromkeys(FIELDS, 0)
    for bucket in buckets:
        if begin <= bucket[0] - 0.05 < end:
            for field, value in zip(FIELDS, bucket[1:]):
                out[field] += int(value)
    return out
