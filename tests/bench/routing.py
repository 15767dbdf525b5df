"""Section `routing`: ns per routing decision. libmemcached's own
memcached_generate_hash, the same call with the shim preloaded (which
answers where the shim sends the key), and the C API's mcshim_route, on the
same keys, against a real daemon's state file: all servers live, then one
killed. Runs of the plain and the preloaded program alternate; the best pass
of each counts (the least disturbed by the rest of the machine).

Beside the ns, instructions per decision as callgrind counts them, which a
busy machine does not disturb: the same program run twice under callgrind
with the same keys, once with more passes than the other; the difference
divided by the extra decisions leaves out start-up, key generation and the
one-off build of the shim's routing."""

import re
import subprocess

import benchlib

TARGET = 1.2
SETUPS = [("ketama", "md5"), ("ketama", "one_at_a_time"), ("modula", "md5"), ("modula", "murmur")]
SERVERS = 8
DEAD = 3  # the index of the server killed for the one-dead rows


def parse(out):
    lines = dict(line.split(" ", 1) for line in out.splitlines())
    return {k: ([int(n) for n in v.split()] if k.endswith("per_server") else float(v)) for k, v in lines.items()}


def measure(ctx, daemon, addresses, distribution, hash_name, keys, passes, rounds):
    """Best-of figures for one setup in the fleet's present state."""
    args = [ctx.bench_tool("route_loop"), ",".join(addresses), distribution, hash_name, str(keys), str(passes)]
    plain, shim = [], []
    for _ in range(rounds):
        # Not preloaded; the C API (dlopened by route_loop) reads MCSHIM_STATE.
        plain.append(parse(subprocess.run(args + [ctx.tool("libmcshim.so")],
                                          env=ctx.plain_env() | {"MCSHIM_STATE": daemon.state},
                                          capture_output=True, text=True, check=True, timeout=120).stdout))
        shim.append(parse(subprocess.run(args, env=ctx.shim_env(daemon.state), capture_output=True, text=True,
                                         check=True, timeout=120).stdout))
    return plain, shim


CALLGRIND_PASSES = (1, 3)
ADDED_TARGET = {"all_live": 100, "one_dead": 200}  # instructions the shim may add per decision


def instructions(args, env):
    """Instructions the program executed, as callgrind counts them."""
    result = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"] + args, env=env,
                            capture_output=True, text=True, check=True, timeout=600)
    found = re.search(r"Collected : (\d+)", result.stderr)
    if not found:
        raise RuntimeError(f"no callgrind total in: {result.stderr[-500:]}")
    return int(found.group(1))


def instructions_per_decision(ctx, env, addresses, distribution, hash_name, keys):
    """Instructions per memcached_generate_hash call: two runs whose only
    difference is the number of passes over the same keys."""
    counts = [instructions([ctx.bench_tool("route_loop"), ",".join(addresses), distribution, hash_name, str(keys),
                            str(passes)], env) for passes in CALLGRIND_PASSES]
    return round((counts[1] - counts[0]) / (keys * (CALLGRIND_PASSES[1] - CALLGRIND_PASSES[0])))


def check_placement(plain, shim, dead):
    """The preloaded run must really have routed: the same counts as native
    with all live, none on the dead server otherwise. Else the figure would
    time a shim that stepped aside (stale or unreadable state file)."""
    native, routed, capi = plain[0]["per_server"], shim[0]["per_server"], plain[0]["capi_per_server"]
    if dead is None:
        ok = routed == native == capi
    else:
        ok = routed[dead] == 0 and capi[dead] == 0 and native[dead] > 0
    if not ok:
        raise RuntimeError(f"the shim did not route as the daemon says: native {native}, shim {routed}, "
                           f"C API {capi}")


