"""Section `miss_storm`: a read-through cache (tests/bench/read_through.c,
two client processes, Zipf-skewed keys, versioned values) through four
failover strategies, each on its own fresh fleet of four memcached servers,
through the same phases on the same schedule:

  steady    every server up, the cache warm;
  outage    one server kill -9ed;
  return    it is restarted, empty;
  planned   a planned restart of another server: drained first where the
            system offers it (mcwatch), then stopped, started empty, and
            (mcwatch) undrained once live.

Database reads per phase are what a storm costs. A refill is a database
read of a key the cache had received since the failure (a perfect failover
would still have it); stale reads are values older than the database's when
the read began."""

import mmap
import os
import struct
import subprocess
import time

import benchlib

SYSTEMS = ["mcwatch", "libmemcached_plain", "libmemcached_eject", "twemproxy_eject"]
PHASES = ["steady", "outage", "return", "planned"]
CLIENTS = 2
OUTAGE_TARGET = 1.05
RETURN_TARGET = 0.02


class Sizes:
    def __init__(self, smoke):
        self.keys = 2000 if smoke else 50000
        self.rate = 1000 if smoke else 3000  # operations a second, per client process
        # Seconds: each phase, and within `planned`, the drain before the stop
        # and the gap before the start.
        self.phase = {"steady": 1.0, "outage": 1.0, "return": 1.0, "planned": 1.5} if smoke else \
            {"steady": 5.0, "outage": 10.0, "return": 10.0, "planned": 14.0}
        self.drain = 0.5 if smoke else 5.0
        self.gap = 0.2 if smoke else 1.0


def restart_empty(processes, server):
    """A new memcached where `server` was: same port, nothing in it."""
    return processes.add(benchlib.Memcached(port=server.port, memory_mb=server.memory_mb,
                                            hosts=server.hosts).start())


