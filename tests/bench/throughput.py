"""get/set throughput of a libmemcached loop on loopback, direct and with
LD_PRELOAD=libmcshim.so, against the same four memcached servers and a
running mcwatchd, rounds interleaved in one run. Prints the ratio; never
fails on a missed target.

    throughput.py BUILD_DIR [OPS_PER_ROUND] [ROUNDS]"""

import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

TARGET = 0.98


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_accepting(port):
    for _ in range(500):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.01)
    raise SystemExit(f"memcached on port {port} did not start")


def main():
    build = os.path.abspath(sys.argv[1])
    ops = int(sys.argv[2]) if len(sys.argv) > 2 else 20000
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    work = tempfile.mkdtemp(prefix="mcwatch-bench-")
    processes = []
    try:
        ports = [free_port() for _ in range(4)]
        for port in ports:
            args = ["memcached", "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", "64", "-t", "1"]
            if os.geteuid() == 0:
                args += ["-u", "root"]
            processes.append(subprocess.Popen(args))
            wait_accepting(port)
        config = os.path.join(work, "mcwatchd.conf")
        state = os.path.join(work, "run", "state")
        with open(config, "w") as f:
            f.write(f"[mcwatchd]\nstate_file = {state}\n[servers]\n")
            f.write("".join(f"server = 127.0.0.1:{p}\n" for p in ports))
        processes.append(subprocess.Popen([os.path.join(build, "mcwatchd"), "-f", "-c", config],
                                          stderr=subprocess.DEVNULL))
        for _ in range(500):
            if subprocess.run([os.path.join(build, "mcctl"), "-s", state, "status"],
                              capture_output=True).returncode == 0:
                break
            time.sleep(0.02)
        servers = ",".join(f"127.0.0.1:{p}" for p in ports)
        loop = os.path.join(build, "bench", "mc_loop")
        results = {"direct": [], "preloaded": []}
        for value_size in (100, 4000):
            for _ in range(rounds):
                for name in ("direct", "preloaded"):
                    env = dict(os.environ)
                    env.pop("LD_PRELOAD", None)
                    if name == "preloaded":
                        env.update(LD_PRELOAD=os.path.join(build, "libmcshim.so"), MCSHIM_STATE=state)
                    out = subprocess.run([loop, servers, str(ops), str(value_size)], env=env,
                                         capture_output=True, text=True, check=True).stdout
                    results[name].append((value_size, float(out.split()[1])))
        for value_size in (100, 4000):
            direct = statistics.median(v for s, v in results["direct"] if s == value_size)
            shim = statistics.median(v for s, v in results["preloaded"] if s == value_size)
            ratio = shim / direct
            mark = "" if ratio >= TARGET else f"  (below target {TARGET})"
            print(f"throughput value={value_size}B: direct {direct:.0f} ops/s, preloaded {shim:.0f} ops/s, "
                  f"shim_over_direct {ratio:.3f}{mark}")
    finally:
        for p in processes:
            p.kill()
            p.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
