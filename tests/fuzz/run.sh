#!/usr/bin/env bash
# Runs the libFuzzer targets built in BUILD/fuzz.
#   run.sh BUILD --corpus-only [NAME...]   each input of tests/fuzz/corpus/NAME once
#                                          (make test); one line per target
#   run.sh BUILD --seconds N [NAME...]     fuzz each target for N seconds (make fuzz),
#                                          new inputs kept in BUILD/fuzz/work/NAME,
#                                          crashes in BUILD/fuzz/crashes/
# NAME defaults to every built target. Exit status 1 if any target failed.
set -u
cd "$(dirname "$0")/../.."
build=$1
mode=$2
seconds=0
if [ "$mode" = --seconds ]; then seconds=$3; shift; fi
shift 2
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
    for binary in "$build"/fuzz/fuzz_*; do
        [ -x "$binary" ] && names+=("$(basename "$binary" | sed 's/^fuzz_//')")
    done
fi

failed=0
total_runs=0
for name in "${names[@]}"; do
    binary=$build/fuzz/fuzz_$name
    corpus=tests/fuzz/corpus/$name
    if [ ! -x "$binary" ]; then
        echo "fuzz $name: FAILED: $binary not built"; failed=1; continue
    fi
    dict=()
    [ -f "tests/fuzz/$name.dict" ] && dict=(-dict="tests/fuzz/$name.dict")
    log=$(mktemp)
    if [ "$mode" = --corpus-only ]; then
        # Files, not the directory: each input once, nothing written anywhere.
        inputs=("$corpus"/*)
        "$binary" -runs=1 "${inputs[@]}" >"$log" 2>&1
        status=$?
        count=$(grep -c '^Running: ' "$log")
        if [ $status -eq 0 ] && [ "$count" -eq ${#inputs[@]} ]; then
            echo "fuzz $name: ok, $count corpus inputs"
        else
            echo "fuzz $name: FAILED (exit $status, $count of ${#inputs[@]} inputs run)"
            tail -40 "$log"; failed=1
        fi
    else
        work=$build/fuzz/work/$name
        crashes=$build/fuzz/crashes
        mkdir -p "$work" "$crashes"
        echo "fuzz $name: ${seconds}s"
        "$binary" -max_total_time="$seconds" -timeout=10 -print_final_stats=1 \
            -artifact_prefix="$crashes/$name-" "${dict[@]}" "$work" "$corpus" >"$log" 2>&1
        status=$?
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
        total_runs=$((total_runs + ${runs:-0}))
        if [ $status -eq 0 ]; then
            echo "fuzz $name: ok, ${runs:-?} executions, corpus $(ls "$work" | wc -l) inputs"
        else
            echo "fuzz $name: FAILED (exit $status); reproducer in $crashes/"
            grep -E 'ERROR|invariant|SUMMARY|Test unit written' "$log" | head -20; failed=1
        fi
    fi
    rm -f "$log"
done
[ "$mode" = --corpus-only ] || echo "fuzz: $total_runs executions in all"
exit $failed
