"""`make bench`, section `throughput` (issue 7): get/set throughput of a
libmemcached client (build/bench/mc_loop: T threads, each with its own
memcached_st, ketama + md5) against the same four real memcached servers on
loopback, four ways:

- direct: the client as it is, given the four servers;
- preloaded: the same client with LD_PRELOAD=libmcshim.so and a real
  mcwatchd watching the four servers (all live: the shim places every key
  natively, so this is its pure overhead);
- replicated: the same preloaded client under a second mcwatchd with
  `[routing] replicas = 2` (every store also goes to the key's second
  server): gets and sets are reported apart (mc_loop times each), over
  direct, against issue 14's targets (gets >= 0.98, sets >= 0.75);
- twemproxy: the same client given one server, Debian's nutcracker (ketama,
  md5) in front of the four.

A grid of value sizes x client threads. mcwatchd and nutcracker run for the
whole section, so their cost falls on all four systems alike. Each cell is
first probed once per system with the same operations (untimed: warms the
servers, checks placement, and sizes the runs to about round_seconds each,
with the same work for direct and preloaded). Then rounds: every round
runs every cell, and in each cell the four systems back to back, in an
order that rotates from round to round. The machine is small and shared, and a run's speed swings by 2-3x
from one run to the next (scheduling of client, servers and proxy on two
cores, other load), but runs a fraction of a second apart share most of it;
so a cell's ratio is the median over rounds of the ratio of the two runs of
that round (paired), and the overall ratio the geometric mean over cells.
shim_over_direct is held against its target (>= 0.98) and comes with a
bootstrap interval over rounds; twemproxy_over_direct has no target. The
ops/s shown are medians over rounds; the client's CPU time per operation is
recorded too (informative: as noisy here as the wall clock).

Every get must return the value just set (mc_loop checks length and
flags); failed operations are counted and shown. The probes' per-server
count of sets must be the same for the preloaded client as for the direct
one, and so must each round's: placement stays native under the shim. The
replicated client's sets over the direct one's (2 once copies are written)
say whether replication was at work.

Instructions per get and per set as callgrind counts them (the client
process, shim included; the servers' work not), direct, preloaded and
replicated side by side: repeatable on a loaded machine where the wall-clock
ratios are not, and they tell the shim's own cost from the servers'. One
client thread, 100-byte values, each figure the difference of two runs of
CALLGRIND_ITERATIONS and twice as many, inside memcached_get or
memcached_set only (`--toggle-collect`): start-up and warm-up cancel out.

Then the hit ratio at a fixed memory size, with and without replication:
four fresh memcached of HIT_RATIO's memory each, more keys than fit,
every key written once (warm), then the read-through workload of miss_storm (tests/bench/read_through.c, Zipf
reads, misses filled with add, 5% writes) through the preloaded shim with
replicas = 1 and then 2; hits over reads once warmed up (the second half of
the run). With two copies of every value the fleet holds half as many keys."""

import math
import os
import random
import statistics
import subprocess
import time

import benchlib
import readthrough
import routing

SERVERS = 4
MEMORY_MB = 64
SYSTEMS = ("direct", "preloaded", "replicated", "twemproxy")
TARGET = 0.98
# Issue 14: the second copy's store may cost sets a quarter, gets nothing.
REPLICATED_GETS_TARGET = 0.98
REPLICATED_SETS_TARGET = 0.75
# The daemons: the clients' placement, and the copies.
ROUTING = {"distribution": "ketama", "hash": "md5"}

FULL = {
    "sizes": (100, 4096, 32768),
    "threads": (1, 4),
    "rounds": 24,
    "round_seconds": 0.2,  # the wanted length of one run (sized per cell and system)
    "budget_seconds": 185,  # no new round starts past this (min_rounds always run)
    "min_rounds": 3,
    "keys": 1000,  # per client thread
    "probe_iterations": 1000,
    "min_iterations": 500,
    "max_iterations": 200000,
}
SMOKE = {
    # One size: the smoke proves each system runs end to end, one and several
    # threads; the sizes only change the figures, which mean nothing here.
    "sizes": (100,),
    "threads": (1, 2),
    "rounds": 1,
    "round_seconds": None,  # runs of probe_iterations, not sized
    "budget_seconds": 30,
    "min_rounds": 1,
    "keys": 100,
    "probe_iterations": 300,
}
RUN_TIMEOUT_S = 60
# Iterations of the shorter callgrind run (the longer has twice as many).
CALLGRIND_ITERATIONS = {"full": 1000, "smoke": 100}
FIELDS = {"ops_per_s", "ops", "seconds", "threads", "cpu_s", "failed", "misses", "set_s", "get_s"}
HIT_RATIO = {
    # 2 MB holds about 10,900 of these items (100-byte values): 100,000 keys
    # are more than twice what four servers hold.
    "full": {"memory_mb": 2, "keys": 100000, "rate": 4000, "seconds": 16.0},
    "smoke": {"memory_mb": 2, "keys": 5000, "rate": 2000, "seconds": 1.0},
}


