#!/usr/bin/env bash
# Run the benchmarks and print each figure beside its raw baseline.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# runc, for bench_container's comparison only (the project never needs it).
if ! command -v runc >/dev/null && [[ $(id -u) -eq 0 ]]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q runc >/dev/null
fi
scripts/build.sh
echo "== bench_launch"
build/bin/bench_launch
echo "== bench_rpc"
build/bin/bench_rpc
echo "== bench_stats"
build/bin/bench_stats
echo "== bench_exec_stream"
build/bin/bench_exec_stream
echo "== bench_container"
build/bin/bench_container
