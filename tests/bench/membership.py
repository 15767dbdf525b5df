"""Section `membership` (issue 15): servers added and removed under a
read-through load (tests/bench/read_through.c: two client processes that
both write every key, Zipf-skewed keys, versioned values), each system on
its own fresh fleet, through the same phases:

  steady    four servers in the list, the cache warm;
  join      a fifth server added to the list;
  leave     one of the first four removed, once mcwatchd's move after
            the join is done (without it: once the join's
            recently_down_window, the join phase's length, has ended).

The systems, for ketama (over md5) and for modula (over one_at_a_time,
libmemcached's defaults):

- mcwatch: the shim preloaded, mcwatchd told the clients' placement. With
  the managed list (`[routing] managed_list = on`, when this build's mcwatchd
  has the key) the clients keep the list they were started with, and a
  change is one edit of mcwatchd's [servers] and `mcctl reload`; a removal
  is, after the join's move is done (mcwatchd refuses a second change
  before that within the window), `mcctl drain --move` run to its end (see benchlib's
  drain_move), the edit, the reload. Without it (managed_list: false in the
  results), the clients are restarted with the new list like libmemcached's below, beside
  the same drain and reload: the baseline the managed list is measured
  against.
- libmemcached alone: the clients restarted with the new list, as an
  application deploy would; a removed server is stopped after the deploy.

The figure: for each change, the keys whose placement changed (libmemcached's
own placement, `read_through place`, with the list before and after) that
the clients read during the phase, and the database reads of those keys in
it (per key, from the database file), their ratio: 1.0 when every moved key
read missed once, as for every peer today; the target for mcwatch is
<= 0.01. Stale reads (a value older than the database's when the read
began) must be 0."""

import os
import time

import benchlib
import readthrough

PLACEMENTS = {
    "ketama": {"options": [], "routing": {"distribution": "ketama", "hash": "md5"}},
    "modula": {"options": ["modula"], "routing": {"distribution": "modula", "hash": "one_at_a_time"}},
}
SYSTEMS = {f"{kind}_{placement}": (kind, placement) for kind in ("mcwatch", "libmemcached") for placement in PLACEMENTS}
PHASES = ["steady", "join", "leave"]
CLIENTS = 2
TARGET = 0.01


class Sizes:
    def __init__(self, smoke):
        self.keys = 2000 if smoke else 50000
        self.rate = 1000 if smoke else 3000  # operations a second, per client process
        # The join phase is the join's window (below), long enough that
        # the keys the drain moves, whose time to live the drain caps at the
        # window, outlive the run.
        # 40 s: the move after the join (40,000 keys with modula) must end
        # within the window (DESIGN: at least the keys to move / drain_rate),
        # and a loaded machine moves at a fraction of drain_rate.
        self.phase = {"steady": 1.0, "join": 3.0, "leave": 1.5} if smoke else \
            {"steady": 3.0, "join": 40.0, "leave": 10.0}
        # drain --move: keys a second, the time the schedule leaves it (a
        # fifth of the keys at drain_rate, with room), and the most it may take.
        self.drain_rate = 5000
        self.drain_budget = 1.0 if smoke else 5.0
        self.drain_timeout = 5.0 if smoke else 20.0
        # The clients' run also covers the wait for the join's move, if it
        # outlasts the join phase, so that the leave phase is measured whole.
        self.move_budget = 1.0 if smoke else 10.0
        # mcwatchd's recently_down_window: the join phase's length, so that
        # the removal comes once the join's window has ended (the daemon
        # refuses a second change while the first counts: DESIGN, "One
        # change at a time") and each phase is within its change's window.
        self.window = self.phase["join"]


