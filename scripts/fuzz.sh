#!/usr/bin/env bash
# Build the libFuzzer targets with clang (ASan + UBSan) in build-fuzz/ and
# run each for SECONDS (default 60):
#   scripts/fuzz.sh [SECONDS] [TARGET...]
# Each run starts from the seed corpus tests/fuzz/corpus/<target> (read
# only) and keeps what it finds in build-fuzz/corpus/<target>. A crash or a
# failed property stops the script with the input saved as
# build-fuzz/artifacts/<target>/crash-*: add it to
# tests/fuzz/regressions/<target>/ with the fix, and every test run replays it.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
targets=("$@")
((${#targets[@]})) || targets=(framer rpc_request proc_files config)
scripts/setup.sh hardening
export CCACHE_BASEDIR=$PWD CCACHE_NOHASHDIR=1
dir=${BUILD_DIR:-build-fuzz}
if [[ ! -f $dir/build.ninja ]]; then
  CC=clang-14 CXX=clang++-14 cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DTASKEXEC_WERROR=ON -DTASKEXEC_SANITIZE=fuzzer >/dev/null
fi
cmake --build "$dir" --target "${targets[@]/#/fuzz_}"
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
for t in "${targets[@]}"; do
  mkdir -p "$dir/corpus/$t" "$dir/artifacts/$t"
  echo "fuzz: $t for ${seconds}s"
  # -close_fd_mask=1: a target's own stdout would drown libFuzzer's report.
  "$dir/bin/fuzz_$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
    -print_final_stats=1 -close_fd_mask=1 -artifact_prefix="$dir/artifacts/$t/" \
    "$dir/corpus/$t" "tests/fuzz/corpus/$t" 2>"$dir/fuzz_$t.log" ||
    { tail -40 "$dir/fuzz_$t.log" >&2; echo "fuzz: $t FAILED; input in $dir/artifacts/$t/" >&2; exit 1; }
  grep -E '^stat::number_of_executed_units|^stat::peak_rss_mb' "$dir/fuzz_$t.log" | tr '\n' ' '
  echo
  grep -E '^#[0-9]+ *DONE' "$dir/fuzz_$t.log" || tail -1 "$dir/fuzz_$t.log"
done
