"""`make bench`: the five sections of issue 7, issue 15's membership and
issue 16's fleet, side by side on this machine,
as ratios. Prints a table per section, writes results.json and the
miss-storm chart into --out, marks every figure off its target, and fails
only when a section could not run.

    run.py --build BUILD --out DIR [--smoke] [--only SECTION ...]

--smoke runs every section at tiny sizes, to keep the harness alive in
`make test`; its figures mean nothing."""

import argparse
import datetime
import importlib
import json
import os
import platform
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402

# results.json's key for each section, and the module (tests/bench/) whose
# run(ctx) measures it, prints its table and returns its figures.
SECTIONS = {
    "routing": "routing",
    "throughput": "throughput",
    "miss_storm": "miss_storm",
    "detection": "detection",
    "daemon": "daemon_cost",
    "membership": "membership",
    "fleet": "fleet",
}


def off_target(results, path=""):
    """Every judged figure that missed its target, as (path, figure)."""
    if isinstance(results, dict):
        if "met" in results and "target" in results:
            return [] if results["met"] else [(path, results)]
        return [hit for k, v in results.items() for hit in off_target(v, f"{path}.{k}" if path else k)]
    if isinstance(results, list):
        return [hit for i, v in enumerate(results) for hit in off_target(v, f"{path}[{i}]")]
    return []


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--only", nargs="+", choices=list(SECTIONS))
    args = parser.parse_args()
    ctx = benchlib.Context(args.build, args.out, args.smoke)
    results = {
        "started": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "smoke": args.smoke,
        "machine": {"cpus": os.cpu_count(), "kernel": platform.release()},
    }
    broken = []
    for name, module in SECTIONS.items():
        if args.only and name not in args.only:
            continue
        print(f"== {name}", flush=True)
        start = time.monotonic()
        try:
            results[name] = importlib.import_module(module).run(ctx)
        except Exception as error:  # one broken section must not hide the others
            traceback.print_exc()
            results[name] = {"error": f"{type(error).__name__}: {error}"}
            broken.append(name)
        results[name]["seconds"] = round(time.monotonic() - start, 1)
        sys.stdout.flush()
    if "timeline" in results.get("miss_storm", {}):
        try:
            results["miss_storm"]["chart"] = importlib.import_module("chart").miss_storm(results["miss_storm"],
                                                                                         ctx.out)
            print(f"== chart: {results['miss_storm']['chart']}")
        except Exception as error:
            traceback.print_exc()
            results["miss_storm"]["chart"] = {"error": f"{type(error).__name__}: {error}"}
            broken.append("miss_storm chart")
    ctx.close()
    path = os.path.join(ctx.out, "results.json")
    with open(path, "w") as out:
        json.dump(results, out, indent=2)
        out.write("\n")
    print(f"== results: {path}")
    missed = off_target({k: v for k, v in results.items() if k in SECTIONS})
    for where, figure in missed:
        print(f"off target: {where} = {figure['value']} (target {figure['target']})")
    if not missed:
        print("every target met")
    if broken:
        print(f"sections that could not run: {', '.join(broken)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