class Loop:
    """build/bench/mc_loop, run against one of the three systems."""

    def __init__(self, ctx, servers, daemon, replicated, proxy, keys):
        self.path = ctx.bench_tool("mc_loop")
        if not os.access(self.path, os.X_OK):
            raise RuntimeError(f"{self.path} missing: make {os.path.relpath(self.path)}")
        self.keys = keys
        self.servers = servers
        direct = ",".join(s.address for s in servers)
        self.targets = {
            "direct": (direct, ctx.plain_env()),
            "preloaded": (direct, ctx.shim_env(daemon.state)),
            "replicated": (direct, ctx.shim_env(replicated.state)),
            "twemproxy": (proxy.address, ctx.plain_env()),
        }

    def sets_per_server(self):
        try:
            return [int(s.stats()["cmd_set"]) for s in self.servers]
        except (OSError, KeyError, ValueError) as error:
            raise RuntimeError(f"a memcached of this section stopped answering stats: {error}") from error

    def run(self, system, iterations, size, threads, extra_env=None):
        """One run: mc_loop's figures, its stderr if it failed, and the sets
        each server received (warm-up included)."""
        servers, env = self.targets[system]
        before = self.sets_per_server()
        args = [self.path, servers, str(iterations), str(size), str(threads), str(self.keys)]
        result = subprocess.run(args, env=dict(env, **(extra_env or {})), capture_output=True, text=True,
                                timeout=RUN_TIMEOUT_S)
        after = self.sets_per_server()
        lines = result.stdout.strip().splitlines()
        try:
            figures = {k: float(v) for k, v in (field.split("=", 1) for field in (lines[-1] if lines else "").split())}
        except ValueError:
            figures = {}
        if result.returncode not in (0, 1) or not FIELDS <= figures.keys():
            raise RuntimeError(f"mc_loop ({system}, {size} B, {threads} threads) exited {result.returncode}: "
                               f"{result.stderr.strip() or result.stdout.strip() or 'no output'}")
        figures["error"] = result.stderr.strip() if result.returncode else ""
        figures["stderr"] = result.stderr
        figures["sets"] = [a - b for a, b in zip(after, before)]
        # Sets and gets a second, each from the time spent in it.
        # (set_s sums the threads' time: T threads each at set_s / iterations
        # a set do T * iterations / set_s a second.)
        for op in ("set", "get"):
            spent = figures[f"{op}_s"]
            figures[f"{op}_ops_per_s"] = iterations * figures["threads"] / spent if spent > 0 else 0.0
        return figures


def geomean(values):
    values = [v for v in values if v and v > 0]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def quartiles(values):
    """(first quartile, third quartile); the value itself for one."""
    if len(values) < 2:
        return values[0], values[0]
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[2]


def paired_ratio(other, direct):
    """The median over rounds of each round's other/direct."""
    return statistics.median(o / d for o, d in zip(other, direct))


def bootstrap_interval(cells, system, resamples=1000, seed=7, rounds_key="ops_s_rounds"):
    """A 95% interval of the overall ratio of `system` to direct, resampling
    each cell's rounds: how far this run's figure might land from the same
    measurement taken again on a machine as noisy as this one was.
    rounds_key: the rounds' figures compared (get+set, gets or sets)."""
    rng = random.Random(seed)
    rounds = [(c[rounds_key][system], c[rounds_key]["direct"]) for c in cells]
    if min(len(d) for _, d in rounds) < 3:
        return None
    figures = []
    for _ in range(resamples):
        ratios = []
        for other, direct in rounds:
            picks = [rng.randrange(len(direct)) for _ in direct]
            ratios.append(paired_ratio([other[i] for i in picks], [direct[i] for i in picks]))
        figures.append(geomean(ratios))
    figures.sort()
    return [round(figures[int(0.025 * resamples)], 3), round(figures[int(0.975 * resamples) - 1], 3)]


