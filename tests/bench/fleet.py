"""`fleet` (issue 16): the fleet view (docs/DESIGN.md, "The fleet view"),
measured with real mcwatchd daemons standing for client hosts on this
machine, each with its own state file and `[fleet] host =`, against a real
3-member etcd on loopback ports (tests/lib/etcd_cluster.py).

- hosts:  3 hosts, 2 memcached. Kill -> every host's clients route the
  victim's key elsewhere (libmcshim.so's mcshim_route on each host's state
  file, polled every 2 ms: what a preloaded client does), at the shipped
  probe settings and at 100 ms; memcached's own cmd_flush after each
  return (target exactly 1 with [fleet]); a one-host stall (kill -STOP that
  only one host's daemon, tuned as in tests/integration/test_fleet.py,
  notices) and the flushes it causes (target 0). Beside them the same
  three daemons without [fleet]: one flush per host that saw the outage,
  one per stall.
- scale:  100 hosts x 50 memcached (no namespaces), shipped probe settings
  and lease: etcd's writes (its revision counts every one) per second at
  rest and over a window from one server's kill, kill -> all 100 hosts'
  clients routing away, the writes of one outage and one return, daemon
  and etcd CPU, and what one poll of the fleet's prefix returns.

Stale reads across hosts need hosts that reach a server differently, i.e.
network namespaces: tests/integration/test_fleet_hosts.py measures them
(test_a_server_cut_from_one_host_gives_no_read_older_than_the_last_write,
recorded in tests/run's measurements); this section does not repeat it."""

import base64
import ctypes
import json
import os
import random
import shutil
import signal
import statistics
import time
import urllib.request

import benchlib
import fleetlib
import mcwatchd
from etcd_cluster import EtcdCluster

POLL_S = 0.002  # how often the harness reads every host's routing
VERDICT_TIMEOUT_S = 60  # a verdict not seen by then is reported as None
SETTLE_TIMEOUT_S = 60
# The stall of tests/integration/test_fleet.py: one host gives up after a
# single 20 ms timeout, the others would need 50 failed probes.
STALL_HOST = {"probe_timeout": "20ms", "fail_after": 1}
PATIENT_HOST = {"probe_timeout": "90ms", "fail_after": 50}
STALL_HOLD_S = 0.3  # the stall lasts this long after the sensitive host saw it
# After a return or a stall, the rounds in which a second flush would come.
AFTERMATH_S = 1.0


class FleetHost(benchlib.Mcwatchd):
    """A benchlib.Mcwatchd whose config has the `[fleet]` section `fleet`
    (None: the daemon alone, as without the fleet view)."""

    def __init__(self, ctx, name, addresses, settings, fleet):
        self.fleet = fleet
        super().__init__(ctx, name, addresses, settings)

    def set_servers(self, addresses):
        self.addresses = list(addresses)
        mcwatchd.write_config(self.config, self.state, self.addresses, self.settings, self.routing, self.fleet)

    def start_unwaited(self, timeout=30):
        """Started, its state file its own; not waited for until live."""
        mcwatchd.Mcwatchd.start(self, timeout)
        return self


class _Route(ctypes.Structure):
    _fields_ = [("native", ctypes.c_int32), ("target", ctypes.c_int32), ("fallback", ctypes.c_int32),
                ("flags", ctypes.c_uint32)]


ROUTE_SUBSTITUTE = 0x01  # mcshim.h's MCSHIM_ROUTE_SUBSTITUTE


