#!/usr/bin/env bash
# Runs each fuzz target for a short time (make fuzz-short). A failure that leaves a failing input
# in testdata/fuzz/ is a finding and fails at once, with the fuzzer's full output. A failure that
# leaves no input (the fuzzing engine itself stopping, e.g. a worker killed by the machine) is
# reported and retried once; a second failure fails too.
# usage: fuzz_short.sh FUZZTIME FUZZTIME_API PKG:Target ...
set -uo pipefail
fuzztime=$1 apitime=$2
shift 2
run() { # pkg target time
  local log status
  log=$(mktemp)
  local before
  before=$(find "$1/testdata/fuzz/$2" -type f 2>/dev/null | sort)
  go test -run '^$' -fuzz "^$2\$" -fuzztime "$3" "./$1" >"$log" 2>&1
  status=$?
  if [ $status -eq 0 ]; then
    tail -n 2 "$log"
    rm -f "$log"
    return 0
  fi
  echo "---- $2 failed; the fuzzer's output:"
  grep -v '^fuzz: elapsed' "$log" | tail -n 60
  rm -f "$log"
  local after
  after=$(find "$1/testdata/fuzz/$2" -type f 2>/dev/null | sort)
  if [ "$before" != "$after" ]; then
    echo "---- $2 wrote a failing input to $1/testdata/fuzz/$2: a finding"
    return 2
  fi
  return 1
}
for t in "$@"; do
  pkg=${t%%:*} target=${t#*:}
  time=$fuzztime
  [ "$target" = FuzzCall ] && time=$apitime
  echo "== $target ($pkg, $time)"
  run "$pkg" "$target" "$time"
  st=$?
  if [ $st -eq 1 ]; then
    echo "---- no failing input was written: retrying $target once"
    run "$pkg" "$target" "$time" || exit 1
  elif [ $st -ne 0 ]; then
    exit 1
  fi
done
