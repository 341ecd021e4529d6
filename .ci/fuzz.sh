#!/usr/bin/env bash
# Coverage-guided fuzzing of the parsers of untrusted input (the targets in
# fuzz/fuzz_targets/): OAuth token responses and discovery documents, the
# OAuth callback's error parameters, provider catalog entries, credential
# material for each kind, and the scrubber. Not part of .ci/run: it takes
# minutes and is run by hand or on a schedule.
#
#   bash .ci/fuzz.sh                     every target, FUZZ_SECONDS (60) each
#   FUZZ_SECONDS=600 bash .ci/fuzz.sh scrub credentials
#
# Settings (environment):
#   FUZZ_SECONDS    seconds per target (default 60)
#   FUZZ_SANITIZER  cargo fuzz --sanitizer (default none: the targets are
#                   safe Rust, where a panic is the failure; `address`
#                   halves the speed)
#   FUZZ_JOBS       parallel fuzzing processes per target (default 1)
#
# The corpus grows in fuzz/corpus/<target>/ (not committed); the hand-written
# seeds are in fuzz/seeds/<target>/. A crash is saved in
# fuzz/artifacts/<target>/ and makes the script fail; reproduce it with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run -s none -a <target> fuzz/artifacts/<target>/crash-…
# and keep it as a unit test in the crate that owns the parser.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
seconds=${FUZZ_SECONDS:-60}
sanitizer=${FUZZ_SANITIZER:-none}
jobs=${FUZZ_JOBS:-1}

if ! cargo fuzz --version 2>/dev/null | grep -qx "cargo-fuzz $CARGO_FUZZ_VERSION"; then
  cargo install --locked cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi

# cargo fuzz passes unstable compiler flags (-Zsanitizer, -Cpasses=sancov-module
# with -Zunstable-options-style llvm args) that only a nightly rustc accepts.
# This machine (and CI) has only the stable toolchain and no network access
# to install another; RUSTC_BOOTSTRAP=1 tells the stable compiler to accept
# nightly-only flags. It changes nothing in the code that is compiled, and
# is set for this script's cargo invocations only.
export RUSTC_BOOTSTRAP=1

if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi

flags=(-O -a --sanitizer "$sanitizer")
echo "building fuzz targets (${targets[*]})"
if [ "$#" -gt 0 ]; then
  for t in "${targets[@]}"; do cargo fuzz build "${flags[@]}" "$t"; done
else
  cargo fuzz build "${flags[@]}"
fi

failed=()
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
  echo "== $t: ${seconds}s"
  # First corpus dir is where new inputs go; the seeds are only read.
  par=()
  [ "$jobs" -gt 1 ] && par=(--jobs "$jobs")
  if ! cargo fuzz run "${flags[@]}" "${par[@]}" "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
      -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1; then
    failed+=("$t")
  fi
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzzing found failures in: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
echo "fuzzing: ${#targets[@]} targets, ${seconds}s each, no failures"
