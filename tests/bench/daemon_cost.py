"""`daemon`: what mcwatch costs on a client host.

(a) mcwatchd probing 1,000 real memcached endpoints (a few memcached
    processes, each listening on a couple of hundred loopback addresses
    127.0.x.y on one port) at the shipped 500 ms interval and at 100 ms
    (with two timeouts): its CPU as a share of one core over a window, its
    peak RSS, the state file's size, and whatever its log complains about.
(b) The shim's resident cost in a client: watch_client (watch_client.c)
    holding a 4-server handle that did some sets and gets, run plain and with
    libmcshim.so preloaded; the differences of /proc/PID/smaps_rollup.

No target in the issue: nothing is marked."""

import os
import statistics
import time

import benchlib
import fleetlib

ROLLUP = ("Rss", "Pss", "Private")  # Private: Private_Clean + Private_Dirty

# The two profiles of `detection`, and 100 ms with a longer timeout: with
# 1,000 servers a round can outlast 50 ms (the daemon then never sees them
# all live), and this row gives the cost of a daemon that keeps up.
PROFILES = dict(fleetlib.PROFILES,
                interval_100ms_timeout_90ms=dict(fleetlib.PROFILES["interval_100ms"], probe_timeout="90ms"))


def loopback_hosts(count):
    """`count` distinct loopback addresses, 127.0.1.1 upwards (all of 127/8
    is loopback on Linux; 127.0.0.x is left to the other sections)."""
    return [f"127.0.{1 + i // 250}.{1 + i % 250}" for i in range(count)]


def log_problems(path, offset):
    """The log lines of level warning or error (probe failures, descriptor
    limits, ...) from `offset` on."""
    with open(path) as log:
        log.seek(offset)
        return [line.rstrip("\n") for line in log if " level=error " in line or " level=warning " in line]


def probing_cost(ctx, procs, servers, name, settings, window_s, live_within_s):
    """One mcwatchd over every address of `servers`: its figures over a
    window. A daemon that does not see every server live in time is
    measured all the same (that is a finding, not a reason to stop)."""
    addresses = [f"{host}:{server.port}" for server in servers for host in server.hosts]
    interval_ms = fleetlib.profile_figures(settings)["probe_interval_ms"]
    daemon = procs.add(benchlib.Mcwatchd(ctx, f"daemon-{name}", addresses, settings))
    log_start = os.path.getsize(daemon.log) if os.path.exists(daemon.log) else 0  # the log is appended to
    started = time.monotonic()
    try:
        daemon.start(timeout=live_within_s)
        to_live = round(time.monotonic() - started, 2)
    except RuntimeError:
        if daemon.process is None or daemon.process.poll() is not None:
            raise
        to_live = None
    rounds_before = daemon.status()["daemon"]["rounds"]
    memcached_before = sum(benchlib.cpu_seconds(s.pid) for s in servers)
    cpu_before = benchlib.cpu_seconds(daemon.pid)
    window_start = time.monotonic()
    time.sleep(window_s)
    cpu = benchlib.cpu_seconds(daemon.pid) - cpu_before
    elapsed = time.monotonic() - window_start
    memcached_cpu = sum(benchlib.cpu_seconds(s.pid) for s in servers) - memcached_before
    status = daemon.status()
    rtts = sorted(s["rtt_us"] for s in status["servers"] if s["rtt_us"] is not None)
    st = os.stat(daemon.state)
    figures = dict(fleetlib.profile_figures(settings),
                   servers=len(addresses),
                   seconds_to_all_live=to_live,  # None: not within live_within_s
                   window_s=round(elapsed, 2),
                   cpu_percent=round(100 * cpu / elapsed, 2),
                   peak_rss_kb=benchlib.status_kb(daemon.pid, "VmHWM"),
                   rss_kb=benchlib.status_kb(daemon.pid, "VmRSS"),
                   # Rounds done per interval elapsed: below 1 when rounds outlast the interval.
                   rounds_per_interval=round((status["daemon"]["rounds"] - rounds_before) * interval_ms
                                             / (elapsed * 1000), 3),
                   live_at_end=sum(s["state"] == "live" for s in status["servers"]),
                   # The last probe's round trip (stats sent to reply parsed), over the servers that
                   # answered; it includes the time the daemon spent on the round's other servers.
                   rtt_ms_median=round(statistics.median(rtts) / 1000, 2) if rtts else None,
                   rtt_ms_max=round(rtts[-1] / 1000, 2) if rtts else None,
                   state_file_bytes=st.st_size,
                   state_file_allocated_bytes=st.st_blocks * 512,
                   memcached_cpu_percent=round(100 * memcached_cpu / elapsed, 2))
    daemon.stop()
    problems = log_problems(daemon.log, log_start)
    figures["log_problems"] = len(problems)
    # Servers published dead, from its start on: flapping a snapshot of the states would not show.
    figures["down_events"] = sum(" event=down " in line for line in problems)
    figures["log_problems_first"] = problems[:5]
    return figures


