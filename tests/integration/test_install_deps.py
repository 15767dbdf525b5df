"""The install step brings everything the tests, the demo and the benchmarks use.

A fresh Debian 12 machine has only the essential and required packages; CI's
machine may also have whatever a session installed by hand, so a green run can
hide a missing package (it once hid python3-pytest). These tests map every
Python module the harnesses import, every program they start and every library
the build links to the Debian package that provides it here, and fail when
that package is neither in `tools/install-deps.sh --list`, nor pulled in by
one that is (Depends, recursively), nor essential or required."""

import ast
import functools
import glob
import os
import re
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SYSTEM_DIRS = ("/usr/bin", "/usr/sbin", "/bin", "/sbin", "/usr/local/bin")

# Programs that a test uses only when they are there, skipping (or checking
# less) otherwise, so no package is owed for them.
OPTIONAL_PROGRAMS = {
    "promtool": "test_metrics.py checks with prometheus_client alone without it",
    "systemd-analyze": "test_install.py skips the unit check without it",
}
# Sources whose programs and modules count: everything make test, make demo
# and make bench run.
PYTHON_SOURCES = ["tests/**/*.py", "tools/*.py"]
SHELL_SOURCES = ["tests/run", "tests/fuzz/run.sh", "tools/*.sh", ".ci/run"]
MAKE_SOURCES = ["Makefile", "mk/*.mk"]
SHELL_KEYWORDS = {"if", "then", "else", "elif", "fi", "for", "in", "do", "done", "while", "until", "case",
                  "esac", "function", "local", "export", "return", "exit", "set", "shift", "read", "wait",
                  "cd", "source", ".", "!", "{", "}", "[[", "]]", "trap", "break", "continue", "declare",
                  "unset", "eval", "exec", "true", "false", "command", "builtin", "compgen", "printf",
                  "echo", "test", "[", "kill", "time", "pwd", "umask", "type", "hash", "getopts"}


def sources(patterns):
    found = set()
    for pattern in patterns:
        found.update(glob.glob(os.path.join(ROOT, pattern), recursive=True))
    return sorted(f for f in found if os.path.isfile(f))


@functools.lru_cache(maxsize=None)
def listed_packages():
    out = subprocess.run([os.path.join(ROOT, "tools", "install-deps.sh"), "--list"], capture_output=True,
                         text=True, check=True).stdout
    return frozenset(out.split())


@functools.lru_cache(maxsize=None)
def installed():
    """{package: (essential, priority, depends)} for every installed package,
    from one dpkg-query."""
    out = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Abbrev}\t${Package}\t${Essential}\t${Priority}\t"
                          "${Pre-Depends}, ${Depends}\n"], capture_output=True, text=True, check=True).stdout
    index = {}
    for line in out.splitlines():
        status, package, essential, priority, depends = line.split("\t")
        if status.startswith("ii"):
            index[package] = (essential == "yes", priority, depends)
    return index


@functools.lru_cache(maxsize=None)
def brought_packages():
    """The listed packages, what they depend on (as installed here), and what
    every Debian 12 system has (essential or required)."""
    index = installed()
    brought = {p for p, (essential, priority, _) in index.items() if essential or priority == "required"}
    todo = list(listed_packages())
    while todo:
        package = todo.pop()
        if package in brought:
            continue
        brought.add(package)
        for clause in index.get(package, (False, "", ""))[2].split(","):
            # "a (>= 1) | b": the first installed alternative satisfies it.
            for alternative in clause.split("|"):
                name = re.sub(r"\(.*?\)|\[.*?\]", "", alternative).strip().split(":")[0]
                if name in index:
                    todo.append(name)
                    break
    return frozenset(brought)


