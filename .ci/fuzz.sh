#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ on its kept corpus for a bounded time (FUZZ_SECONDS each, 20 by
# default), with libFuzzer through cargo fuzz, without sanitizers so that stable Rust builds it.
# A crash, a timeout or an allocation past the limit fails the run and leaves the input in
# fuzz/artifacts/. For a long run: FUZZ_SECONDS=3600 .ci/fuzz.sh
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${FUZZ_SECONDS:-20}
for target in $(cargo fuzz list); do
  echo "fuzzing $target for ${seconds}s"
  mkdir -p "corpus/$target"
  cargo fuzz run -s none "$target" "corpus/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1
done