class Routing:
    """What a preloaded client on one host does with a key: libmcshim.so's
    C API (mcshim(3)) on that host's state file, with the daemon's server
    list."""

    def __init__(self, ctx, state):
        self.lib = ctypes.CDLL(ctx.tool("libmcshim.so"))
        self.lib.mcshim_open.restype = ctypes.c_void_p
        self.lib.mcshim_open.argtypes = [ctypes.c_char_p]
        self.lib.mcshim_use_state_servers.argtypes = [ctypes.c_void_p]
        self.lib.mcshim_route.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(_Route)]
        self.lib.mcshim_server_address.restype = ctypes.c_char_p
        self.lib.mcshim_server_address.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        self.lib.mcshim_close.argtypes = [ctypes.c_void_p]
        self.shim = self.lib.mcshim_open(state.encode())
        if not self.shim or self.lib.mcshim_use_state_servers(self.shim) != 0:
            raise RuntimeError(f"mcshim cannot use the servers of {state}")
        self.route = _Route()

    def native(self, key):
        """The address of `key`'s native server."""
        self._route(key)
        return self.lib.mcshim_server_address(self.shim, self.route.native).decode()

    def moved(self, key):
        """Whether `key` goes to a substitute (its native server dead or
        draining in the state file)."""
        self._route(key)
        return bool(self.route.flags & ROUTE_SUBSTITUTE)

    def _route(self, key):
        raw = key.encode()
        if self.lib.mcshim_route(self.shim, raw, len(raw), ctypes.byref(self.route)) != 0:
            raise RuntimeError(f"mcshim_route({key}) failed")

    def close(self):
        if self.shim:
            self.lib.mcshim_close(self.shim)
            self.shim = None


def key_on(routing, address):
    for i in range(10000):
        if routing.native(f"fleet:{i}") == address:
            return f"fleet:{i}"
    raise RuntimeError(f"no key of 10000 routes to {address}")


def wait_routing(routings, key, moved, timeout):
    """Polls every host's routing of `key` until all agree that it is moved
    (or not); the seconds until each host did, None for a host that did
    not within `timeout`."""
    start = time.monotonic()
    seen = [None] * len(routings)
    while None in seen and time.monotonic() - start < timeout:
        for i, routing in enumerate(routings):
            if seen[i] is None and routing.moved(key) == moved:
                seen[i] = time.monotonic() - start
        time.sleep(POLL_S)
    return seen


def last(seen):
    """When the last host got there (None if one never did)."""
    return None if None in seen else round(max(seen), 3)


def spread(values):
    values = [v for v in values if v is not None]
    if not values:
        return {"median_s": None, "max_s": None}
    return {"median_s": round(statistics.median(values), 3), "max_s": round(max(values), 3)}


def flushes(server):
    return int(server.stats()["cmd_flush"])


def start_hosts(ctx, procs, label, servers, settings, fleet, count, per_host=None):
    """`count` daemons over `servers`, each `[fleet] host = h<i>` of fleet
    `label` (fleet None: alone), waited for until every server is live."""
    hosts = []
    for i in range(count):
        config = dict(fleet, name=label, host=f"h{i}") if fleet else None
        own = dict(settings, **((per_host or {}).get(i, {})))
        hosts.append(procs.add(FleetHost(ctx, f"{label}-h{i}", [s.address for s in servers], own, config)))
    for host in hosts:
        host.start_unwaited()
    for host in hosts:
        benchlib.wait_for(lambda: host.running() and host.all_in("live"), SETTLE_TIMEOUT_S,
                          f"{host.dir}: every server live", 0.05)
    return hosts


def stop_hosts(hosts, routings):
    for routing in routings:
        routing.close()
    for host in hosts:
        host.stop()


def kill_and_return(hosts, routings, victim, key, rng, interval_s):
    """One outage: kill -9 at a random phase of the probe round, every host
    routing away, the same port started again, every host routing back;
    the seconds and the flushes of the return."""
    time.sleep(rng.uniform(0, interval_s))
    victim.kill()
    dead = wait_routing(routings, key, True, VERDICT_TIMEOUT_S)
    victim.start()  # the same port, empty
    back = wait_routing(routings, key, False, VERDICT_TIMEOUT_S)
    time.sleep(AFTERMATH_S)
    return {"all_dead_s": last(dead), "first_dead_s": round(min(s for s in dead if s is not None), 3)
            if any(s is not None for s in dead) else None, "all_live_again_s": last(back),
            "flushes": flushes(victim)}