def owners(paths):
    """{path: Debian package that installed it} from one `dpkg -S`, trying
    each path also resolved and without /usr (Debian 12 merged /bin into
    /usr/bin, while dpkg may have recorded either name)."""
    variants = {}
    for path in paths:
        for candidate in (path, os.path.realpath(path), path[len("/usr"):] if path.startswith("/usr/") else path):
            variants.setdefault(candidate, set()).add(path)
    out = subprocess.run(["dpkg", "-S", *variants], capture_output=True, text=True).stdout
    found = {}
    for line in out.splitlines():
        if line.startswith("diversion ") or ": " not in line:
            continue
        packages, path = line.split(": ", 1)
        for used in variants.get(path, ()):
            found.setdefault(used, packages.split(",")[0].strip().split(":")[0])
    return found


def unbrought(uses):
    """uses: {what: path or None}. Returns "what: why" for each not brought."""
    found = owners([p for p in uses.values() if p])
    problems = []
    for what, path in sorted(uses.items()):
        if path is None:
            problems.append(f"{what}: not found on this machine")
        elif path not in found:
            problems.append(f"{what}: {path} belongs to no Debian package")
        elif found[path] not in brought_packages():
            problems.append(f"{what}: {path} comes from {found[path]}, which tools/install-deps.sh does not bring")
    return problems


def local_module_names():
    return {os.path.splitext(os.path.basename(f))[0] for f in sources(PYTHON_SOURCES)}


def imported_modules(path):
    tree = ast.parse(open(path).read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0]


def system_program(name):
    if name.startswith("/"):
        return name if os.path.isfile(name) and os.access(name, os.X_OK) else None
    return shutil.which(name, path=os.pathsep.join(SYSTEM_DIRS))


def is_program_name(text):
    if "/" in text:  # a system program's path, not a folder
        return text.startswith(tuple(d + "/" for d in SYSTEM_DIRS)) and not text.endswith("/")
    return bool(re.fullmatch(r"[A-Za-z0-9][\w.+-]*", text))


RUNNERS = {"run", "Popen", "check_output", "check_call", "call", "as_nobody"}


def literal_command(node):
    """The program of a literal argument list: ["prog", ...] or ["prog", ...] + more."""
    while isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        node = node.left
    if isinstance(node, (ast.List, ast.Tuple)) and node.elts:
        first = node.elts[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str) and is_program_name(first.value):
            return first.value
    return None


