#!/usr/bin/env bash
# Run the benchmarks and print each figure beside its raw baseline.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
echo "== bench_launch"
build/bin/bench_launch
echo "== bench_rpc"
build/bin/bench_rpc
echo "== bench_stats"
build/bin/bench_stats