def stall(hosts, victim):
    """kill -STOP that only host h0 notices; the flushes it caused."""
    before = flushes(victim)
    sensitive = hosts[0]
    down, up = f"event=down server={victim.address}", f"event=up server={victim.address}"
    downs, ups = sensitive.log_text().count(down), sensitive.log_text().count(up)
    victim.signal(signal.SIGSTOP)
    try:
        benchlib.wait_for(lambda: sensitive.log_text().count(down) > downs, 10, "h0 seeing the stall")
        time.sleep(STALL_HOLD_S)
    finally:
        victim.signal(signal.SIGCONT)
    benchlib.wait_for(lambda: sensitive.log_text().count(up) > ups, 10, "h0 seeing the server back")
    for host in hosts:
        benchlib.wait_for(lambda: host.all_in("live"), 10, "every server live on every host", 0.05)
    time.sleep(AFTERMATH_S)
    return flushes(victim) - before


def hosts_section(ctx, procs, etcd, repeats, rng):
    """Three hosts: convergence per profile, flushes per return and per
    stall, with and without [fleet]."""
    profiles = {k: v for k, v in fleetlib.PROFILES.items() if not ctx.smoke or k == "interval_100ms"}
    results, rows = {}, []
    fleet = {"etcd": etcd.config_value()}
    for with_fleet in (True, False):
        for name, settings in profiles.items():
            if not with_fleet and name != "interval_100ms":
                continue  # alone, only the flushes are compared: one profile
            label = f"{'fleet' if with_fleet else 'alone'}-{name}"
            servers = fleetlib.start_servers(procs, 2)
            hosts = start_hosts(ctx, procs, label, servers, settings, fleet if with_fleet else None, 3)
            routings = [Routing(ctx, h.state) for h in hosts]
            victim = servers[0]
            key = key_on(routings[0], victim.address)
            runs = [kill_and_return(hosts, routings, victim, key, rng,
                                    fleetlib.profile_figures(settings)["probe_interval_ms"] / 1000)
                    for _ in range(repeats)]
            stop_hosts(hosts, routings)
            hosts = start_hosts(ctx, procs, f"{label}-stall", servers, settings, fleet if with_fleet else None, 3,
                                {0: STALL_HOST, 1: PATIENT_HOST, 2: PATIENT_HOST})
            stalls = [stall(hosts, victim) for _ in range(repeats)]
            stop_hosts(hosts, [])
            for s in servers:
                s.stop()
            dead = spread(r["all_dead_s"] for r in runs)
            live = spread(r["all_live_again_s"] for r in runs)
            per_return = [r["flushes"] for r in runs]
            figures = {"settings": fleetlib.profile_figures(settings), "runs": runs, "kill_to_all_dead": dead,
                       "return_to_all_live": live, "flushes_per_return": per_return, "flushes_per_stall": stalls}
            if with_fleet:
                figures["flushes_per_return_max"] = benchlib.judged(max(per_return), 1)
                figures["flushes_per_return_min"] = benchlib.judged(min(per_return), 1, higher_is_better=True)
                figures["flushes_per_stall_max"] = benchlib.judged(max(stalls), 0)
            results[label] = figures
            rows.append([label, fleetlib.profile_label(settings), dead["median_s"], dead["max_s"], live["median_s"],
                         live["max_s"], "/".join(map(str, per_return)), "/".join(map(str, stalls))])
    fleetlib.print_table(
        f"fleet, 3 hosts x 2 memcached, 3-member etcd ({repeats} runs): kill -> every host's clients route away, "
        "return -> every host routes back, seconds; memcached's cmd_flush per return and per one-host stall",
        ["hosts", "probe settings", "dead median", "dead max", "live median", "live max", "flushes/return",
         "flushes/stall"], rows)
    return results


def b64(text):
    return base64.b64encode(text.encode()).decode()


def prefix_range(prefix):
    """An etcd range request body for every key under `prefix`."""
    end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    return {"key": b64(prefix), "range_end": b64(end)}


def revision(etcd):
    reply = etcd.request("/v3/kv/range", {"key": b64("/"), "count_only": True})
    return int(reply["header"]["revision"])


