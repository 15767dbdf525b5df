"""What /proc says of a running process: CPU time, memory figures."""

import os
import time


def cpu_seconds(pid):
    """user + system CPU seconds a process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def proc_kb(path, field):
    """A "Field:   N kB" figure from a /proc file."""
    with open(path) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in {path}")


def status_kb(pid, field):
    """A kB figure from /proc/PID/status (VmRSS, VmHWM, ...)."""
    return proc_kb(f"/proc/{pid}/status", field)


def rollup_kb(pid, field):
    """A kB figure from /proc/PID/smaps_rollup (Rss, Pss, Private_Dirty, ...)."""
    return proc_kb(f"/proc/{pid}/smaps_rollup", field)


def cpu_and_rss(pid, seconds):
    """CPU use (percent of one core) over `seconds`, and the RSS (KiB) at the end."""
    cpu0 = cpu_seconds(pid)
    start = time.monotonic()
    time.sleep(seconds)
    cpu1 = cpu_seconds(pid)
    return 100.0 * (cpu1 - cpu0) / (time.monotonic() - start), status_kb(pid, "VmRSS")
