#!/bin/sh
# tests/fuzz/run.sh replay|fuzz BINDIR NAME...: runs libFuzzer targets.
#   replay  every file of tests/fuzz/corpus/NAME/ once (make fuzz-replay, in
#           make test): a crash that was fixed stays fixed
#   fuzz    FUZZ_SECONDS (default 60) of fuzzing per target, starting from
#           the checked-in corpus; new inputs go to build/fuzz/corpus/NAME/,
#           crashes to build/fuzz/crash/NAME-*; one summary line per target
set -u
mode=$1; bindir=$2; shift 2
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
out=build/fuzz
mkdir -p "$out/log" "$out/crash"
fail=0
for name in "$@"; do
    bin="$bindir/fuzz_$name"
    seeds="tests/fuzz/corpus/$name"
    log="$out/log/$name.$mode.log"
    dict=""
    [ -f "tests/fuzz/$name.dict" ] && dict="-dict=tests/fuzz/$name.dict"
    if [ ! -d "$seeds" ] || [ -z "$(ls -A "$seeds")" ]; then
        echo "fuzz: $name has no corpus in $seeds"; fail=1; continue
    fi
    case "$mode" in
    replay)
        count=$(find "$seeds" -type f | wc -l)
        if find "$seeds" -type f -print0 | xargs -0 "$bin" >"$log" 2>&1; then
            echo "fuzz-replay: $name: $count inputs, no crash"
        else
            echo "fuzz-replay: $name FAILED (log $log):"; tail -n 30 "$log"; fail=1
        fi ;;
    fuzz)
        mkdir -p "$out/corpus/$name"
        # shellcheck disable=SC2086
        "$bin" -max_total_time="${FUZZ_SECONDS:-60}" -print_final_stats=1 $dict \
            -artifact_prefix="$out/crash/$name-" "$out/corpus/$name" "$seeds" >"$log" 2>&1
        rc=$?
        execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
        cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)
        crashes=$(ls "$out/crash" | grep -c "^$name-" || true)
        echo "fuzz: $name: ${execs:-?} executions, ${cov:-?} edges, $crashes crash files, rc $rc (log $log)"
        [ "$rc" -eq 0 ] || fail=1 ;;
    esac
done
exit $fail
