#!/usr/bin/env bash
# Run the benchmarks and print each figure beside its raw baseline.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
build/bin/bench_launch "$@"
