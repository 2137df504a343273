#!/usr/bin/env bash
# Tokenizer throughput, Go core/tokenizer vs HF tokenizers (Python), on the same documents
# (testdata/corpus/sample.jsonl.zst), one thread each, one untimed warm-up pass then the same number
# of timed passes on both sides (word caches warm). Prints both rates in tokens/s and their ratio,
# and Go's rate with an empty cache at every pass (Load excluded) for reference.
#
# Usage: bench/tokenizer_side_by_side.sh [PASSES]   (default 3)
# Env: SIMPLESCOPE_PYTHON (default .venv/bin/python).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
passes="${1:-3}"
py="${SIMPLESCOPE_PYTHON:-$root/.venv/bin/python}"
corpus="$root/testdata/corpus/sample.jsonl.zst"
tokjson="$root/python/simplescope/data/tokenizer/tokenizer.json"
command -v zstd >/dev/null || { echo "zstd (the command) is needed to decompress $corpus for Python" >&2; exit 1; }
[ -x "$py" ] || { echo "Python interpreter $py not found (make venv, or set SIMPLESCOPE_PYTHON)" >&2; exit 1; }
pin=()
command -v taskset >/dev/null && pin=(taskset -c 0)

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
zstd -dqc "$corpus" > "$tmp/corpus.jsonl"

go test -c -o "$tmp/tokenizer.test" ./core/tokenizer/
go_out="$(cd core/tokenizer && GOMAXPROCS=1 "${pin[@]}" "$tmp/tokenizer.test" -test.run '^$' \
  -test.bench '^BenchmarkEncodeCorpus(Cold)?$' -test.benchtime "${passes}x" -test.cpu 1)"
go_cold="$(awk '/^BenchmarkEncodeCorpusCold/ {for (i = 1; i < NF; i++) if ($(i+1) == "tokens/s") print $i}' <<<"$go_out")"
go_rate="$(awk '/^BenchmarkEncodeCorpus[ \t]/ {for (i = 1; i < NF; i++) if ($(i+1) == "tokens/s") print $i}' <<<"$go_out")"
[ -n "$go_rate" ] || { echo "could not read the Go rate from:"; echo "$go_out"; exit 1; } >&2

hf_out="$(RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false "${pin[@]}" "$py" \
  core/tokenizer/testdata/hf_encode.py bench "$tokjson" "$tmp/corpus.jsonl" "$passes")"
hf_rate="$("$py" -c 'import json,sys; print(json.loads(sys.argv[1])["tokens_per_s"])' "$hf_out")"

docs="$(wc -l < "$tmp/corpus.jsonl")"
printf 'corpus: %s documents, %s passes, one thread each%s\n' "$docs" "$passes" "${pin:+ (taskset -c 0)}"
printf 'go  core/tokenizer : %12.0f tokens/s\n' "$go_rate"
printf 'hf  tokenizers     : %12.0f tokens/s\n' "$hf_rate"
awk -v g="$go_rate" -v h="$hf_rate" 'BEGIN { printf "ratio go/hf        : %12.2f\n", g / h }'
printf 'go, cold cache     : %12.0f tokens/s (ratio to hf %s)\n' "$go_cold" \
  "$(awk -v g="$go_cold" -v h="$hf_rate" 'BEGIN { printf "%.2f", g / h }')"