def probe(loop, size, threads, plan):
    """One untimed run of each system with the same operations; then the
    iterations that make runs last about round_seconds: the same for direct
    and preloaded (the same work, so their sets per server must match run
    for run), their own for twemproxy (a proxy hop is slower: its runs
    would otherwise take most of the time)."""
    probes = {system: loop.run(system, plan["probe_iterations"], size, threads) for system in SYSTEMS}
    if not plan["round_seconds"]:
        return {system: plan["probe_iterations"] for system in SYSTEMS}, probes

    def sized(ops_per_s):
        wanted = int(ops_per_s / 2 * plan["round_seconds"])
        return max(plan["min_iterations"], min(plan["max_iterations"], wanted))

    client = sized(geomean([probes["direct"]["ops_per_s"], probes["preloaded"]["ops_per_s"]]))
    return {"direct": client, "preloaded": client, "replicated": client,
            "twemproxy": sized(probes["twemproxy"]["ops_per_s"])}, probes


def measure(loop, plan, start):
    cells = [{"value_bytes": size, "threads": threads} for size in plan["sizes"] for threads in plan["threads"]]
    for cell in cells:
        cell["iterations"], cell["probes"] = probe(loop, cell["value_bytes"], cell["threads"], plan)
        cell["runs"] = {system: [] for system in SYSTEMS}
    for r in range(plan["rounds"]):
        if r >= plan["min_rounds"] and time.monotonic() - start > plan["budget_seconds"]:
            print(f"(time budget spent: {r} rounds of {plan['rounds']})")
            break
        # Each system goes first, second and third equally often.
        order = SYSTEMS[r % len(SYSTEMS):] + SYSTEMS[:r % len(SYSTEMS)]
        for cell in cells:
            for system in order:
                cell["runs"][system].append(
                    loop.run(system, cell["iterations"][system], cell["value_bytes"], cell["threads"]))
    return cells


def summarize(cell):
    runs = cell.pop("runs")
    probes = cell.pop("probes")
    out = dict(cell)
    ops = {system: [f["ops_per_s"] for f in runs[system]] for system in SYSTEMS}
    for system in SYSTEMS:
        out[f"{system}_ops_s"] = round(statistics.median(ops[system]))
    out["shim_over_direct"] = round(paired_ratio(ops["preloaded"], ops["direct"]), 4)
    out["twemproxy_over_direct"] = round(paired_ratio(ops["twemproxy"], ops["direct"]), 4)
    out["replicated_over_direct"] = round(paired_ratio(ops["replicated"], ops["direct"]), 4)
    # Gets and sets apart, from the time each took.
    for op in ("get", "set"):
        per_op = {system: [f[f"{op}_ops_per_s"] for f in runs[system]] for system in SYSTEMS}
        out[f"{op}s_over_direct"] = {system: round(paired_ratio(per_op[system], per_op["direct"]), 4)
                                     for system in ("preloaded", "replicated")}
        out[f"{op}_ops_s_rounds"] = {system: [round(v) for v in per_op[system]] for system in SYSTEMS}
    # The same from the medians alone (unpaired), to compare.
    out["shim_over_direct_of_medians"] = round(out["preloaded_ops_s"] / out["direct_ops_s"], 4)
    out["shim_over_direct_rounds"] = [round(p / d, 3) for p, d in zip(ops["preloaded"], ops["direct"])]
    cpu = {system: statistics.median(f["cpu_s"] / f["ops"] * 1e6 for f in runs[system]) for system in SYSTEMS}
    out["client_cpu_us_per_op"] = {system: round(v, 2) for system, v in cpu.items()}
    out["shim_cpu_over_direct"] = round(cpu["preloaded"] / cpu["direct"], 4)
    # The probes did the same operations on every system, and so did the
    # direct and preloaded run of each round: the same keys must have
    # reached the same servers.
    out["placement_matches_direct"] = {
        "preloaded": all(p["sets"] == d["sets"] for p, d in
                         zip(runs["preloaded"] + [probes["preloaded"]], runs["direct"] + [probes["direct"]])),
        "twemproxy": probes["twemproxy"]["sets"] == probes["direct"]["sets"]}
    out["sets_per_server"] = {system: probes[system]["sets"] for system in SYSTEMS}
    # 2 once every store also writes the key's second copy.
    out["replicated_sets_over_direct_sets"] = round(sum(probes["replicated"]["sets"]) /
                                                    max(sum(probes["direct"]["sets"]), 1), 3)
    every = {system: runs[system] + [probes[system]] for system in SYSTEMS}
    failed = {system: int(sum(f["failed"] + f["misses"] for f in every[system])) for system in SYSTEMS}
    out["failed_ops"] = {system: n for system, n in failed.items() if n}
    errors = sorted({f["error"] for system in SYSTEMS for f in every[system] if f["error"]})
    if errors:
        out["errors"] = errors[:5]
    out["rounds"] = len(runs["direct"])
    out["ops_s_rounds"] = {system: [round(v) for v in ops[system]] for system in SYSTEMS}
    return out