def poll_size(etcd, prefix):
    """What one daemon's poll of the fleet's prefix returns: keys, bytes of
    the JSON gateway's reply."""
    member = next(m for m in etcd.members if m.running())
    request = urllib.request.Request(f"{member.endpoint}/v3/kv/range", data=json.dumps(prefix_range(prefix)).encode(),
                                     method="POST")
    with urllib.request.urlopen(request, timeout=30) as reply:
        body = reply.read()
    return {"keys": int(json.loads(body).get("count", 0)), "bytes": len(body)}


def etcd_counters(etcd):
    """Sums over the members of the gRPC calls etcd handled by method (the
    JSON gateway's calls are gRPC calls inside etcd), the keepalive
    messages it received, and the bytes it sent to clients."""
    totals = {}
    for member in etcd.members:
        with urllib.request.urlopen(f"{member.endpoint}/metrics", timeout=10) as reply:
            for line in reply.read().decode().splitlines():
                if line.startswith("grpc_server_handled_total{"):
                    method = line.split('grpc_method="')[1].split('"')[0]
                    key = f"handled {method}"
                elif line.startswith("grpc_server_msg_received_total{") and 'grpc_method="LeaseKeepAlive"' in line:
                    key = "keepalive messages"
                elif line.startswith("etcd_network_client_grpc_sent_bytes_total"):
                    key = "client bytes sent"
                else:
                    continue
                totals[key] = totals.get(key, 0) + float(line.rsplit(" ", 1)[1])
    return totals


def cpu(pids):
    return {pid: benchlib.cpu_seconds(pid) for pid in pids}


class Window:
    """etcd's revision and counters, and the CPU of the daemons and of etcd,
    from its start to `close()`."""

    def __init__(self, etcd, daemon_pids):
        self.etcd = etcd
        self.daemon_pids = daemon_pids
        self.etcd_pids = [m.pid for m in etcd.members]
        self.start = time.monotonic()
        self.revision = revision(etcd)
        self.counters = etcd_counters(etcd)
        self.cpu = cpu(daemon_pids + self.etcd_pids)

    def close(self):
        seconds = time.monotonic() - self.start
        writes = revision(self.etcd) - self.revision
        counters = etcd_counters(self.etcd)
        used = cpu(self.daemon_pids + self.etcd_pids)
        per_daemon = [100 * (used[p] - self.cpu[p]) / seconds for p in self.daemon_pids]

        def rate(name):
            return round((counters.get(name, 0) - self.counters.get(name, 0)) / seconds, 1)
        return {"seconds": round(seconds, 1), "writes": writes, "writes_per_s": round(writes / seconds, 1),
                "ranges_per_s": rate("handled Range"), "txns_per_s": rate("handled Txn"),
                "keepalive_messages_per_s": rate("keepalive messages"),
                "client_mb_per_s": round(rate("client bytes sent") / 1e6, 2),
                "daemon_cpu_percent_sum": round(sum(per_daemon), 1),
                "daemon_cpu_percent_mean": round(statistics.mean(per_daemon), 2),
                "daemon_cpu_percent_max": round(max(per_daemon), 2),
                "etcd_cpu_percent": round(sum(100 * (used[p] - self.cpu[p]) / seconds for p in self.etcd_pids), 1)}


def wait_quiet(etcd, quiet_s, timeout):
    """Waits until etcd's revision stays put for `quiet_s`; the seconds
    waited (None: it kept moving for `timeout`)."""
    start = time.monotonic()
    seen, since = revision(etcd), time.monotonic()
    while time.monotonic() - start < timeout:
        time.sleep(0.2)
        now = revision(etcd)
        if now != seen:
            seen, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return round(time.monotonic() - start, 1)
    return None