def resident_cost(ctx, procs, keys, rounds):
    """Medians of smaps_rollup figures of a held client, plain and preloaded,
    rounds interleaved."""
    servers = fleetlib.start_servers(procs)
    addresses = [s.address for s in servers]
    daemon = procs.add(benchlib.Mcwatchd(ctx, "daemon-resident", addresses)).start()
    readings = {"plain": [], "preloaded": []}
    for _ in range(rounds):
        for kind, env in (("plain", ctx.plain_env()), ("preloaded", ctx.shim_env(daemon.state))):
            client = procs.add(fleetlib.Client(ctx, ["hold", fleetlib.servers_arg(addresses), str(keys)], env))
            line = client.readline().split()
            if line != ["ready", f"ok={2 * keys}"]:
                raise RuntimeError(f"watch_client hold ({kind}) said {line}")
            readings[kind].append({
                "Rss": benchlib.rollup_kb(client.pid, "Rss"),
                "Pss": benchlib.rollup_kb(client.pid, "Pss"),
                "Private": benchlib.rollup_kb(client.pid, "Private_Clean")
                + benchlib.rollup_kb(client.pid, "Private_Dirty")})
            client.finish(10)
            client.stop()
    medians = {kind: {f: statistics.median(r[f] for r in rs) for f in ROLLUP} for kind, rs in readings.items()}
    return {"keys": keys, "rounds": rounds,
            **{f"{kind}_{f.lower()}_kb": medians[kind][f] for kind in medians for f in ROLLUP},
            **{f"shim_{f.lower()}_kb": medians["preloaded"][f] - medians["plain"][f] for f in ROLLUP}}


def run(ctx):
    count = 50 if ctx.smoke else 1000
    per_process = 50 if ctx.smoke else 200
    window_s = 1.5 if ctx.smoke else 10
    live_within_s = 10 if ctx.smoke else 20
    results = {"load_average": fleetlib.load_average(), "probing": {}}
    with benchlib.Processes() as procs:
        hosts = loopback_hosts(count)
        servers = [procs.add(benchlib.Memcached(hosts=hosts[i:i + per_process]).start())
                   for i in range(0, count, per_process)]
        for name, settings in PROFILES.items():
            results["probing"][name] = probing_cost(ctx, procs, servers, name, settings, window_s, live_within_s)
        for server in servers:
            server.stop()
        results["shim_resident"] = resident_cost(ctx, procs, keys=100 if ctx.smoke else 1000,
                                                 rounds=1 if ctx.smoke else 3)

    probing = results["probing"]
    fleetlib.print_table(
        f"daemon (a): mcwatchd probing {count} memcached endpoints ({len(servers)} memcached processes), "
        f"{window_s:g} s window; load average {results['load_average']} at start",
        ["probe settings", "cpu % of a core", "peak rss kB", "rounds/interval", "live at end", "down events",
         "rtt ms med/max", "state file B (alloc)", "all live after s", "memcached cpu %", "log warn+error"],
        [[f"{name} ({fleetlib.profile_label(PROFILES[name])})", f["cpu_percent"], f["peak_rss_kb"],
          f["rounds_per_interval"], f"{f['live_at_end']}/{f['servers']}", f["down_events"],
          f"{f['rtt_ms_median']}/{f['rtt_ms_max']}",
          f"{f['state_file_bytes']} ({f['state_file_allocated_bytes']})",
          f["seconds_to_all_live"] if f["seconds_to_all_live"] is not None else f"not in {live_within_s}",
          f["memcached_cpu_percent"], f["log_problems"]] for name, f in probing.items()])
    for name, f in probing.items():
        if f["live_at_end"] < f["servers"] or f["down_events"]:
            print(f"  {name}: {f['live_at_end']}/{f['servers']} live at the end, {f['down_events']} published dead "
                  f"meanwhile: its rounds do not fit the probe timeout on this machine (log below)")
        for line in f["log_problems_first"]:
            print(f"  {name} log: {line}")
    r = results["shim_resident"]
    fleetlib.print_table(
        f"daemon (b): resident memory of a libmemcached client (4 servers, {r['keys']} keys set and got; "
        f"median of {r['rounds']}), kB",
        ["", "Rss", "Pss", "Private"],
        [[kind, *(r[f"{kind}_{f.lower()}_kb"] for f in ROLLUP)] for kind in ("plain", "preloaded", "shim")])
    return results
