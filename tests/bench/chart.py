"""The miss-storm chart: database reads a second through the phases, one
line per system, drawn by gnuplot (Debian's gnuplot-nox) into a PNG."""

import os
import subprocess

GNUPLOT = "/usr/bin/gnuplot"


def miss_storm(results, out_dir):
    """Writes miss_storm.png (and the .dat and .gp it is drawn from) into
    out_dir; returns the PNG's path."""
    systems = list(results["timeline"])
    data = os.path.join(out_dir, "miss_storm.dat")
    with open(data, "w") as out:
        # One gnuplot data block per system, separated by two blank lines.
        for system in systems:
            out.write(f"# {system}\n")
            out.writelines(f"{t} {n}\n" for t, n in results["timeline"][system])
            out.write("\n\n")
    png = os.path.join(out_dir, "miss_storm.png")
    phase_marks = "".join(
        f'set arrow from {t},graph 0 to {t},graph 1 nohead dashtype 2 lc rgb "gray"\n'
        f'set label "{name}" at {t},graph 0.97 offset 0.5,0\n'
        for name, t in results["phase_starts"].items())
    plots = ", ".join(f'"{data}" index {i} using 1:2 with lines lw 2 title "{s}"' for i, s in enumerate(systems))
    script = f"""set terminal pngcairo size 1100,550 font ",11" noenhanced
set output "{png}"
set title "Miss storm: database reads per second ({results['keys']} keys, {results['ops_per_s']} ops/s)"
set xlabel "seconds"
set ylabel "database reads / s"
set key outside right top
set grid ytics
set label "steady" at 0,graph 0.97 offset 0.5,0
{phase_marks}plot {plots}
"""
    script_path = os.path.join(out_dir, "miss_storm.gp")
    with open(script_path, "w") as out:
        out.write(script)
    subprocess.run([GNUPLOT, script_path], check=True, capture_output=True, text=True, timeout=60)
    return png
