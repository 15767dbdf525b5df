"""Which sanitizers a binary of the build was built with (make SAN=...), and
the environment that preloads libmcshim.so into a client: a sanitizer
build's runtimes must be loaded before the shim into programs that were not
built with them."""

import os
import subprocess

# (sanitizer, its runtime library, a symbol only a binary built with it holds)
RUNTIMES = (("address", "libasan.so", b"__asan_init"), ("undefined", "libubsan.so", b"__ubsan_handle"),
            ("thread", "libtsan.so", b"__tsan_init"))


def built_with(binary_path):
    """The sanitizers in `binary_path`, in RUNTIMES' order ([] for none)."""
    with open(binary_path, "rb") as f:
        binary = f.read()
    return [name for name, _, mark in RUNTIMES if mark in binary]


def preload_env(shim):
    """LD_PRELOAD (and sanitizer options) for the shim at path `shim`. The
    preloaded programs' own leaks (python, php) are not ours to report."""
    names = set(built_with(shim))
    runtimes = [library for name, library, _ in RUNTIMES if name in names]
    paths = [subprocess.run(["gcc", f"-print-file-name={library}"], capture_output=True, text=True).stdout.strip()
             for library in runtimes]
    env = {"LD_PRELOAD": " ".join(paths + [shim])}
    if runtimes:
        env["ASAN_OPTIONS"] = "detect_leaks=0"
    return env


def plain_env():
    """This process's environment without the shim: no LD_PRELOAD and no
    MCSHIM_* setting of the caller's shell leaks into a client."""
    return {k: v for k, v in os.environ.items() if k != "LD_PRELOAD" and not k.startswith("MCSHIM_")}


def shim_env(shim, state):
    """plain_env() with the shim preloaded, reading the state file `state`."""
    return dict(plain_env(), **preload_env(shim), MCSHIM_STATE=state)