def instructions_per_op(loop, iterations):
    """{system: {"get": n, "set": n}}: callgrind's instructions per call of
    memcached_get and memcached_set, one thread, 100-byte values."""
    result = {}
    for system in ("direct", "preloaded", "replicated"):
        servers, env = loop.targets[system]
        result[system] = {}
        for op in ("get", "set"):
            counts = [routing.instructions([f"--toggle-collect=memcached_{op}", loop.path, servers, str(n), "100", "1",
                                            str(loop.keys)], env) for n in (iterations, 2 * iterations)]
            result[system][op] = round((counts[1] - counts[0]) / iterations)
    return result


def shim_engaged(loop):
    """Whether the preloaded client found the state file usable: with
    MCSHIM_DEBUG the shim says on stderr when it places keys natively for
    want of a usable state file (missing, invalid, stale)."""
    figures = loop.run("preloaded", 50, 100, 1, extra_env={"MCSHIM_DEBUG": "1"})
    return "placing keys natively" not in figures["stderr"], figures["stderr"].strip()


def print_table(result):
    print("ops/s: median over rounds; shim/direct, twem/direct: median over rounds of each round's ratio"
          " (q1-q3: quartiles of shim/direct's rounds); cpu: the client's CPU time per operation, in us")
    print(f"{'value':>8} {'thr':>3} {'direct':>9} {'preloaded':>9} {'replicated':>10} {'twemproxy':>9}"
          f" {'shim/direct':>11} {'(q1-q3)':>11} {'twem/direct':>11} {'cpu direct/preloaded':>20}"
          f" {'repl gets/sets':>15}")
    for c in result["cells"]:
        q1, q3 = quartiles(c["shim_over_direct_rounds"])
        cpu = c["client_cpu_us_per_op"]
        cpu_text = f"{cpu['direct']:.1f}/{cpu['preloaded']:.1f}"
        notes = []
        if c["failed_ops"]:
            notes.append("FAILED OPS " + ", ".join(f"{k} {v}" for k, v in c["failed_ops"].items()))
        if not c["placement_matches_direct"]["preloaded"]:
            notes.append("PLACEMENT: preloaded per-server sets differ from direct")
        replicated_text = f"{c['gets_over_direct']['replicated']:.3f}/{c['sets_over_direct']['replicated']:.3f}"
        print(f"{c['value_bytes']:>6} B {c['threads']:>3} {c['direct_ops_s']:>9} {c['preloaded_ops_s']:>9}"
              f" {c['replicated_ops_s']:>10} {c['twemproxy_ops_s']:>9} {c['shim_over_direct']:>11.3f}"
              f" {f'{q1:.2f}-{q3:.2f}':>11} {c['twemproxy_over_direct']:>11.3f} {cpu_text:>20}"
              f" {replicated_text:>15}" + ("  " + "; ".join(notes) if notes else ""))

    def interval(key):
        ci = result[key + "_ci95"]
        return f"  (95% bootstrap interval {ci[0]:.3f}-{ci[1]:.3f})" if ci else ""

    shim = result["shim_over_direct"]
    print(f"shim_over_direct, geometric mean over cells:      {shim['value']:.3f}{interval('shim_over_direct')}"
          f"{benchlib.mark(shim)}")
    print(f"twemproxy_over_direct, geometric mean over cells: {result['twemproxy_over_direct']:.3f}"
          f"{interval('twemproxy_over_direct')}")
    for op in ("gets", "sets"):
        figure = result[f"replicated_{op}_over_direct"]
        print(f"replicated_{op}_over_direct (replicas = 2), geometric mean over cells: {figure['value']:.3f}"
              f"{interval(f'replicated_{op}_over_direct')}{benchlib.mark(figure)}")
    print(f"  the replicated client's sets reached the servers {result['replicated_sets_over_direct_sets']:.2f} "
          f"times as often as the direct client's (2 when every store writes its second copy)")
    cg = result["instructions_per_op"]
    print("client instructions per operation (callgrind, 1 thread, 100 B): "
          + "; ".join(f"{op} direct {cg['direct'][op]}, preloaded {cg['preloaded'][op]}, replicated "
                      f"{cg['replicated'][op]}" for op in ("get", "set")))
    hit = result["hit_ratio"]
    print(f"hit ratio at {hit['memory_mb_per_server']} MB x {SERVERS} servers, {hit['keys']} keys (Zipf), "
          f"after warm-up: replicas = 1 {hit['replicas_1']['hit_ratio']:.3f}, replicas = 2 "
          f"{hit['replicas_2']['hit_ratio']:.3f} (ratio {hit['replicated_over_unreplicated']:.3f}); items held "
          f"{hit['replicas_1']['items']} and {hit['replicas_2']['items']}")
    print(f"  unpaired (ratio of medians): shim {result['shim_over_direct_of_medians']:.3f};"
          f" client CPU per op, preloaded/direct: {result['shim_cpu_over_direct']:.3f}")
    if result["placement_native"]:
        print("placement: the preloaded client's per-server sets equal the direct client's in every run")
    else:
        print("placement: the preloaded client's per-server sets DIFFER from the direct client's (must not)")
    if not all(c["placement_matches_direct"]["twemproxy"] for c in result["cells"]):
        print("  (nutcracker's ketama spreads keys otherwise than libmemcached's: informative only)")
    if result["failed_ops"]:
        print(f"FAILED OPERATIONS: {result['failed_ops']} (see cells[].errors)")
    if not result["shim_engaged"]:
        print(f"THE SHIM PLACED KEYS NATIVELY, the state file unusable: {result['shim_debug']}")
    if not result["servers_live_at_end"]:
        print("mcwatchd did not see every server live at the end: the preloaded figures may include rerouting")