def run_system(ctx, system, sizes):
    """One system through the phases; returns its buckets and events."""
    work = ctx.scratch(f"miss-storm-{system}")
    db = os.path.join(work, "database")
    with open(db, "wb") as f:
        f.truncate(8 + sizes.keys * 16)  # read_through.c's Database: an epoch, then two words a key
    with benchlib.Processes() as processes:
        servers = [processes.add(benchlib.Memcached(memory_mb=64).start()) for _ in range(4)]
        addresses = [m.address for m in servers]
        env, client_servers, eject, daemon = ctx.plain_env(), addresses, False, None
        if system == "mcwatch":
            daemon = processes.add(benchlib.Mcwatchd(ctx, f"miss-storm-{system}", addresses).start())
            env = ctx.shim_env(daemon.state)
        elif system == "libmemcached_eject":
            eject = True
        elif system == "twemproxy_eject":
            # Its notes/recommendation.md: eject after 3 failures, retry after
            # 30 s, a 400 ms server timeout.
            proxy = processes.add(benchlib.Nutcracker(ctx, f"miss-storm-{system}", addresses, failure_limit=3,
                                                      retry_timeout_ms=30000, timeout_ms=400).start())
            client_servers = [proxy.address]
        tool = ctx.bench_tool("read_through")
        servers_arg = ",".join(client_servers)
        warm = subprocess.run([tool, "warm", servers_arg, db, str(sizes.keys)], env=env, capture_output=True,
                              text=True, timeout=300)
        if warm.returncode != 0:
            raise RuntimeError(f"{system}: warming the cache failed: {warm.stdout}{warm.stderr}")

        total = sum(sizes.phase.values())
        start = time.monotonic()
        clients = [subprocess.Popen([tool, "run", servers_arg, db, str(sizes.keys), str(sizes.rate), str(total),
                                     str(i), str(CLIENTS)] + (["eject"] if eject else []), env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                   for i in range(CLIENTS)]
        try:
            events = drive_phases(processes, servers, daemon, sizes, start, db)
        finally:
            outputs = [c.communicate(timeout=total + 60) for c in clients]
        for client, (out, err) in zip(clients, outputs):
            if client.returncode != 0:
                raise RuntimeError(f"{system}: client exited {client.returncode}: {err.strip()}")
        buckets = [[float(x) for x in line.split()] for out, _ in outputs for line in out.splitlines()]
    return buckets, events


def bump_epoch(db):
    """From now on, a database read of a key the cache receives is a refill."""
    with open(db, "r+b") as f, mmap.mmap(f.fileno(), 8) as words:
        words[0:8] = struct.pack("<Q", struct.unpack("<Q", words[0:8])[0] + 1)


def drive_phases(processes, servers, daemon, sizes, start, db):
    """Runs the schedule; returns when each phase began (monotonic seconds)
    and the keys the failed servers held."""
    def at(offset):
        delay = start + offset - time.monotonic()
        if delay > 0:
            time.sleep(delay)

    events = {"steady": start}
    victim, planned = servers[1], servers[2]
    offset = sizes.phase["steady"]
    at(offset)
    events["dead_keys"] = int(victim.stats()["curr_items"])
    events["outage"] = time.monotonic()
    bump_epoch(db)
    victim.kill()
    offset += sizes.phase["outage"]
    at(offset)
    events["return"] = time.monotonic()
    restart_empty(processes, victim)
    offset += sizes.phase["return"]
    at(offset)
    events["planned"] = time.monotonic()
    events["planned_keys"] = int(planned.stats()["curr_items"])
    bump_epoch(db)
    if daemon:
        daemon.ctl("drain", planned.address)
    at(offset + sizes.drain)
    events["planned_stop"] = time.monotonic()
    planned.stop()
    time.sleep(sizes.gap)
    restart_empty(processes, planned)
    if daemon:
        benchlib.wait_for(lambda: daemon.states().get(planned.address) in ("live", "draining"), 10,
                          f"{planned.address} back")
        daemon.ctl("undrain", planned.address)
    offset += sizes.phase["planned"]
    events["end"] = start + offset
    at(offset)
    return events


FIELDS = ["reads", "hits", "db_reads", "errors", "stale", "writes", "write_errors", "refills"]


def summarize(buckets, events):
    """Counts per phase; a bucket belongs to the phase its middle falls in."""
    bounds = [(p, events[p], events[n] if n != "end" else events["end"])
              for p, n in zip(PHASES, PHASES[1:] + ["end"])]
    phases = {p: dict.fromkeys(FIELDS, 0) | {"seconds": round(b - a, 2)} for p, a, b in bounds}
    for bucket in buckets:
        middle = bucket[0] - 0.05
        for p, a, b in bounds:
            if a <= middle < b:
                for field, value in zip(FIELDS, bucket[1:]):
                    phases[p][field] += int(value)
    return phases


def timeline(buckets, events, step=0.5):
    """Database reads a second, in `step`-second bins from the start."""
    start = events["steady"]
    bins = [0] * (int((events["end"] - start) / step) + 1)
    for bucket in buckets:
        i = int((bucket[0] - 0.05 - start) / step)
        if 0 <= i < len(bins):
            bins[i] += int(bucket[3])
    return [[round(i * step, 2), round(n / step)] for i, n in enumerate(bins)]


def figures(system, phases, events):
    """The issue's ratios: database reads during the outage over the keys the
    dead server held; after the return, the extra ones (refills: the keys a
    client cached again during the outage, read from the database once more;
    the first read of a key lost with the server is no failover's fault)."""
    dead = max(events["dead_keys"], 1)
    outage = phases["outage"]["db_reads"] / dead
    extra = phases["return"]["refills"]
    stale = sum(p["stale"] for p in phases.values())
    result = {
        "dead_keys": events["dead_keys"],
        "planned_restart_keys": events["planned_keys"],
        "phases": phases,
        "errors": sum(p["errors"] + p["write_errors"] for p in phases.values()),
        "stale_reads": stale,
        "outage_misses_over_dead_keys": round(outage, 3),
        "return_misses_over_dead_keys": round(extra / dead, 3),
    }
    if system == "mcwatch":
        for name, target in (("outage_misses_over_dead_keys", OUTAGE_TARGET),
                             ("return_misses_over_dead_keys", RETURN_TARGET), ("stale_reads", 0)):
            result[name] = benchlib.judged(result[name], target)
    return result


def value(figure):
    return figure["value"] if isinstance(figure, dict) else figure


def run(ctx):
    sizes = Sizes(ctx.smoke)
    results = {"keys": sizes.keys, "clients": CLIENTS, "ops_per_s": sizes.rate * CLIENTS,
               "phase_seconds": sizes.phase, "systems": {}, "timeline": {}}
    for system in SYSTEMS:
        buckets, events = run_system(ctx, system, sizes)
        phases = summarize(buckets, events)
        results["systems"][system] = figures(system, phases, events)
        results["timeline"][system] = timeline(buckets, events)
        results["phase_starts"] = {p: round(events[p] - events["steady"], 2) for p in PHASES[1:]}
    print(f"  {sizes.keys} keys, {CLIENTS} client processes, {sizes.rate * CLIENTS} ops/s, 5% writes, "
          f"phases {', '.join(f'{p} {s:g}s' for p, s in sizes.phase.items())}")
    print(f"  {'':<20}{'database reads':^36}{'refills':^16}")
    print(f"  {'system':<20}" + "".join(f"{p:>9}" for p in PHASES) + f"{'return':>8}{'planned':>8}"
          f"{'errors':>8}{'stale':>7}{'outage/dead':>12}{'return/dead':>12}")
    for system, r in results["systems"].items():
        phases = r["phases"]
        print(f"  {system:<20}" + "".join(f"{phases[p]['db_reads']:>9}" for p in PHASES) +
              f"{phases['return']['refills']:>8}{phases['planned']['refills']:>8}{r['errors']:>8}"
              f"{value(r['stale_reads']):>7}{value(r['outage_misses_over_dead_keys']):>12.3f}"
              f"{value(r['return_misses_over_dead_keys']):>12.3f}")
    # Issue 13: what the programs saw fail while the server was down (in-band
    # failover: none for mcwatch), beside the other systems.
    outage_errors = {system: r["phases"]["outage"]["errors"] + r["phases"]["outage"]["write_errors"]
                     for system, r in results["systems"].items()}
    results["outage_errors"] = outage_errors
    results["systems"]["mcwatch"]["outage_errors"] = benchlib.judged(outage_errors["mcwatch"], 0)
    print("  outage-phase errors (reads + writes): " +
          ", ".join(f"{system} {count}" for system, count in outage_errors.items()))
    m = results["systems"]["mcwatch"]
    for name in ("outage_errors", "outage_misses_over_dead_keys", "return_misses_over_dead_keys", "stale_reads"):
        print(f"  mcwatch {name} = {m[name]['value']}{benchlib.mark(m[name])}")
    return results
