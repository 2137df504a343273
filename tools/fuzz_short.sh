#!/usr/bin/env bash
# Runs each fuzz target for a short time (make fuzz-short), printing the fuzzer's full output on a
# failure. A failure is a finding when it reproduces: the input the fuzzer wrote to
# testdata/fuzz/ fails again when replayed (`go test -run=Target/input`), and then the run fails
# at once and the input is kept. Go's fuzzing engine also stops on its own at times ("context
# deadline exceeded", or a worker ended at the deadline in the middle of a slow input, reported as
# "fuzzing process hung or terminated unexpectedly" with an input that then replays fine): such a
# failure is reported, its non-reproducing input removed, and the target retried once; a second
# failure fails the run.
# usage: fuzz_short.sh FUZZTIME FUZZTIME_API PKG:Target ...
set -uo pipefail
fuzztime=$1 apitime=$2
shift 2
run() { # pkg target time -> 0 ok, 1 engine failure (retry), 2 finding
  local pkg=$1 target=$2 time=$3 log status before after f
  log=$(mktemp)
  before=$(find "$pkg/testdata/fuzz/$target" -type f 2>/dev/null | sort)
  go test -run '^$' -fuzz "^$target\$" -fuzztime "$time" "./$pkg" >"$log" 2>&1
  status=$?
  if [ $status -eq 0 ]; then
    tail -n 2 "$log"
    rm -f "$log"
    return 0
  fi
  echo "---- $target failed; the fuzzer's output:"
  grep -v '^fuzz: elapsed' "$log" | tail -n 60
  rm -f "$log"
  after=$(find "$pkg/testdata/fuzz/$target" -type f 2>/dev/null | sort)
  for f in $(comm -13 <(echo "$before") <(echo "$after")); do
    if go test -count=1 -run "^$target\$/^$(basename "$f")\$" "./$pkg" >/dev/null 2>&1; then
      echo "---- the input it wrote ($f) replays without failing: removing it"
      rm -f "$f"
    else
      echo "---- $f fails again when replayed: a finding"
      go test -count=1 -run "^$target\$/^$(basename "$f")\$" "./$pkg" 2>&1 | tail -n 30
      return 2
    fi
  done
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
    echo "---- the failure did not reproduce: retrying $target once"
    run "$pkg" "$target" "$time" || exit 1
  elif [ $st -ne 0 ]; then
    exit 1
  fi
done