class System:
    """One system's fleet, daemon and clients, through the changes."""

    def __init__(self, ctx, processes, name, sizes, managed):
        self.ctx, self.processes, self.name, self.sizes = ctx, processes, name, sizes
        kind, placement = SYSTEMS[name]
        self.options = ["shared"] + PLACEMENTS[placement]["options"]
        self.placement_options = PLACEMENTS[placement]["options"]
        self.servers = [processes.add(benchlib.Memcached(memory_mb=64).start()) for _ in range(5)]
        self.listed = [s.address for s in self.servers[:4]]
        self.daemon = None
        self.managed = managed and kind == "mcwatch"
        self.env = ctx.plain_env()
        if kind == "mcwatch":
            routing = dict(PLACEMENTS[placement]["routing"], **({"managed_list": "on"} if self.managed else {}))
            settings = {"drain_rate": sizes.drain_rate, "recently_down_window": f"{int(sizes.window * 1000)}ms"}
            self.daemon = processes.add(benchlib.Mcwatchd(ctx, f"membership-{name}", self.listed,
                                                          settings=settings, routing=routing).start())
            self.env = ctx.shim_env(self.daemon.state)
        self.db = readthrough.create_database(os.path.join(ctx.scratch(f"membership-{name}"), "database"),
                                              sizes.keys)
        self.clients = None

    def start_clients(self, servers, seconds):
        self.clients = self.processes.add(readthrough.Clients(self.ctx, servers, self.db, self.sizes.keys,
                                                              self.sizes.rate, seconds, self.env, self.options,
                                                              CLIENTS))

    def reload(self, addresses):
        """mcwatchd's [servers] rewritten and reloaded: a refusal (a server
        removed while it still holds keys never drained) is recorded, then
        forced, so that the run goes on."""
        self.daemon.set_servers(addresses)
        result = self.daemon.ctl_result("reload")
        refused = None
        if result.returncode != 0:
            refused = (result.stdout + result.stderr).strip()
            self.daemon.ctl("reload", "--force")
        benchlib.wait_for(lambda: sorted(self.daemon.states()) == sorted(addresses) and
                          self.daemon.all_in("live", addresses), 10, f"{self.name}: mcwatchd on {addresses}")
        return refused

    def wait_change_settled(self):
        """Until the latest membership change's move is done (or, ended
        otherwise, the change no longer counts; a daemon without the move:
        the window's end): the documented way makes the next change after
        that. The move's figures, if there is one."""
        def change():
            return self.daemon.status().get("membership_change") or {}

        def settled():
            now = change()
            move = now.get("move")
            if not move:
                return not now.get("counts")
            # A move that still runs is waited for even past the window: the
            # next change would stop it, and its unmoved keys' old copies
            # would linger.
            return move["state"] == "done" or (move["state"] not in ("listing", "moving") and not now.get("counts"))

        benchlib.wait_for(settled, self.sizes.window + 60, f"{self.name}: the join's move to end")
        return change().get("move")


def moved_keys(ctx, before, after, keys, options):
    """The keys libmemcached places otherwise with `after` than with `before`."""
    old = readthrough.place(ctx, before, keys, options)
    new = readthrough.place(ctx, after, keys, options)
    return [k for k in range(keys) if old[k] != new[k]]


def change_figures(moved, counts_before, counts_after, judged):
    """Database reads of the moved keys over the moved keys read, between
    two per-key snapshots (reads, database reads)."""
    reads = [counts_after[0][k] - counts_before[0][k] for k in moved]
    db_reads = sum(counts_after[1][k] - counts_before[1][k] for k in moved)
    read = sum(1 for n in reads if n)
    ratio = round(db_reads / read, 3) if read else 0.0
    return {"moved_keys": len(moved), "moved_keys_read": read, "db_reads_of_moved_keys": db_reads,
            "db_reads_over_moved_keys_read": benchlib.judged(ratio, TARGET) if judged else ratio}


