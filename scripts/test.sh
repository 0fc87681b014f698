#!/usr/bin/env bash
# Install, build, and run the whole test suite (unit, integration, privileged,
# docs and install checks, benchmark smoke) through ctest. As root every tier
# runs; without root the privileged tier is skipped with its reason, unless
# CI=true, where a skip is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
ctest --test-dir "${BUILD_DIR:-build}" --output-on-failure "$@"