def python_programs(path):
    """Programs a Python harness runs: a literal command given to subprocess
    (or a runner of ours), shutil.which's argument, and constants naming a
    system program's path."""
    tree = ast.parse(open(path).read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args:
            name = getattr(node.func, "attr", None) or getattr(node.func, "id", None)
            arg = node.args[0]
            if name in RUNNERS and literal_command(arg):
                yield literal_command(arg)
            elif name == "which" and isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                yield arg.value
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and \
                "/" in node.value and is_program_name(node.value):
            yield node.value


def shell_programs(text):
    """The command word of each simple command in a shell script (or a make
    recipe): good enough for the plain scripts of this tree."""
    for line in text.splitlines():
        line = re.sub(r"(^|\s)#.*", "", line)
        for piece in re.split(r"\|\||&&|[|;`]|\$\(|\(", line):
            words = piece.split()
            while words and (re.fullmatch(r"\w+=.*", words[0]) or words[0] in ("!", "then", "do", "else",
                                                                                  "if", "while", "until",
                                                                                  "exec", "command", "time",
                                                                                  "nice", "timeout", "env")):
                words = words[1:]
                if words and re.fullmatch(r"-\S*|\d+[smh]?", words[0]):  # timeout 5s, nice -n 5
                    words = words[1:]
            if words and words[0] not in SHELL_KEYWORDS and is_program_name(words[0]):
                yield words[0]


def used_programs():
    names = set()
    for path in sources(PYTHON_SOURCES):
        names.update(python_programs(path))
    for path in sources(SHELL_SOURCES):
        names.update(shell_programs(open(path).read()))
    for path in sources(MAKE_SOURCES):
        recipes = "\n".join(line[1:] for line in open(path).read().splitlines() if line.startswith("\t"))
        names.update(shell_programs(recipes))
    # Make variables and shell expansions are not program names.
    return {n for n in names if "$" not in n and n not in OPTIONAL_PROGRAMS and n not in SHELL_KEYWORDS}


def test_every_python_module_the_harnesses_import_is_brought_by_the_install_step():
    assert sys.executable == "/usr/bin/python3" or os.path.realpath(sys.executable).startswith("/usr/bin/")
    local = local_module_names()
    uses = {}
    for path in sources(PYTHON_SOURCES):
        for module in imported_modules(path):
            if module in local or module in sys.stdlib_module_names or module == "__future__":
                continue
            try:
                spec = __import__("importlib.util").util.find_spec(module)
            except (ImportError, ValueError):
                spec = None
            origin = getattr(spec, "origin", None) if spec else None
            if origin and not os.path.exists(origin):  # namespace packages
                origin = list(spec.submodule_search_locations or [None])[0]
            uses[f"python module {module} ({os.path.relpath(path, ROOT)})"] = origin
    assert uses, "found no third-party import at all: the scan is broken"
    problems = unbrought(uses)
    assert not problems, "\n".join(problems)


def test_every_program_the_tests_demo_and_benchmarks_run_is_brought_by_the_install_step():
    names = used_programs()
    # The scan must see the programs we know the suites run, or it sees nothing.
    for known in ("memcached", "/usr/bin/php", "memccp", "nutcracker", "gcc"):
        assert any(n == known or n.endswith("/" + known) for n in names), f"scan missed {known}: {sorted(names)}"
    uses = {}
    for name in names:
        path = system_program(name)
        if path is None and "/" not in name:
            continue  # not a program at all (a word of a list literal), or a build product
        uses[f"program {name}"] = path
    problems = unbrought(uses)
    assert not problems, "\n".join(problems)


def test_every_library_the_build_links_is_brought_by_the_install_step():
    text = "\n".join(open(p).read() for p in sources(MAKE_SOURCES))
    libraries = set(re.findall(r"(?<![\w-])-l([a-z][\w+]*)\b", text)) - {"mcshim"}  # ours
    modules = set()
    for call in re.findall(r"pkg-config --(?:cflags|libs)[^)]*?((?:\s+[a-z][\w.+-]*)+)\)", text):
        modules.update(call.split())
    assert {"memcached", "hashkit"} <= libraries and "libmemcached" in modules, (libraries, modules)
    uses = {}
    for library in libraries:
        # As the linker looks: the shared library, else the archive (glibc 2.36
        # keeps only libdl.a and libpthread.a, empty, for old build lines).
        found = None
        for name in (f"lib{library}.so", f"lib{library}.a"):
            path = subprocess.run(["gcc", f"-print-file-name={name}"], capture_output=True, text=True).stdout.strip()
            if os.path.isabs(path) and os.path.exists(path):
                found = path
                break
        uses[f"library -l{library}"] = found
    for module in modules:
        result = subprocess.run(["pkg-config", "--path", module], capture_output=True, text=True)
        uses[f"pkg-config module {module}"] = result.stdout.strip() or None
    # Headers included from Debian packages that link nothing (Boost, doctest).
    for header in ("boost/interprocess/mapped_region.hpp", "doctest/doctest.h", "tl/expected.hpp"):
        uses[f"header <{header}>"] = next((os.path.join(d, header) for d in ("/usr/include",)
                                           if os.path.exists(os.path.join(d, header))), None)
    problems = unbrought(uses)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("kind", ["python", "program"])
def test_the_dependency_check_fails_when_a_package_is_left_out(kind, monkeypatch):
    """The check can fail: take one package out of the list and it must name it."""
    dropped = {"python": "python3-pylibmc", "program": "memcached"}[kind]
    everything = listed_packages()
    monkeypatch.setattr(sys.modules[__name__], "listed_packages", lambda: everything - {dropped})
    brought_packages.cache_clear()
    try:
        check = {"python": test_every_python_module_the_harnesses_import_is_brought_by_the_install_step,
                 "program": test_every_program_the_tests_demo_and_benchmarks_run_is_brought_by_the_install_step}
        with pytest.raises(AssertionError, match=dropped):
            check[kind]()
    finally:
        brought_packages.cache_clear()