def scale_section(ctx, procs, etcd):
    """Many hosts, many servers, the shipped settings."""
    host_count, server_count, window_s = (4, 3, 2) if ctx.smoke else (100, 50, 15)
    settings = fleetlib.PROFILES["defaults"]
    label = "scale"
    servers = [procs.add(benchlib.Memcached(memory_mb=8).start()) for _ in range(server_count)]
    start = time.monotonic()
    hosts = start_hosts(ctx, procs, label, servers, settings, {"etcd": etcd.config_value()}, host_count)
    started_s = round(time.monotonic() - start, 1)
    routings = [Routing(ctx, h.state) for h in hosts]
    pids = [h.pid for h in hosts]
    quiet = wait_quiet(etcd, 3, SETTLE_TIMEOUT_S)
    prefix = f"/mcwatch/{label}/"
    poll = poll_size(etcd, prefix)
    rest = Window(etcd, pids)
    time.sleep(window_s)
    at_rest = rest.close()

    victim = servers[0]
    key = key_on(routings[0], victim.address)
    outage = Window(etcd, pids)
    victim.kill()
    dead = wait_routing(routings, key, True, VERDICT_TIMEOUT_S)
    time.sleep(max(0.0, window_s - (time.monotonic() - outage.start)))
    during = outage.close()
    outage_writes = during["writes"]
    back_rev = revision(etcd)
    victim.start()
    back = wait_routing(routings, key, False, VERDICT_TIMEOUT_S)
    wait_quiet(etcd, 3, SETTLE_TIMEOUT_S)
    return_writes = revision(etcd) - back_rev
    time.sleep(AFTERMATH_S)
    results = {"hosts": host_count, "servers": server_count, "settings": fleetlib.profile_figures(settings),
               "lease_s": 10, "start_s": started_s, "settled_after_start_s": quiet, "poll": poll,
               "at_rest": at_rest, "outage_window": during,
               "kill_to_all_dead": {"first_s": round(min(s for s in dead if s is not None), 3)
                                    if any(s is not None for s in dead) else None,
                                    "median_s": spread(dead)["median_s"], "all_s": last(dead)},
               "return_to_all_live_s": last(back), "writes_per_outage": outage_writes,
               "writes_per_return": return_writes, "flushes_per_return": benchlib.judged(flushes(victim), 1)}
    stop_hosts(hosts, routings)
    fleetlib.print_table(
        f"fleet at scale: {host_count} hosts x {server_count} memcached, one 3-member etcd, shipped probe settings "
        f"and lease; windows of {window_s} s",
        ["window", "etcd writes/s", "ranges/s", "txns/s", "keepalives/s", "etcd->clients MB/s", "etcd CPU %",
         "daemons CPU % (sum)", "per daemon mean/max"],
        [[name, w["writes_per_s"], w["ranges_per_s"], w["txns_per_s"], w["keepalive_messages_per_s"],
          w["client_mb_per_s"], w["etcd_cpu_percent"], w["daemon_cpu_percent_sum"],
          f"{w['daemon_cpu_percent_mean']}/{w['daemon_cpu_percent_max']}"]
         for name, w in (("at rest", at_rest), ("from a kill", during))])
    print(f"  kill -> all {host_count} hosts route away: first {results['kill_to_all_dead']['first_s']} s, "
          f"median {results['kill_to_all_dead']['median_s']} s, last {results['kill_to_all_dead']['all_s']} s; "
          f"return -> all route back {results['return_to_all_live_s']} s; writes: {outage_writes} in the outage "
          f"window, {return_writes} for the return; cmd_flush {results['flushes_per_return']['value']}{benchlib.mark(results['flushes_per_return'])}\n"
          f"  one poll of the prefix: {poll['keys']} keys, {poll['bytes']} bytes (JSON gateway); "
          f"daemons started in {started_s} s, etcd quiet {quiet} s later")
    return results


def run(ctx):
    repeats = 1 if ctx.smoke else 3
    rng = random.Random(16)
    results = {"load_average": fleetlib.load_average(), "namespaces": False,
               "stale_reads": "tests/integration/test_fleet_hosts.py::"
                              "test_a_server_cut_from_one_host_gives_no_read_older_than_the_last_write"}
    directory = os.path.join(ctx.scratch("fleet"), "etcd")
    shutil.rmtree(directory, ignore_errors=True)  # a new cluster each run
    with benchlib.Processes() as procs:
        etcd = procs.add(EtcdCluster(directory, size=3).start())
        results["hosts"] = hosts_section(ctx, procs, etcd, repeats, rng)
        results["scale"] = scale_section(ctx, procs, etcd)
    return results
