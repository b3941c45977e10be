#!/bin/sh
# run.sh BINDIR OUTDIR SECONDS TARGET... -- run each libFuzzer target for
# SECONDS on its corpus OUTDIR/corpus/TARGET (new inputs are added there),
# crash inputs to OUTDIR/artifacts, full logs to OUTDIR/logs. Prints one
# line per target (executions, exec/s, coverage, corpus size) and exits 1
# when any target found a crash.
set -u
bin=$1 out=$2 secs=$3
shift 3
mkdir -p "$out/artifacts" "$out/logs"
fail=0
for t in "$@"; do
    mkdir -p "$out/corpus/$t"
    log="$out/logs/$t.log"
    "$bin/fuzz_$t" -max_total_time="$secs" -timeout=60 -max_len=8192 -print_final_stats=1 \
        -artifact_prefix="$out/artifacts/$t-" "$out/corpus/$t" >"$log" 2>&1
    rc=$?
    last=$(grep -a -E '^#[0-9]+' "$log" | tail -n 1)
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
    cov=$(printf '%s\n' "$last" | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
    ft=$(printf '%s\n' "$last" | sed -n 's/.*ft: \([0-9]*\).*/\1/p')
    corp=$(printf '%s\n' "$last" | sed -n 's/.*corp: \([^ ]*\).*/\1/p')
    if [ "$rc" -ne 0 ]; then
        echo "fuzz_$t: FAILED (exit $rc) -- $log; the input is in $out/artifacts/"
        grep -a -E '^(fuzz:|sse:|SUMMARY|==[0-9]+==ERROR)|runtime error' "$log" | head -n 5
        fail=1
    else
        printf 'fuzz_%-9s %8s runs in %ss, %5s exec/s, cov: %s ft: %s, corpus: %s\n' \
            "$t" "${runs:-?}" "$secs" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}"
    fi
done
exit $fail