def hit_ratio_of(ctx, replicas, sizes):
    """The read-through workload's hits over reads after warm-up, on fresh
    servers of sizes' memory, the shim preloaded with `replicas`; and the
    items the servers held at the end."""
    with benchlib.Processes() as processes:
        servers = [processes.add(benchlib.Memcached(memory_mb=sizes["memory_mb"])).start() for _ in range(SERVERS)]
        addresses = [s.address for s in servers]
        daemon = processes.add(benchlib.Mcwatchd(ctx, f"hit-ratio-replicas-{replicas}", addresses,
                                                 routing=dict(ROUTING, replicas=replicas))).start()
        db = readthrough.create_database(os.path.join(ctx.scratch(f"hit-ratio-replicas-{replicas}"), "database"),
                                         sizes["keys"])
        # Every key written once: the servers full (and evicting) before the run.
        readthrough.warm(ctx, addresses, db, sizes["keys"], ctx.shim_env(daemon.state))
        start = time.monotonic()
        clients = processes.add(readthrough.Clients(ctx, addresses, db, sizes["keys"], sizes["rate"],
                                                    sizes["seconds"], ctx.shim_env(daemon.state)))
        buckets = clients.finish(f"hit ratio, replicas = {replicas}")
        items = sum(int(s.stats()["curr_items"]) for s in servers)
    warmed = readthrough.totals(buckets, begin=start + sizes["seconds"] / 2)
    return {"reads": warmed["reads"], "hits": warmed["hits"], "errors": warmed["errors"], "items": items,
            "hit_ratio": round(warmed["hits"] / max(warmed["reads"], 1), 4)}