def run(ctx):
    keys, passes, rounds = (2000, 2, 1) if ctx.smoke else (100000, 5, 5)
    callgrind_keys = 500 if ctx.smoke else 5000
    setups = SETUPS[:1] if ctx.smoke else SETUPS
    rows = []
    with benchlib.Processes() as processes:
        servers = [processes.add(benchlib.Memcached(memory_mb=8).start()) for _ in range(SERVERS)]
        addresses = [m.address for m in servers]
        # Probes patient enough that a busy machine does not mark a live
        # server down: a recently-down server costs every decision a
        # substitute search, and the "all live" rows would not be.
        settings = {"probe_interval": "1s", "probe_timeout": "500ms"}
        daemons = [processes.add(benchlib.Mcwatchd(ctx, f"routing-{d}-{h}", addresses, settings,
                                                   {"distribution": d, "hash": h}).start()) for d, h in setups]
        for state in ("all_live", "one_dead"):
            if state == "one_dead":
                servers[DEAD].kill()
                for daemon in daemons:
                    benchlib.wait_for(lambda: daemon.states().get(addresses[DEAD]) == "dead", 30,
                                      f"{addresses[DEAD]} dead")
            for daemon, (distribution, hash_name) in zip(daemons, setups):
                plain, shim = measure(ctx, daemon, addresses, distribution, hash_name, keys, passes, rounds)
                check_placement(plain, shim, DEAD if state == "one_dead" else None)
                native = min(p["generate_hash_ns"] for p in plain)
                routed = min(s["generate_hash_ns"] for s in shim)
                capi = min(p["capi_ns"] for p in plain)
                native_ir = instructions_per_decision(ctx, ctx.plain_env(), addresses, distribution, hash_name,
                                                      callgrind_keys)
                shim_ir = instructions_per_decision(ctx, ctx.shim_env(daemon.state), addresses, distribution,
                                                    hash_name, callgrind_keys)
                rows.append({"distribution": distribution, "hash": hash_name, "state": state,
                             "native_ns": native, "shim_ns": routed, "capi_ns": capi,
                             "shim_over_native": benchlib.judged(round(routed / native, 3), TARGET),
                             "capi_over_native": round(capi / native, 3),
                             "native_instructions": native_ir, "shim_instructions": shim_ir,
                             "shim_added_instructions": benchlib.judged(shim_ir - native_ir, ADDED_TARGET[state])})
    print(f"  {keys} keys, {SERVERS} servers, best of {rounds} runs x {passes} passes each; instructions "
          f"per decision by callgrind over {callgrind_keys} keys")
    print(f"  {'setup':<22} {'state':<9} {'native':>8} {'shim':>8} {'C API':>8} {'shim/native':>12} "
          f"{'C API/native':>13} {'instr native':>13} {'shim':>6} {'added':>6}")
    for r in rows:
        print(f"  {r['distribution'] + ' ' + r['hash']:<22} {r['state']:<9} {r['native_ns']:>6.1f}ns "
              f"{r['shim_ns']:>6.1f}ns {r['capi_ns']:>6.1f}ns {r['shim_over_native']['value']:>12.2f} "
              f"{r['capi_over_native']:>13.2f} {r['native_instructions']:>13} {r['shim_instructions']:>6} "
              f"{r['shim_added_instructions']['value']:>6}{benchlib.mark(r['shim_over_native'])}"
              f"{benchlib.mark(r['shim_added_instructions'])}")
    worst = max(rows, key=lambda r: r["shim_over_native"]["value"])
    result = {"keys": keys, "servers": SERVERS, "rows": rows,
              "shim_over_native": benchlib.judged(worst["shim_over_native"]["value"], TARGET),
              "shim_over_native_worst_setup": f"{worst['distribution']} {worst['hash']} {worst['state']}"}
    for state in ADDED_TARGET:
        most = max((r for r in rows if r["state"] == state), key=lambda r: r["shim_added_instructions"]["value"])
        result[f"shim_added_instructions_{state}"] = most["shim_added_instructions"]
    return result