def run_system(ctx, name, sizes, managed):
    """One system through the phases: its figures."""
    with benchlib.Processes() as processes:
        system = System(ctx, processes, name, sizes, managed)
        before, joined = system.listed, system.listed + [system.servers[4].address]
        removed = system.servers[1]
        after = [a for a in joined if a != removed.address]
        moved = {"join": moved_keys(ctx, before, joined, sizes.keys, system.placement_options),
                 "leave": moved_keys(ctx, joined, after, sizes.keys, system.placement_options)}
        readthrough.warm(ctx, before, system.db, sizes.keys, system.env, system.options, f"{name}: warming the cache")
        events, counts, buckets, result = {}, {}, [], {"managed_list": system.managed}
        start = time.monotonic()
        events["steady"] = start
        if system.managed:
            # One run of the clients, with the first list, through every change.
            system.start_clients(before, sum(sizes.phase.values()) + sizes.drain_budget + sizes.move_budget)
            time.sleep(max(0.0, start + sizes.phase["steady"] - time.monotonic()))
        else:
            system.start_clients(before, sizes.phase["steady"])
            buckets += system.clients.finish(name)
        counts["join"] = readthrough.key_counts(system.db, sizes.keys)
        events["join"] = time.monotonic()
        if system.daemon:
            result["join_reload_refused"] = system.reload(joined)
        if system.managed:
            time.sleep(max(0.0, start + sizes.phase["steady"] + sizes.phase["join"] - time.monotonic()))
        else:
            system.start_clients(joined, sizes.phase["join"])
            buckets += system.clients.finish(name)
        counts["leave"] = readthrough.key_counts(system.db, sizes.keys)
        events["leave"] = time.monotonic()
        if system.daemon:
            result["join_move"] = system.wait_change_settled()
            result["leave_drain_move"] = system.daemon.drain_move(removed.address, sizes.drain_timeout) | {
                "drain_rate": sizes.drain_rate}
            result["leave_reload_refused"] = system.reload(after)
        if system.managed:
            removed.stop()
            buckets += system.clients.finish(name)
        else:
            system.start_clients(after, sizes.phase["leave"])
            removed.stop()
            buckets += system.clients.finish(name)
        events["end"] = time.monotonic()
        counts["end"] = readthrough.key_counts(system.db, sizes.keys)
    judged = system.daemon is not None
    result["join"] = change_figures(moved["join"], counts["join"], counts["leave"], judged)
    result["leave"] = change_figures(moved["leave"], counts["leave"], counts["end"], judged)
    bounds = list(zip(PHASES, [events[p] for p in PHASES], [events[p] for p in PHASES[1:]] + [events["end"]]))
    result["phases"] = {p: readthrough.totals(buckets, a, b) | {"seconds": round(b - a, 2)} for p, a, b in bounds}
    result["errors"] = sum(p["errors"] + p["write_errors"] for p in result["phases"].values())
    stale = sum(p["stale"] for p in result["phases"].values())
    result["stale_reads"] = benchlib.judged(stale, 0) if judged else stale
    return result


def value(figure):
    return figure["value"] if isinstance(figure, dict) else figure


def run(ctx):
    sizes = Sizes(ctx.smoke)
    managed = benchlib.config_key_known(ctx, "managed_list")
    results = {"keys": sizes.keys, "clients": CLIENTS, "ops_per_s": sizes.rate * CLIENTS,
               "phase_seconds": sizes.phase, "managed_list_available": managed, "systems": {}}
    for name in SYSTEMS:
        results["systems"][name] = run_system(ctx, name, sizes, managed)
    print(f"  {sizes.keys} keys, {CLIENTS} client processes, {sizes.rate * CLIENTS} ops/s, 5% writes (both clients "
          f"write every key); 4 servers, a fifth added, then one removed (mcwatch: after the join's "
          f"recently_down_window of {sizes.window:g} s, drain --move first)")
    if not managed:
        print("  this mcwatchd has no managed_list: the mcwatch clients are restarted with each new list (baseline)")
    print(f"  {'':<21}{'join':^30}{'leave':^30}")
    print(f"  {'system':<21}" + f"{'moved':>8}{'read':>8}{'db reads':>9}{'ratio':>7}" * 2 +
          f"{'errors':>8}{'stale':>7}{'drain':>20}")
    for name, r in results["systems"].items():
        drain = r.get("leave_drain_move")
        drain_text = f"{drain['outcome']} {drain['seconds']}s" if drain else "-"
        print(f"  {name:<21}" + "".join(
            f"{r[c]['moved_keys']:>8}{r[c]['moved_keys_read']:>8}{r[c]['db_reads_of_moved_keys']:>9}"
            f"{value(r[c]['db_reads_over_moved_keys_read']):>7.3f}" for c in ("join", "leave")) +
            f"{r['errors']:>8}{value(r['stale_reads']):>7}{drain_text:>20}")
    for name, r in results["systems"].items():
        if r.get("join_move"):
            m = r["join_move"]
            print(f"  {name}: the move after the join, when the leave began: {m['state']}, {m['moved']} moved, "
                  f"{m['skipped']} skipped, {m['remaining']} left, from {m['sources']} servers, "
                  f"{m['started']} to {m['ended']}")
        for change in ("join", "leave"):
            refused = r.get(f"{change}_reload_refused")
            if refused:
                print(f"  {name}: the {change}'s reload was refused, then forced: {refused}")
            figure = r[change]["db_reads_over_moved_keys_read"]
            if isinstance(figure, dict):
                print(f"  {name} {change} db_reads_over_moved_keys_read = {figure['value']}{benchlib.mark(figure)}")
        if isinstance(r["stale_reads"], dict):
            print(f"  {name} stale_reads = {r['stale_reads']['value']}{benchlib.mark(r['stale_reads'])}")
    return results
