#!/bin/sh
# Installs the Debian packages mcwatch needs to build, test, demo or benchmark,
# only those missing. Run as root; otherwise prints the exact command and fails.
# Usage: tools/install-deps.sh          install what is missing
#        tools/install-deps.sh --list   print the package list, one a line
#                                       (tests/integration/test_install_deps.py
#                                       checks that it covers what the tests use)
set -eu

packages="g++ make pkg-config libboost-dev libinih-dev libfmt-dev libexpected-dev doctest-dev
libmemcached-dev libmemcached-tools memcached python3 python3-pylibmc php-cli
php-memcached iproute2 procps python3-prometheus-client python3-pytest"
# The libFuzzer targets (mk/fuzz.mk), which make test runs over their corpora:
# clang, and its fuzzer and sanitizer runtimes (only recommended by clang).
packages="$packages clang libclang-rt-14-dev"
# make bench, whose smoke run is part of make test: twemproxy to compare
# against, gnuplot for the miss-storm chart, valgrind (callgrind) to count the
# instructions of a routing decision.
packages="$packages nutcracker gnuplot-nox valgrind"
# tests/integration/test_docs.py renders the manual pages with groff;
# make format runs clang-format.
packages="$packages groff-base clang-format"
# The fleet view ([fleet] in mcwatchd.conf): mcwatchd and mcctl talk to etcd's
# v3 JSON gateway with libcurl and nlohmann-json; the tests start etcd-server.
packages="$packages libcurl4-openssl-dev nlohmann-json3-dev etcd-server"
# tests/run shares the integration tests among parallel workers with it; it
# runs them one by one without it, so as another user its absence is only
# said, not an error.
optional="python3-pytest-xdist"
packages="$packages $optional"

if [ "${1:-}" = "--list" ]; then
    printf '%s\n' $packages
    exit 0
fi

missing=""
for p in $packages; do
    # dpkg-query answers "install ok installed" only for a fully installed package.
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [ "$status" = "install ok installed" ] || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    needed=""
    for p in $missing; do
        case " $optional " in *" $p "*) ;; *) needed="$needed $p" ;; esac
    done
    if [ -z "$needed" ]; then
        echo "mcwatch would use these Debian packages:$missing (without them make test is slower)" >&2
    else
        echo "mcwatch needs these Debian packages:$missing" >&2
    fi
    echo "run as root:  apt-get update && apt-get install -y$missing" >&2
    [ -z "$needed" ] && exit 0
    exit 1
fi
echo "installing:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >&2
# shellcheck disable=SC2086  # word splitting of the package list is intended
apt-get install -y -q --no-install-recommends $missing >&2