def hit_ratio(ctx):
    sizes = HIT_RATIO["smoke" if ctx.smoke else "full"]
    result = {"memory_mb_per_server": sizes["memory_mb"], "keys": sizes["keys"],
              "ops_per_s": sizes["rate"] * 2, "seconds": sizes["seconds"], "measured": "the second half"}
    for replicas in (1, 2):
        result[f"replicas_{replicas}"] = hit_ratio_of(ctx, replicas, sizes)
    result["replicated_over_unreplicated"] = round(
        result["replicas_2"]["hit_ratio"] / max(result["replicas_1"]["hit_ratio"], 1e-9), 4)
    return result


def run(ctx):
    plan = SMOKE if ctx.smoke else FULL
    start = time.monotonic()
    with benchlib.Processes() as processes:
        servers = [processes.add(benchlib.Memcached(memory_mb=MEMORY_MB)).start() for _ in range(SERVERS)]
        addresses = [s.address for s in servers]
        daemon = processes.add(benchlib.Mcwatchd(ctx, "throughput-mcwatchd", addresses, routing=ROUTING)).start()
        replicated = processes.add(benchlib.Mcwatchd(ctx, "throughput-mcwatchd-replicated", addresses,
                                                     routing=dict(ROUTING, replicas=2))).start()
        proxy = processes.add(benchlib.Nutcracker(ctx, "throughput-nutcracker", addresses)).start()
        loop = Loop(ctx, servers, daemon, replicated, proxy, plan["keys"])
        engaged, debug = shim_engaged(loop)
        cells = [summarize(cell) for cell in measure(loop, plan, start)]
        instructions = instructions_per_op(loop, CALLGRIND_ITERATIONS["smoke" if ctx.smoke else "full"])
        all_live = daemon.all_in("live") and replicated.all_in("live")
    result = {
        "servers": SERVERS,
        "rounds": min(c["rounds"] for c in cells),
        "round_seconds": plan["round_seconds"],
        "keys_per_thread": plan["keys"],
        "cells": cells,
        "shim_over_direct": benchlib.judged(round(geomean([c["shim_over_direct"] for c in cells]), 4), TARGET,
                                            higher_is_better=True),
        "shim_over_direct_ci95": bootstrap_interval(cells, "preloaded"),
        "twemproxy_over_direct": round(geomean([c["twemproxy_over_direct"] for c in cells]), 4),
        "twemproxy_over_direct_ci95": bootstrap_interval(cells, "twemproxy"),
        "replicated_over_direct": round(geomean([c["replicated_over_direct"] for c in cells]), 4),
        "replicated_gets_over_direct": benchlib.judged(
            round(geomean([c["gets_over_direct"]["replicated"] for c in cells]), 4), REPLICATED_GETS_TARGET,
            higher_is_better=True),
        "replicated_gets_over_direct_ci95": bootstrap_interval(cells, "replicated", rounds_key="get_ops_s_rounds"),
        "replicated_sets_over_direct": benchlib.judged(
            round(geomean([c["sets_over_direct"]["replicated"] for c in cells]), 4), REPLICATED_SETS_TARGET,
            higher_is_better=True),
        "replicated_sets_over_direct_ci95": bootstrap_interval(cells, "replicated", rounds_key="set_ops_s_rounds"),
        "preloaded_gets_over_direct": round(geomean([c["gets_over_direct"]["preloaded"] for c in cells]), 4),
        "preloaded_sets_over_direct": round(geomean([c["sets_over_direct"]["preloaded"] for c in cells]), 4),
        "replicated_sets_over_direct_sets": round(geomean([c["replicated_sets_over_direct_sets"] for c in cells]),
                                                  3),
        "shim_over_direct_of_medians": round(geomean([c["shim_over_direct_of_medians"] for c in cells]), 4),
        "shim_cpu_over_direct": round(geomean([c["shim_cpu_over_direct"] for c in cells]), 4),
        "placement_native": all(c["placement_matches_direct"]["preloaded"] for c in cells),
        "failed_ops": sum(sum(c["failed_ops"].values()) for c in cells),
        "shim_engaged": engaged,
        "servers_live_at_end": all_live,
        "instructions_per_op": instructions,
    }
    if not engaged:
        result["shim_debug"] = debug[-500:]
    result["hit_ratio"] = hit_ratio(ctx)
    print_table(result)
    print(f"({time.monotonic() - start:.0f} s)")
    return result
